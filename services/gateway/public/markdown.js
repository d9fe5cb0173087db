// Safe markdown for the web UI. Model output is untrusted text: it is parsed into a
// tree of known tags (parseMarkdown: pure, runs under node for the unit tests), then
// turned into DOM nodes with createElement/createTextNode only (toDom). No string
// of the model's ever reaches innerHTML, so raw HTML in an answer stays visible text.
// Links keep only http, https and mailto targets; images become links (an <img>
// would fetch a URL the model chose without a click: a way to leak the conversation).
//
// Supported: ATX and setext headings, paragraphs (single newlines are line breaks,
// as in chat), **strong**, *em*, ~~del~~, `code`, fenced code blocks, bullet and
// ordered lists (nested), block quotes, rules, GFM tables, [links](url), <autolinks>
// and bare http(s) URLs, backslash escapes. Not supported (shown as text): raw HTML,
// reference links, indented code blocks, entities.

/** Nesting beyond this is shown as plain text (hostile input must not exhaust the stack). */
const MAX_DEPTH = 16;
/** Longer answers are shown as plain text. */
const MAX_SOURCE = 200_000;
/** Longest link text and destination looked at (bounds the scans of unmatched brackets). */
const MAX_LINK_TEXT = 1000;
const MAX_URL = 2048;

const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

/** Tags toDom creates; anything else in a tree becomes text. */
const TAGS = new Set([
  'p',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'strong',
  'em',
  'del',
  'code',
  'pre',
  'a',
  'ul',
  'ol',
  'li',
  'blockquote',
  'hr',
  'br',
  'table',
  'thead',
  'tbody',
  'tr',
  'th',
  'td',
]);
/** Attributes toDom sets, per tag (href is checked again; rel and target are always added to links). */
const ATTRS = { a: ['href', 'title'], ol: ['start'], code: ['class'], th: ['class'], td: ['class'] };

/** The URL as the browser would follow it, or null unless it is http, https or mailto. */
export function safeHref(raw) {
  if (typeof raw !== 'string' || raw.length > MAX_URL) return null;
  let u;
  try {
    // The WHATWG parser strips the tabs, newlines and control characters browsers ignore,
    // so "java\tscript:" is seen as the javascript: URL it would be. Relative URLs fail.
    u = new URL(raw.trim());
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(u.protocol) ? u.href : null;
}

function h(tag, children = [], attrs = {}) {
  return { tag, attrs, children };
}

// ---------- blocks ----------

const FENCE = /^( {0,3})(`{3,}|~{3,})(.*)$/;
const ATX = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const TABLE_DELIM = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

const blank = (line) => line.trim() === '';
const indentOf = (line) => line.length - line.trimStart().length;
const stripIndent = (line, n) => line.slice(Math.min(n, indentOf(line)));

/** Does line i start a block that ends a paragraph? (An ordered list only when it starts at 1.) */
function startsBlock(lines, i) {
  const l = lines[i];
  const item = ITEM.exec(l);
  if (item && (!/\d/.test(item[2]) || parseInt(item[2], 10) === 1)) return true;
  return FENCE.test(l) || ATX.test(l) || HR.test(l) || QUOTE.test(l) || tableAt(lines, i) !== null;
}

/** Parses markdown into a tree: strings (text) and {tag, attrs, children}. */
export function parseMarkdown(src) {
  const text = String(src ?? '');
  if (text.length > MAX_SOURCE) return [h('p', [text])];
  const lines = text
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => l.replace(/^\t+/, (t) => '    '.repeat(t.length)));
  return parseBlocks(lines, 0);
}

function parseBlocks(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (blank(line)) {
      i++;
      continue;
    }
    if (depth >= MAX_DEPTH) {
      out.push(h('p', [lines.slice(i).join('\n')]));
      break;
    }
    let m;
    if ((m = FENCE.exec(line)) && !(m[2][0] === '`' && m[3].includes('`'))) {
      i = fencedCode(lines, i, m, out);
      continue;
    }
    if ((m = ATX.exec(line))) {
      out.push(h('h' + m[1].length, parseInline(m[2] ?? '', depth + 1)));
      i++;
      continue;
    }
    if (HR.test(line)) {
      out.push(h('hr'));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && !blank(lines[i])) {
        const q = QUOTE.exec(lines[i]);
        if (q) body.push(q[1]);
        else if (startsBlock(lines, i)) break;
        else body.push(lines[i]); // lazy continuation of the quoted paragraph
        i++;
      }
      out.push(h('blockquote', parseBlocks(body, depth + 1)));
      continue;
    }
    if (ITEM.test(line)) {
      i = list(lines, i, depth, out);
      continue;
    }
    const table = tableAt(lines, i);
    if (table) {
      i = tableBlock(lines, i, table, depth, out);
      continue;
    }
    // A paragraph: until a blank line or the start of another block.
    const para = [line.trim()];
    i++;
    let heading = 0;
    while (i < lines.length && !blank(lines[i])) {
      const s = SETEXT.exec(lines[i]);
      if (s) {
        heading = s[1][0] === '=' ? 1 : 2;
        i++;
        break;
      }
      if (startsBlock(lines, i)) break;
      para.push(lines[i].trim());
      i++;
    }
    out.push(h(heading ? 'h' + heading : 'p', parseInline(para.join('\n'), depth + 1)));
  }
  return out;
}

function fencedCode(lines, start, m, out) {
  const indent = m[1].length;
  const fence = m[2];
  const lang = /^[A-Za-z0-9_+#.-]{1,32}/.exec(m[3].trim());
  const closing = fence[0] === '`' ? /^`+[ \t]*$/ : /^~+[ \t]*$/;
  const body = [];
  let i = start + 1;
  // An unclosed fence runs to the end (a reply still streaming in).
  while (i < lines.length) {
    const l = lines[i];
    const t = l.trimStart();
    if (indentOf(l) <= 3 && t.startsWith(fence) && closing.test(t)) {
      i++;
      break;
    }
    body.push(stripIndent(l, indent));
    i++;
  }
  out.push(h('pre', [h('code', body.length ? [body.join('\n')] : [], lang ? { class: 'language-' + lang[0] } : {})]));
  return i;
}

function list(lines, start, depth, out) {
  const first = ITEM.exec(lines[start]);
  const ordered = /\d/.test(first[2]);
  const marker = ordered ? first[2].slice(-1) : first[2];
  const baseIndent = first[1].length;
  const items = [];
  let loose = false;
  let i = start;
  /** Is this line the next item of this list (same kind of marker, about the same indentation)? */
  const sibling = (line) => {
    const m = ITEM.exec(line);
    return (
      m !== null &&
      !HR.test(line) &&
      /\d/.test(m[2]) === ordered &&
      (ordered ? m[2].slice(-1) : m[2]) === marker &&
      m[1].length <= baseIndent + 1
    );
  };
  while (i < lines.length && sibling(lines[i])) {
    const m = ITEM.exec(lines[i]);
    const markerIndent = m[1].length;
    let spaces = (m[3] ?? '').length;
    if (spaces > 4 || m[4] === undefined) spaces = 1;
    const contentIndent = markerIndent + m[2].length + spaces;
    const body = [m[4] ?? ''];
    i++;
    let sawBlank = false;
    while (i < lines.length) {
      const l = lines[i];
      if (blank(l)) {
        sawBlank = true;
        body.push('');
        i++;
        continue;
      }
      const ind = indentOf(l);
      if (ind >= contentIndent) body.push(l.slice(contentIndent));
      // Nested items indented less than the content (a common habit: "1. x" then "  - y").
      else if (ind > markerIndent && (ITEM.test(l) || !sawBlank)) body.push(l.slice(ind));
      // A lazy continuation line of the item's paragraph.
      else if (!sawBlank && !ITEM.test(l) && !startsBlock(lines, i)) body.push(l.trim());
      else break;
      sawBlank = false;
      i++;
    }
    while (body.length > 1 && blank(body[body.length - 1])) body.pop();
    // A blank line between items makes the list loose (paragraphs kept).
    if (sawBlank && i < lines.length && sibling(lines[i])) loose = true;
    items.push(parseBlocks(body, depth + 1));
  }
  const lis = items.map((children) => {
    // Tight lists show the item's first paragraph without <p>.
    const c = !loose && children[0] && children[0].tag === 'p' ? [...children[0].children, ...children.slice(1)] : children;
    return h('li', c);
  });
  const n = ordered ? parseInt(first[2], 10) : 1;
  out.push(h(ordered ? 'ol' : 'ul', lis, ordered && n !== 1 ? { start: String(n) } : {}));
  return i;
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') {
      cur += '|';
      k++;
    } else if (s[k] === '|') {
      cells.push(cur.trim());
      cur = '';
    } else cur += s[k];
  }
  cells.push(cur.trim());
  return cells;
}

/** The column alignments when a table starts at line i, else null. */
function tableAt(lines, i) {
  const head = lines[i];
  const delim = lines[i + 1];
  if (delim === undefined || !head.includes('|') || !delim.includes('|') || !TABLE_DELIM.test(delim)) return null;
  const cols = splitRow(head).length;
  const aligns = splitRow(delim).map((d) => {
    const l = d.startsWith(':');
    const r = d.endsWith(':');
    return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
  });
  return aligns.length === cols ? aligns : null;
}

function tableBlock(lines, start, aligns, depth, out) {
  const cell = (tag, text, k) => h(tag, parseInline(text, depth + 1), aligns[k] ? { class: 'align-' + aligns[k] } : {});
  const row = (tag, line) => {
    const cells = splitRow(line);
    return h(
      'tr',
      aligns.map((_, k) => cell(tag, cells[k] ?? '', k)),
    );
  };
  const head = h('thead', [row('th', lines[start])]);
  const body = [];
  let i = start + 2;
  while (i < lines.length && !blank(lines[i]) && lines[i].includes('|') && !FENCE.test(lines[i]) && !QUOTE.test(lines[i])) {
    body.push(row('td', lines[i]));
    i++;
  }
  out.push(h('table', body.length ? [head, h('tbody', body)] : [head]));
  return i;
}

// ---------- inlines ----------

const PUNCT = /[!-/:-@[-`{-~]/;
const SPACE = /\s/;
const ALNUM = /[\p{L}\p{N}]/u;
const AUTOLINK = /<((?:https?|mailto):[^\s<>]*)>/iy;
const EMAIL_AUTOLINK =
  /<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>/y;
const BARE_URL = /https?:\/\/[^\s<>"'`]+/iy;

function runLength(s, i, c) {
  let k = i;
  while (s[k] === c) k++;
  return k - i;
}

/** Start of the closing backtick run of exactly n, or -1. */
function codeClose(s, from, n) {
  let k = s.indexOf('`', from);
  while (k >= 0) {
    const r = runLength(s, k, '`');
    if (r === n) return k;
    k = s.indexOf('`', k + r);
  }
  return -1;
}

function canOpen(s, i, run, c) {
  const next = s[i + run];
  if (next === undefined || SPACE.test(next)) return false;
  return c !== '_' || i === 0 || !ALNUM.test(s[i - 1]);
}

/** Start of a closing delimiter of length n for c, from `from`, or -1. */
function emphasisClose(s, from, c, n) {
  let k = from;
  while (k < s.length) {
    if (s[k] === '\\') {
      k += 2;
      continue;
    }
    if (s[k] !== c) {
      k++;
      continue;
    }
    const r = runLength(s, k, c);
    const fits = r === n || (r === 3 && n < 3 && c !== '~');
    const after = s[k + r];
    if (fits && k > from && !SPACE.test(s[k - 1]) && (c !== '_' || after === undefined || !ALNUM.test(after))) return k + r - n;
    k += r;
  }
  return -1;
}

/**
 * [text](destination "title") starting at the '[' at i: {text, dest, title, end} or null.
 * `budget.left` bounds the characters all attempts of one parseInline call may scan, so
 * thousands of unmatched brackets stay linear (past it, brackets are plain text).
 */
function linkAt(s, i, budget) {
  if (budget.left <= 0) return null;
  let depth = 0;
  let j = i;
  const limit = Math.min(s.length, i + MAX_LINK_TEXT);
  for (; j < limit; j++) {
    const ch = s[j];
    if (ch === '\\') j++;
    else if (ch === '[') depth++;
    else if (ch === ']' && --depth === 0) break;
  }
  budget.left -= j - i;
  if (j >= limit || s[j + 1] !== '(') return null;
  let k = j + 2;
  while (s[k] === ' ') k++;
  let dest = '';
  const end = Math.min(s.length, k + MAX_URL);
  if (s[k] === '<') {
    const close = s.indexOf('>', k);
    if (close < 0 || close > end) return null;
    dest = s.slice(k + 1, close);
    k = close + 1;
  } else {
    let parens = 0;
    const d0 = k;
    for (; k < end; k++) {
      const ch = s[k];
      if (ch === '\\' && PUNCT.test(s[k + 1] ?? '')) k++;
      else if (ch === '(') parens++;
      else if (ch === ')' && parens-- === 0) break;
      else if (SPACE.test(ch)) break;
    }
    budget.left -= k - d0;
    if (k >= end && k < s.length) return null;
    dest = s.slice(d0, k).replace(/\\([!-/:-@[-`{-~])/g, '$1');
  }
  while (s[k] === ' ' || s[k] === '\n') k++;
  let title = '';
  const q = s[k];
  if (q === '"' || q === "'" || q === '(') {
    const closeQ = s.indexOf(q === '(' ? ')' : q, k + 1);
    if (closeQ < 0 || closeQ > end) return null;
    title = s.slice(k + 1, closeQ);
    k = closeQ + 1;
    while (s[k] === ' ') k++;
  }
  if (s[k] !== ')') return null;
  return { text: s.slice(i + 1, j), dest, title, end: k + 1 };
}

function link(href, children, title) {
  const attrs = { href };
  if (title) attrs.title = title;
  return h('a', children, attrs);
}

/** Trailing punctuation is not part of a bare URL; a ')' only when unbalanced. */
function trimUrl(url) {
  let u = url;
  for (;;) {
    const last = u[u.length - 1];
    if ('.,:;!?*_~\'"'.includes(last)) u = u.slice(0, -1);
    else if (last === ')' && u.split('(').length < u.split(')').length) u = u.slice(0, -1);
    else return u;
  }
}

export function parseInline(s, depth = 0, inLink = false) {
  if (depth >= MAX_DEPTH) return [s];
  const out = [];
  let buf = '';
  const flush = () => {
    if (buf !== '') out.push(buf);
    buf = '';
  };
  // Searches that found no closer: a later opener of the same kind finds none either
  // (keeps hostile input such as thousands of "*" linear).
  const noCloser = new Set();
  const budget = { left: 4 * s.length + 10_000 };
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      const n = s[i + 1];
      if (n === '\n') {
        flush();
        out.push(h('br'));
        i += 2;
        continue;
      }
      if (PUNCT.test(n)) {
        buf += n;
        i += 2;
        continue;
      }
    }
    if (c === '\n') {
      flush();
      out.push(h('br'));
      i++;
      continue;
    }
    if (c === '`') {
      const run = runLength(s, i, '`');
      const close = noCloser.has('`' + run) ? -1 : codeClose(s, i + run, run);
      if (close < 0) {
        noCloser.add('`' + run);
        buf += s.slice(i, i + run);
        i += run;
        continue;
      }
      let code = s.slice(i + run, close).replace(/\n/g, ' ');
      if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim() !== '') code = code.slice(1, -1);
      flush();
      out.push(h('code', [code]));
      i = close + run;
      continue;
    }
    if (!inLink && (c === '[' || (c === '!' && s[i + 1] === '['))) {
      const image = c === '!';
      const l = linkAt(s, image ? i + 1 : i, budget);
      if (l) {
        flush();
        const href = safeHref(l.dest);
        // An image is shown as a link to it; an unsafe target leaves only the text.
        const label = image ? [l.text || l.dest] : parseInline(l.text, depth + 1, true);
        if (href) out.push(link(href, label, l.title));
        else out.push(...label);
        i = l.end;
        continue;
      }
    }
    if (!inLink && c === '<') {
      AUTOLINK.lastIndex = i;
      EMAIL_AUTOLINK.lastIndex = i;
      const a = AUTOLINK.exec(s);
      const e = a ? null : EMAIL_AUTOLINK.exec(s);
      const href = a ? safeHref(a[1]) : e ? safeHref('mailto:' + e[1]) : null;
      if (href) {
        flush();
        out.push(link(href, [a ? a[1] : e[1]]));
        i += (a ? a[0] : e[0]).length;
        continue;
      }
    }
    if (!inLink && (c === 'h' || c === 'H') && (i === 0 || /[\s([{"'*_~]/.test(s[i - 1]))) {
      BARE_URL.lastIndex = i;
      const m = BARE_URL.exec(s);
      const url = m ? trimUrl(m[0]) : '';
      const href = url.length > 'https://'.length ? safeHref(url) : null;
      if (href) {
        flush();
        out.push(link(href, [url]));
        i += url.length;
        continue;
      }
    }
    if (c === '*' || c === '_' || c === '~') {
      const run = runLength(s, i, c);
      const n = c === '~' ? 2 : Math.min(run, 2);
      const usable = c === '~' ? run === 2 : run <= 3;
      const key = c + n;
      const close = usable && !noCloser.has(key) && canOpen(s, i, run, c) ? emphasisClose(s, i + n, c, n) : -1;
      if (close < 0) {
        if (usable && canOpen(s, i, run, c)) noCloser.add(key);
        buf += s.slice(i, i + run);
        i += run;
        continue;
      }
      flush();
      out.push(h(c === '~' ? 'del' : n === 2 ? 'strong' : 'em', parseInline(s.slice(i + n, close), depth + 1, inLink)));
      i = close + n;
      continue;
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

// ---------- DOM ----------

function textOf(node) {
  return typeof node === 'string' ? node : node.children.map(textOf).join('');
}

function nodeToDom(node, doc) {
  if (typeof node === 'string') return doc.createTextNode(node);
  if (!TAGS.has(node.tag)) return doc.createTextNode(textOf(node));
  const e = doc.createElement(node.tag);
  const allowed = ATTRS[node.tag] ?? [];
  for (const [k, v] of Object.entries(node.attrs ?? {})) {
    if (!allowed.includes(k)) continue;
    if (k === 'href') {
      const href = safeHref(v);
      if (href === null) continue;
      e.setAttribute('href', href);
      e.setAttribute('rel', 'noopener noreferrer');
      e.setAttribute('target', '_blank');
    } else e.setAttribute(k, String(v));
  }
  for (const c of node.children) e.appendChild(nodeToDom(c, doc));
  return e;
}

/** DOM nodes for a tree: known tags and attributes only, every string a text node. */
export function toDom(nodes, doc) {
  const frag = doc.createDocumentFragment();
  for (const n of nodes) frag.appendChild(nodeToDom(n, doc));
  return frag;
}

/** Markdown text as a DocumentFragment of safe DOM nodes. */
export function renderMarkdown(src, doc = globalThis.document) {
  return toDom(parseMarkdown(src), doc);
}
