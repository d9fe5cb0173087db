// HTTPS through egress: CONNECT with TLS interception using a CA that real
// mitmproxy generated (the mitmproxy layout is used as-is), and upstream mode
// chaining egress through a real mitmdump.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProxyAgent, request, type Client } from 'undici';
import {
  egressAs,
  makeUpstreamTls,
  mitmdumpAvailable,
  startMitmdump,
  startTestPlatform,
  startUpstream,
  viaEgress,
  type FakeUpstream,
  type Mitmdump,
  type TestPlatform,
  type UpstreamTls,
} from '@talon/testkit';

const skip = mitmdumpAvailable() ? false : 'mitmdump is not installed (apt-get install mitmproxy)';

function proxyAgentAs(tp: TestPlatform, identity: string, trust: string): ProxyAgent {
  const pki = join(tp.home, 'pki');
  return new ProxyAgent({
    uri: `https://127.0.0.1:${tp.ports.egressProxy}`,
    proxyTls: {
      ca: readFileSync(join(pki, 'ca.crt')),
      cert: readFileSync(join(pki, `${identity}.crt`)),
      key: readFileSync(join(pki, `${identity}.key`)),
      servername: 'egress',
    },
    requestTls: { ca: trust },
  });
}

describe('TLS interception with a mitmproxy CA', { skip }, () => {
  let tp: TestPlatform;
  let up: FakeUpstream;
  let tlsUp: UpstreamTls;
  let mitmCaCert: string;
  const dir = mkdtempSync(join(tmpdir(), 'talon-mitm-test-'));

  before(async () => {
    // Let real mitmproxy create its CA, then hand that directory to egress.
    const m = await startMitmdump(join(dir, 'mitmproxy'));
    await m.stop();
    cpSync(join(dir, 'mitmproxy'), join(dir, 'egress-ca'), { recursive: true });
    mitmCaCert = readFileSync(join(dir, 'egress-ca', 'mitmproxy-ca-cert.pem'), 'utf8');
    tlsUp = await makeUpstreamTls();
    writeFileSync(join(dir, 'upstream-ca.pem'), tlsUp.caPem);
    up = await startUpstream((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`secure ${req.method} ${req.url}`), {
      https: tlsUp,
    });
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({
        rules: [
          { principal: 'orchestrator', host: '127.0.0.1', port: up.port, methods: ['GET'] },
          { principal: 'orchestrator', host: 'localhost', port: up.port, methods: ['GET'] },
        ],
      }),
    );
    tp = await startTestPlatform({
      services: ['egress'],
      llm: false,
      env: {
        EGRESS_CA_DIR: join(dir, 'egress-ca'),
        EGRESS_UPSTREAM_CA_FILE: join(dir, 'upstream-ca.pem'),
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${up.port},localhost:${up.port}`,
        EGRESS_MAX_TUNNELS: '2',
      },
    });
  });
  after(async () => {
    await tp?.stop();
    await up?.close();
  });

  it('uses the existing mitmproxy CA as-is (no new key written)', () => {
    assert.equal(
      readFileSync(join(dir, 'egress-ca', 'mitmproxy-ca.pem'), 'utf8'),
      readFileSync(join(dir, 'mitmproxy', 'mitmproxy-ca.pem'), 'utf8'),
    );
    for (const f of ['mitmproxy-ca-cert.pem', 'mitmproxy-ca-cert.cer', 'mitmproxy-ca-cert.p12'])
      assert.ok(existsSync(join(dir, 'egress-ca', f)), f);
  });

  it('intercepts CONNECT: the client sees a certificate from the mitmproxy CA, egress originates TLS upstream', async () => {
    const agent = proxyAgentAs(tp, 'orchestrator', mitmCaCert);
    for (const host of ['127.0.0.1', 'localhost']) {
      const res = await request(`https://${host}:${up.port}/inside?q=1`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'secure GET /inside?q=1');
    }
    await agent.close();
  });

  it('checks the tunnel’s host before opening it and each request inside it', async () => {
    const other = proxyAgentAs(tp, 'gateway', mitmCaCert);
    await assert.rejects(request(`https://127.0.0.1:${up.port}/`, { dispatcher: other }), /403|Forbidden|Proxy response/i);
    await other.close();
    const agent = proxyAgentAs(tp, 'orchestrator', mitmCaCert);
    const post = await request(`https://127.0.0.1:${up.port}/write`, { dispatcher: agent, method: 'POST', body: 'x' });
    assert.equal(post.statusCode, 403);
    assert.equal(post.headers['x-talon-egress-error'], 'policy_denied');
    await post.body.text();
    await agent.close();
  });

  it('a client that does not trust the interception CA cannot be fooled into another certificate', async () => {
    const agent = proxyAgentAs(tp, 'orchestrator', tlsUp.caPem);
    await assert.rejects(request(`https://127.0.0.1:${up.port}/`, { dispatcher: agent }), /certificate|self.signed|unable to verify/i);
    await agent.close();
  });

  it('absolute https:// URLs work without CONNECT: egress originates TLS itself', async () => {
    const c: Client = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    const r = await viaEgress(c, `https://127.0.0.1:${up.port}/absolute`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'secure GET /absolute');
    await c.close();
  });
});

describe('upstream mode through a real mitmdump', { skip }, () => {
  let tp: TestPlatform;
  let up: FakeUpstream;
  let mitm: Mitmdump;
  const dir = mkdtempSync(join(tmpdir(), 'talon-upstream-test-'));

  before(async () => {
    const tlsUp = await makeUpstreamTls();
    writeFileSync(join(dir, 'upstream-ca.pem'), tlsUp.caPem);
    up = await startUpstream((req, res) => res.end(`via chain ${req.url}`), { https: tlsUp });
    mitm = await startMitmdump(join(dir, 'mitm'), ['--set', `ssl_verify_upstream_trusted_ca=${join(dir, 'upstream-ca.pem')}`]);
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({ rules: [{ principal: 'orchestrator', host: '127.0.0.1', port: up.port, methods: ['GET'] }] }),
    );
    tp = await startTestPlatform({
      services: ['egress'],
      llm: false,
      env: {
        EGRESS_UPSTREAM_PROXY: `http://127.0.0.1:${mitm.port}`,
        EGRESS_UPSTREAM_CA_FILE: join(dir, 'mitm', 'mitmproxy-ca-cert.pem'),
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${up.port}`,
      },
    });
  });
  after(async () => {
    await tp?.stop();
    await mitm?.stop();
    await up?.close();
  });

  it('chains requests through mitmdump, which sees the flow', async () => {
    const c = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    const r = await viaEgress(c, `https://127.0.0.1:${up.port}/chained`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'via chain /chained');
    // mitmdump prints the flow once it is done with it.
    await tp
      .until('mitmdump to print the flow', () => /GET https:\/\/127\.0\.0\.1:\d+\/chained/.test(mitm.output()))
      .catch(() => undefined);
    assert.match(mitm.output(), /GET https:\/\/127\.0\.0\.1:\d+\/chained/);
    // Policy still applies before anything reaches the chain.
    const denied = await viaEgress(c, `https://127.0.0.1:${up.port + 1}/nope`);
    assert.equal(denied.status, 403);
    await c.close();
  });
});
