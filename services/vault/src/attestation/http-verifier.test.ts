// The http verifier against a fake local verifier served on loopback and on a Unix
// socket: the request carries the nonce binding, only a well-formed "ok" that
// echoes the nonce passes, and everything else fails closed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { AttestationGate, AttestationFailed } from './gate.ts';
import { HttpVerifier, judge, parseLocalEndpoint, type AttestRequestBody } from './http-verifier.ts';
import { NoEvidence } from './tsm.ts';
import { reportDataFor, type Verdict } from './types.ts';

type Mode = 'ok' | 'refuse' | 'wrong-nonce' | 'http-500' | 'not-json' | 'hang';

describe('http verifier (fake local verifier)', () => {
  let server: Server;
  let port: number;
  let mode: Mode = 'ok';
  const seen: AttestRequestBody[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'talon-verifier-'));
  const socketPath = join(dir, 'verifier.sock');
  let unixServer: Server;

  const handler: Parameters<typeof createServer>[1] = (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const r = JSON.parse(body) as AttestRequestBody;
      seen.push(r);
      const send = (status: number, text: string) => res.writeHead(status, { 'content-type': 'application/json' }).end(text);
      if (mode === 'ok')
        send(200, JSON.stringify({ ok: true, nonce: r.nonce, claims: { tee: 'tdx', mrtd: 'ab'.repeat(48), nested: { no: 1 } } }));
      else if (mode === 'refuse') send(200, JSON.stringify({ ok: false, reason: 'TCB out of date' }));
      else if (mode === 'wrong-nonce') send(200, JSON.stringify({ ok: true, nonce: Buffer.alloc(32).toString('base64') }));
      else if (mode === 'http-500') send(500, '{}');
      else if (mode === 'not-json') send(200, '<html>');
    });
  };

  before(async () => {
    server = createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    unixServer = createServer(handler);
    await new Promise<void>((r) => unixServer.listen(socketPath, r));
  });
  after(async () => {
    server.closeAllConnections();
    unixServer.closeAllConnections();
    await new Promise((r) => server.close(r));
    await new Promise((r) => unixServer.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const verifier = (url = `http://127.0.0.1:${port}/v1/attest`) =>
    new HttpVerifier({ endpoint: parseLocalEndpoint(url)!, measurements: ['cd'.repeat(48)] });
  const nonce = Buffer.alloc(32, 9);
  const run = (v = verifier(), ms = 5000): Promise<Verdict> =>
    Promise.resolve(
      v.verify({ tee: 'tdx', report: Buffer.from('quote-bytes'), aux: Buffer.from('aux') }, { nonce }, AbortSignal.timeout(ms)),
    );

  it('sends the nonce, its report_data binding, the evidence and the allowed measurements', async () => {
    mode = 'ok';
    const v = await run();
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual(v.claims, { tee: 'tdx', mrtd: 'ab'.repeat(48) }, 'only flat claims are kept');
    const r = seen.at(-1)!;
    assert.equal(r.version, 1);
    assert.equal(r.nonce, nonce.toString('base64'));
    assert.equal(r.report_data, reportDataFor(nonce).toString('hex'));
    assert.equal(Buffer.from(r.evidence!, 'base64').toString(), 'quote-bytes');
    assert.equal(Buffer.from(r.aux!, 'base64').toString(), 'aux');
    assert.deepEqual(r.measurements, ['cd'.repeat(48)]);
  });

  it('works over a Unix socket, without evidence when the agent collects its own', async () => {
    mode = 'ok';
    const gate = new AttestationGate({ source: new NoEvidence(), verifier: verifier(`unix:${socketPath}`), timeoutMs: 5000 });
    assert.equal((await gate.check()).tee, 'tdx');
    assert.equal(seen.at(-1)!.evidence, null);
    assert.equal(seen.at(-1)!.tee, 'none');
  });

  it('fails closed on a refusal, a stale verdict, an HTTP error, a non-JSON answer, a hang and a dead verifier', async () => {
    const expectCode = async (m: Mode, code: string, v?: HttpVerifier, ms?: number) => {
      mode = m;
      const r = await run(v, ms);
      assert.equal(r.ok ? 'ok' : r.code, code, m);
      return r;
    };
    const refused = await expectCode('refuse', 'verifier_refused');
    assert.match(refused.ok ? '' : refused.reason, /TCB out of date/);
    await expectCode('wrong-nonce', 'verifier_bad_response');
    await expectCode('http-500', 'verifier_unavailable');
    await expectCode('not-json', 'verifier_bad_response');
    await expectCode('hang', 'verifier_timeout', undefined, 200);
    await expectCode('ok', 'verifier_unavailable', verifier('http://127.0.0.1:1/none'));
    await expectCode('ok', 'verifier_unavailable', verifier(`unix:${join(dir, 'absent.sock')}`));
  });

  it('through the gate, a refusal keeps the vault sealed with the verifier’s reason', async () => {
    mode = 'refuse';
    const gate = new AttestationGate({ source: new NoEvidence(), verifier: verifier(), timeoutMs: 5000 });
    await assert.rejects(
      gate.check(),
      (e: unknown) => e instanceof AttestationFailed && e.reason === 'verifier_refused' && /TCB out of date/.test(e.message),
    );
  });
});

describe('verifier address and answer contract', () => {
  it('accepts only literal loopback addresses and absolute socket paths', () => {
    assert.deepEqual(parseLocalEndpoint('http://127.0.0.1:8470/v1/attest'), {
      kind: 'tcp',
      host: '127.0.0.1',
      port: 8470,
      path: '/v1/attest',
    });
    assert.deepEqual(parseLocalEndpoint('http://[::1]:8006/x?y=1'), { kind: 'tcp', host: '::1', port: 8006, path: '/x?y=1' });
    assert.deepEqual(parseLocalEndpoint('unix:/run/attest.sock'), { kind: 'unix', socketPath: '/run/attest.sock', path: '/' });
    for (const bad of [
      'https://127.0.0.1/x',
      'http://localhost:80/',
      'http://kbs.example.com/attest',
      'http://10.0.0.5:8080/',
      'http://127.0.0.1.nip.io/',
      'http://user:pw@127.0.0.1/',
      'unix:relative.sock',
      'ftp://127.0.0.1/',
    ])
      assert.equal(parseLocalEndpoint(bad), undefined, bad);
  });

  it('judges only {ok:true, nonce} as a pass', () => {
    assert.equal(judge(null, 'n').ok, false);
    assert.equal(judge({ ok: 'true', nonce: 'n' }, 'n').ok, false);
    assert.equal(judge({ ok: true }, 'n').ok, false);
    assert.equal(judge({ ok: true, nonce: 'n' }, 'n').ok, true);
  });
});
