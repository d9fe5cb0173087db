// Fuzzed webhooks against a running gateway: 12,000 deterministic cases (fixed
// seed) of mutated platform payloads, correctly and incorrectly signed, broken
// JSON, binary bodies, odd and duplicated headers, wrong paths and methods, and
// raw malformed HTTP. The gateway must answer every one with a clear 4xx (or 503
// while a signature cannot be checked), never a 500, never crash, and keep serving.
// Signed cases reach the parsers only when EgressService.VerifyWebhook exists;
// without it they end in 503 and the suite still checks the gateway survives.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';
import { rssMiB } from '../../bench/lib.ts';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = 0x7a10_2026;
const CASES = 12_000;
const ALLOWED = new Set([200, 202, 400, 401, 404, 405, 413, 415, 429, 503]);

describe('webhook fuzzing against the live gateway', () => {
  let cp: ChannelPlatform;

  before(async () => {
    cp = await startChannelPlatform({
      env: {
        GATEWAY_RATE_LIMIT_WEBHOOK_PER_MIN: '10000000',
        GATEWAY_AUTH_FAILURES_PER_MIN: '10000000',
        GATEWAY_MAX_WEBHOOK_BYTES: '65536',
        TALON_LOG_LEVEL: 'error',
      },
    });
    for (const u of ['fz']) assert.equal((await cp.talon(['users', 'add', u])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  it(`${CASES} cases (seed ${SEED.toString(16)}): never a 500, never a crash`, async () => {
    const r = mulberry32(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const gwUrl = new URL(cp.gatewayUrl);
    const agent = new Agent({ connections: 16, pipelining: 1 });
    const now = () => Math.floor(Date.now() / 1000);
    const strings = [
      '',
      'hi',
      '\u0000',
      '\ud83d',
      '<!channel>',
      '../../etc/passwd',
      'talon_pat_' + 'a'.repeat(64),
      '{{secret:telegram_bot_token}}',
      'x'.repeat(3000),
      '1.000100',
      'C0FUZZ',
      'U0FUZZ',
      '%00',
      '__proto__',
    ];
    const leaf = (): unknown =>
      pick<() => unknown>([
        () => pick(strings),
        () => Math.floor(r() * 2 ** 31),
        () => -1,
        () => 1e300,
        () => 2 ** 53 + 1,
        () => r() < 0.5,
        () => null,
        () => [],
        () => ({}),
      ])();
    const mutate = (v: unknown, depth = 0): unknown => {
      if (r() < 0.06) return leaf();
      if (Array.isArray(v)) return v.map((x) => mutate(x, depth + 1));
      if (typeof v === 'object' && v !== null) {
        const o: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) if (r() > 0.04) o[r() < 0.02 ? pick(strings) : k] = mutate(x, depth + 1);
        if (r() < 0.05) o[pick(['__proto__', 'constructor', 'extra', 'type', 'event'])] = leaf();
        return o;
      }
      return v;
    };
    const templates = {
      telegram: () => cp.telegram.message(10_000 + Math.floor(r() * 50), pick(['hello', 'again', 'x'.repeat(200)])),
      slack: () =>
        r() < 0.1
          ? { type: 'url_verification', challenge: pick(strings) }
          : cp.slack.messageEvent(`U0F${Math.floor(r() * 50)}`, 'D0FUZZ', 'hi'),
      discord: () => (r() < 0.1 ? cp.discord.ping() : cp.discord.command(String(7e17 + Math.floor(r() * 50)), '800000000000000077', 'hi')),
      webhook: () => ({ id: `f-${Math.floor(r() * 1e6)}`, user: `u${Math.floor(r() * 50)}`, text: 'hi', source: 'fuzz' }),
    } as const;
    type Ch = keyof typeof templates;
    const channels = Object.keys(templates) as Ch[];

    const statuses = new Map<number, number>();
    const bad: string[] = [];
    let raw = 0;

    const oneCase = async (i: number): Promise<void> => {
      const ch = pick(channels);
      const kind = r();
      // ~2%: raw malformed HTTP on a socket.
      if (kind < 0.02) {
        raw += 1;
        const junk = pick([
          `POST /hooks/${ch} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 12\r\n\r\n0123456789`,
          `POST /hooks/${ch} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
          `POST /hooks/${ch} HTTP/1.1\r\nHost: x\r\nX-Bad\u0001Header: 1\r\n\r\n`,
          `GARBAGE\r\n\r\n`,
          `POST /hooks/${ch} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nshort`,
        ]);
        await new Promise<void>((resolve) => {
          const s = connect(Number(gwUrl.port), gwUrl.hostname, () => s.end(junk));
          s.setTimeout(3000, () => s.destroy());
          s.on('data', () => undefined);
          s.on('error', () => resolve());
          s.on('close', () => resolve());
        });
        return;
      }
      const body = kind < 0.55 ? mutate(templates[ch]()) : kind < 0.8 ? templates[ch]() : undefined;
      let rawBody: Buffer;
      if (body !== undefined) rawBody = Buffer.from(JSON.stringify(body) ?? 'null');
      else if (r() < 0.5) rawBody = Buffer.from(Array.from({ length: Math.floor(r() * 400) }, () => Math.floor(r() * 256)));
      else rawBody = Buffer.from(JSON.stringify(templates[ch]()).slice(0, Math.floor(r() * 80)));
      if (r() < 0.01) rawBody = Buffer.alloc(70_000, 0x61);
      const text = rawBody.toString('utf8');
      const ts = r() < 0.85 ? now() : pick([now() - 301, now() + 400, 0, 99999999999, -5]);
      const headers: Record<string, string | string[]> = {
        'content-type': pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', '']),
      };
      const signed = r() < 0.7;
      switch (ch) {
        case 'telegram':
          headers['x-telegram-bot-api-secret-token'] = signed
            ? cp.telegram.webhookSecret
            : pick(['', 'wrong', cp.telegram.webhookSecret + 'x', 'a'.repeat(300)]);
          break;
        case 'slack':
          headers['x-slack-request-timestamp'] = String(ts);
          headers['x-slack-signature'] = signed
            ? cp.slack.sign(ts, text)
            : pick(['v0=', 'v0=' + 'g'.repeat(64), 'v1=' + 'a'.repeat(64), cp.slack.sign(ts + 1, text)]);
          break;
        case 'discord':
          headers['x-signature-timestamp'] = String(ts);
          headers['x-signature-ed25519'] = signed
            ? cp.discord.sign(ts, text)
            : pick(['', 'zz', '0'.repeat(128), cp.discord.sign(ts, text + ' ')]);
          break;
        case 'webhook':
          headers['x-talon-timestamp'] = String(ts);
          headers['x-talon-signature'] = signed
            ? cp.webhook.sign(ts, text)
            : pick(['sha256=', 'sha256=' + 'A'.repeat(64), cp.webhook.sign(ts, text, 'nope')]);
          break;
      }
      if (r() < 0.05) for (const k of Object.keys(headers)) headers[k] = [String(headers[k]), 'dup'];
      if (r() < 0.05) delete headers[pick(Object.keys(headers))];
      if (r() < 0.03) headers['x-forwarded-for'] = pick(['127.0.0.1', '::1, 10.0.0.1', 'garbage', '1.1.1.1,'.repeat(200)]);
      const path =
        r() < 0.04
          ? pick([
              '/hooks/',
              '/hooks/../v1/admin/users',
              '/hooks/telegram/extra',
              '/hooks/TELEGRAM',
              '/hooks/unknown',
              `/hooks/${ch}?token=x`,
            ])
          : `/hooks/${ch}`;
      const method = r() < 0.03 ? pick(['GET', 'PUT', 'DELETE', 'PATCH']) : 'POST';
      try {
        const res = await request(`${cp.gatewayUrl}${path}`, {
          method: method as 'POST',
          headers,
          body: method === 'GET' ? undefined : rawBody,
          dispatcher: agent,
          headersTimeout: 15_000,
          bodyTimeout: 15_000,
        });
        const resText = await res.body.text();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (!ALLOWED.has(res.statusCode)) bad.push(`#${i} ${ch} ${method} ${path} -> ${res.statusCode} ${resText.slice(0, 200)}`);
        else if (res.statusCode >= 400 && !/"error"/.test(resText))
          bad.push(`#${i} ${res.statusCode} without a JSON error: ${resText.slice(0, 120)}`);
      } catch (err) {
        // The gateway may close a connection after refusing an oversized body; anything else is a failure.
        if (
          !/other side closed|ECONNRESET|SocketError|EPIPE/i.test(String((err as Error).message) + String((err as { code?: string }).code))
        ) {
          bad.push(`#${i} ${ch} transport error ${(err as Error).message}`);
        }
      }
    };

    const rss0 = rssMiB(cp.tp.platform.process('gateway')!.pid!);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < CASES) await oneCase(next++);
      }),
    );
    await agent.close();
    const rss1 = rssMiB(cp.tp.platform.process('gateway')!.pid!);
    console.log(
      `fuzz: ${CASES} cases, ${raw} raw-socket, statuses ${JSON.stringify(Object.fromEntries(statuses))}, gateway RSS ${rss0.toFixed(0)} -> ${rss1.toFixed(0)} MiB`,
    );
    assert.deepEqual(bad.slice(0, 20), []);
    assert.ok(cp.tp.platform.process('gateway')!.running, 'the gateway is still running');
    assert.equal((await fetch(`${cp.gatewayUrl}/healthz`)).status, 200);
    assert.ok((statuses.get(401) ?? 0) > 100, 'forged cases were refused');
    const errors = cp.tp
      .log('gateway')
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors.slice(0, 5), [], 'no error-level log lines (unexpected failures)');
  });
});
