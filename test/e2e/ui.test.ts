// The web UI in headless Chromium (Debian `chromium` + playwright-core): sign in
// with a token, chat with streamed replies over the WebSocket, conversations,
// pending approvals, the operator views; and the browser-side attacks: a link
// that tries to point the UI at another gateway, a foreign page opening our
// WebSocket, a page framing the UI. The "Secrets" view needs EgressService.ListSecretNames.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Kvm } from '@nats-io/kv';
import { approvalKey, KV_BUCKETS, pairedKey, pairingCodeKey, pendingPairingKey, skillRecordKey } from '@talon/kit/subjects';
import { Approval, ApprovalKind, ApprovalStatus, PairingRequest, Pairing, SkillRecord, SkillStatus } from '@talon/proto';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';

const CHROMIUM = '/usr/bin/chromium';
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
  });
  after(async () => {
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
    await page.fill('#msg', text);
    await page.press('#msg', 'Enter');
    const done = page.locator('#log .msg.assistant[data-done="1"]').last();
    await done.waitFor({ timeout: 20_000 });
    return (await done.textContent()) ?? '';
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

  it('keeps separate conversations', async () => {
    const page = await ctx.newPage();
    await signIn(page, userToken);
    await sendAndWait(page, 'first conversation');
    await page.click('#new-conv');
    await sendAndWait(page, 'second conversation');
    assert.equal(await page.locator('#conversations li').count(), 2);
    await page.click('#conversations li:nth-child(2)');
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
