// The web UI in headless Chromium (Debian `chromium` + playwright-core): sign in
// with a token, chat with streamed replies over the WebSocket, conversations kept
// on the server (listed, read, paged, continued and deleted from another browser),
// answers rendered as markdown and hostile answers left inert, a 390 px phone
// screen, a turn waiting for an approval, empty states, pending approvals, the
// operator views; and the browser-side attacks: a link that tries to point the UI
// at another gateway, a foreign page opening our WebSocket, a page framing the UI.
// The "Secrets" view needs EgressService.ListSecretNames.
// TALON_UI_SCREENSHOTS=DIR saves screenshots of the chat at 1280 and 390 px there.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { Kvm } from '@nats-io/kv';
import { approvalKey, KV_BUCKETS, pairedKey, pairingCodeKey, pendingPairingKey, skillRecordKey } from '@talon/kit/subjects';
import { Approval, ApprovalKind, ApprovalStatus, PairingRequest, Pairing, SkillRecord, SkillStatus } from '@talon/proto';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';
import { waitFor } from '../../packages/testkit/src/wait.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = process.env.TALON_UI_SCREENSHOTS;
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A hostile site on another origin that records every request and WebSocket attempt it receives. */
async function startEvilSite(
  page: (req: string) => string,
): Promise<{ url: string; port: number; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url} auth=${req.headers.authorization ?? ''}`);
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page(req.url ?? '/'));
  });
  server.on('upgrade', (req, socket) => {
    hits.push(`UPGRADE ${req.url} protocol=${req.headers['sec-websocket-protocol'] ?? ''}`);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        // The browser keeps idle keep-alive sockets open; do not wait for it to let go.
        server.closeAllConnections();
      }),
  };
}

describe('web UI in headless Chromium', () => {
  let cp: ChannelPlatform;
  let ctx: BrowserContext;
  /** A second browser: what a user finds on another device. */
  let other: Browser;
  let profile: string;
  let userToken: string;
  let opToken: string;
  const requested: string[] = [];
  const wsFrames: string[] = [];

  before(async () => {
    cp = await startChannelPlatform();
    userToken = await cp.tp.token('una');
    opToken = await cp.tp.token('otto', { scope: 'operator' });
    profile = mkdtempSync(join(tmpdir(), 'talon-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
    ctx.on('request', (r) => requested.push(r.url()));
    ctx.on('page', (p) => p.on('websocket', (ws) => ws.on('framesent', (f) => wsFrames.push(String(f.payload)))));
    other = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  });
  after(async () => {
    await other?.close();
    await ctx?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await cp?.stop();
  });

  async function signIn(page: Page, token: string, path = '/'): Promise<void> {
    await page.goto(`${cp.gatewayUrl}${path}`);
    await page.fill('#token', token);
    await page.click('#login-btn');
    await page.waitForSelector('#app:not([hidden])');
  }

  async function sendAndWait(page: Page, text: string): Promise<string> {
    const before = await page.locator('#log .msg.assistant[data-done="1"]').count();
    await page.fill('#msg', text);
    await page.press('#msg', 'Enter');
    const done = page.locator('#log .msg.assistant[data-done="1"]').nth(before);
    await done.waitFor({ timeout: 20_000 });
    return (await done.textContent()) ?? '';
  }

  const apiGet = (token: string, path: string) => fetch(`${cp.gatewayUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });

  /** The stored messages of a conversation, once there are at least `n` (an answer is recorded just after it is sent). */
  async function recorded(token: string, id: string, channel: string, n: number): Promise<Array<{ role: string; content: string }>> {
    return waitFor(
      async () => {
        const res = await apiGet(token, `/v1/conversations/${encodeURIComponent(id)}/messages?channel=${channel}&limit=500`);
        if (res.status !== 200) return undefined;
        const j = (await res.json()) as { messages: Array<{ role: string; content: string }> };
        return j.messages.length >= n ? j.messages : undefined;
      },
      15_000,
      `${n} stored messages in ${channel}/${id}`,
    );
  }

  /** Runs `fn` with the fake LLM answering `reply` to every request. */
  async function withReply<T>(reply: string, fn: () => Promise<T>): Promise<T> {
    const saved = cp.llm.behaviour;
    cp.llm.behaviour = { ...saved, reply: () => reply };
    try {
      return await fn();
    } finally {
      cp.llm.behaviour = saved;
    }
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    if (!SCREENSHOTS) return;
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, name) });
  }

  it('signs in with a token kept out of the URL, and streams replies over the WebSocket', async () => {
    const page = await ctx.newPage();
    await signIn(page, userToken);
    assert.match((await page.textContent('#who-name')) ?? '', /^una$/);
    assert.equal(await page.isHidden('nav [data-tab="audit"]'), true, 'operator tabs hidden for users');
    await page.waitForSelector('#ws-state:text("connected")');
    const reply = await sendAndWait(page, 'hello from the browser');
    assert.equal(reply, 'talon: echo: hello from the browser');
    assert.ok(cp.llm.requests.some((r) => JSON.stringify(r.body.messages).includes('hello from the browser')));
    // The token went to the gateway in the first WebSocket frame, and nowhere in a URL.
    assert.ok(wsFrames.some((f) => f.includes('"type":"auth"') && f.includes(userToken)));
    assert.ok(!page.url().includes(userToken));
    assert.ok(
      requested.every((u) => !u.includes('talon_pat_')),
      'no request URL carried a token',
    );
    await page.close();
  });

  it('the login page shows only the login form, before signing in and after signing out', async () => {
    const page = await ctx.newPage();
    await page.goto(`${cp.gatewayUrl}/`);
    await page.waitForSelector('#auth');
    const onlyLogin = async (when: string) => {
      assert.equal(await page.isVisible('#token'), true, when);
      for (const sel of ['#rotate', '#logout', '#who', '#tabs', '#app'])
        assert.equal(await page.isVisible(sel), false, `${sel} must not show ${when}`);
    };
    await onlyLogin('before signing in');
    await signIn(page, userToken);
    assert.equal(await page.isVisible('#rotate'), true);
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    await onlyLogin('after signing out');
    assert.equal(await page.locator('#conversations li, #log .msg').count(), 0, 'nothing of the user stays on the page');
    await page.close();
  });

  it('keeps separate conversations', async () => {
    const page = await ctx.newPage();
    await signIn(page, await cp.tp.token('kim'));
    await sendAndWait(page, 'first conversation');
    await page.click('#new-conv');
    await sendAndWait(page, 'second conversation');
    assert.equal(await page.locator('#conversations li').count(), 2);
    await page.click('#conversations li:nth-child(2)');
    // The conversation is read from the server ("Loading…" meanwhile): wait for it, not for time.
    await page.locator('#log .msg', { hasText: 'first conversation' }).first().waitFor({ timeout: 20_000 });
    assert.match((await page.textContent('#log')) ?? '', /first conversation/);
    assert.doesNotMatch((await page.textContent('#log')) ?? '', /second conversation/);
    await page.close();
  });

  it('shows pending approvals and records the user’s decision', async () => {
    const kv = await new Kvm(await cp.tp.admin()).open(KV_BUCKETS.approvals);
    await kv.put(
      approvalKey('ui-call-1'),
      Approval.encode({
        id: 'ui-call-1',
        kind: ApprovalKind.APPROVAL_KIND_TOOL_CALL,
        userId: 'una',
        conversation: { userId: 'una', channel: 'web', threadId: 'x' },
        skill: 'weather',
        version: '1.2.0',
        tool: 'forecast',
        summary: 'weather.forecast: GET api.weather.example/v1/forecast',
        argumentsJson: '{"city":"<img src=x onerror=alert(1)>"}',
        status: ApprovalStatus.APPROVAL_STATUS_PENDING,
        requestedAtMs: Date.now(),
        expiresAtMs: Date.now() + 600_000,
        decidedAtMs: 0,
        decidedBy: '',
        reason: '',
        requestedBy: 'orchestrator',
        inboundId: '',
        operatorOnly: false,
      }).finish(),
    );
    const page = await ctx.newPage();
    let dialogs = 0;
    page.on('dialog', (d) => {
      dialogs += 1;
      void d.dismiss();
    });
    await signIn(page, userToken);
    await page.click('nav [data-tab="approvals"]');
    const item = page.locator('#approvals-list li[data-id="ui-call-1"]');
    await item.waitFor();
    assert.match((await item.textContent()) ?? '', /weather\.forecast/);
    // Arguments are shown as text, never as HTML.
    assert.equal(await page.locator('#approvals-list img').count(), 0);
    await item.locator('button.approve').click();
    await page.waitForSelector('#status:text("approved")');
    const rec = Approval.decode((await kv.get(approvalKey('ui-call-1')))!.value);
    assert.equal(rec.status, ApprovalStatus.APPROVAL_STATUS_APPROVED);
    assert.match(rec.decidedBy, /^token:/);
    assert.equal(dialogs, 0);
    await page.close();
  });

  it('operator views: skills with permissions, users and tokens, pairings, audit', async () => {
    const admin = await cp.tp.admin();
    const skills = await new Kvm(admin).open(KV_BUCKETS.skills);
    await skills.put(
      skillRecordKey('weather', '1.2.0'),
      SkillRecord.encode({
        ...SkillRecord.fromPartial({}),
        name: 'weather',
        version: '1.2.0',
        sha256: 'ab'.repeat(32),
        status: SkillStatus.SKILL_STATUS_PENDING,
        description: 'Forecasts for a city',
        requested: {
          hosts: [{ host: 'api.weather.example', port: 443, methods: ['GET'] }],
          secrets: ['weather_key'],
          memoryMb: 32,
          timeoutMs: 5000,
          requiresUserApproval: true,
        },
        installedAtMs: Date.now(),
      }).finish(),
    );
    const pairings = await new Kvm(admin).open(KV_BUCKETS.pairings);
    const req = PairingRequest.encode({
      code: 'QRST2345',
      identity: { channel: 'telegram', account: '777001', displayName: 'Tina' },
      createdAtMs: Date.now(),
      expiresAtMs: Date.now() + 3_600_000,
      notifiedAtMs: Date.now(),
      threadId: 'chat:777001',
    }).finish();
    await pairings.put(pairingCodeKey('QRST2345'), req);
    await pairings.put(pendingPairingKey('telegram', '777001'), req);

    const page = await ctx.newPage();
    await signIn(page, opToken);
    assert.match((await page.textContent('#who-name')) ?? '', /otto \(operator\)/);

    await page.click('nav [data-tab="skills"]');
    const row = page.locator('#skills-table tbody tr', { hasText: 'weather@1.2.0' });
    await row.waitFor();
    const rowText = (await row.textContent()) ?? '';
    assert.match(rowText, /pending/);
    assert.match(rowText, /api\.weather\.example:443 GET/);
    assert.match(rowText, /weather_key/);
    assert.match(rowText, /talon skills approve weather@1\.2\.0/);

    await page.click('nav [data-tab="approvals"]');
    await page.locator('#pending-skills', { hasText: 'weather@1.2.0' }).waitFor();

    await page.click('nav [data-tab="users"]');
    await page.locator('#users-table tbody tr', { hasText: 'una' }).waitFor();
    assert.match((await page.textContent('#users-table')) ?? '', /otto · operator · active/);
    assert.ok(!((await page.content()) ?? '').includes(userToken), 'token values are never shown');

    await page.click('nav [data-tab="pairings"]');
    const prow = page.locator('#pairings-pending tbody tr', { hasText: 'QRST-2345' });
    await prow.waitFor();
    await prow.locator('input.pair-user').fill('una');
    await prow.locator('button', { hasText: 'Pair' }).click();
    await page.locator('#pairings-paired tbody tr', { hasText: '777001' }).waitFor();
    const paired = await pairings.get(pairedKey('telegram', '777001'));
    assert.equal(Pairing.decode(paired!.value).userId, 'una');

    await page.click('nav [data-tab="audit"]');
    const arow = page.locator('#audit-table tbody tr', { hasText: 'orchestrator' }).first();
    await arow.waitFor();
    assert.match((await arow.textContent()) ?? '', /allowed/);
    await page.close();
  });

  it('operator view of vault secrets shows names and bindings, never values (needs EgressService.ListSecretNames)', async () => {
    const page = await ctx.newPage();
    await signIn(page, opToken);
    await page.click('nav [data-tab="secrets"]');
    await page.locator('#secrets-table tbody tr', { hasText: 'telegram_bot_token' }).waitFor({ timeout: 10_000 });
    const html = await page.content();
    for (const v of [cp.telegram.botToken, cp.slack.botToken, cp.slack.signingSecret, cp.discord.botToken]) assert.ok(!html.includes(v));
    await page.close();
  });

  it('rotates the token from the UI: the new one is shown once, the old one stops working', async () => {
    const t = await cp.tp.token('ulla');
    const page = await ctx.newPage();
    await signIn(page, t);
    await page.click('#rotate');
    await page.waitForSelector('#new-token[open]');
    const fresh = ((await page.textContent('#new-token-value')) ?? '').trim();
    assert.match(fresh, /^talon_pat_[0-9a-f]{64}$/);
    assert.equal((await fetch(`${cp.gatewayUrl}/v1/me`, { headers: { authorization: `Bearer ${t}` } })).status, 401);
    assert.equal((await fetch(`${cp.gatewayUrl}/v1/me`, { headers: { authorization: `Bearer ${fresh}` } })).status, 200);
    await page.click('#new-token button');
    // The page keeps working with the new token.
    assert.equal(await sendAndWait(page, 'after rotation'), 'talon: echo: after rotation');
    await page.close();
  });

  it('conversations live on the server: listed and read in another browser, continued there, deleted after a confirmation', async () => {
    const t = await cp.tp.token('vera');
    const page = await ctx.newPage();
    await signIn(page, t);
    assert.equal(await sendAndWait(page, 'remember the tide tables'), 'talon: echo: remember the tide tables');
    const id = (await page.getAttribute('#conversations li.active', 'data-id'))!;
    assert.match(id, /^web-/);
    await recorded(t, id, 'web', 2);
    await page.close();

    // Another browser (no shared storage at all), same token.
    const fresh = await other.newContext();
    try {
      const p2 = await fresh.newPage();
      await signIn(p2, t);
      const item = p2.locator(`#conversations li[data-id="${id}"]`);
      await item.waitFor();
      assert.match((await item.textContent()) ?? '', /remember the tide tables/);
      await item.locator('button.open').click();
      await p2.locator('#log .msg.assistant', { hasText: 'echo: remember the tide tables' }).waitFor();
      assert.match((await p2.textContent('#log')) ?? '', /you: remember the tide tables/);
      assert.equal(await p2.textContent('#conv-title'), 'remember the tide tables');

      // Continued there: the chat names the conversation, so the model gets its stored history.
      const before = cp.llm.requests.length;
      assert.equal(await sendAndWait(p2, 'and the moon?'), 'talon: echo: and the moon?');
      const req = cp.llm.requests.slice(before).find((r) => JSON.stringify(r.body.messages).includes('and the moon?'));
      assert.ok(req && JSON.stringify(req.body.messages).includes('remember the tide tables'), 'the continued turn carries the history');
      await recorded(t, id, 'web', 4);
      // Newest first, and nothing of a conversation is kept in the browser.
      const storage = String(await p2.evaluate('JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage })'));
      assert.doesNotMatch(storage, /tide tables|moon/);

      // Delete asks first: Cancel keeps it, Delete removes it on the server.
      await item.locator('button.del').click();
      await p2.waitForSelector('#confirm-delete[open]');
      assert.match((await p2.textContent('#confirm-delete')) ?? '', /remember the tide tables/);
      await p2.click('#confirm-delete button[value="cancel"]');
      assert.equal(await item.count(), 1);
      assert.equal((await apiGet(t, `/v1/conversations/${id}/messages?channel=web`)).status, 200);
      await item.locator('button.del').click();
      await p2.click('#confirm-delete-btn');
      await item.waitFor({ state: 'detached' });
      assert.equal((await apiGet(t, `/v1/conversations/${id}/messages?channel=web`)).status, 404);
      assert.doesNotMatch((await p2.textContent('#log')) ?? '', /tide tables/, 'the deleted conversation is closed');
    } finally {
      await fresh.close();
    }
  });

  it('pages a long conversation with "Load earlier messages"; a conversation of another channel is read-only', async () => {
    const t = await cp.tp.token('lena');
    for (let k = 1; k <= 16; k++) {
      const r = await cp.tp.chat(t, { messages: [{ role: 'user', content: `note ${k}` }] }, { 'x-talon-conversation': 'long-notes' });
      assert.equal(r.status, 200, r.text);
    }
    await recorded(t, 'long-notes', 'api', 32);
    const page = await ctx.newPage();
    await signIn(page, t);
    const item = page.locator('#conversations li[data-id="long-notes"][data-channel="api"]');
    await item.locator('button.open').click();
    await page.waitForSelector('#load-earlier');
    assert.equal(await page.locator('#log .msg').count(), 30, 'one page of messages');
    assert.equal(await page.locator('#log .msg').first().textContent(), 'you: note 2');
    assert.equal(await page.locator('#log .msg').last().textContent(), 'talon: echo: note 16');
    await page.click('#load-earlier');
    await page.locator('#log .msg').nth(31).waitFor();
    assert.equal(await page.locator('#log .msg').first().textContent(), 'you: note 1');
    assert.equal(await page.locator('#load-earlier').count(), 0, 'no earlier page left');
    // Only web conversations continue here (the chat is on channel web).
    assert.equal(await page.isDisabled('#send-btn'), true);
    assert.match((await page.textContent('#readonly')) ?? '', /on api/);
    await page.click('#new-conv');
    assert.equal(await page.isDisabled('#send-btn'), false);
    await page.close();
  });

  it('renders answers as markdown, and a hostile answer stays inert text', async () => {
    const t = await cp.tp.token('mara');
    const page = await ctx.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await signIn(page, t);
    const answer = [
      '# Tides',
      '',
      'The **spring** tide comes *twice* a month:',
      '',
      '- new moon',
      '- full moon',
      '',
      '```python',
      'print("<high>")',
      '```',
      '',
      'See [the tables](https://tides.example/tables) or run `tide --now`.',
    ].join('\n');
    await withReply(answer, () => sendAndWait(page, 'tides?'));
    const body = page.locator('#log .msg.assistant[data-done="1"] .body').last();
    assert.equal(await body.locator('h1').textContent(), 'Tides');
    assert.equal(await body.locator('strong').textContent(), 'spring');
    assert.equal(await body.locator('em').textContent(), 'twice');
    assert.deepEqual(await body.locator('ul > li').allTextContents(), ['new moon', 'full moon']);
    assert.equal(await body.locator('pre code').textContent(), 'print("<high>")');
    assert.equal(await body.locator('pre code').getAttribute('class'), 'language-python');
    assert.equal(await body.locator('pre button.copy').count(), 1, 'code blocks have a copy button');
    assert.equal(await body.locator('p code').textContent(), 'tide --now');
    const a = body.locator('a');
    assert.equal(await a.getAttribute('href'), 'https://tides.example/tables');
    assert.equal(await a.getAttribute('rel'), 'noopener noreferrer');
    await screenshot(page, 'markdown-1280.png');

    const hostile = [
      '<img src=x onerror="window.__pwned=1">',
      '',
      '<script>window.__pwned=2</script>',
      '',
      '[click me](javascript:window.__pwned=3)',
      '',
      '<a href="javascript:window.__pwned=4">raw link</a> <b>raw bold</b> <iframe src="javascript:window.__pwned=5"></iframe>',
      '',
      '![pic](javascript:window.__pwned=6) [data](data:text/html,<script>alert(1)</script>)',
    ].join('\n');
    await withReply(hostile, () => sendAndWait(page, 'be evil'));
    const check = async (where: string) => {
      const b = page.locator('#log .msg.assistant', { hasText: 'click me' }).last().locator('.body');
      assert.equal(await b.locator('img, script, iframe, b, svg, object, embed').count(), 0, `no element from the answer (${where})`);
      const hrefs = await b.locator('a').evaluateAll((as) => as.map((x) => x.getAttribute('href') ?? ''));
      assert.deepEqual(hrefs, [], `no link from the answer (${where})`);
      const text = (await b.textContent()) ?? '';
      assert.match(text, /<img src=x onerror="window.__pwned=1">/);
      assert.match(text, /<script>window.__pwned=2<\/script>/);
      await b.getByText('click me').click();
      assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined', where);
    };
    await check('streamed');
    // The same answer read back from the server.
    const id = (await page.getAttribute('#conversations li.active', 'data-id'))!;
    await recorded(t, id, 'web', 4);
    await page.click('#new-conv');
    await page.locator(`#conversations li[data-id="${id}"] button.open`).click();
    await page.locator('#log .msg.assistant', { hasText: 'click me' }).waitFor();
    await check('from the server');
    assert.equal(await page.locator('#log h1').count(), 1, 'the stored markdown answer renders too');
    assert.deepEqual(dialogs, []);
    await page.close();
  });

  it('at 390×844 (a phone) nothing runs off the screen: the list folds away, Send stays visible and works', async () => {
    const t = await cp.tp.token('pia');
    for (const [width, height] of [
      [1280, 800],
      [390, 844],
    ] as const) {
      const c = await other.newContext({ viewport: { width, height } });
      try {
        const page = await c.newPage();
        await signIn(page, t);
        const wide =
          '```\n' +
          'x'.repeat(400) +
          '\n```\n\n' +
          'long'.repeat(120) +
          '\n\n| a | b | c |\n|---|---|---|\n| ' +
          'cell '.repeat(40) +
          '| 2 | 3 |';
        for (let k = 0; k < 4; k++) await withReply(wide, () => sendAndWait(page, `message ${k} at ${width}`));
        // Send by pointer: Playwright clicks only what is visible, enabled and not covered.
        await page.fill('#msg', `tapped at ${width}`);
        await page.click('#send-btn');
        await page.locator('#log .msg.assistant[data-done="1"]', { hasText: `echo: tapped at ${width}` }).waitFor();
        const box = (await page.locator('#send-btn').boundingBox())!;
        assert.ok(
          box.x >= 0 && box.x + box.width <= width && box.y >= 0 && box.y + box.height <= height,
          `Send on screen: ${JSON.stringify(box)}`,
        );
        const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
        assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen at ${width}`);
        await screenshot(page, `chat-${width}.png`);
        if (width === 390) {
          assert.equal(await page.isVisible('#conv-panel'), false, 'the conversation list folds away');
          await page.click('#toggle-list');
          assert.equal(await page.isVisible('#conv-panel'), true);
          assert.equal(await page.isVisible('#send-btn'), false);
          await screenshot(page, 'list-390.png');
          await page.click('#conversations li.active button.open');
          assert.equal(await page.isVisible('#conv-panel'), false);
          assert.equal(await page.isVisible('#send-btn'), true);
          // The other views fit too (tables scroll inside themselves).
          await page.click('nav [data-tab="approvals"]');
          await page.waitForSelector('#approvals-list li');
          assert.ok(Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) <= 0);
        } else assert.equal(await page.isVisible('#conv-panel'), true);
      } finally {
        await c.close();
      }
    }
  });

  it('a turn waiting for an approval says so in the chat, links to the approvals view and can be decided inline', async () => {
    const t = await cp.tp.token('abel');
    const kv = await new Kvm(await cp.tp.admin()).open(KV_BUCKETS.approvals);
    const saved = cp.llm.behaviour;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    cp.llm.behaviour = { ...saved, hold: () => held };
    const page = await ctx.newPage();
    try {
      await signIn(page, t);
      await page.fill('#msg', 'what is the weather in Oslo?');
      await page.press('#msg', 'Enter');
      await page.locator('#log .msg.pending .thinking').waitFor();
      const id = (await page.getAttribute('#conversations li.active', 'data-id'))!;
      // What the orchestrator writes when the turn parks on a tool call that needs the user.
      await kv.put(
        approvalKey('ui-wait-1'),
        Approval.encode({
          id: 'ui-wait-1',
          kind: ApprovalKind.APPROVAL_KIND_TOOL_CALL,
          userId: 'abel',
          conversation: { userId: 'abel', channel: 'web', threadId: id },
          skill: 'weather',
          version: '1.2.0',
          tool: 'forecast',
          summary: 'weather.forecast: GET api.weather.example/v1/forecast',
          argumentsJson: '{"city":"Oslo"}',
          status: ApprovalStatus.APPROVAL_STATUS_PENDING,
          requestedAtMs: Date.now(),
          expiresAtMs: Date.now() + 600_000,
          decidedAtMs: 0,
          decidedBy: '',
          reason: '',
          requestedBy: 'orchestrator',
          inboundId: '',
          operatorOnly: false,
        }).finish(),
      );
      const waiting = page.locator('#log .msg.pending .waiting');
      await waiting.waitFor({ timeout: 15_000 });
      assert.match((await waiting.textContent()) ?? '', /waiting for approval of weather\.forecast…/);
      await screenshot(page, 'waiting-1280.png');
      await waiting.locator('a.to-approvals').click();
      await page.locator('#tab-approvals #approvals-list li[data-id="ui-wait-1"]').waitFor();
      await page.click('nav [data-tab="chat"]');
      await waiting.locator('button.approve').click();
      await page.locator('#log .waiting.decided', { hasText: 'Approved' }).waitFor();
      assert.equal(Approval.decode((await kv.get(approvalKey('ui-wait-1')))!.value).status, ApprovalStatus.APPROVAL_STATUS_APPROVED);
      release();
      await page
        .locator('#log .msg.assistant[data-done="1"]', { hasText: 'echo: what is the weather in Oslo?' })
        .waitFor({ timeout: 20_000 });
    } finally {
      release();
      cp.llm.behaviour = saved;
      await kv.delete(approvalKey('ui-wait-1'));
      await page.close();
    }
  });

  it('empty views say what would appear there and how to get some', async () => {
    const page = await ctx.newPage();
    await signIn(page, await cp.tp.token('emil'));
    await page.waitForSelector('#conversations-empty:not([hidden])');
    assert.match((await page.textContent('#conversations-empty')) ?? '', /No stored conversation yet/);
    assert.match((await page.textContent('#log-empty')) ?? '', /No messages yet/);
    await page.click('nav [data-tab="approvals"]');
    const empty = page.locator('#approvals-list li.empty');
    await empty.waitFor();
    assert.match(
      (await empty.textContent()) ?? '',
      /Nothing waits for your decision\. When the assistant wants to run a tool that needs your approval/,
    );
    await page.close();
  });

  it('a link cannot point the UI at another gateway: nothing ever reaches the other host', async () => {
    const evil = await startEvilSite(() => '<html><body>evil</body></html>');
    try {
      const page = await ctx.newPage();
      const q = new URLSearchParams({
        gateway: evil.url,
        gatewayUrl: `ws://127.0.0.1:${evil.port}/v1/ws`,
        ws: `ws://127.0.0.1:${evil.port}/v1/ws`,
        api: evil.url,
        host: `127.0.0.1:${evil.port}`,
      });
      await signIn(page, userToken, `/?${q}#gateway=${encodeURIComponent(evil.url)}`);
      assert.equal(await sendAndWait(page, 'where do you connect'), 'talon: echo: where do you connect');
      await page.close();
      assert.deepEqual(evil.hits, [], 'the other host received nothing (no request, no WebSocket, no token)');
    } finally {
      await evil.close();
    }
  });

  it('a foreign page cannot use our WebSocket or API, even holding a valid token, nor frame the UI', async () => {
    const gw = cp.gatewayUrl;
    const wsUrl = `${gw.replace('http', 'ws')}/v1/ws`;
    const evil = await startEvilSite(
      () => `<html><body><iframe id="f" src="${gw}/"></iframe><script>
        window.result = new Promise((resolve) => {
          const out = { ws: [], fetch: '' };
          const ws = new WebSocket(${JSON.stringify(wsUrl)}, ['talon.v1']);
          ws.onopen = () => { out.ws.push('open'); ws.send(JSON.stringify({ type: 'auth', token: ${JSON.stringify(userToken)} })); };
          ws.onmessage = (e) => out.ws.push('message:' + e.data);
          ws.onerror = () => out.ws.push('error');
          ws.onclose = (e) => { out.ws.push('close:' + e.code);
            fetch(${JSON.stringify(`${gw}/v1/me`)}, { headers: { authorization: 'Bearer ' + ${JSON.stringify(userToken)} } })
              .then((r) => { out.fetch = 'status:' + r.status; }, (err) => { out.fetch = 'blocked:' + err.name; })
              .finally(() => resolve(out));
          };
        });
      </script></body></html>`,
    );
    try {
      const page = await ctx.newPage();
      await page.goto(evil.url);
      const result = (await page.evaluate('window.result')) as { ws: string[]; fetch: string };
      assert.ok(!result.ws.includes('open'), `the handshake must fail: ${result.ws.join(',')}`);
      assert.ok(!result.ws.some((m) => m.includes('ready')), 'no session for a foreign origin');
      assert.match(result.fetch, /^blocked:/, 'CORS blocks reading our API from a foreign page');
      // The framed UI never renders (frame-ancestors 'none' / X-Frame-Options DENY).
      const frame = page.frames().find((f) => f !== page.mainFrame());
      const framed = frame ? await frame.$('#auth').catch(() => null) : null;
      assert.equal(framed, null, 'the UI must not load inside a foreign frame');
      await page.close();
    } finally {
      await evil.close();
    }
  });
});
