// The web UI's markdown renderer (services/gateway/public/markdown.js, an ES module the
// browser loads as is): what it renders, and that hostile answers stay inert text.
// A small fake document stands in for the browser's: toDom may only call
// createElement, createTextNode, setAttribute and appendChild, so what it builds is
// exactly what the serialisation below shows.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

interface MdElement {
  tag: string;
  attrs: Record<string, string>;
  children: MdNode[];
}
type MdNode = string | MdElement;

interface FakeNode {
  name: string;
  text: string;
  attrs: Map<string, string>;
  kids: FakeNode[];
  setAttribute(k: string, v: string): void;
  appendChild(c: FakeNode): FakeNode;
}
interface FakeDoc {
  createElement(tag: string): FakeNode;
  createTextNode(text: string): FakeNode;
  createDocumentFragment(): FakeNode;
}
interface Markdown {
  parseMarkdown(src: string): MdNode[];
  safeHref(raw: string): string | null;
  toDom(nodes: MdNode[], doc: FakeDoc): FakeNode;
  renderMarkdown(src: string, doc: FakeDoc): FakeNode;
}

// A plain .js module without type declarations: imported by URL, typed by the interface above.
const md: Markdown = await import(new URL('../public/markdown.js', import.meta.url).href);

function fakeNode(name: string, text = ''): FakeNode {
  const n: FakeNode = {
    name,
    text,
    attrs: new Map(),
    kids: [],
    setAttribute: (k, v) => void n.attrs.set(k, v),
    appendChild: (c) => (n.kids.push(c), c),
  };
  return n;
}
const doc: FakeDoc = {
  createElement: (tag) => fakeNode(tag),
  createTextNode: (text) => fakeNode('#text', text),
  createDocumentFragment: () => fakeNode('#fragment'),
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
function html(n: FakeNode): string {
  if (n.name === '#text') return esc(n.text);
  const inner = n.kids.map(html).join('');
  if (n.name === '#fragment') return inner;
  const attrs = [...n.attrs].map(([k, v]) => ` ${k}="${esc(v)}"`).join('');
  return `<${n.name}${attrs}>${inner}</${n.name}>`;
}
const render = (src: string) => html(md.renderMarkdown(src, doc));

/** Every element name and attribute toDom created, to check nothing else ever appears. */
function inventory(n: FakeNode, out = { tags: new Set<string>(), attrs: new Set<string>(), hrefs: [] as string[] }) {
  if (n.name !== '#text' && n.name !== '#fragment') out.tags.add(n.name);
  for (const [k, v] of n.attrs) {
    out.attrs.add(k);
    if (k === 'href') out.hrefs.push(v);
  }
  for (const k of n.kids) inventory(k, out);
  return out;
}

const REL = 'rel="noopener noreferrer" target="_blank"';

describe('markdown renderer', () => {
  it('renders emphasis, inline code, headings and paragraphs with line breaks', () => {
    assert.equal(
      render('Hello **bold**, *em*, __strong__, _em_, ~~gone~~ and `a < b`'),
      '<p>Hello <strong>bold</strong>, <em>em</em>, <strong>strong</strong>, <em>em</em>, <del>gone</del> and <code>a &lt; b</code></p>',
    );
    assert.equal(render('***both***'), '<p><strong><em>both</em></strong></p>');
    assert.equal(render('*a **b** c*'), '<p><em>a <strong>b</strong> c</em></p>');
    assert.equal(render('# One\n### Three ###\nTitle\n==='), '<h1>One</h1><h3>Three</h3><h1>Title</h1>');
    assert.equal(render('line one\nline two\n\nnext'), '<p>line one<br></br>line two</p><p>next</p>');
    assert.equal(render('#hashtag'), '<p>#hashtag</p>');
  });

  it('leaves intraword underscores, lone delimiters and escapes as text', () => {
    assert.equal(render('snake_case_name and 2 * 3 * 4'), '<p>snake_case_name and 2 * 3 * 4</p>');
    assert.equal(render('\\*not em\\* and **unclosed'), '<p>*not em* and **unclosed</p>');
    assert.equal(render('`` a ` b `` and ``` x'), '<p><code>a ` b</code> and ``` x</p>');
  });

  it('renders bullet, ordered and nested lists; tight lists without <p>', () => {
    assert.equal(render('- a\n- b\n  - c\n- d'), '<ul><li>a</li><li>b<ul><li>c</li></ul></li><li>d</li></ul>');
    assert.equal(render('3. three\n4. four'), '<ol start="3"><li>three</li><li>four</li></ol>');
    assert.equal(render('1. x\n  - y\n    more\n2. z'), '<ol><li>x<ul><li>y<br></br>more</li></ul></li><li>z</li></ol>');
    assert.equal(render('- a\n\n- b'), '<ul><li><p>a</p></li><li><p>b</p></li></ul>');
    assert.equal(render('Intro:\n- one\n- two'), '<p>Intro:</p><ul><li>one</li><li>two</li></ul>');
    assert.equal(render('Year\n2024. was long'), '<p>Year<br></br>2024. was long</p>', 'only "1." interrupts a paragraph');
    assert.equal(render('* * *'), '<hr></hr>');
  });

  it('renders fenced code verbatim, with its language, even unclosed while streaming', () => {
    assert.equal(
      render('```js\nconst a = "<b>" && 1;\n  **not bold**\n```\nafter'),
      '<pre><code class="language-js">const a = &quot;&lt;b&gt;&quot; &amp;&amp; 1;\n  **not bold**</code></pre><p>after</p>',
    );
    assert.equal(render('~~~\nstill\ncoming'), '<pre><code>still\ncoming</code></pre>');
    assert.equal(render('```\n```'), '<pre><code></code></pre>');
  });

  it('renders quotes, rules and tables with alignment', () => {
    assert.equal(render('> quoted\n> **more**'), '<blockquote><p>quoted<br></br><strong>more</strong></p></blockquote>');
    assert.equal(render('a\n\n---\n\nb'), '<p>a</p><hr></hr><p>b</p>');
    assert.equal(
      render('| name | n |\n|:----|--:|\n| `x\\|y` | 1 |\n| *b* |'),
      '<table><thead><tr><th class="align-left">name</th><th class="align-right">n</th></tr></thead>' +
        '<tbody><tr><td class="align-left"><code>x|y</code></td><td class="align-right">1</td></tr>' +
        '<tr><td class="align-left"><em>b</em></td><td class="align-right"></td></tr></tbody></table>',
    );
  });

  it('links http, https and mailto only, always with rel="noopener noreferrer"', () => {
    assert.equal(render('[docs](https://example.com/a_(b) "T")'), `<p><a href="https://example.com/a_(b)" ${REL} title="T">docs</a></p>`);
    assert.equal(render('see https://example.com/x.'), `<p>see <a href="https://example.com/x" ${REL}>https://example.com/x</a>.</p>`);
    assert.equal(
      render('<mailto:a@b.example> <a@b.example>'),
      `<p><a href="mailto:a@b.example" ${REL}>mailto:a@b.example</a> <a href="mailto:a@b.example" ${REL}>a@b.example</a></p>`,
    );
    assert.equal(render('[**bold** link](http://x.example/)'), `<p><a href="http://x.example/" ${REL}><strong>bold</strong> link</a></p>`);
  });

  it('never links javascript:, data:, vbscript:, file: or relative targets: the text stays, inert', () => {
    for (const target of [
      'javascript:alert(1)',
      'JAVASCRIPT:alert(1)',
      '<java\tscript:alert(1)>',
      '<java\nscript:alert(1)>',
      '<\u0001javascript:alert(1)>',
      ' javascript:alert(1)',
      'javascript&#58;alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox(1)',
      'file:///etc/passwd',
      '/relative',
      '//evil.example/x',
    ]) {
      const out = md.renderMarkdown(`[click](${target}) <${target}> ![img](${target})`, doc);
      const inv = inventory(out);
      assert.deepEqual(inv.hrefs, [], `${JSON.stringify(target)}: ${html(out)}`);
      assert.ok(!inv.tags.has('img'));
      assert.match(html(out), /click/);
    }
  });

  it('keeps raw HTML as visible text: no element from the answer is ever created', () => {
    const hostile = [
      '<img src=x onerror=alert(1)>',
      '<script>alert(1)</script>',
      '<a href="javascript:alert(1)">x</a>',
      '<iframe src="https://evil.example"></iframe>',
      '<div onclick="alert(1)" style="x">hi</div>',
      '<svg><script>alert(1)</script></svg>',
      '**<b>bold tag</b>** `<i>code</i>`',
      '[<img src=x onerror=alert(1)>](https://ok.example)',
      '| <b>h</b> |\n|---|\n| <script>1</script> |',
    ].join('\n\n');
    const out = md.renderMarkdown(hostile, doc);
    const inv = inventory(out);
    const allowed = new Set(['p', 'strong', 'code', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'br']);
    for (const t of inv.tags) assert.ok(allowed.has(t), `unexpected element <${t}>`);
    for (const a of inv.attrs) assert.ok(['href', 'rel', 'target'].includes(a), `unexpected attribute ${a}`);
    // The iframe's URL shows as a plain link like any URL in the text; the markdown link keeps its https target.
    assert.deepEqual(inv.hrefs, ['https://evil.example/', 'https://ok.example/']);
    const text = html(out);
    assert.match(text, /&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.match(text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  it('shows an image as a link to it, never an <img> (which would fetch without a click)', () => {
    assert.equal(render('![a chart](https://img.example/c.png)'), `<p><a href="https://img.example/c.png" ${REL}>a chart</a></p>`);
  });

  it('toDom creates known tags and attributes only, whatever tree it is given', () => {
    const out = md.toDom(
      [
        { tag: 'script', attrs: {}, children: ['alert(1)'] },
        { tag: 'a', attrs: { href: 'javascript:alert(1)', onclick: 'alert(1)' }, children: ['x'] },
        {
          tag: 'p',
          attrs: { style: 'color:red', onmouseover: 'alert(1)', class: 'c' },
          children: [{ tag: 'img', attrs: { src: 'x' }, children: [] }],
        },
        { tag: 'a', attrs: { href: 'https://ok.example', rel: 'opener', target: '_self' }, children: ['ok'] },
      ],
      doc,
    );
    assert.equal(html(out), `alert(1)<a>x</a><p></p><a href="https://ok.example/" ${REL}>ok</a>`);
  });

  it('safeHref keeps http, https and mailto, normalised', () => {
    assert.equal(md.safeHref('  HTTPS://Example.COM/a b'), 'https://example.com/a%20b');
    assert.equal(md.safeHref('mailto:x@y.example'), 'mailto:x@y.example');
    assert.equal(md.safeHref('javascript:alert(1)'), null);
    assert.equal(md.safeHref('x'.repeat(5000)), null);
  });

  it('stays fast and bounded on hostile input: long runs of delimiters, brackets and nesting', () => {
    const inputs = [
      '*a '.repeat(50_000),
      '_a '.repeat(50_000),
      '**a '.repeat(50_000),
      '['.repeat(100_000) + ']',
      '[a]('.repeat(20_000),
      '`'.repeat(3) + 'x' + ' `a'.repeat(50_000),
      '> '.repeat(10_000) + 'deep',
      '- '.repeat(10_000) + 'deep',
      '  '.repeat(5_000) + '- x',
      '<http'.repeat(30_000),
      'https://'.repeat(20_000),
      '| a |\n|---|\n' + '| b |\n'.repeat(20_000),
    ];
    const t0 = performance.now();
    for (const s of inputs) md.renderMarkdown(s, doc);
    const ms = performance.now() - t0;
    assert.ok(ms < 5_000, `hostile inputs took ${Math.round(ms)} ms`);
    // Past the size cap the answer is one paragraph of text.
    assert.deepEqual(md.parseMarkdown('x'.repeat(300_000)), [{ tag: 'p', attrs: {}, children: ['x'.repeat(300_000)] }]);
  });
});
