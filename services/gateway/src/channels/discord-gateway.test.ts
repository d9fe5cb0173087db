import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeSession,
  DISCORD_INTENTS,
  DiscordGatewaySession,
  discordMessage,
  discordSessionKey,
  encodeSession,
  SESSION_MAX_AGE_MS,
  type GatewayAction,
} from './discord-gateway.ts';

const URL_ = 'wss://gateway.discord.test';
const session = () => new DiscordGatewaySession({ tokenSecret: 'discord_gateway_token', random: () => 0.5 });
const sends = (a: GatewayAction[]) => a.flatMap((x) => (x.kind === 'send' ? [x.payload] : []));
const msg = (id: string, extra: Record<string, unknown> = {}) => ({
  op: 0,
  t: 'MESSAGE_CREATE',
  s: Number(id),
  d: { id, channel_id: '200', type: 0, content: `hi ${id}`, author: { id: '300', username: 'alice' }, ...extra },
});

describe('Discord Gateway session', () => {
  it('answers HELLO with heartbeats and an IDENTIFY carrying only the token placeholder', () => {
    const s = session();
    assert.equal(s.connectUrl(URL_, false), `${URL_}/?v=10&encoding=json`);
    const { actions } = s.onPayload({ op: 10, d: { heartbeat_interval: 40_000 } });
    assert.deepEqual(actions[0], { kind: 'heartbeat', everyMs: 40_000, firstMs: 20_000 });
    assert.deepEqual(sends(actions), [
      {
        op: 2,
        d: {
          token: '{{secret:discord_gateway_token}}',
          intents: DISCORD_INTENTS,
          properties: { os: 'linux', browser: 'talon', device: 'talon' },
        },
      },
    ]);
  });

  it('reports the last committed sequence in heartbeats, and reconnects when an ACK is missing', () => {
    const s = session();
    s.onPayload({ op: 10, d: { heartbeat_interval: 1000 } });
    const r = s.onPayload(msg('7'));
    assert.equal(r.seq, 7);
    assert.deepEqual(sends(s.heartbeatDue()), [{ op: 1, d: null }], 'not committed yet');
    s.onPayload({ op: 11 });
    s.commit(7);
    assert.deepEqual(sends(s.heartbeatDue()), [{ op: 1, d: 7 }]);
    assert.deepEqual(s.heartbeatDue(), [{ kind: 'reconnect', resume: true, reason: 'no heartbeat ACK (zombied connection)' }]);
  });

  it('resumes at the resume URL with session and sequence after READY', () => {
    const s = session();
    s.onPayload({ op: 10, d: { heartbeat_interval: 1000 } });
    s.onPayload({
      op: 0,
      t: 'READY',
      s: 1,
      d: { session_id: 'abc', resume_gateway_url: 'wss://resume.discord.test', user: { id: '999' } },
    });
    s.commit(1);
    s.commit(5);
    s.commit(3);
    assert.deepEqual(s.onPayload({ op: 7 }).actions, [{ kind: 'reconnect', resume: true, reason: 'Discord asked for a reconnect' }]);
    assert.equal(s.connectUrl(URL_, true), 'wss://resume.discord.test/?v=10&encoding=json');
    assert.deepEqual(sends(s.onPayload({ op: 10, d: { heartbeat_interval: 1000 } }).actions), [
      { op: 6, d: { token: '{{secret:discord_gateway_token}}', session_id: 'abc', seq: 5 } },
    ]);
  });

  it('identifies afresh after a non-resumable invalid session or close code', () => {
    const s = session();
    s.onPayload({ op: 0, t: 'READY', s: 1, d: { session_id: 'abc', resume_gateway_url: 'wss://resume.discord.test' } });
    s.commit(1);
    assert.deepEqual(s.onPayload({ op: 9, d: false }).actions, [{ kind: 'reconnect', resume: false, reason: 'invalid session' }]);
    assert.equal(s.connectUrl(URL_, true), `${URL_}/?v=10&encoding=json`, 'nothing left to resume');
    assert.equal(sends(s.onPayload({ op: 10, d: { heartbeat_interval: 1000 } }).actions)[0]!.op, 2);
    assert.deepEqual(s.onClose(4009), [{ kind: 'reconnect', resume: false, reason: 'closed with 4009 (session cannot be resumed)' }]);
    assert.deepEqual(s.onClose(1001), [{ kind: 'reconnect', resume: true, reason: 'closed with 1001' }]);
  });

  it('stops for good on close codes only the operator can fix, saying what to do', () => {
    const [a] = session().onClose(4014);
    assert.equal(a!.kind, 'fatal');
    assert.match((a as { reason: string }).reason, /MESSAGE CONTENT intent/);
    assert.equal(session().onClose(4004)[0]!.kind, 'fatal');
  });

  it('turns user messages into events and ignores bots, itself, system messages and empty content', () => {
    const s = session();
    s.onPayload({ op: 0, t: 'READY', s: 1, d: { session_id: 'x', user: { id: '300' } } });
    assert.deepEqual(s.onPayload(msg('8')).actions, [], 'its own message (READY named it)');
    const other = session();
    assert.deepEqual(other.onPayload(msg('9')).actions, [
      {
        kind: 'message',
        event: { channel: 'discord', dedupeId: 'discord:9', account: '300', displayName: 'alice', threadId: '200', text: 'hi 9' },
      },
    ]);
    const d = msg('10').d;
    assert.equal(discordMessage({ ...d, author: { id: '301', bot: true } }), undefined);
    assert.equal(discordMessage({ ...d, type: 7 }), undefined, 'a join');
    assert.equal(discordMessage({ ...d, content: '  ' }), undefined);
    assert.equal(discordMessage({ ...d, channel_id: '../x' }), undefined);
    assert.equal(discordMessage({ ...d, type: 19 })?.text, 'hi 10', 'a reply is a message');
  });

  it('keeps a session for a later process: saved after READY and commits, restored into a RESUME on the resume URL', () => {
    const s = session();
    assert.equal(s.saved(), undefined, 'nothing before READY');
    s.connectUrl(URL_, false);
    s.onPayload({
      op: 0,
      t: 'READY',
      s: 1,
      d: { session_id: 'abc', resume_gateway_url: 'wss://us-east.discord.test', user: { id: '300' } },
    });
    s.commit(1);
    s.commit(5);
    const saved = s.saved()!;
    assert.deepEqual(saved, { sessionId: 'abc', resumeUrl: 'wss://us-east.discord.test', seq: 5, selfId: '300' });
    const later = session();
    later.restore(decodeSession(encodeSession(saved), 1000, 2000)!);
    assert.equal(later.connectUrl(URL_, true), 'wss://us-east.discord.test/?v=10&encoding=json');
    assert.deepEqual(sends(later.onPayload({ op: 10, d: { heartbeat_interval: 1000 } }).actions), [
      { op: 6, d: { token: '{{secret:discord_gateway_token}}', session_id: 'abc', seq: 5 } },
    ]);
    assert.deepEqual(later.onPayload(msg('8')).actions, [], 'its own id came with the session');
    // Discord refuses the resume: the session is forgotten (the store deletes it) and the next connect identifies.
    assert.deepEqual(later.onPayload({ op: 9, d: false }).actions, [{ kind: 'reconnect', resume: false, reason: 'invalid session' }]);
    assert.equal(later.saved(), undefined);
    assert.equal(later.connectUrl(URL_, false), `${URL_}/?v=10&encoding=json`);
    assert.equal(discordSessionKey('discord_gateway_token'), 'discord.session.discord_gateway_token');
  });

  it('does not trust a stored session that is old, malformed or points anywhere but a WebSocket URL', () => {
    const ok = { sessionId: 'abc', resumeUrl: 'wss://us-east.discord.test', seq: 5 };
    assert.deepEqual(decodeSession(encodeSession(ok), 0, SESSION_MAX_AGE_MS), ok);
    assert.equal(decodeSession(encodeSession(ok), 0, SESSION_MAX_AGE_MS + 1), undefined, 'too old to resume');
    assert.equal(decodeSession(undefined, 0, 0), undefined);
    assert.equal(decodeSession(new TextEncoder().encode('{nope'), 0, 0), undefined);
    assert.equal(decodeSession(encodeSession({ ...ok, seq: -1 }), 0, 0), undefined);
    assert.equal(decodeSession(encodeSession({ ...ok, seq: 1.5 }), 0, 0), undefined);
    assert.equal(decodeSession(encodeSession({ ...ok, resumeUrl: 'https://evil.test' }), 0, 0), undefined);
    assert.equal(decodeSession(encodeSession({ ...ok, resumeUrl: 'not a url' }), 0, 0), undefined);
    assert.equal(decodeSession(encodeSession({ ...ok, sessionId: '' }), 0, 0), undefined);
    const s = session();
    s.onPayload({ op: 0, t: 'READY', s: 1, d: { session_id: 'x', resume_gateway_url: 'http://plain.test' } });
    s.commit(1);
    assert.equal(s.saved(), undefined, 'a READY without a usable resume URL is not kept');
  });

  it('ignores what is not a payload', () => {
    assert.deepEqual(session().onPayload('nope').actions, []);
    assert.deepEqual(session().onPayload({ op: 0, t: 'TYPING_START', s: 4, d: {} }), { actions: [], seq: 4 });
  });
});
