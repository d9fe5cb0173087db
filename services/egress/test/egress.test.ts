// Egress as a real process behind real mTLS: who may call, where to, SSRF
// defences (including a DNS answer that flips and a redirect to a private
// address), limits, fail-closed secrets, and the audit trail on JetStream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'undici';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '@talon/kit/subjects';
import { EgressDecision } from '@talon/proto';
import {
  egressAs,
  startFakeDns,
  startTestPlatform,
  startUpstream,
  viaEgress,
  type FakeDns,
  type FakeUpstream,
  type TestPlatform,
} from '@talon/testkit';

describe('egress proxy', () => {
  let tp: TestPlatform;
  let up: FakeUpstream;
  let dns: FakeDns;
  let orch: Client;
  let trap: { port: number; hits: number; close: () => void };
  /** Resolves when the upstream side of the last /stream request closed. */
  let streamClosed: Promise<void> | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'talon-egress-test-'));

  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url?.startsWith('/stream')) {
        // An event stream that stays open and idle, as an MCP server's or a long poll's.
        streamClosed = new Promise((resolve) => res.on('close', () => resolve()));
        res.writeHead(200, { 'content-type': 'text/event-stream' }).write(': open\n\n');
        return;
      }
      if (req.url?.startsWith('/redirect')) {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url }));
    });
    // A listener on loopback that must never be reached.
    const state = { hits: 0 };
    const srv = createServer((s) => {
      state.hits += 1;
      s.destroy();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    trap = {
      port: (srv.address() as { port: number }).port,
      get hits() {
        return state.hits;
      },
      close: () => srv.close(),
    };
    dns = await startFakeDns((name, nth) =>
      name === 'flip.test' ? (nth === 1 ? '93.184.216.34' : '127.0.0.1') : name === 'internal.test' ? '10.1.2.3' : undefined,
    );
    const policy = {
      rules: [
        { principal: 'orchestrator', host: '127.0.0.1', port: up.port, methods: ['GET', 'POST'] },
        { principal: 'orchestrator', host: '127.0.0.1', port: trap.port },
        { principal: 'orchestrator', host: 'localhost', port: trap.port },
        { principal: 'orchestrator', host: '169.254.169.254', port: 80 },
        { principal: 'orchestrator', host: 'flip.test', port: trap.port },
        { principal: 'orchestrator', host: 'internal.test', port: 80 },
        { principal: 'orchestrator', host: '::1', port: trap.port },
        { principal: 'orchestrator', host: '::ffff:7f00:1', port: trap.port },
        { principal: 'tools', host: '127.0.0.1', port: up.port, methods: ['GET'] },
      ],
    };
    writeFileSync(join(dir, 'policy.json'), JSON.stringify(policy));
    writeFileSync(
      join(dir, 'creds.json'),
      JSON.stringify({ credentials: { tools: createHash('sha256').update('tool-password').digest('hex') } }),
    );
    tp = await startTestPlatform({
      services: ['egress'],
      llm: false,
      env: {
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        EGRESS_PROXY_CREDENTIALS_FILE: join(dir, 'creds.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${up.port}`,
        EGRESS_DNS_SERVERS: dns.address,
        EGRESS_CONNECT_TIMEOUT_MS: '300',
        EGRESS_MAX_REQUEST_BYTES: '4096',
      },
    });
    orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
  });
  after(async () => {
    await orch?.close();
    await tp?.stop();
    await up?.close();
    await dns?.close();
    trap?.close();
  });

  it('forwards an allowed request and streams the answer back', async () => {
    const r = await viaEgress(orch, `${up.url}/hello?x=1`, {
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { path: '/hello?x=1' });
    assert.equal(up.seen.at(-1)!.headers.host, `127.0.0.1:${up.port}`);
    assert.equal(up.seen.at(-1)!.headers['traceparent'], undefined, 'internal trace context does not leave');
  });

  it('releases the upstream as soon as the caller goes away from an idle stream', async () => {
    const client = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    const res = await client.request({ method: 'GET', path: `${up.url}/stream` });
    assert.equal(res.statusCode, 200);
    for await (const chunk of res.body) {
      assert.match(String(chunk), /open/);
      break;
    }
    await client.destroy();
    // Without the release the upstream stays open until egress's body timeout (minutes).
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([
      streamClosed!.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
    ]);
    clearTimeout(timer);
    assert.ok(gone, 'egress closed the upstream stream');
  });

  it('default-denies hosts, ports and methods outside the caller’s policy', async () => {
    const host = await viaEgress(orch, 'http://example.com/');
    assert.equal(host.status, 403);
    assert.equal(host.headers['x-talon-egress-error'], 'host_not_allowed');
    const method = await viaEgress(orch, `${up.url}/x`, { method: 'DELETE' });
    assert.equal(method.status, 403);
    assert.equal(method.json.error.reason, 'method_not_allowed');
    const gw = egressAs(tp.home, tp.ports.egressProxy, 'gateway');
    const other = await viaEgress(gw, `${up.url}/x`);
    assert.equal(other.status, 403, 'the orchestrator’s grant is not the gateway’s');
    await gw.close();
    // The sandbox has no rights of its own, and only it may speak for a skill.
    const sb = egressAs(tp.home, tp.ports.egressProxy, 'sandbox');
    const bare = await viaEgress(sb, `${up.url}/x`);
    assert.equal(bare.json.error.reason, 'skill_required');
    const unknownSkill = await viaEgress(sb, `${up.url}/x`, { headers: { 'x-talon-skill': 'ghost@1.0.0' } });
    assert.equal(unknownSkill.json.error.reason, 'skill_not_installed');
    await sb.close();
    const forged = await viaEgress(orch, `${up.url}/x`, { headers: { 'x-talon-skill': 'ghost@1.0.0' } });
    assert.equal(forged.json.error.reason, 'skill_header_not_allowed');
  });

  it('authenticates callers by certificate or proxy credential, else 407', async () => {
    const anon = new Client(`https://127.0.0.1:${tp.ports.egressProxy}`, { connect: { rejectUnauthorized: false } });
    const r1 = await viaEgress(anon, `${up.url}/x`);
    assert.equal(r1.status, 407);
    const bad = await viaEgress(anon, `${up.url}/x`, {
      headers: { 'proxy-authorization': `Basic ${Buffer.from('tools:wrong').toString('base64')}` },
    });
    assert.equal(bad.status, 407);
    const good = await viaEgress(anon, `${up.url}/x`, {
      headers: { 'proxy-authorization': `Basic ${Buffer.from('tools:tool-password').toString('base64')}` },
    });
    assert.equal(good.status, 200);
    assert.equal(up.seen.at(-1)!.headers['proxy-authorization'], undefined, 'proxy credentials are not forwarded');
    await anon.close();
  });

  it('refuses private, loopback and metadata destinations and never connects to them', async () => {
    const before = trap.hits;
    for (const url of [
      `http://127.0.0.1:${trap.port}/`,
      `http://localhost:${trap.port}/`,
      `http://[::1]:${trap.port}/`,
      `http://[::ffff:7f00:1]:${trap.port}/`,
      'http://169.254.169.254/latest/meta-data/',
      'http://internal.test/',
    ]) {
      const r = await viaEgress(orch, url);
      assert.equal(r.status, 403, url);
      assert.equal(r.headers['x-talon-egress-error'], 'private_address', url);
    }
    assert.equal(trap.hits, before);
  });

  it('resolves once and connects to the checked address, so a flipping DNS answer cannot reach loopback', async () => {
    const before = trap.hits;
    const q0 = dns.queries.filter((q) => q.name === 'flip.test' && q.type === 1).length;
    // First answer is public (unreachable here: the connect times out), the next one would be 127.0.0.1.
    const r = await viaEgress(orch, `http://flip.test:${trap.port}/`);
    assert.ok([502, 504].includes(r.status), `got ${r.status}`);
    assert.equal(dns.queries.filter((q) => q.name === 'flip.test' && q.type === 1).length - q0, 1, 'exactly one A lookup per request');
    assert.equal(trap.hits, before, 'nothing connected to the loopback listener');
    // The next request sees the private answer and is refused before connecting.
    const r2 = await viaEgress(orch, `http://flip.test:${trap.port}/`);
    assert.equal(r2.status, 403);
    assert.equal(trap.hits, before);
  });

  it('hands redirects back instead of following them; the next hop is checked again', async () => {
    const r = await viaEgress(orch, `${up.url}/redirect`);
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://169.254.169.254/latest/meta-data/');
    const hop = await viaEgress(orch, String(r.headers.location));
    assert.equal(hop.status, 403);
  });

  it('answers precise errors for bad requests', async () => {
    const origin = await orch.request({ method: 'GET', path: '/relative' });
    assert.equal(origin.statusCode, 400);
    assert.match(await origin.body.text(), /absolute form/);
    const big = await viaEgress(orch, `${up.url}/upload`, { method: 'POST', body: 'x'.repeat(10_000) });
    assert.equal(big.status, 413);
    const userinfo = await viaEgress(orch, `http://user:pw@127.0.0.1:${up.port}/`);
    assert.equal(userinfo.status, 400);
  });

  it('fails closed when a secret is needed and the vault is down, while other requests work', async () => {
    const r = await viaEgress(orch, `${up.url}/with-secret`, { headers: { authorization: 'Bearer {{secret:llm_api_key}}' } });
    assert.equal(r.status, 503);
    assert.equal(up.seen.filter((s) => s.url === '/with-secret').length, 0);
    const ok = await viaEgress(orch, `${up.url}/plain`);
    assert.equal(ok.status, 200);
  });

  it('refuses placeholders in bodies and malformed placeholders', async () => {
    const body = await viaEgress(orch, `${up.url}/p`, {
      method: 'POST',
      body: '{"k":"{{secret:llm_api_key}}"}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(body.status, 400);
    assert.equal(body.json.error.reason, 'placeholder_in_body');
    const bad = await viaEgress(orch, `${up.url}/p`, { headers: { 'x-key': '{{secret:Bad-Name}}' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.reason, 'malformed_placeholder');
  });

  it('blocks credential-shaped data leaving in any encoding, before it reaches the upstream', async () => {
    const { gzipSync } = await import('node:zlib');
    // Built at run time so the repository holds no credential-looking literal.
    const ghToken = `gh${'p'}_${'A1b2C3d4E5'.repeat(3)}abcdef`;
    const awsKey = `AKIA${'Q'.repeat(4)}${'7'.repeat(12)}`;
    const before = up.seen.length;
    const attempts: Array<[string, Parameters<typeof viaEgress>[2], string]> = [
      ['header', { headers: { 'x-debug': ghToken } }, '/leak-h'],
      ['query', {}, `/leak-q?t=${encodeURIComponent(ghToken)}`],
      [
        'body',
        { method: 'POST', body: JSON.stringify({ note: `key ${awsKey}` }), headers: { 'content-type': 'application/json' } },
        '/leak-b',
      ],
      ['base64 body', { method: 'POST', body: Buffer.from(`token=${ghToken}`).toString('base64') }, '/leak-b64'],
      ['percent query', {}, `/leak-p?x=${[...ghToken].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')}`],
      [
        'gzip body',
        { method: 'POST', body: gzipSync(Buffer.from(`secret ${awsKey}`)), headers: { 'content-encoding': 'gzip' } },
        '/leak-gz',
      ],
      ['hex body', { method: 'POST', body: Buffer.from(ghToken).toString('hex') }, '/leak-hex'],
    ];
    for (const [what, init, path] of attempts) {
      const r = await viaEgress(orch, `${up.url}${path}`, init);
      assert.equal(r.status, 403, what);
      assert.equal(r.json.error.reason, 'secret_leak_blocked', what);
      assert.doesNotMatch(r.text, new RegExp(ghToken.slice(4))); // the refusal never echoes it
    }
    assert.equal(up.seen.length, before, 'nothing reached the upstream');
    const placeholder = await viaEgress(orch, `${up.url}/ok`, { method: 'POST', body: 'just text', headers: { 'x-note': 'plain' } });
    assert.equal(placeholder.status, 200);
  });

  it('records the user a workload acts for (x-talon-user), only from those allowed, and never forwards it', async () => {
    const tools = new Client(`https://127.0.0.1:${tp.ports.egressProxy}`, { connect: { rejectUnauthorized: false } });
    const toolsAuth = `Basic ${Buffer.from('tools:tool-password').toString('base64')}`;
    const gw = egressAs(tp.home, tp.ports.egressProxy, 'gateway');
    try {
      const ok = await viaEgress(orch, `${up.url}/for-user`, { headers: { 'x-talon-user': 'alice.b' } });
      assert.equal(ok.status, 200, ok.text);
      const seen = up.seen.find((r) => r.url === '/for-user');
      assert.ok(seen);
      assert.equal(seen.headers['x-talon-user'], undefined, 'the upstream never receives x-talon-user');

      const before = up.seen.length;
      // A principal that does not act for users cannot name one (and reaches nothing), even with a valid id.
      const forged = await viaEgress(tools, `${up.url}/forged-user`, {
        headers: { 'proxy-authorization': toolsAuth, 'x-talon-user': 'alice.b' },
      });
      assert.equal(forged.status, 403, forged.text);
      assert.equal(forged.json.error.reason, 'user_header_not_allowed');
      // Without it the same principal may make the request: the refusal was the header's.
      const plain = await viaEgress(tools, `${up.url}/tools-plain`, { headers: { 'proxy-authorization': toolsAuth } });
      assert.equal(plain.status, 200, plain.text);
      // Not one user id: refused before anything leaves.
      for (const value of ['Alice', 'alice b', 'a'.repeat(65), '']) {
        const bad = await viaEgress(orch, `${up.url}/bad-user`, { headers: { 'x-talon-user': value } });
        assert.equal(bad.status, 400, `${JSON.stringify(value)}: ${bad.text}`);
        assert.equal(bad.json.error.reason, 'bad_user_header');
      }
      const twice = await orch.request({
        method: 'GET',
        path: `${up.url}/two-users`,
        headers: ['x-talon-user', 'alice', 'x-talon-user', 'bob'],
      });
      await twice.body.text();
      assert.equal(twice.statusCode, 400, 'two users in one request are refused');
      assert.equal(up.seen.length, before + 1, 'only the plain request reached the upstream');
      // The gateway may name the user of a delivery (here refused by its policy, still recorded with the user).
      const delivery = await viaEgress(gw, `${up.url}/delivery`, { headers: { 'x-talon-user': 'carol' } });
      assert.equal(delivery.json.error.reason, 'host_not_allowed');

      const jsm = await jetstreamManager(await tp.admin());
      const decisions = await tp.until('the decisions naming users on the audit stream', async () => {
        const info = await jsm.streams.info(STREAMS.audit.name);
        const out: EgressDecision[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(STREAMS.audit.name, { seq }).catch(() => null);
          if (m) out.push(EgressDecision.decode(m.data));
        }
        return out.some((d) => d.path === '/delivery') && out.filter((d) => d.reason === 'bad_user_header').length >= 5 ? out : undefined;
      });
      // Refused while identifying the caller: before the destination is read, so these carry no path.
      const byPath = (path: string) => decisions.filter((d) => d.path === path);
      const byReason = (reason: string) => decisions.filter((d) => d.reason === reason);
      assert.deepEqual(
        byPath('/for-user').map((d) => [d.principal, d.user, d.allowed]),
        [['orchestrator', 'alice.b', true]],
      );
      assert.deepEqual(
        byReason('user_header_not_allowed').map((d) => [d.principal, d.user]),
        [['tools', '']],
        'a refused claim is not recorded as the user',
      );
      assert.deepEqual(
        byPath('/tools-plain').map((d) => [d.principal, d.user]),
        [['tools', '']],
      );
      const bad = byReason('bad_user_header');
      assert.equal(bad.length, 5);
      for (const d of bad) {
        assert.equal(d.user, '');
        assert.equal(d.principal, 'orchestrator', 'a refusal still names the caller');
      }
      assert.deepEqual(
        byPath('/delivery').map((d) => [d.principal, d.user, d.reason]),
        [['gateway', 'carol', 'host_not_allowed']],
      );
    } finally {
      await tools.close();
      await gw.close();
    }
  });

  it('records every decision on the audit stream, without secrets', async () => {
    const jsm = await jetstreamManager(await tp.admin());
    const read = async () => {
      const info = await jsm.streams.info(STREAMS.audit.name);
      const out: EgressDecision[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(STREAMS.audit.name, { seq }).catch(() => null);
        if (m) out.push(EgressDecision.decode(m.data));
      }
      return out;
    };
    // Egress publishes decisions in the background: wait until those checked below are on the stream.
    const decisions = await tp
      .until('the decisions of the earlier requests on the audit stream', async () => {
        const ds = await read();
        const has = (f: (d: EgressDecision) => boolean) => ds.some(f);
        return (
          has((d) => d.allowed && d.path === '/hello') &&
          has((d) => d.reason === 'host_not_allowed') &&
          has((d) => d.reason === 'loopback_address') &&
          has((d) => d.reason === 'no_principal') &&
          ds
        );
      })
      .catch(read);
    const hello = decisions.find((d) => d.allowed && d.path === '/hello' && d.principal === 'orchestrator');
    assert.ok(hello);
    assert.equal(hello.traceId, '0af7651916cd43dd8448eb211c80319c', 'egress continues the caller’s trace');
    assert.ok(decisions.some((d) => !d.allowed && d.reason === 'host_not_allowed'));
    assert.ok(decisions.some((d) => !d.allowed && d.reason === 'loopback_address'));
    assert.ok(decisions.some((d) => !d.allowed && d.reason === 'no_principal'));
    const all = JSON.stringify(decisions);
    assert.doesNotMatch(all, /tool-password/);
    assert.doesNotMatch(all, new RegExp(Buffer.from('tools:tool-password').toString('base64')));
    // The operator's view: `talon egress har` exports the same decisions as HAR 1.2.
    const r = tp.cli(['egress', 'har', '--refused', '--limit', '50']);
    assert.equal(r.status, 0, r.stderr);
    const har = JSON.parse(r.stdout) as {
      log: { version: string; entries: Array<{ response: { status: number }; _talon: { allowed: boolean } }> };
    };
    assert.equal(har.log.version, '1.2');
    assert.ok(har.log.entries.length >= 5);
    assert.ok(har.log.entries.every((e) => !e._talon.allowed && e.response.status >= 400));
    assert.doesNotMatch(r.stdout, /tool-password/);
  });
});
