// Telegram long polling: the calls and answers (pure), and the runner against a scripted
// egress and intake: offsets advance only after an update is queued, 409 webhook → one
// deleteWebhook, retry_after honoured, no log line per poll.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import type { EgressRequest } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { createLogger } from '@talon/kit/log';
import {
  decodeOffset,
  deleteWebhookCall,
  encodeOffset,
  getUpdatesCall,
  nextOffset,
  OFFSET_MAX_AGE_MS,
  parseUpdates,
  reconnectDelayMs,
  telegramLeaseKey,
  telegramOffsetKey,
} from './telegram-poll.ts';
import { TelegramPoller, type OffsetStore } from './telegram-poller.ts';
import type { PollResponse } from './poll-call.ts';
import { parseTelegram } from './telegram.ts';
import type { WebhookResult } from '../ingress.ts';

const update = (id: number, text = `hello ${id}`) => ({
  update_id: id,
  message: { message_id: id * 10, from: { id: 42, is_bot: false, first_name: 'Tess' }, chat: { id: 42, type: 'private' }, date: 1, text },
});

describe('getUpdates calls and answers', () => {
  it('asks for new messages only, with the token as a placeholder in the path', () => {
    const c = getUpdatesCall('https://api.telegram.org/', 'telegram_bot_token', 1234, 30);
    assert.equal(c.url, 'https://api.telegram.org/bot{{secret:telegram_bot_token}}/getUpdates');
    assert.deepEqual(JSON.parse(c.body), { offset: 1234, timeout: 30, limit: 100, allowed_updates: ['message'] });
    assert.equal(JSON.parse(getUpdatesCall('https://x', 's', undefined, 5).body).offset, undefined);
    const d = deleteWebhookCall('https://x', 's');
    assert.equal(d.url, 'https://x/bot{{secret:s}}/deleteWebhook');
    assert.deepEqual(JSON.parse(d.body), { drop_pending_updates: false });
  });

  it('reads updates sorted, dropping ones without a usable id; each one parses as a webhook would', () => {
    const body = JSON.stringify({ ok: true, result: [update(12), { update_id: 'x' }, update(11), { update_id: 2 ** 60 }] });
    const v = parseUpdates(200, body);
    assert.equal(v.kind, 'updates');
    if (v.kind !== 'updates') return;
    assert.deepEqual(
      v.updates.map((u) => u.updateId),
      [11, 12],
    );
    const parsed = parseTelegram(v.updates[0]!.raw);
    assert.equal(parsed.kind, 'message');
    if (parsed.kind === 'message') assert.equal(parsed.event.dedupeId, 'telegram:11', 'the same dedupe id as the webhook path');
    assert.deepEqual(parseUpdates(200, '{"ok":true,"result":[]}'), { kind: 'updates', updates: [] });
  });

  it('tells a webhook conflict from a second poller, rate limits, outages and a refused token', () => {
    const c409 = (description: string) => JSON.stringify({ ok: false, error_code: 409, description });
    assert.deepEqual(parseUpdates(409, c409("Conflict: can't use getUpdates method while webhook is active")), { kind: 'webhook_active' });
    assert.deepEqual(parseUpdates(409, c409('Conflict: terminated by other getUpdates request')), { kind: 'conflict' });
    assert.deepEqual(parseUpdates(429, JSON.stringify({ ok: false, parameters: { retry_after: 3 } })), {
      kind: 'retry',
      code: 'rate_limited',
      afterMs: 3000,
    });
    assert.deepEqual(parseUpdates(429, 'not json', '7'), { kind: 'retry', code: 'rate_limited', afterMs: 7000 });
    assert.deepEqual(parseUpdates(502, '<html>'), { kind: 'retry', code: 'http_502' });
    assert.deepEqual(parseUpdates(200, '{"ok":false}'), { kind: 'retry', code: 'bad_answer' });
    assert.deepEqual(parseUpdates(401, '{"ok":false,"error_code":401}'), { kind: 'refused', code: 'http_401' });
  });

  it('advances the offset past the newest update', () => {
    const u = (updateId: number) => ({ updateId, raw: Buffer.alloc(0) });
    assert.equal(nextOffset(undefined, []), undefined);
    assert.equal(nextOffset(undefined, [u(5), u(9)]), 10);
    assert.equal(nextOffset(20, [u(5)]), 20);
  });

  it('backs off exponentially with jitter, capped, never below retry_after', () => {
    assert.equal(
      reconnectDelayMs(1, 1000, 60_000, 0, () => 0),
      500,
    );
    assert.equal(
      reconnectDelayMs(1, 1000, 60_000, 0, () => 1),
      1000,
    );
    assert.equal(
      reconnectDelayMs(4, 1000, 60_000, 0, () => 1),
      8000,
    );
    assert.equal(
      reconnectDelayMs(40, 1000, 60_000, 0, () => 1),
      60_000,
    );
    assert.equal(
      reconnectDelayMs(1, 1000, 60_000, 5000, () => 1),
      5000,
    );
  });

  it('stores the offset as text and distrusts an old or malformed one', () => {
    assert.equal(decodeOffset(encodeOffset(777), 0, 1000), 777);
    assert.equal(decodeOffset(encodeOffset(777), 0, OFFSET_MAX_AGE_MS + 1), undefined);
    assert.equal(decodeOffset(new TextEncoder().encode('-1'), 0, 0), undefined);
    assert.equal(decodeOffset(undefined, 0, 0), undefined);
    assert.equal(telegramOffsetKey('telegram_bot_token'), 'telegram.offset.telegram_bot_token');
    assert.equal(telegramLeaseKey('telegram_bot_token'), 'lease.gateway.telegram.telegram_bot_token');
  });
});

/** A scripted Telegram behind a fake egress; each answer is taken in order, then polls hang until aborted. */
function harness(script: Array<(req: EgressRequest) => { status: number; body: unknown; headers?: Record<string, string> }>) {
  const requests: Array<{ at: number; req: EgressRequest; body: any }> = [];
  const accepted: string[] = [];
  const saved: number[] = [];
  const lines: string[] = [];
  let failIntakeOn: string | undefined;
  /** True once the poller sits in a poll past the end of the script. */
  let waiting = false;
  const log = createLogger({
    service: 'test',
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
  });
  const offsets: OffsetStore & { stored?: number } = {
    load: async () => offsets.stored,
    save: async (o) => {
      offsets.stored = o;
      saved.push(o);
    },
  };
  const egress = {
    async request(req: EgressRequest): Promise<PollResponse> {
      requests.push({ at: performance.now(), req, body: JSON.parse(String(req.body)) });
      const next = script.shift();
      if (!next) {
        waiting = true;
        throw await new Promise<Error>((resolve) =>
          req.signal?.addEventListener('abort', () => resolve(Object.assign(new Error('aborted'), { name: 'AbortError' }))),
        );
      }
      const a = next(req);
      return {
        status: a.status,
        headers: a.headers ?? {},
        body: Readable.from([Buffer.from(typeof a.body === 'string' ? a.body : JSON.stringify(a.body))]),
      };
    },
  };
  const intake = {
    async accept(_channel: string, raw: Buffer): Promise<WebhookResult> {
      const text = JSON.parse(raw.toString()).message.text as string;
      if (text === failIntakeOn) {
        failIntakeOn = undefined;
        throw new TalonError('unavailable', 'NATS away');
      }
      accepted.push(text);
      return { status: 200, body: {}, outcome: 'accepted' };
    },
  };
  const poller = new TelegramPoller({
    egress,
    intake,
    offsets,
    log,
    apiUrl: 'https://api.telegram.org',
    botTokenSecret: 'telegram_bot_token',
    timeoutS: 30,
    backoffMs: 20,
    maxBackoffMs: 100,
  });
  return {
    poller,
    requests,
    accepted,
    saved,
    lines,
    offsets,
    failIntake: (text: string) => (failIntakeOn = text),
    /** Runs until the script is used up and the poller waits in the next poll, then stops it. */
    async runScript(): Promise<void> {
      const ac = new AbortController();
      const done = poller.run(ac.signal);
      while (!waiting) await new Promise((r) => setTimeout(r, 5));
      ac.abort();
      await done;
    },
  };
}

const ok =
  (...ids: number[]) =>
  () => ({ status: 200, body: { ok: true, result: ids.map((i) => update(i)) } });

describe('TelegramPoller', () => {
  it('queues each update, then confirms it: the offset is stored and sent with the next poll', async () => {
    const h = harness([ok(10, 11), ok(), ok(12)]);
    await h.runScript();
    assert.deepEqual(h.accepted, ['hello 10', 'hello 11', 'hello 12']);
    assert.deepEqual(
      h.requests.map((r) => r.body.offset),
      [undefined, 12, 12, 13],
    );
    assert.deepEqual(h.saved, [12, 13], 'stored after updates, not after empty polls');
    assert.ok(h.requests.every((r) => r.req.url.endsWith('/bot{{secret:telegram_bot_token}}/getUpdates')));
  });

  it('resumes from the stored offset', async () => {
    const h = harness([ok(50)]);
    h.offsets.stored = 50;
    await h.runScript();
    assert.equal(h.requests[0]!.body.offset, 50);
    assert.equal(h.requests[1]!.body.offset, 51);
  });

  it('an update the intake could not queue is not confirmed: polled again after a backoff', async () => {
    const h = harness([ok(20, 21), ok(21)]);
    h.failIntake('hello 21');
    await h.runScript();
    assert.deepEqual(h.accepted, ['hello 20', 'hello 21']);
    assert.deepEqual(
      h.requests.map((r) => r.body.offset),
      [undefined, 21, 22],
    );
    assert.deepEqual(h.saved, [21, 22]);
    assert.ok(h.requests[1]!.at - h.requests[0]!.at >= 9, 'backed off before polling again');
  });

  it('a webhook blocking getUpdates is deleted once, then polling goes on', async () => {
    const conflict = () => ({
      status: 409,
      body: { ok: false, error_code: 409, description: "Conflict: can't use getUpdates method while webhook is active" },
    });
    const h = harness([conflict, () => ({ status: 200, body: { ok: true, result: true } }), ok(5)]);
    await h.runScript();
    assert.deepEqual(
      h.requests.map((r) => r.req.url.split('/').at(-1)),
      ['getUpdates', 'deleteWebhook', 'getUpdates', 'getUpdates'],
    );
    assert.deepEqual(h.accepted, ['hello 5']);
    assert.equal(h.lines.filter((l) => /webhook set/.test(l)).length, 1);
  });

  it('honours retry_after and logs a failure once, then the recovery once', async () => {
    const limited = () => ({ status: 429, body: { ok: false, error_code: 429, parameters: { retry_after: 0.3 } } });
    const down = () => ({ status: 502, body: 'bad gateway' });
    const h = harness([limited, down, down, down, ok(7)]);
    await h.runScript();
    assert.ok(h.requests[1]!.at - h.requests[0]!.at >= 290, 'waited retry_after');
    const warn = h.lines.filter((l) => l.includes('telegram polling failing'));
    assert.equal(warn.length, 2, 'one line per distinct problem (rate_limited, http_502), not per attempt');
    assert.equal(h.lines.filter((l) => l.includes('telegram polling recovered')).length, 1);
    assert.deepEqual(h.accepted, ['hello 7']);
  });

  it('writes no log line per empty poll', async () => {
    const h = harness([ok(), ok(), ok(), ok(), ok()]);
    await h.runScript();
    assert.equal(h.requests.length, 6);
    const msgs = h.lines.map((l) => JSON.parse(l).msg as string);
    assert.deepEqual(msgs, ['telegram polling started', 'telegram polling stopped']);
  });

  it('an egress refusal is retried with backoff, naming egress’s code once', async () => {
    const refused = () => {
      throw new TalonError('policy_denied', 'no');
    };
    const h = harness([refused, refused, ok(3)]);
    await h.runScript();
    assert.equal(h.lines.filter((l) => l.includes('"problem":"egress_policy_denied"')).length, 1);
    assert.deepEqual(h.accepted, ['hello 3']);
  });
});
