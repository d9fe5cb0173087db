// WebSockets through real vault and egress processes (websocket.ts), opened with the
// kit's EgressClient over mutual TLS to a WebSocket server on loopback: an allowed
// upgrade relays frames both ways and sends no internal header upstream; an upgrade to
// a host the policy does not allow is refused before anything connects; a frame
// carrying a credential closes the connection with 1008 and never reaches the server;
// a placeholder in a frame is filled only for a secret bound to the frame placement,
// and the value echoed back is redacted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { EgressClient, EgressRefusal } from '@talon/kit/egress';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';
import { RULE_FIXTURES } from '../src/scan/rule-fixtures.ts';
import { CLOSE_POLICY } from '../src/websocket.ts';

const TOKEN = RULE_FIXTURES.github_pat!.positives[0]!;
const PASSPHRASE = `ws-${randomBytes(8).toString('hex')}`;
/** A value no scanner rule knows: only the vault's fingerprint can find it. */
const GATEWAY_TOKEN = `gw-${randomBytes(18).toString('hex')}`;

/** An echo server that keeps what it saw: upgrade headers and every frame. */
async function startEchoServer() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const upgrades: IncomingHttpHeaders[] = [];
  const frames: string[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(req.headers);
    ws.on('message', (data) => {
      frames.push(String(data));
      ws.send(`echo:${String(data)}`);
    });
  });
  const port = (wss.address() as { port: number }).port;
  return { wss, port, upgrades, frames, close: () => new Promise<void>((r) => wss.close(() => r())) };
}

/** The next message, or the close code if the connection closes first. */
function next(ws: WebSocket): Promise<{ message: string } | { closed: number }> {
  return new Promise((resolve) => {
    ws.resume();
    const onMessage = (d: WebSocket.RawData) => {
      ws.off('close', onClose);
      resolve({ message: String(d) });
    };
    const onClose = (code: number) => {
      ws.off('message', onMessage);
      resolve({ closed: code });
    };
    ws.once('message', onMessage);
    ws.once('close', onClose);
  });
}

describe('WebSockets through egress', () => {
  let tp: TestPlatform;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let other: Awaited<ReturnType<typeof startEchoServer>>;
  let egress: EgressClient;
  const dir = mkdtempSync(join(tmpdir(), 'talon-egress-ws-'));

  before(async () => {
    echo = await startEchoServer();
    other = await startEchoServer();
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({ rules: [{ principal: 'gateway', host: '127.0.0.1', port: echo.port, methods: ['GET'] }] }),
    );
    tp = await startTestPlatform({
      services: ['vault', 'egress'],
      llm: false,
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${echo.port},127.0.0.1:${other.port}`,
      },
    });
    for (const [name, placement] of [
      ['gateway_token', '--ws-frame'],
      ['rest_token', '--bearer'],
    ] as const) {
      const r = tp.cli(
        ['secrets', 'set', name, '--host', `127.0.0.1:${echo.port}`, placement, '--principal', 'gateway'],
        `${GATEWAY_TOKEN}\n`,
      );
      assert.equal(r.status, 0, r.stderr);
    }
    await tp.egressCaughtUpWithVault();
    egress = new EgressClient({ proxyUrl: `https://127.0.0.1:${tp.ports.egressProxy}`, tls: tp.platform.tls('gateway') });
  });
  after(async () => {
    await egress?.close();
    await tp?.stop();
    await echo?.close();
    await other?.close();
  });

  it('relays frames both ways and sends no internal header upstream', async () => {
    const ws = await egress.websocket(`ws://127.0.0.1:${echo.port}/socket?v=1`, { headers: { 'x-app': 'talon-test' }, user: 'alice' });
    ws.send('hello');
    assert.deepEqual(await next(ws), { message: 'echo:hello' });
    ws.send('second');
    assert.deepEqual(await next(ws), { message: 'echo:second' });
    const seen = echo.upgrades.at(-1)!;
    assert.equal(seen['x-app'], 'talon-test');
    for (const h of Object.keys(seen)) assert.doesNotMatch(h, /^x-talon-|^traceparent$/, `${h} stays inside Talon`);
    ws.close();
    await once(ws, 'close');
  });

  it('refuses an upgrade to a host the policy does not allow, before connecting', async () => {
    await assert.rejects(
      egress.websocket(`ws://127.0.0.1:${other.port}/socket`),
      (err: unknown) => err instanceof EgressRefusal && err.reason === 'port_not_allowed',
    );
    assert.equal(other.upgrades.length, 0, 'nothing reached the other server');
  });

  it('closes with 1008 when a frame carries a credential, and the frame never arrives', async () => {
    const ws = await egress.websocket(`ws://127.0.0.1:${echo.port}/socket`);
    ws.send('fine');
    assert.deepEqual(await next(ws), { message: 'echo:fine' });
    ws.send(`{"op":2,"d":{"token":"${TOKEN}"}}`);
    assert.deepEqual(await next(ws), { closed: CLOSE_POLICY });
    assert.ok(!echo.frames.some((f) => f.includes(TOKEN)), 'the credential never left');
    assert.ok(echo.frames.includes('fine'));
  });

  it('refuses a credential in the upgrade URL before connecting', async () => {
    const before = echo.upgrades.length;
    await assert.rejects(
      egress.websocket(`ws://127.0.0.1:${echo.port}/socket?token=${TOKEN}`),
      (err: unknown) => err instanceof EgressRefusal && err.reason === 'secret_leak_blocked',
    );
    assert.equal(echo.upgrades.length, before);
  });

  it('fills a frame placeholder for a secret bound to the frame placement, and redacts the echo', async () => {
    const ws = await egress.websocket(`ws://127.0.0.1:${echo.port}/gateway`);
    ws.send('{"op":2,"d":{"token":"{{secret:gateway_token}}","intents":33281}}');
    const reply = await next(ws);
    const sent = echo.frames.at(-1)!;
    assert.deepEqual(JSON.parse(sent), { op: 2, d: { token: GATEWAY_TOKEN, intents: 33281 } }, 'the platform got the value');
    assert.ok('message' in reply);
    assert.ok(!reply.message.includes(GATEWAY_TOKEN), 'the value never comes back to the caller');
    assert.match(reply.message, /\[REDACTED/);
    ws.close();
    // The fill is a decision naming the secret (never its value), like a request's.
    const audit = await waitFor(
      () => {
        const r = tp.cli(['egress', 'audit', '--secret', 'gateway_token', '--decision', 'allow']);
        return r.status === 0 && r.stdout.includes('gateway_token') ? r.stdout : undefined;
      },
      30_000,
      'the frame fill in the egress audit',
    );
    assert.ok(!audit.includes(GATEWAY_TOKEN));
  });

  it('refuses a frame placeholder for a secret bound to another placement, and sends nothing', async () => {
    const before = echo.frames.length;
    const ws = await egress.websocket(`ws://127.0.0.1:${echo.port}/gateway`);
    ws.send('{"op":2,"d":{"token":"{{secret:rest_token}}"}}');
    assert.deepEqual(await next(ws), { closed: CLOSE_POLICY });
    assert.equal(echo.frames.length, before);
  });

  it('refuses a placeholder in a binary frame', async () => {
    const before = echo.frames.length;
    const ws = await egress.websocket(`ws://127.0.0.1:${echo.port}/gateway`);
    ws.send(Buffer.from('{{secret:gateway_token}}'), { binary: true });
    assert.deepEqual(await next(ws), { closed: CLOSE_POLICY });
    assert.equal(echo.frames.length, before);
  });
});
