// Talon web UI (an ES module). Everything goes to this page's own origin: relative
// fetch paths and a WebSocket built from location.host, never from a URL parameter,
// a fragment or anything a link could set. The token lives in sessionStorage for this
// tab and is sent in the Authorization header or the first WebSocket message, never
// in a URL. Conversations and their messages come from the server (GET
// /v1/conversations...), so any tab or browser signed in as the same user sees them;
// nothing of a conversation is kept in the browser. Text is inserted with textContent;
// assistant answers go through markdown.js, which builds DOM nodes of known tags only.
import { renderMarkdown } from './markdown.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'talon-token';
/** Messages per page of a conversation ("Load earlier messages" fetches the next one). */
const PAGE = 30;
/** Streamed answers longer than this are shown as plain text until complete (re-rendering is quadratic). */
const STREAM_MARKDOWN_MAX = 30_000;
/** A pending turn quiet for this long may be waiting for an approval: look. */
const QUIET_MS = 1200;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  me: null,
  ws: null,
  wsReady: false,
  wsBackoff: 500,
  /** Turns sent and not answered yet, by client message id. */
  pending: new Map(),
  queue: [],
  /** The server's list, newest activity first: {id, channel, title, lastActivityAtMs, turns}. */
  conversations: [],
  conversationsNext: null,
  conversationsLoaded: false,
  /**
   * Conversations started in this tab that the server does not list yet (it does once
   * their first turn is recorded), with the messages exchanged meanwhile (page memory only).
   */
  local: [],
  /** The open conversation: {id, channel, title}. */
  current: null,
  /** nextBefore of the open conversation's earliest page shown. */
  earlier: null,
  loadSeq: 0,
  approvalTimer: 0,
  refreshTimers: [],
  auditBefore: 0,
};

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c));
  return e;
}

function status(text, ok) {
  const s = $('status');
  s.hidden = !text;
  s.textContent = text || '';
  s.className = ok ? 'ok' : '';
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '-';
}

async function api(path, opts) {
  const o = opts || {};
  const headers = { authorization: 'Bearer ' + state.token };
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: o.method || 'GET',
    headers,
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const j = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401) signOut('Your token is no longer valid. Sign in again.');
    const err = new Error((j.error && j.error.message) || 'HTTP ' + res.status);
    err.status = res.status;
    throw err;
  }
  return j;
}

// ---------- sign in / out ----------
async function signIn(token) {
  state.token = token;
  let me;
  try {
    me = await api('/v1/me');
  } catch (e) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    status('Sign-in failed: ' + e.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.me = me;
  status('');
  $('login').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = me.user + (me.scope === 'operator' ? ' (operator)' : '');
  for (const b of document.querySelectorAll('nav .op')) b.hidden = me.scope !== 'operator';
  showTab('chat');
  newConversation();
  void loadConversations(false).catch((e) => status(e.message));
  connect();
  void refreshApprovals().catch((e) => status(e.message));
}

function signOut(message) {
  state.token = '';
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.ws) state.ws.close();
  state.ws = null;
  // Nothing of the user's stays on the page.
  state.pending.clear();
  state.queue = [];
  state.conversations = [];
  state.conversationsNext = null;
  state.conversationsLoaded = false;
  state.local = [];
  state.current = null;
  state.loadSeq += 1;
  for (const t of state.refreshTimers) window.clearTimeout(t);
  state.refreshTimers = [];
  $('conversations').replaceChildren();
  $('log').replaceChildren();
  $('login').hidden = false;
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('who').hidden = true;
  document.body.classList.remove('chat-view');
  status(message || '');
}

$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token').value.trim();
  $('token').value = '';
  if (t) void signIn(t);
});
$('logout').addEventListener('click', () => signOut('Signed out.'));
$('rotate').addEventListener('click', async () => {
  try {
    const r = await api('/v1/me/token/rotate', { method: 'POST', body: {} });
    state.token = r.token;
    sessionStorage.setItem(TOKEN_KEY, r.token);
    $('new-token-value').textContent = r.token;
    $('new-token').showModal();
    if (state.ws) state.ws.close();
  } catch (e) {
    status('Rotation failed: ' + e.message);
  }
});

// ---------- tabs ----------
for (const b of document.querySelectorAll('nav button')) {
  b.addEventListener('click', () => showTab(b.dataset.tab));
}
function showTab(name) {
  for (const b of document.querySelectorAll('nav button')) {
    b.classList.toggle('active', b.dataset.tab === name);
    if (b.dataset.tab === name) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== 'tab-' + name;
  // The chat fills the window so the composer stays on screen; other views scroll.
  document.body.classList.toggle('chat-view', name === 'chat');
  const loaders = {
    approvals: refreshApprovals,
    routines: loadRoutines,
    skills: loadSkills,
    secrets: loadSecrets,
    users: loadUsers,
    pairings: loadPairings,
    audit: () => loadAudit(true),
  };
  if (loaders[name]) void loaders[name]().catch((e) => status(e.message));
}

// ---------- conversations ----------
const keyOf = (c) => c.channel + '/' + c.id;
const isCurrent = (c) => state.current !== null && keyOf(c) === keyOf(state.current);

function randomId() {
  // getRandomValues works without a secure context too (a gateway on a LAN address over http).
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return 'web-' + Date.now().toString(36) + '-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const onServer = (c) => state.conversations.some((x) => keyOf(x) === keyOf(c));
const localOf = (c) => state.local.find((x) => keyOf(x) === keyOf(c));

/** The server's conversations, those of this tab not stored yet first. */
function listed() {
  return state.local.filter((c) => !onServer(c)).concat(state.conversations);
}

async function loadConversations(more) {
  const before = more && state.conversationsNext ? '&before=' + encodeURIComponent(state.conversationsNext) : '';
  const r = await api('/v1/conversations?limit=50' + before);
  if (!state.me) return;
  state.conversations = more ? state.conversations.concat(r.conversations) : r.conversations;
  state.conversationsNext = r.nextBefore;
  state.conversationsLoaded = true;
  // Conversations of this tab the server lists now: its entries replace them.
  state.local = state.local.filter((c) => !onServer(c));
  renderConversationList();
}
$('conv-more').addEventListener('click', () => void loadConversations(true).catch((e) => status(e.message)));

/** The list again a little after a turn: its answer is recorded just after it is sent. */
function refreshConversationsSoon() {
  for (const t of state.refreshTimers) window.clearTimeout(t);
  state.refreshTimers = [400, 2000].map((ms) => window.setTimeout(() => void loadConversations(false).catch(() => undefined), ms));
}

function renderConversationList() {
  const items = listed();
  $('conversations').replaceChildren(
    ...items.map((c) => {
      const title = c.title || 'Untitled conversation';
      const active = isCurrent(c);
      return el(
        'li',
        { class: active ? 'active' : '', 'data-id': c.id, 'data-channel': c.channel },
        el(
          'button',
          { type: 'button', class: 'open', title, 'aria-current': active ? 'true' : null, onclick: () => void openConversation(c) },
          el('span', { class: 'title', text: title }),
          c.channel !== 'web' ? el('span', { class: 'chan', text: c.channel }) : null,
        ),
        el('button', {
          type: 'button',
          class: 'del',
          title: 'Delete this conversation',
          'aria-label': 'Delete conversation: ' + title,
          text: '×',
          onclick: () => confirmDelete(c),
        }),
      );
    }),
  );
  const any = state.conversations.length > 0 || state.local.some((c) => c.turns > 0);
  $('conversations-empty').hidden = !state.conversationsLoaded || any;
  $('conv-more').hidden = !state.conversationsNext;
}

function newConversation() {
  // An unused new conversation is replaced, not kept beside the next one.
  const c = { id: randomId(), channel: 'web', title: 'New conversation', lastActivityAtMs: Date.now(), turns: 0, nodes: [] };
  state.local = [c, ...state.local.filter((x) => x.turns > 0)];
  void openConversation(c);
  $('msg').focus();
}
$('new-conv').addEventListener('click', newConversation);

function messagesPath(c, before) {
  return (
    '/v1/conversations/' +
    encodeURIComponent(c.id) +
    '/messages?channel=' +
    encodeURIComponent(c.channel) +
    '&limit=' +
    PAGE +
    (before ? '&before=' + encodeURIComponent(before) : '')
  );
}

function logEmpty() {
  return el('p', {
    class: 'hint empty',
    id: 'log-empty',
    text: 'No messages yet. Write below to start; the answer appears here, and the conversation is kept on the server for your other devices.',
  });
}

async function openConversation(c) {
  state.current = { id: c.id, channel: c.channel, title: c.title };
  state.earlier = null;
  const seq = ++state.loadSeq;
  setListOpen(false);
  renderConversationList();
  $('conv-title').textContent = c.title || 'Untitled conversation';
  const readonly = c.channel !== 'web';
  $('readonly').hidden = !readonly;
  $('readonly').textContent = readonly
    ? 'This conversation is on ' + c.channel + ': continue it there, or start a new conversation here.'
    : '';
  $('msg').disabled = readonly;
  $('send-btn').disabled = readonly;
  const log = $('log');
  const local = onServer(c) ? undefined : localOf(c);
  let messages = [];
  if (!local) {
    log.replaceChildren(el('p', { class: 'hint', text: 'Loading…' }));
    try {
      const r = await api(messagesPath(c, ''));
      messages = r.messages;
      if (seq === state.loadSeq) state.earlier = r.nextBefore;
    } catch (e) {
      // 404: deleted meanwhile, or its first turn not recorded yet.
      if (seq === state.loadSeq && e.status !== 404) status(e.message);
    }
    if (seq !== state.loadSeq) return;
  }
  log.replaceChildren(...messages.filter((m) => m.content !== '').map((m) => messageNode(m.role, m.content)));
  if (local) log.append(...local.nodes);
  renderEarlierButton();
  // Turns of this conversation still under way (sent from this tab) go after the stored ones.
  for (const p of state.pending.values()) if (p.conv === keyOf(c)) log.append(p.userNode, p.node);
  if (!log.querySelector('.msg')) log.append(logEmpty());
  log.scrollTop = log.scrollHeight;
}

function renderEarlierButton() {
  const existing = $('load-earlier');
  if (!state.earlier) {
    if (existing) existing.remove();
    return;
  }
  if (!existing)
    $('log').prepend(
      el('button', { type: 'button', id: 'load-earlier', class: 'earlier', text: 'Load earlier messages', onclick: loadEarlier }),
    );
}

async function loadEarlier() {
  const c = state.current;
  const seq = state.loadSeq;
  if (!c || !state.earlier) return;
  let r;
  try {
    r = await api(messagesPath(c, state.earlier));
  } catch (e) {
    status(e.message);
    return;
  }
  if (seq !== state.loadSeq) return;
  const log = $('log');
  const height = log.scrollHeight;
  const top = log.scrollTop;
  $('load-earlier').after(...r.messages.filter((m) => m.content !== '').map((m) => messageNode(m.role, m.content)));
  state.earlier = r.nextBefore;
  renderEarlierButton();
  // Keep the messages the user was reading where they were.
  log.scrollTop = top + (log.scrollHeight - height);
}

let deleting = null;
function confirmDelete(c) {
  deleting = c;
  $('confirm-delete-title').textContent = c.title || 'Untitled conversation';
  $('confirm-delete').returnValue = '';
  $('confirm-delete').showModal();
}
$('confirm-delete').addEventListener('close', async () => {
  const c = deleting;
  deleting = null;
  if (!c || $('confirm-delete').returnValue !== 'delete') return;
  if (onServer(c)) {
    try {
      await api('/v1/conversations/' + encodeURIComponent(c.id) + '?channel=' + encodeURIComponent(c.channel), { method: 'DELETE' });
    } catch (e) {
      if (e.status !== 404) {
        status('Could not delete the conversation: ' + e.message);
        return;
      }
    }
  }
  state.conversations = state.conversations.filter((x) => keyOf(x) !== keyOf(c));
  state.local = state.local.filter((x) => keyOf(x) !== keyOf(c));
  status('Conversation deleted.', true);
  if (isCurrent(c)) newConversation();
  else renderConversationList();
});

// The conversation list folds away on narrow screens; this button shows it.
function setListOpen(open) {
  $('tab-chat').classList.toggle('list-open', open);
  $('toggle-list').setAttribute('aria-expanded', open ? 'true' : 'false');
}
$('toggle-list').addEventListener('click', () => setListOpen(!$('tab-chat').classList.contains('list-open')));

// ---------- messages ----------
function messageNode(role, text) {
  const d = el('div', { class: 'msg ' + role });
  d.append(el('span', { class: 'who', text: role === 'user' ? 'you: ' : role === 'assistant' ? 'talon: ' : '' }));
  const body = el('div', { class: role === 'assistant' ? 'body md' : 'body' });
  d.append(body);
  setBody(body, role, text, true);
  return d;
}

function setBody(body, role, text, final) {
  if (role === 'assistant' && (final || text.length <= STREAM_MARKDOWN_MAX)) {
    body.replaceChildren(renderMarkdown(text));
    for (const pre of body.querySelectorAll('pre')) pre.append(copyButton(pre));
  } else body.textContent = text;
}

function copyButton(pre) {
  const b = el('button', {
    type: 'button',
    class: 'copy',
    text: 'Copy',
    'aria-label': 'Copy code',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(pre.querySelector('code').textContent);
        b.textContent = 'Copied';
      } catch {
        b.textContent = 'Copy failed';
      }
      window.setTimeout(() => (b.textContent = 'Copy'), 1500);
    },
  });
  return b;
}

function nearBottom(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function paint(p) {
  const log = $('log');
  const stick = nearBottom(log);
  const body = p.node.querySelector('.body');
  if (p.text === '' && !p.final) body.replaceChildren(el('span', { class: 'hint thinking', text: 'thinking…' }));
  else setBody(body, 'assistant', p.text, p.final);
  if (stick) log.scrollTop = log.scrollHeight;
}

function schedulePaint(p) {
  if (p.frame) return;
  p.frame = window.requestAnimationFrame(() => {
    p.frame = 0;
    paint(p);
  });
}

function finish(p) {
  if (p.frame) window.cancelAnimationFrame(p.frame);
  p.frame = 0;
  p.final = true;
  state.pending.delete(p.id);
  setWaiting(p, null);
  p.node.classList.remove('pending');
  p.node.dataset.done = '1';
  const local = localOf({ id: p.convId, channel: 'web' });
  if (local) local.nodes.push(p.userNode, p.node);
}

// ---------- WebSocket ----------
function wsUrl() {
  // Always this page's own host: the connection target is never taken from the URL.
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws';
}
function connect() {
  if (!state.token || state.ws) return;
  const ws = new WebSocket(wsUrl(), ['talon.v1']);
  state.ws = ws;
  state.wsReady = false;
  $('ws-state').textContent = 'connecting...';
  ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', token: state.token })));
  ws.addEventListener('message', (ev) => {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    onWsMessage(m);
  });
  ws.addEventListener('close', (ev) => {
    if (state.ws === ws) state.ws = null;
    state.wsReady = false;
    $('ws-state').textContent = 'disconnected';
    for (const p of [...state.pending.values()]) {
      finish(p);
      p.node.className = 'msg error';
      p.text += (p.text ? '\n\n' : '') + '[connection lost: the turn may still complete; open the conversation again later to see it]';
      p.node.querySelector('.body').textContent = p.text;
    }
    if (ev.code === 4401) {
      signOut('Your token is no longer valid. Sign in again.');
      return;
    }
    if (state.token) {
      window.setTimeout(connect, state.wsBackoff);
      state.wsBackoff = Math.min(state.wsBackoff * 2, 15000);
    }
  });
}
function onWsMessage(m) {
  if (m.type === 'ready') {
    state.wsReady = true;
    state.wsBackoff = 500;
    $('ws-state').textContent = 'connected';
    for (const q of state.queue.splice(0)) state.ws.send(q);
    return;
  }
  const p = m.id ? state.pending.get(m.id) : undefined;
  if (m.type === 'error' && !p) {
    status(m.error ? m.error.message : 'error');
    return;
  }
  if (!p) return;
  if (m.type === 'delta') {
    p.text += m.content;
    p.lastEventAt = Date.now();
    setWaiting(p, null);
    schedulePaint(p);
  } else if (m.type === 'done') {
    p.text = m.content;
    finish(p);
    paint(p);
    refreshConversationsSoon();
  } else if (m.type === 'error') {
    finish(p);
    p.node.className = 'msg error';
    const code = m.error ? m.error.code : '';
    const body = p.node.querySelector('.body');
    body.textContent =
      code === 'timeout'
        ? 'No answer yet. The turn goes on (it may be waiting for an approval): open this conversation again later to see the answer.'
        : 'error: ' + (m.error ? m.error.message : 'unknown');
    p.node.dataset.done = '1';
    refreshConversationsSoon();
  } else if (m.type === 'queued') {
    p.lastEventAt = Date.now();
  }
}

function send(text) {
  const c = state.current;
  if (!c || c.channel !== 'web') return;
  const log = $('log');
  const empty = $('log-empty');
  if (empty) empty.remove();
  const local = onServer(c) ? undefined : localOf(c);
  if (local) {
    // Titled as the server will title it: the first message's first line.
    if (local.turns === 0) local.title = text.split('\n')[0].slice(0, 80);
    local.turns += 1;
    local.lastActivityAtMs = Date.now();
    c.title = local.title;
    $('conv-title').textContent = c.title;
  } else {
    const listedC = state.conversations.find((x) => keyOf(x) === keyOf(c));
    if (listedC) {
      listedC.lastActivityAtMs = Date.now();
      state.conversations.sort((a, b) => b.lastActivityAtMs - a.lastActivityAtMs);
    }
  }
  renderConversationList();
  const userNode = messageNode('user', text);
  const node = messageNode('assistant', '');
  node.classList.add('pending');
  log.append(userNode, node);
  const id = 'm' + Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
  const p = { id, node, userNode, conv: keyOf(c), convId: c.id, text: '', final: false, frame: 0, lastEventAt: Date.now(), approval: null };
  state.pending.set(id, p);
  paint(p);
  log.scrollTop = log.scrollHeight;
  const frame = JSON.stringify({ type: 'chat', id, conversation: c.id, content: text });
  if (state.ws && state.wsReady) state.ws.send(frame);
  else {
    state.queue.push(frame);
    connect();
  }
  watchApprovals();
}
$('send').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('msg').value.trim();
  if (!text) return;
  $('msg').value = '';
  send(text);
});
$('msg').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('send').requestSubmit();
  }
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && $('tab-chat').classList.contains('list-open')) setListOpen(false);
});

// ---------- a turn waiting for an approval ----------
// The WebSocket says nothing while a tool call waits for the user's decision (the turn is
// parked in the orchestrator); a pending turn that has been quiet for a moment looks for a
// pending approval of its conversation and shows it inline, with the decision buttons.
function watchApprovals() {
  if (state.approvalTimer || state.pending.size === 0) return;
  state.approvalTimer = window.setTimeout(checkApprovals, QUIET_MS);
}

async function checkApprovals() {
  state.approvalTimer = 0;
  if (state.pending.size === 0 || !state.me) return;
  const now = Date.now();
  const quiet = [...state.pending.values()].filter((p) => now - p.lastEventAt >= QUIET_MS);
  if (quiet.length > 0) {
    try {
      const r = await api('/v1/approvals?status=pending');
      showApprovalCount(r.approvals);
      for (const p of quiet) {
        if (p.final) continue;
        const a = r.approvals.find(
          (x) =>
            x.kind === 'tool_call' &&
            x.userId === state.me.user &&
            x.conversation &&
            x.conversation.channel === 'web' &&
            x.conversation.threadId === p.convId,
        );
        setWaiting(p, a || null);
      }
    } catch {
      // Looked again on the next tick.
    }
  }
  if (state.pending.size > 0) state.approvalTimer = window.setTimeout(checkApprovals, 2000);
}

function toolName(a) {
  return a.skill && a.tool ? a.skill + '.' + a.tool : a.tool || a.skill || 'a tool call';
}

function setWaiting(p, a) {
  const old = p.node.querySelector('.waiting');
  if (!a) {
    if (old && !old.classList.contains('decided')) old.remove();
    p.approval = null;
    return;
  }
  if (p.approval === a.id && old) return;
  p.approval = a.id;
  const decide = (what) => async () => {
    try {
      await api('/v1/approvals/' + encodeURIComponent(a.id) + '/' + what, { method: 'POST', body: {} });
      w.classList.add('decided');
      w.replaceChildren(
        el('span', {
          text: what === 'approve' ? 'Approved: ' + toolName(a) + ' runs, the answer follows…' : 'Denied: the assistant is told.',
        }),
      );
    } catch (e) {
      status(e.message);
    }
    void refreshApprovals().catch(() => undefined);
  };
  const canDecide = !a.operatorOnly || (state.me && state.me.scope === 'operator');
  const w = el(
    'div',
    { class: 'waiting', role: 'status', 'data-approval': a.id },
    el('span', { class: 'what', text: 'waiting for approval of ' + toolName(a) + '…' }),
    ' ',
    el('a', {
      href: '#approvals',
      class: 'to-approvals',
      text: 'Open approvals',
      onclick: (e) => {
        e.preventDefault();
        showTab('approvals');
      },
    }),
    canDecide ? el('button', { type: 'button', class: 'approve', text: 'Approve', onclick: decide('approve') }) : null,
    canDecide ? el('button', { type: 'button', class: 'deny', text: 'Deny', onclick: decide('deny') }) : null,
    a.summary ? el('div', { class: 'hint', text: a.summary }) : null,
  );
  if (old) old.replaceWith(w);
  else p.node.append(w);
  const body = p.node.querySelector('.body');
  if (p.text === '') body.replaceChildren();
}

// ---------- routines (read-only; operators manage them with `talon routines`) ----------
async function loadRoutines() {
  const r = await api('/v1/routines');
  const list = $('routines-list');
  if (r.routines.length === 0) {
    list.replaceChildren(el('li', { class: 'hint empty', text: 'No routine runs as you. An operator adds one with talon routines add.' }));
    return;
  }
  list.replaceChildren(
    ...r.routines.map((x) =>
      el(
        'li',
        { 'data-name': x.name, class: 'routine' },
        el('strong', { text: x.name + (x.paused ? ' (paused)' : '') }),
        el('div', {
          class: 'hint',
          text: x.cron + ' · ' + x.timeZone + ' · to ' + x.deliver + ' · next run ' + (x.nextRunAtMs ? when(x.nextRunAtMs) : '-'),
        }),
        el('pre', { text: x.prompt }),
        el(
          'ul',
          { class: 'runs' },
          ...(x.runs.length === 0
            ? [el('li', { class: 'hint', text: 'No runs yet.' })]
            : x.runs.map((run) =>
                el('li', {
                  text:
                    when(run.scheduledAtMs) + ' · ' + run.state + (run.manual ? ' · run now' : '') + (run.error ? ' · ' + run.error : ''),
                }),
              )),
        ),
        x.conversation && x.conversation.channel === 'web'
          ? el('button', {
              type: 'button',
              text: 'Open conversation',
              onclick: () => {
                showTab('chat');
                void openConversation({ id: x.conversation.id, channel: 'web', title: 'Routine ' + x.name });
              },
            })
          : null,
      ),
    ),
  );
}

// ---------- approvals ----------
function showApprovalCount(approvals) {
  const count = $('approvals-count');
  count.hidden = approvals.length === 0;
  count.textContent = String(approvals.length);
}

async function refreshApprovals() {
  const r = await api('/v1/approvals?status=pending');
  const list = $('approvals-list');
  showApprovalCount(r.approvals);
  if (r.approvals.length === 0)
    list.replaceChildren(
      el('li', {
        class: 'hint empty',
        text: 'Nothing waits for your decision. When the assistant wants to run a tool that needs your approval, the call waits here (and in the chat) until you approve or deny it.',
      }),
    );
  else
    list.replaceChildren(
      ...r.approvals.map((a) => {
        const decide = (what) => async () => {
          try {
            await api('/v1/approvals/' + encodeURIComponent(a.id) + '/' + what, { method: 'POST', body: {} });
            status('Approval ' + a.id + ' ' + (what === 'approve' ? 'approved' : 'denied') + '.', true);
          } catch (e) {
            status(e.message);
          }
          void refreshApprovals().catch((e) => status(e.message));
        };
        const canDecide = !a.operatorOnly || (state.me && state.me.scope === 'operator');
        return el(
          'li',
          { 'data-id': a.id, class: 'approval' },
          el('strong', { text: a.summary || a.tool || a.skill || a.id }),
          el('div', {
            class: 'hint',
            text:
              a.kind +
              ' for ' +
              a.userId +
              ' · requested ' +
              when(a.requestedAtMs) +
              (a.expiresAtMs ? ' · expires ' + when(a.expiresAtMs) : ''),
          }),
          a.argumentsJson ? el('pre', { text: a.argumentsJson }) : null,
          canDecide ? el('button', { type: 'button', class: 'approve', text: 'Approve', onclick: decide('approve') }) : null,
          canDecide ? el('button', { type: 'button', class: 'deny', text: 'Deny', onclick: decide('deny') }) : null,
        );
      }),
    );
  if (state.me && state.me.scope === 'operator') {
    const s = await api('/v1/admin/skills');
    const pending = s.skills.filter((k) => k.status === 'pending');
    $('pending-skills').replaceChildren(
      ...(pending.length === 0
        ? [
            el('li', {
              class: 'hint empty',
              text: 'No skill waits for approval. Skills installed with talon skills install PATH wait here until approved.',
            }),
          ]
        : pending.map((k) =>
            el(
              'li',
              {},
              el('strong', { text: k.name + '@' + k.version }),
              el('div', { class: 'hint', text: k.description }),
              el('code', { text: k.approveCommand }),
            ),
          )),
    );
  } else $('pending-skills').replaceChildren(el('li', { class: 'hint', text: 'Operators see skills waiting for approval here.' }));
}

// ---------- operator views ----------
/** Fills a table's body; with no items, one row saying what would appear there and how to get some. */
function rows(tableId, items, cells, empty) {
  const table = $(tableId);
  const tbody = table.querySelector('tbody');
  if (items.length === 0) {
    const cols = String(table.querySelectorAll('thead th').length);
    tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: cols, class: 'hint', text: empty })));
    return;
  }
  tbody.replaceChildren(...items.map((it) => el('tr', {}, ...cells(it).map((c) => el('td', {}, c)))));
}
function hostList(p) {
  return p
    ? p.hosts.map((h) => h.host + (h.port ? ':' + h.port : '') + (h.methods.length ? ' ' + h.methods.join(',') : '')).join('\n')
    : '-';
}
async function loadSkills() {
  const r = await api('/v1/admin/skills');
  rows(
    'skills-table',
    r.skills,
    (k) => {
      const p = k.approved || k.requested;
      return [
        el('span', { text: k.name + '@' + k.version + '\n' + (k.description || '') }),
        k.status,
        hostList(p),
        p ? p.secrets.join(', ') || '-' : '-',
        p ? p.memoryMb + ' MiB, ' + p.timeoutMs + ' ms' + (p.requiresUserApproval ? ', asks the user' : '') : '-',
        k.status === 'approved'
          ? 'by ' + (k.approvedBy || '?') + ' ' + when(k.approvedAtMs)
          : el('code', { text: k.approveCommand || k.revokedReason || '' }),
      ];
    },
    'No skill is installed. Skills are the tools the assistant may use: install one with talon skills install PATH, then approve it with talon skills approve NAME@VERSION.',
  );
}
async function loadSecrets() {
  const r = await api('/v1/admin/secrets');
  rows(
    'secrets-table',
    r.secrets,
    (s) => [
      s.name,
      String(s.version),
      s.hosts.join(', '),
      s.principals.join(', '),
      s.placement,
      s.expiresAtMs ? when(s.expiresAtMs) : 'never',
    ],
    'The vault holds no secret yet. API keys and bot tokens appear here by name once stored with talon secrets set NAME --host HOST.',
  );
}
async function loadUsers() {
  const r = await api('/v1/admin/users');
  rows(
    'users-table',
    r.users,
    (u) => [
      el('span', { text: u.id + (u.displayName ? ' (' + u.displayName + ')' : '') + (u.disabledAtMs ? ' [disabled]' : '') }),
      el(
        'div',
        {},
        ...u.tokens.map((t) =>
          el(
            'div',
            { 'data-token': t.id },
            t.name + ' · ' + t.scope + ' · ' + (t.revokedAtMs ? 'revoked ' + when(t.revokedAtMs) : 'active') + ' ',
            t.revokedAtMs
              ? null
              : el('button', {
                  type: 'button',
                  class: 'revoke',
                  text: 'Revoke',
                  onclick: async () => {
                    try {
                      await api('/v1/admin/tokens/' + t.id + '/revoke', { method: 'POST', body: {} });
                      status('Token ' + t.name + ' revoked.', true);
                    } catch (e) {
                      status(e.message);
                    }
                    void loadUsers().catch((e) => status(e.message));
                  },
                }),
          ),
        ),
      ),
      u.identities.map((i) => i.channel + ':' + i.account + (i.displayName ? ' (' + i.displayName + ')' : '')).join('\n') || '-',
    ],
    'No user yet. Add one with talon users add NAME and give them a token with talon token create --name NAME --user NAME.',
  );
}
async function loadPairings() {
  const r = await api('/v1/admin/pairings');
  rows(
    'pairings-pending',
    r.pending,
    (p) => {
      const input = el('input', { type: 'text', placeholder: 'user id', class: 'pair-user', 'aria-label': 'user for ' + p.code });
      return [
        p.code,
        p.channel,
        p.account + (p.displayName ? ' (' + p.displayName + ')' : ''),
        when(p.expiresAtMs),
        el(
          'form',
          {
            class: 'pair',
            onsubmit: async (e) => {
              e.preventDefault();
              try {
                await api('/v1/admin/pairings/' + p.code + '/approve', { method: 'POST', body: { user: input.value.trim() } });
                status('Paired ' + p.channel + ' ' + p.account + ' with ' + input.value.trim() + '.', true);
              } catch (err) {
                status(err.message);
              }
              void loadPairings().catch((err) => status(err.message));
            },
          },
          input,
          el('button', { text: 'Pair' }),
          el('button', {
            type: 'button',
            text: 'Deny',
            onclick: async () => {
              await api('/v1/admin/pairings/' + p.code + '/deny', { method: 'POST', body: {} }).catch((err) => status(err.message));
              void loadPairings().catch((err) => status(err.message));
            },
          }),
        ),
      ];
    },
    'No pairing request. When someone writes to your bot on a chat platform, their code appears here for you to pair with a Talon user.',
  );
  rows(
    'pairings-paired',
    r.paired,
    (p) => [
      p.channel,
      p.account + (p.displayName ? ' (' + p.displayName + ')' : ''),
      p.userId,
      when(p.approvedAtMs) + ' by ' + p.approvedBy,
      el('button', {
        type: 'button',
        text: 'Unpair',
        onclick: async () => {
          await api('/v1/admin/pairings/unpair', { method: 'POST', body: { channel: p.channel, account: p.account } }).catch((err) =>
            status(err.message),
          );
          void loadPairings().catch((err) => status(err.message));
        },
      }),
    ],
    'No chat-platform account is paired yet. Pair one above, or with talon pairing approve CODE --user ID.',
  );
}
async function loadAudit(fresh) {
  if (fresh) state.auditBefore = 0;
  const r = await api('/v1/admin/audit?limit=50' + (state.auditBefore ? '&before=' + state.auditBefore : ''));
  const tbody = $('audit-table').querySelector('tbody');
  if (fresh && r.entries.length === 0) {
    rows(
      'audit-table',
      [],
      () => [],
      'No egress or vault decision recorded yet. Every request the platform or a skill makes to the outside world, and every use of a secret, is listed here.',
    );
  } else if (fresh) tbody.replaceChildren();
  for (const a of r.entries) {
    tbody.appendChild(
      el(
        'tr',
        {},
        el('td', { text: when(a.atMs) }),
        el('td', { text: a.principal }),
        // The end user the request was made for (a turn, a skill call or a reply of theirs).
        el('td', { text: a.user || '-' }),
        el('td', { text: a.method + ' ' + a.host + (a.port ? ':' + a.port : '') + a.path }),
        el('td', {
          class: a.allowed ? 'allowed' : 'denied',
          text: (a.allowed ? 'allowed' : 'refused') + (a.reason && a.reason !== 'allowed' ? ' (' + a.reason + ')' : ''),
        }),
        // The rule behind a refusal: the leak-scanner rules or secret:<name> labels that fired, else the policy reason.
        el('td', { text: a.allowed ? '-' : a.findings.join(', ') || a.reason || '-' }),
        el('td', { text: a.secrets.join(', ') || '-' }),
        el('td', { text: a.status ? String(a.status) : '-' }),
      ),
    );
  }
  state.auditBefore = r.next;
  $('audit-more').hidden = !r.next;
}
$('audit-more').addEventListener('click', () => void loadAudit(false).catch((e) => status(e.message)));

if (state.token) void signIn(state.token);
