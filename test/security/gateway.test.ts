// The gateway cannot be hijacked: each attack below is attempted for real against
// a running gateway (OpenClaw's edge incidents, and the usual web ones).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { approvalKey, inboxPrefix, KV_BUCKETS, STREAMS, userKey } from '@talon/kit/subjects';
import { Approval, ApprovalKind, ApprovalStatus } from '@talon/proto';
import { REPO_ROOT } from '@talon/cli/platform';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { openWs, TEST_VAULT_PASSPHRASE } from '../../packages/testkit/src/fake-platforms.ts';

/** GET from a chosen loopback source address (the whole of 127/8 is this machine). */
function getFrom(
  url: string,
  localAddress: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname + u.search, localAddress, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Raw WebSocket upgrade; resolves with the HTTP status the gateway answered (101 = accepted). */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.from('0123456789abcdef').toString('base64'),
        'sec-websocket-protocol': 'talon.v1',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('gateway hardening (attacks attempted for real)', () => {
  let tp: TestPlatform;
  let userToken: string;
  let opToken: string;
  let gw: string;
  let wsUrl: string;

  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    fetch(`${gw}${path}`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
  const post = (path: string, token: string | undefined, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${gw}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: JSON.stringify(body),
    });

  before(async () => {
    tp = await startTestPlatform({
      env: {
        TALON_VAULT_PASSPHRASE: TEST_VAULT_PASSPHRASE,
        // A proxy range that does not include loopback: a local attacker is not "behind the proxy".
        GATEWAY_TRUSTED_PROXIES: '10.0.0.0/8',
        GATEWAY_AUTH_FAILURES_PER_MIN: '12',
        TALON_CHANNELS: 'telegram,slack,discord,webhook',
        // This suite attacks the webhooks; Telegram's is on only in webhook mode.
        GATEWAY_TELEGRAM_MODE: 'webhook',
        GATEWAY_DISCORD_MODE: 'interactions',
        GATEWAY_SLACK_MODE: 'events',
        GATEWAY_MAX_WEBHOOK_BYTES: '8192',
        GATEWAY_MAX_BODY_BYTES: '65536',
      },
    });
    gw = tp.gatewayUrl;
    wsUrl = `${gw.replace('http', 'ws')}/v1/ws`;
    userToken = await tp.token('uma');
    opToken = await tp.token('oscar', { scope: 'operator' });
  });
  after(async () => {
    await tp?.stop();
  });

  describe('cross-site WebSocket hijacking', () => {
    for (const [name, origin] of [
      ['a foreign Origin', 'https://evil.example'],
      ['a null Origin (sandboxed iframe, file://)', 'null'],
      ['a look-alike Origin', `${'http://127.0.0.1'}.evil.example`],
      ['the right host on another port', 'http://127.0.0.1:1'],
    ] as const) {
      it(`refuses an upgrade from ${name}, even with a valid token`, async () => {
        const r = await upgradeStatus(wsUrl, { origin, 'sec-websocket-protocol': `talon.v1, talon.bearer.${userToken}` });
        assert.equal(r.status, 403, r.body);
        assert.match(r.body, /permission_denied/);
      });
    }
    it('refuses an upgrade without any Origin', async () => {
      const r = await upgradeStatus(wsUrl, {});
      assert.equal(r.status, 403);
    });
    it('accepts the gateway’s own origin', async () => {
      const r = await upgradeStatus(wsUrl, { origin: gw });
      assert.equal(r.status, 101);
    });
  });

  describe('tokens never travel in URLs', () => {
    it('refuses a token in the query string of HTTP calls, even a valid one', async () => {
      for (const path of [
        `/v1/models?token=${userToken}`,
        `/v1/models?access_token=${userToken}`,
        `/v1/models?x=${userToken}`,
        `/v1/me?api_key=${userToken}`,
      ]) {
        const r = await get(path);
        assert.equal(r.status, 400, path);
        assert.match(((await r.json()) as any).error.message, /never accepted in a URL/);
      }
      // Even combined with a valid header, the URL credential is refused (it is already leaked to logs/history).
      assert.equal((await get(`/v1/models?token=${userToken}`, userToken)).status, 400);
    });
    it('refuses a token in the WebSocket URL and any query on /v1/ws', async () => {
      for (const q of [`?token=${userToken}`, `?t=${userToken}`, '?gateway=ws://evil.example/v1/ws']) {
        const r = await upgradeStatus(`${wsUrl}${q}`, { origin: gw });
        assert.equal(r.status, 400, q);
      }
    });
    it('the gateway never echoes a bearer subprotocol', async () => {
      const c = await openWs(wsUrl, { origin: gw, protocols: ['talon.v1', `talon.bearer.${userToken}`] });
      assert.equal(c.ws.protocol, 'talon.v1');
      c.ws.close();
    });
  });

  describe('no trust for loopback or forwarded headers', () => {
    it('a user token cannot reach operator endpoints, from loopback or with forged proxy headers', async () => {
      for (const path of ['/v1/admin/skills', '/v1/admin/secrets', '/v1/admin/users', '/v1/admin/pairings', '/v1/admin/audit']) {
        const r = await get(path, userToken, { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1', forwarded: 'for=127.0.0.1' });
        assert.equal(r.status, 403, path);
        assert.match(((await r.json()) as any).error.message, /operator token/);
      }
      const rv = await post(`/v1/admin/tokens/${'0'.repeat(8)}-0000-0000-0000-000000000000/revoke`, userToken, {});
      assert.equal(rv.status, 403);
      const pr = await post('/v1/admin/pairings/ABCD-EFGH/approve', userToken, { user: 'uma' });
      assert.equal(pr.status, 403);
      // Without any token, loopback gets nothing either.
      assert.equal((await get('/v1/admin/users')).status, 401);
      assert.equal((await get('/v1/admin/users', opToken)).status, 200);
    });

    it('users see and decide only their own tool-call approvals; skill approvals need an operator', async () => {
      const kv = await new Kvm(await tp.admin()).open(KV_BUCKETS.approvals);
      const mk = (id: string, userId: string, kind: ApprovalKind) =>
        kv.put(
          approvalKey(id),
          Approval.encode({
            id,
            kind,
            userId,
            conversation: { userId, channel: 'web', threadId: 't' },
            skill: 'weather',
            version: '1.0.0',
            tool: 'forecast',
            summary: `call for ${userId}`,
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
      await mk('mine-1', 'uma', ApprovalKind.APPROVAL_KIND_TOOL_CALL);
      await mk('theirs-1', 'oscar', ApprovalKind.APPROVAL_KIND_TOOL_CALL);
      await mk('skill-1', 'uma', ApprovalKind.APPROVAL_KIND_SKILL);
      const list = (await (await get('/v1/approvals?status=pending', userToken)).json()) as any;
      assert.deepEqual(list.approvals.map((a: any) => a.id).sort(), ['mine-1', 'skill-1']);
      assert.equal((await post('/v1/approvals/theirs-1/approve', userToken, {})).status, 404, 'someone else’s approval looks missing');
      assert.equal((await post('/v1/approvals/skill-1/approve', userToken, {})).status, 403);
      const ok = await post('/v1/approvals/mine-1/deny', userToken, { reason: 'not now' });
      assert.equal(ok.status, 200);
      assert.equal((await post('/v1/approvals/mine-1/approve', userToken, {})).status, 409, 'decided once');
      const rec = Approval.decode((await kv.get(approvalKey('mine-1')))!.value);
      assert.equal(rec.status, ApprovalStatus.APPROVAL_STATUS_DENIED);
      assert.equal(rec.reason, 'not now');
      assert.equal((await post('/v1/approvals/theirs-1/approve', opToken, {})).status, 200);
    });

    it('brute force from loopback is cut off, spoofed X-Forwarded-For does not reset it, and valid tokens are refused too', async () => {
      // The attacker runs on this machine (127.0.0.2): loopback earns no trust.
      const wrong = () => `talon_pat_${[...Array(64)].map(() => Math.floor(Math.random() * 16).toString(16)).join('')}`;
      const statuses: number[] = [];
      for (let i = 0; i < 18; i++) {
        const r = await getFrom(`${gw}/v1/models`, '127.0.0.2', {
          authorization: `Bearer ${wrong()}`,
          'x-forwarded-for': `203.0.113.${i}`,
          'x-real-ip': `203.0.113.${i}`,
        });
        statuses.push(r.status);
      }
      assert.ok(
        statuses.slice(0, 12).every((s) => s === 401),
        statuses.join(','),
      );
      assert.ok(
        statuses.slice(12).every((s) => s === 429),
        statuses.join(','),
      );
      const blocked = await getFrom(`${gw}/v1/models`, '127.0.0.2', {
        authorization: `Bearer ${userToken}`,
        'x-forwarded-for': '198.51.100.1',
      });
      assert.equal(blocked.status, 429);
      assert.ok(Number(blocked.headers['retry-after']) >= 1);
      // IPv4-mapped or not, it is the same client; and another local address is unaffected.
      assert.equal((await get('/v1/models', userToken)).status, 200);
    });
  });

  describe('revocation and rotation take effect immediately', () => {
    it('a revoked token fails on the next request and on an open WebSocket', async () => {
      const t = await tp.token('rita');
      const c = await openWs(wsUrl, { origin: gw });
      c.ws.send(JSON.stringify({ type: 'auth', token: t }));
      await c.next((m) => m.type === 'ready');
      const users = (await (await get('/v1/admin/users', opToken)).json()) as any;
      const id = users.users.find((u: any) => u.id === 'rita').tokens[0].id;
      assert.equal((await post(`/v1/admin/tokens/${id}/revoke`, opToken, {})).status, 200);
      const r = await get('/v1/models', t);
      assert.equal(r.status, 401);
      assert.match(((await r.json()) as any).error.message, /revoked or rotated/);
      c.ws.send(JSON.stringify({ type: 'chat', id: 'after-revoke', content: 'still here?' }));
      const err = await c.next((m) => m.type === 'error' && m.id === 'after-revoke');
      assert.equal(err.error.code, 'unauthenticated');
      assert.equal((await c.closed).code, 4401);
    });

    it('a rotated token is dead at once; the replacement works (API self-rotation)', async () => {
      const t = await tp.token('rolf');
      const r = await post('/v1/me/token/rotate', t, {});
      assert.equal(r.status, 200);
      const fresh = ((await r.json()) as any).token as string;
      assert.notEqual(fresh, t);
      assert.equal((await get('/v1/me', t)).status, 401);
      const me = (await (await get('/v1/me', fresh)).json()) as any;
      assert.equal(me.user, 'rolf');
      // Rotating the dead token again is refused.
      assert.equal((await post('/v1/me/token/rotate', t, {})).status, 401);
    });
  });

  describe('operator CLI: rotation and disabling', () => {
    const talon = (...args: string[]) =>
      spawnSync(process.execPath, [join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts'), ...args], {
        env: { ...process.env, TALON_HOME: tp.home, TALON_NATS_URL: tp.platform.natsUrl, TALON_VAULT_PASSPHRASE: '' },
        encoding: 'utf8',
      });

    it('`talon token rotate` kills the old token before the new one exists', async () => {
      const t = await tp.token('cleo');
      const r = talon('token', 'rotate', 'cleo');
      assert.equal(r.status, 0, r.stderr);
      const fresh = r.stdout.trim();
      assert.match(fresh, /^talon_pat_[0-9a-f]{64}$/);
      assert.ok(!r.stderr.includes(fresh), 'the token is printed once, on stdout');
      assert.equal((await get('/v1/me', t)).status, 401);
      assert.equal((await get('/v1/me', fresh)).status, 200);
    });

    it('`talon users disable` revokes every token of the user at once', async () => {
      const a = await tp.token('dora-laptop', { userId: 'dora' });
      const b = await tp.token('dora-phone', { userId: 'dora' });
      const r = talon('users', 'disable', 'dora');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /2 token\(s\) revoked/);
      for (const t of [a, b]) assert.equal((await get('/v1/me', t)).status, 401);
      await assert.rejects(tp.token('dora-again', { userId: 'dora' }), /disabled/);
    });
  });

  describe('browser and body limits', () => {
    it('refuses cross-site API calls by Origin and Sec-Fetch-Site (CSRF-safe)', async () => {
      const cross = await post(
        '/v1/chat/completions',
        userToken,
        { messages: [{ role: 'user', content: 'x' }] },
        { origin: 'https://evil.example' },
      );
      assert.equal(cross.status, 403);
      const nul = await post('/v1/approvals/x/approve', userToken, {}, { origin: 'null' });
      assert.equal(nul.status, 403);
      const site = await get('/v1/me', userToken, { 'sec-fetch-site': 'cross-site' });
      assert.equal(site.status, 403);
      // A form post (text/plain, no preflight) is refused before it can act.
      const form = await fetch(`${gw}/v1/approvals/x/approve`, {
        method: 'POST',
        headers: { authorization: `Bearer ${userToken}`, 'content-type': 'text/plain' },
        body: '{}',
      });
      assert.equal(form.status, 415);
      // No CORS grant is ever made.
      const pre = await fetch(`${gw}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      });
      assert.equal(pre.headers.get('access-control-allow-origin'), null);
    });

    it('serves the UI with a strict CSP, no framing and no referrer', async () => {
      const r = await get('/');
      assert.equal(r.status, 200);
      const csp = r.headers.get('content-security-policy') ?? '';
      assert.match(csp, /connect-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.match(csp, /script-src 'self';/);
      assert.equal(r.headers.get('x-frame-options'), 'DENY');
      assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    });

    it('caps webhook bodies and WebSocket messages', async () => {
      const big = await fetch(`${gw}/hooks/telegram`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: 'x'.repeat(9000),
      });
      assert.equal(big.status, 413);
      const c = await openWs(wsUrl, { origin: gw });
      c.ws.send('x'.repeat(70_000));
      assert.equal((await c.closed).code, 1009);
    });

    it('refuses unsigned, stale and malformed webhooks before anything else happens', async () => {
      const now = Math.floor(Date.now() / 1000);
      const cases: Array<[string, Record<string, string>]> = [
        ['/hooks/telegram', {}],
        ['/hooks/telegram', { 'x-telegram-bot-api-secret-token': 'has spaces!' }],
        ['/hooks/slack', { 'x-slack-request-timestamp': String(now), 'x-slack-signature': 'v0=nothex' }],
        // A captured Slack request replayed after the 5-minute window.
        ['/hooks/slack', { 'x-slack-request-timestamp': String(now - 301), 'x-slack-signature': `v0=${'a'.repeat(64)}` }],
        ['/hooks/discord', { 'x-signature-ed25519': 'ab'.repeat(64), 'x-signature-timestamp': String(now - 3600) }],
        ['/hooks/webhook', { 'x-talon-signature': `sha256=${'a'.repeat(64)}`, 'x-talon-timestamp': String(now + 900) }],
      ];
      for (const [path, headers] of cases) {
        const r = await fetch(`${gw}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': '10.9.9.9', ...headers },
          body: '{"update_id":1}',
        });
        // Unsigned/stale requests count as failed authentications for this address; this suite may
        // already be at the limit, so 429 is an equally correct refusal.
        assert.ok(r.status === 401 || r.status === 429, `${path} ${JSON.stringify(headers)} -> ${r.status}`);
      }
      const jsm = await jetstreamManager(await tp.admin());
      const subjects = (await jsm.streams.info(STREAMS.inbound.name, { subjects_filter: 'talon.inbound.>' })).state.subjects ?? {};
      for (const ch of ['telegram', 'slack', 'discord', 'webhook'])
        assert.equal(subjects[`talon.inbound.${ch}`], undefined, `nothing queued for ${ch}`);
    });
  });

  it('the gateway’s NATS identity reads users and skills but cannot write them, nor touch streams', async () => {
    const seed = new TextEncoder().encode(readFileSync(join(tp.home, 'nats', 'gateway.nk'), 'utf8').trim());
    const nc = await connect({ servers: tp.platform.natsUrl, authenticator: nkeyAuthenticator(seed), inboxPrefix: inboxPrefix('gateway') });
    try {
      const users = await new Kvm(nc).open(KV_BUCKETS.users, { allow_direct: true } as never);
      assert.ok(await users.get(userKey('uma')), 'reads users');
      await assert.rejects(users.put(userKey('mallory'), new Uint8Array([1])), 'cannot create users');
      const skills = await new Kvm(nc).open(KV_BUCKETS.skills, { allow_direct: true } as never);
      await assert.rejects(skills.put('skill.evil.1.0.0', new Uint8Array([1])), 'cannot install skills');
      const approvals = await new Kvm(nc).open(KV_BUCKETS.approvals, { allow_direct: true } as never);
      await approvals.put(approvalKey('gw-probe'), new Uint8Array(0));
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      // Operators' audit view reads by sequence; the gateway can neither purge it nor delete it.
      await jsm.streams.info(STREAMS.audit.name);
      await assert.rejects(jsm.streams.purge(STREAMS.audit.name));
      await assert.rejects(jsm.streams.delete(STREAMS.outbound.name));
    } finally {
      await nc.close();
    }
  });

  it('after every attack the gateway still serves', async () => {
    assert.equal((await get('/healthz')).status, 200);
    assert.ok(tp.platform.process('gateway')!.running);
    // Never a token in the gateway log.
    const log = tp.log('gateway');
    for (const t of [userToken, opToken]) assert.ok(!log.includes(t), 'token in gateway log');
    void WebSocket;
  });
});
