// Matrix: the adapter (room and account ids, idempotent sends, verdicts), the /sync calls and
// answers (pure), and the runner against a scripted homeserver behind a fake egress: the initial
// sync answers nothing, the since token advances only after every message was queued, own,
// encrypted and non-text events are skipped, invites are joined only when told to.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import type { EgressRequest } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { createLogger } from '@talon/kit/log';
import { loadGatewayConfig } from '../config.ts';
import { neededSecrets } from '../channel-secrets.ts';
import { adapters } from './index.ts';
import { ACCOUNT, type InboundEvent } from './types.ts';
import { matrixAccount, matrixRoomId, matrixSend, matrixThreadId, matrixTxnId, matrixVerdict, MATRIX_MAX_TEXT } from './matrix.ts';
import {
  afterOwnJoin,
  decodeSince,
  encodeSince,
  joinCall,
  matrixLeaseKey,
  matrixSinceKey,
  parseSync,
  parseWhoami,
  syncCall,
  timelineMessage,
  whoamiCall,
} from './matrix-sync.ts';
import { MatrixSyncRunner, type SinceStore } from './matrix-runner.ts';
import type { PollResponse } from './poll-call.ts';
import type { WebhookResult } from '../ingress.ts';

const HS = 'https://matrix.example.org';
const BOT = '@talon:example.org';
const ROOM = '!AbCdEf123:example.org';

const msg = (
  body: string,
  opts: { sender?: string; id?: string; msgtype?: string; type?: string; content?: Record<string, unknown> } = {},
) => ({
  type: opts.type ?? 'm.room.message',
  sender: opts.sender ?? '@alice:example.org',
  event_id: opts.id ?? `$${body.replace(/\W/g, '')}`,
  origin_server_ts: 1,
  content: opts.content ?? { msgtype: opts.msgtype ?? 'm.text', body },
});

const syncBody = (nextBatch: string, events: unknown[], extra: { invite?: string[]; limited?: boolean; room?: string } = {}) => ({
  next_batch: nextBatch,
  rooms: {
    join: events.length > 0 ? { [extra.room ?? ROOM]: { timeline: { events, limited: extra.limited ?? false } } } : {},
    invite: Object.fromEntries((extra.invite ?? []).map((r) => [r, { invite_state: { events: [] } }])),
  },
});

describe('Matrix adapter', () => {
  it('carries room ids in thread ids and user ids in pairing accounts, reversibly and within the patterns', () => {
    const t = matrixThreadId(ROOM)!;
    assert.match(t, /^room:[A-Za-z0-9_-]+$/);
    assert.equal(matrixRoomId(t), ROOM);
    assert.equal(matrixThreadId(`!${'x'.repeat(300)}:example.org`), undefined, 'too long to carry');
    assert.throws(() => matrixRoomId('chat:42'), /not a Matrix thread id/);
    assert.throws(() => matrixRoomId(`room:${Buffer.from('@alice:x').toString('base64url')}`), /not a Matrix thread id/, 'not a room id');
    const a = matrixAccount('@alice:example.org');
    assert.match(a, ACCOUNT);
    assert.notEqual(a, matrixAccount('@alice:example.com'));
    const long = matrixAccount(`@${'a'.repeat(80)}:example.org`);
    assert.match(long, ACCOUNT);
    assert.match(long, /^h\./);
  });

  it('sends with PUT, the token as a placeholder, a txnId derived from the inbound id, plain m.text only', () => {
    const thread = matrixThreadId(ROOM)!;
    const [c, ...rest] = matrixSend(`${HS}/`, 'matrix_access_token', thread, '**hi** <b>x</b>', 'matrix-abc');
    assert.equal(rest.length, 0);
    assert.equal(c!.method, 'PUT');
    assert.equal(c!.url, `${HS}/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/send/m.room.message/${matrixTxnId('matrix-abc', 0)}`);
    assert.equal(c!.headers.authorization, 'Bearer {{secret:matrix_access_token}}');
    assert.deepEqual(JSON.parse(c!.body), { msgtype: 'm.text', body: '**hi** <b>x</b>' });
    // The same reply again is the same transaction; another reply or part is not.
    assert.equal(matrixSend(HS, 's', thread, 'other text', 'matrix-abc')[0]!.url, matrixSend(HS, 's', thread, 'x', 'matrix-abc')[0]!.url);
    assert.notEqual(matrixTxnId('matrix-abc', 0), matrixTxnId('matrix-abd', 0));
    const parts = matrixSend(HS, 's', thread, 'word '.repeat(MATRIX_MAX_TEXT / 2), 'id');
    assert.equal(parts.length, 3);
    assert.equal(new Set(parts.map((p) => p.url)).size, 3);
    assert.throws(() => matrixSend(HS, 's', 'chat:1', 'x', 'id'));
  });

  it('classifies send answers', () => {
    assert.deepEqual(matrixVerdict(200, '{"event_id":"$e1"}'), { ok: true, messageId: '$e1' });
    assert.deepEqual(matrixVerdict(429, '{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1500}'), {
      ok: false,
      retry: true,
      afterMs: 1500,
      code: 'rate_limited',
    });
    assert.equal((matrixVerdict(429, '', '2') as { afterMs?: number }).afterMs, 2000);
    assert.deepEqual(matrixVerdict(502, 'bad gateway'), { ok: false, retry: true, code: 'http_502' });
    assert.deepEqual(matrixVerdict(403, '{"errcode":"M_FORBIDDEN"}'), { ok: false, retry: false, code: 'm_forbidden' });
    assert.deepEqual(matrixVerdict(401, '{"errcode":"<script>"}'), { ok: false, retry: false, code: 'http_401' });
  });

  it('has no webhook: the table refuses it before parsing, and sends nowhere without a homeserver', () => {
    const cfg = {
      replayWindowS: 300,
      telegramApiUrl: 'https://t',
      slackApiUrl: 'https://s',
      discordApiUrl: 'https://d',
      webhookCallbackUrl: undefined,
      matrixHomeserverUrl: undefined,
      matrixAccessTokenSecret: 'matrix_access_token',
    } as unknown as Parameters<typeof adapters>[0];
    const m = adapters(cfg).matrix;
    assert.throws(() => m.signature({}, Buffer.from('{}'), 0), /Matrix has no webhook/);
    assert.equal(m.parse(Buffer.from('{}')).kind, 'ignore');
    assert.deepEqual(m.send(matrixThreadId(ROOM)!, 'x', 'id'), []);
    assert.equal(adapters({ ...cfg, matrixHomeserverUrl: HS }).matrix.send(matrixThreadId(ROOM)!, 'x', 'id').length, 1);
  });
});

describe('Matrix configuration', () => {
  it('needs a homeserver when enabled; asks for the access token secret; auto-join is off by default', () => {
    assert.throws(() => loadGatewayConfig({ TALON_CHANNELS: 'matrix' }), /TALON_MATRIX_HOMESERVER_URL: is required/);
    assert.throws(
      () => loadGatewayConfig({ TALON_CHANNELS: 'matrix', TALON_MATRIX_HOMESERVER_URL: 'ftp://x' }),
      /TALON_MATRIX_HOMESERVER_URL/,
    );
    const cfg = loadGatewayConfig({ TALON_CHANNELS: 'matrix', TALON_MATRIX_HOMESERVER_URL: HS });
    assert.equal(cfg.matrixAutoJoin, false);
    assert.equal(cfg.matrixSyncTimeoutS, 30);
    assert.deepEqual(neededSecrets(['matrix'], cfg), [
      { channel: 'matrix', secret: 'matrix_access_token', setting: 'GATEWAY_MATRIX_ACCESS_TOKEN_SECRET' },
    ]);
  });
});

describe('Matrix /sync calls and answers', () => {
  it('syncs with GET, the token as a bearer placeholder, since and timeout in the query, a filter inline', () => {
    const c = syncCall(`${HS}/`, 'matrix_access_token', 's72594_4483_1934', 30_000);
    assert.equal(c.method, 'GET');
    const u = new URL(c.url);
    assert.equal(u.origin + u.pathname, `${HS}/_matrix/client/v3/sync`);
    assert.equal(u.searchParams.get('since'), 's72594_4483_1934');
    assert.equal(u.searchParams.get('timeout'), '30000');
    assert.equal(JSON.parse(u.searchParams.get('filter')!).room.timeline.limit, 100);
    assert.equal(c.headers.authorization, 'Bearer {{secret:matrix_access_token}}');
    assert.equal(new URL(syncCall(HS, 's', undefined, 0).url).searchParams.has('since'), false);
    assert.equal(whoamiCall(HS, 's').url, `${HS}/_matrix/client/v3/account/whoami`);
    const j = joinCall(HS, 's', ROOM);
    assert.equal(j.method, 'POST');
    assert.equal(j.url, `${HS}/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/join`);
  });

  it('reads joined rooms’ timelines, invites and cut timelines; failures by status and errcode', () => {
    const v = parseSync(
      200,
      JSON.stringify(syncBody('s2', [msg('a'), 'junk', msg('b')], { invite: ['!inv:x', 'bad room'], limited: true })),
    );
    assert.equal(v.kind, 'sync');
    if (v.kind !== 'sync') return;
    assert.equal(v.nextBatch, 's2');
    assert.deepEqual(
      v.events.map((e) => [e.roomId, (e.event.content as { body: string }).body]),
      [
        [ROOM, 'a'],
        [ROOM, 'b'],
      ],
    );
    assert.deepEqual(v.invites, ['!inv:x']);
    assert.deepEqual(v.limited, [ROOM]);
    assert.deepEqual(parseSync(200, '{"rooms":{}}'), { kind: 'retry', code: 'bad_answer' });
    assert.deepEqual(parseSync(200, '{"next_batch":"has space"}'), { kind: 'retry', code: 'bad_answer' });
    assert.deepEqual(parseSync(429, '{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":800}'), {
      kind: 'retry',
      code: 'rate_limited',
      afterMs: 800,
    });
    assert.deepEqual(parseSync(502, 'x'), { kind: 'retry', code: 'http_502' });
    assert.deepEqual(parseSync(401, '{"errcode":"M_UNKNOWN_TOKEN"}'), { kind: 'refused', code: 'm_unknown_token' });
    assert.deepEqual(parseWhoami(200, JSON.stringify({ user_id: BOT })), { kind: 'user', userId: BOT });
    assert.equal(parseWhoami(200, '{"user_id":"nobody"}').kind, 'retry');
    assert.equal(parseWhoami(403, '{"errcode":"M_FORBIDDEN"}').kind, 'refused');
  });

  it('takes plain-text messages from others; skips own, encrypted, non-text, edits, other events', () => {
    const m = timelineMessage(ROOM, msg('hello', { id: '$ev1' }), BOT);
    assert.equal(m.kind, 'message');
    const ev = (m as { event: InboundEvent }).event;
    assert.deepEqual(ev, {
      channel: 'matrix',
      dedupeId: 'matrix:$ev1',
      account: matrixAccount('@alice:example.org'),
      displayName: '@alice:example.org',
      threadId: matrixThreadId(ROOM),
      text: 'hello',
    });
    const skip = (e: Record<string, unknown>) => timelineMessage(ROOM, e, BOT);
    assert.equal(skip(msg('mine', { sender: BOT })).kind, 'ignore');
    const enc = skip(msg('', { type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' } }));
    assert.deepEqual([enc.kind, (enc as { encrypted?: boolean }).encrypted], ['ignore', true]);
    for (const t of ['m.notice', 'm.image', 'm.emote']) assert.equal(skip(msg('x', { msgtype: t })).kind, 'ignore', t);
    assert.equal(
      skip(msg('x', { content: { msgtype: 'm.text', body: '* x', 'm.relates_to': { rel_type: 'm.replace', event_id: '$a' } } })).kind,
      'ignore',
    );
    assert.equal(skip(msg('   ')).kind, 'ignore');
    assert.equal(skip({ type: 'm.room.member', sender: '@a:x', state_key: '@a:x', content: { membership: 'join' } }).kind, 'ignore');
    assert.equal(skip({ ...msg('x'), sender: 'not-a-user' }).kind, 'ignore');
    assert.equal(skip({ ...msg('x'), event_id: undefined }).kind, 'ignore');
  });

  it('drops what a room showed before the bot’s own join in the same batch', () => {
    const join = { type: 'm.room.member', sender: BOT, state_key: BOT, content: { membership: 'join' } };
    const other = '!other:example.org';
    const evs = [
      { roomId: ROOM, event: msg('history') },
      { roomId: other, event: msg('elsewhere') },
      { roomId: ROOM, event: join },
      { roomId: ROOM, event: msg('after join') },
    ];
    assert.deepEqual(
      afterOwnJoin(evs, BOT).map((e) => (e.event.content as { body?: string }).body ?? 'join'),
      ['elsewhere', 'after join'],
    );
  });

  it('keeps since tokens opaque and bounded; keys name the token secret', () => {
    assert.equal(decodeSince(encodeSince('s72594_4483_1934')), 's72594_4483_1934');
    assert.equal(decodeSince(encodeSince('with space')), undefined);
    assert.equal(decodeSince(encodeSince('x'.repeat(2000))), undefined);
    assert.equal(decodeSince(undefined), undefined);
    assert.equal(matrixSinceKey('matrix_access_token'), 'matrix.since.matrix_access_token');
    assert.equal(matrixLeaseKey('matrix_access_token'), 'lease.gateway.matrix.matrix_access_token');
  });
});

describe('Matrix /sync answers under fuzzing', () => {
  it('5k mutated answers: never a throw; every message has a usable account and thread, and a reply to it is addressable', () => {
    let seed = 0x6d61;
    const r = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const leaves = [
      null,
      1,
      -1,
      true,
      '',
      'x',
      '!r:x',
      '@u:x',
      '$e',
      'm.text',
      'm.room.message',
      'm.room.encrypted',
      '\u0000\ud800',
      'a b',
      {},
      [],
    ];
    const mutate = (v: unknown): unknown => {
      if (typeof v !== 'object' || v === null) return r() < 0.2 ? leaves[Math.floor(r() * leaves.length)] : v;
      if (Array.isArray(v)) return v.map(mutate);
      return Object.fromEntries(Object.entries(v).flatMap(([k, x]) => (r() < 0.05 ? [] : [[r() < 0.05 ? `!${k}:x` : k, mutate(x)]])));
    };
    const template = syncBody('s1', [msg('hi'), msg('', { type: 'm.room.encrypted' }), msg('yo', { sender: BOT })], { invite: ['!i:x'] });
    let messages = 0;
    for (let i = 0; i < 5000; i++) {
      const v = parseSync(200, JSON.stringify(mutate(template)));
      if (v.kind !== 'sync') continue;
      for (const { roomId, event } of afterOwnJoin(v.events, BOT)) {
        const m = timelineMessage(roomId, event, BOT);
        if (m.kind !== 'message') continue;
        messages += 1;
        assert.match(m.event.account, ACCOUNT);
        assert.match(m.event.threadId, /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,199}$/);
        assert.equal(matrixRoomId(m.event.threadId), roomId);
        assert.equal(matrixSend(HS, 's', m.event.threadId, m.event.text, 'id').length >= 1, true);
      }
    }
    assert.ok(messages > 100, `fuzzing reached messages: ${messages}`);
  });
});

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

/** A scripted homeserver behind a fake egress: each answer in order, then syncs hang until aborted. */
function harness(script: Array<(req: EgressRequest) => Answer>, opts: { autoJoin?: boolean; userId?: string; stored?: string } = {}) {
  const requests: EgressRequest[] = [];
  const accepted: string[] = [];
  const saved: string[] = [];
  const lines: string[] = [];
  let failIntakeOn: string | undefined;
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
  const since: SinceStore & { stored?: string } = {
    stored: opts.stored,
    load: async () => since.stored,
    save: async (s) => {
      since.stored = s;
      saved.push(s);
    },
  };
  const egress = {
    async request(req: EgressRequest): Promise<PollResponse> {
      requests.push(req);
      const next = script.shift();
      if (!next) {
        waiting = true;
        throw await new Promise<Error>((resolve) =>
          req.signal?.addEventListener('abort', () => resolve(Object.assign(new Error('aborted'), { name: 'AbortError' }))),
        );
      }
      const a = next(req);
      return { status: a.status, headers: a.headers ?? {}, body: Readable.from([Buffer.from(JSON.stringify(a.body))]) };
    },
  };
  const intake = {
    async acceptEvent(ev: InboundEvent): Promise<WebhookResult> {
      if (ev.text === failIntakeOn) {
        failIntakeOn = undefined;
        throw new TalonError('unavailable', 'NATS away');
      }
      accepted.push(ev.text);
      return { status: 200, body: {}, outcome: 'accepted' };
    },
  };
  const runner = new MatrixSyncRunner({
    egress,
    intake,
    since,
    log,
    homeserverUrl: HS,
    tokenSecret: 'matrix_access_token',
    ...(opts.userId ? { userId: opts.userId } : {}),
    autoJoin: opts.autoJoin ?? false,
    timeoutS: 30,
    backoffMs: 20,
    maxBackoffMs: 100,
  });
  return {
    requests,
    accepted,
    saved,
    lines,
    since,
    failIntake: (text: string) => (failIntakeOn = text),
    async runScript(): Promise<void> {
      const ac = new AbortController();
      const done = runner.run(ac.signal);
      while (!waiting) await new Promise((r) => setTimeout(r, 5));
      ac.abort();
      await done;
    },
  };
}

const whoami = () => ({ status: 200, body: { user_id: BOT, device_id: 'D' } });
const sync =
  (next: string, events: unknown[], extra: { invite?: string[] } = {}) =>
  () => ({ status: 200, body: syncBody(next, events, extra) });
const sinceOf = (r: EgressRequest) => new URL(r.url).searchParams.get('since');
const timeoutOf = (r: EgressRequest) => new URL(r.url).searchParams.get('timeout');

describe('Matrix sync runner', () => {
  it('initial sync: only its next_batch is taken (stored), history is not answered; then long polls from it', async () => {
    const h = harness([whoami, sync('s1', [msg('old history')]), sync('s2', [msg('new one'), msg('mine', { sender: BOT })])]);
    await h.runScript();
    assert.equal(h.requests[0]!.url, `${HS}/_matrix/client/v3/account/whoami`);
    assert.equal(sinceOf(h.requests[1]!), null);
    assert.equal(timeoutOf(h.requests[1]!), '0', 'the initial sync is not held');
    assert.equal(sinceOf(h.requests[2]!), 's1');
    assert.equal(timeoutOf(h.requests[2]!), '30000');
    assert.equal(sinceOf(h.requests[3]!), 's2');
    assert.deepEqual(h.accepted, ['new one']);
    assert.deepEqual(h.saved, ['s1', 's2']);
    assert.ok(h.requests.every((r) => r.headers?.authorization === 'Bearer {{secret:matrix_access_token}}'));
  });

  it('resumes from a stored token; a configured user id needs no whoami', async () => {
    const h = harness([sync('s9', [msg('while away')])], { userId: BOT, stored: 's8' });
    await h.runScript();
    assert.equal(sinceOf(h.requests[0]!), 's8');
    assert.deepEqual(h.accepted, ['while away']);
    assert.equal(h.since.stored, 's9');
  });

  it('a message the intake could not take keeps the token: the batch is synced again, none lost', async () => {
    const h = harness([sync('s2', [msg('one'), msg('two'), msg('three')]), sync('s2', [msg('one'), msg('two'), msg('three')])], {
      userId: BOT,
      stored: 's1',
    });
    h.failIntake('two');
    await h.runScript();
    assert.equal(sinceOf(h.requests[1]!), 's1', 'synced again from before the batch');
    assert.deepEqual(h.accepted, ['one', 'one', 'two', 'three'], 'the intake drops the repeat by event id');
    assert.deepEqual(h.saved, ['s2']);
    assert.equal(h.lines.filter((l) => l.includes('matrix sync failing')).length, 1);
    assert.equal(h.lines.filter((l) => l.includes('matrix sync recovered')).length, 1);
  });

  it('backs off on failures (honouring retry_after_ms), logging once per problem, never the token', async () => {
    const h = harness(
      [
        () => ({ status: 502, body: {} }),
        () => ({ status: 502, body: {} }),
        () => ({ status: 429, body: { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 150 } }),
        sync('s2', []),
      ],
      { userId: BOT, stored: 's1' },
    );
    await h.runScript();
    assert.equal(h.lines.filter((l) => l.includes('matrix sync failing')).length, 2, 'http_502 then rate_limited');
    assert.ok(h.lines.some((l) => l.includes('"problem":"rate_limited"')));
    assert.ok(!h.lines.join('').includes('{{secret'));
  });

  it('encrypted events get a debug line; invites are joined only with auto-join', async () => {
    const enc = msg('', { type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' } });
    const off = harness([sync('s2', [enc], { invite: ['!inv:example.org'] })], { userId: BOT, stored: 's1' });
    await off.runScript();
    assert.ok(off.lines.some((l) => l.includes('"level":20') && l.includes('E2EE is not supported')));
    assert.ok(!off.requests.some((r) => r.url.endsWith('/join')));
    assert.ok(off.lines.some((l) => l.includes('GATEWAY_MATRIX_AUTO_JOIN is off')));
    const on = harness([sync('s2', [], { invite: ['!inv:example.org'] }), () => ({ status: 200, body: { room_id: '!inv:example.org' } })], {
      userId: BOT,
      stored: 's1',
      autoJoin: true,
    });
    await on.runScript();
    const join = on.requests.find((r) => r.url.endsWith('/join'));
    assert.equal(join?.method, 'POST');
    assert.equal(join?.url, `${HS}/_matrix/client/v3/rooms/${encodeURIComponent('!inv:example.org')}/join`);
  });
});
