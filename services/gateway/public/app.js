// Talon web UI. Everything goes to this page's own origin: relative fetch paths and
// a WebSocket built from location.host, never from a URL parameter, a fragment or
// anything a link could set. The token lives in sessionStorage for this tab and is
// sent in the Authorization header or the first WebSocket message, never in a URL.
// All text is inserted with textContent (no HTML from the server or the model).
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'talon-token';
  const CONV_KEY = 'talon-conversations';
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    me: null,
    ws: null,
    wsReady: false,
    wsBackoff: 500,
    pending: new Map(),
    queue: [],
    conversations: [],
    current: '',
    auditBefore: 0,
  };

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
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
      throw new Error((j.error && j.error.message) || 'HTTP ' + res.status);
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
    loadConversations();
    connect();
    void refreshApprovals();
  }

  function signOut(message) {
    state.token = '';
    state.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.ws) state.ws.close();
    state.ws = null;
    $('login').hidden = false;
    $('app').hidden = true;
    $('tabs').hidden = true;
    $('who').hidden = true;
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
    for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.tab === name);
    for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== 'tab-' + name;
    const loaders = {
      approvals: refreshApprovals,
      skills: loadSkills,
      secrets: loadSecrets,
      users: loadUsers,
      pairings: loadPairings,
      audit: () => loadAudit(true),
    };
    if (loaders[name]) void loaders[name]().catch((e) => status(e.message));
  }

  // ---------- conversations ----------
  function loadConversations() {
    try {
      state.conversations = JSON.parse(sessionStorage.getItem(CONV_KEY) || '[]');
    } catch {
      state.conversations = [];
    }
    if (state.conversations.length === 0) newConversation();
    else selectConversation(state.conversations[0].id);
  }
  function saveConversations() {
    sessionStorage.setItem(CONV_KEY, JSON.stringify(state.conversations.slice(0, 50)));
  }
  function newConversation() {
    const id = 'web-' + Date.now().toString(36) + '-' + Math.floor(Math.random() * 1e6).toString(36);
    state.conversations.unshift({ id, title: 'New conversation', messages: [] });
    saveConversations();
    selectConversation(id);
  }
  function conv() {
    return state.conversations.find((c) => c.id === state.current);
  }
  function selectConversation(id) {
    state.current = id;
    const ul = $('conversations');
    ul.replaceChildren(
      ...state.conversations.map((c) =>
        el('li', { class: c.id === id ? 'active' : '', 'data-id': c.id, text: c.title, onclick: () => selectConversation(c.id) }),
      ),
    );
    const log = $('log');
    log.replaceChildren();
    for (const m of conv().messages) addMessage(m.role, m.text);
  }
  $('new-conv').addEventListener('click', newConversation);

  function addMessage(role, text) {
    const d = el('div', { class: 'msg ' + role });
    d.textContent = (role === 'user' ? 'you: ' : role === 'assistant' ? 'talon: ' : '') + text;
    $('log').appendChild(d);
    $('log').scrollTop = $('log').scrollHeight;
    return d;
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
      state.ws = null;
      state.wsReady = false;
      $('ws-state').textContent = 'disconnected';
      for (const p of state.pending.values()) {
        p.node.className = 'msg error';
        p.node.textContent += ' [connection lost]';
      }
      state.pending.clear();
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
      p.node.textContent = 'talon: ' + p.text;
    } else if (m.type === 'done') {
      p.text = m.content;
      p.node.textContent = 'talon: ' + p.text;
      p.node.dataset.done = '1';
      state.pending.delete(m.id);
      const c = state.conversations.find((x) => x.id === p.conv);
      if (c) {
        c.messages.push({ role: 'assistant', text: p.text });
        saveConversations();
      }
    } else if (m.type === 'error') {
      p.node.className = 'msg error';
      p.node.textContent = 'error: ' + (m.error ? m.error.message : 'unknown');
      p.node.dataset.done = '1';
      state.pending.delete(m.id);
    }
  }

  function send(text) {
    const c = conv();
    c.messages.push({ role: 'user', text });
    if (c.title === 'New conversation') {
      c.title = text.slice(0, 40);
      selectConversation(c.id);
    } else addMessage('user', text);
    saveConversations();
    const node = addMessage('assistant', '');
    const id = 'm' + Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
    state.pending.set(id, { node, text: '', conv: c.id });
    const frame = JSON.stringify({ type: 'chat', id, conversation: c.id, content: text });
    if (state.ws && state.wsReady) state.ws.send(frame);
    else {
      state.queue.push(frame);
      connect();
    }
  }
  $('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('msg').value.trim();
    if (!text) return;
    $('msg').value = '';
    send(text);
  });
  $('msg').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      $('send').requestSubmit();
    }
  });

  // ---------- approvals ----------
  async function refreshApprovals() {
    const r = await api('/v1/approvals?status=pending');
    const list = $('approvals-list');
    const count = $('approvals-count');
    count.hidden = r.approvals.length === 0;
    count.textContent = String(r.approvals.length);
    if (r.approvals.length === 0) list.replaceChildren(el('li', { class: 'hint', text: 'Nothing waiting for a decision.' }));
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
            void refreshApprovals();
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
          ? [el('li', { class: 'hint', text: 'No skill waits for approval.' })]
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
  function rows(tableId, items, cells) {
    $(tableId)
      .querySelector('tbody')
      .replaceChildren(...items.map((it) => el('tr', {}, ...cells(it).map((c) => el('td', {}, c)))));
  }
  function hostList(p) {
    return p
      ? p.hosts.map((h) => h.host + (h.port ? ':' + h.port : '') + (h.methods.length ? ' ' + h.methods.join(',') : '')).join('\n')
      : '-';
  }
  async function loadSkills() {
    const r = await api('/v1/admin/skills');
    rows('skills-table', r.skills, (k) => {
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
    });
  }
  async function loadSecrets() {
    const r = await api('/v1/admin/secrets');
    rows('secrets-table', r.secrets, (s) => [
      s.name,
      String(s.version),
      s.hosts.join(', '),
      s.principals.join(', '),
      s.placement,
      s.expiresAtMs ? when(s.expiresAtMs) : 'never',
    ]);
  }
  async function loadUsers() {
    const r = await api('/v1/admin/users');
    rows('users-table', r.users, (u) => [
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
                    void loadUsers();
                  },
                }),
          ),
        ),
      ),
      u.identities.map((i) => i.channel + ':' + i.account + (i.displayName ? ' (' + i.displayName + ')' : '')).join('\n') || '-',
    ]);
  }
  async function loadPairings() {
    const r = await api('/v1/admin/pairings');
    rows('pairings-pending', r.pending, (p) => {
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
              void loadPairings();
            },
          },
          input,
          el('button', { text: 'Pair' }),
          el('button', {
            type: 'button',
            text: 'Deny',
            onclick: async () => {
              await api('/v1/admin/pairings/' + p.code + '/deny', { method: 'POST', body: {} }).catch((err) => status(err.message));
              void loadPairings();
            },
          }),
        ),
      ];
    });
    rows('pairings-paired', r.paired, (p) => [
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
          void loadPairings();
        },
      }),
    ]);
  }
  async function loadAudit(fresh) {
    if (fresh) state.auditBefore = 0;
    const r = await api('/v1/admin/audit?limit=50' + (state.auditBefore ? '&before=' + state.auditBefore : ''));
    const tbody = $('audit-table').querySelector('tbody');
    if (fresh) tbody.replaceChildren();
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
})();
