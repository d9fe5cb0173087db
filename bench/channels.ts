// Outbound-connected channels: inbound messages accepted per second by Telegram long
// polling from the local fake Bot API (getUpdates through egress, each update paired,
// redacted and stored in JetStream, then confirmed by the next offset), with `c` senders
// each writing their next message as soon as the previous one was confirmed, at
// concurrency 1 and 16. The orchestrator is not started: accepted messages stay queued, so
// the figure is the gateway's intake, not the agent's throughput.
//
// Then the WebSocket channels, from their local fakes through egress: Discord by the Gateway
// (MESSAGE_CREATE dispatches), Slack by Socket Mode (events_api envelopes) and Mattermost by
// its WebSocket API (`posted` events). Concurrency there is the number of messages in flight
// from the fake: `c` senders, each sending its next message as soon as the previous one was
// accepted, so at most `c` messages are sent and not yet accepted. Accepted: the message was
// published to TALON_INBOUND (seen on talon.inbound.<channel>, the publish the gateway awaits
// the stream's acknowledgement of), and after each level the stream is checked to hold every
// one. Each runner handles its connection's frames one at a time, in order (Discord commits a
// sequence number, Slack acknowledges an envelope, only after the message was queued), so
// concurrency mostly shows how much the fake's sending overlaps the intake.
//   node_modules/.bin/node bench/channels.ts [--messages 1000] [--concurrency 1,16]
//     [--channels telegram,discord,slack,mattermost]
import { benchArgs } from './args.ts';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, pairedKey, STREAMS } from '@talon/kit/subjects';
import { InboundMessage, Pairing } from '@talon/proto';
import { startChannelPlatform } from '../packages/testkit/src/fake-platforms.ts';
import { mattermostId, startFakeMattermost } from '../packages/testkit/src/fake-mattermost.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({
  options: {
    messages: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1,16' },
    channels: { type: 'string', default: 'telegram,discord,slack,mattermost' },
  },
});
const CHANNELS = new Set(values.channels.split(','));
const MESSAGES = Number(values.messages);
const LEVELS = values.concurrency.split(',').map(Number);
const SENDERS = Math.max(...LEVELS);

const mm = CHANNELS.has('mattermost') ? await startFakeMattermost() : undefined;
const cp = await startChannelPlatform({
  services: ['memory', 'vault', 'egress', 'sandbox', 'gateway'],
  discordGateway: CHANNELS.has('discord'),
  slackSocket: CHANNELS.has('slack'),
  ...(mm
    ? { extraFakes: [mm], extraSecrets: [['mattermost_bot_token', mm.token, ['--host', `127.0.0.1:${mm.port}`, '--bearer']]] as const }
    : {}),
  env: {
    TALON_LOG_LEVEL: 'warn',
    GATEWAY_TELEGRAM_MODE: 'polling',
    GATEWAY_TELEGRAM_POLL_TIMEOUT_S: '30',
    ...(mm ? { TALON_CHANNELS: 'telegram,slack,discord,webhook,mattermost', TALON_MATTERMOST_URL: mm.url } : {}),
  },
});
const out: string[] = [];
try {
  await cp.talon(['users', 'add', 'bench']);
  // Pair the senders directly (the operator step is not what is measured).
  const admin = await cp.tp.admin();
  const pk = await new Kvm(admin).open(KV_BUCKETS.pairings);
  const pair = async (channel: string, account: string) =>
    pk.put(
      pairedKey(channel, account),
      Pairing.encode({
        identity: { channel, account, displayName: '' },
        userId: 'bench',
        approvedAtMs: Date.now(),
        approvedBy: 'bench',
        code: '',
        threadId: '',
      }).finish(),
    );
  const jsm = await jetstreamManager(admin);
  const queuedOn = async (channel: string) =>
    (await jsm.streams.info(STREAMS.inbound.name, { subjects_filter: `talon.inbound.${channel}` })).state.subjects?.[
      `talon.inbound.${channel}`
    ] ?? 0;

  if (CHANNELS.has('telegram')) {
    out.push(`channels bench (Telegram long polling through egress) on ${machine()}`);
    for (let i = 0; i < SENDERS; i++) await pair('telegram', String(700_000 + i));
    // Warm up: the first poll, the egress connection, the vault's token.
    const warm = cp.telegram.message(700_000, 'warm up');
    cp.telegram.queue(warm);
    await cp.telegram.confirmed(warm.update_id as number);

    const queued = () => queuedOn('telegram');
    const rows: Array<Array<string | number>> = [];
    for (const c of LEVELS) {
      const before = await queued();
      const latencies: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: c }, async (_, w) => {
          while (next < MESSAGES) {
            const n = next++;
            const u = cp.telegram.message(700_000 + w, `bench ${c} ${n}`);
            const s = performance.now();
            cp.telegram.queue(u);
            await cp.telegram.confirmed(u.update_id as number);
            latencies.push(performance.now() - s);
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      const stored = (await queued()) - before;
      if (stored !== MESSAGES) throw new Error(`concurrency ${c}: ${stored} of ${MESSAGES} messages reached TALON_INBOUND`);
      const l = summarize(latencies.sort((a, b) => a - b));
      rows.push([c, MESSAGES, fmt(MESSAGES / seconds, 0), fmt(l.p50, 1), fmt(l.p99, 1), cp.telegram.polls.length]);
    }
    out.push(table(['concurrency', 'messages', 'accepted/s', 'p50 ms', 'p99 ms', 'polls so far'], rows));
    out.push('accepted: stored in TALON_INBOUND and confirmed to the platform by the next getUpdates offset');
  }

  // The WebSocket channels: each message's acceptance seen on its inbound subject (by its unique text).
  const waiting = new Map<string, () => void>();
  const sub = admin.subscribe('talon.inbound.>', {
    callback: (err, m) => {
      if (err) return;
      const inbound = InboundMessage.decode(m.data);
      const key = `${inbound.conversation?.channel}|${inbound.messages.at(-1)?.content ?? ''}`;
      waiting.get(key)?.();
      waiting.delete(key);
    },
  });
  await admin.flush();
  /** Sends with `send` and resolves once the message reached talon.inbound.<channel>; `resendMs`: send again until then (warm-up). */
  const accepted = (channel: string, text: string, send: () => void, resendMs = 0): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const timers: NodeJS.Timeout[] = [];
      const done = () => (timers.forEach(clearTimeout), resolve());
      waiting.set(`${channel}|${text}`, done);
      timers.push(
        setTimeout(() => {
          waiting.delete(`${channel}|${text}`);
          timers.forEach(clearTimeout);
          reject(new Error(`${channel}: "${text}" was not accepted within 60 s`));
        }, 60_000),
      );
      if (resendMs > 0) {
        const again = () => (send(), timers.push(setTimeout(again, resendMs)));
        again();
      } else send();
    });

  type WsChannel = { name: string; label: string; warm: () => Promise<void>; send: (sender: number, text: string) => void };
  const wsChannels: WsChannel[] = [];
  const gw = cp.discordGateway;
  if (gw) {
    const author = (i: number) => `7000000000000${String(i).padStart(5, '0')}`;
    let id = 0n;
    const send = (i: number, text: string) =>
      gw.message({ id: String(910_000_000_000_000_000n + ++id), channelId: '800000000000000001', authorId: author(i), content: text });
    for (let i = 0; i < SENDERS; i++) await pair('discord', author(i));
    wsChannels.push({
      name: 'discord',
      label: 'Discord Gateway',
      warm: async () => {
        await gw.ready(1);
        await accepted('discord', 'warm up', () => send(0, 'warm up'));
      },
      send,
    });
  }
  if (CHANNELS.has('slack')) {
    const user = (i: number) => `UB${String(i).padStart(8, '0')}`;
    const send = (i: number, text: string) => void cp.slack.socketMessage(user(i), `D${user(i)}`, text, 'im');
    for (let i = 0; i < SENDERS; i++) await pair('slack', `${cp.slack.teamId}.${user(i)}`);
    wsChannels.push({
      name: 'slack',
      label: 'Slack Socket Mode',
      // Sent again until the socket is open (an envelope on no socket is lost).
      warm: () => accepted('slack', 'warm up', () => send(0, 'warm up'), 1000),
      send,
    });
  }
  if (mm) {
    const users = Array.from({ length: SENDERS }, () => mattermostId());
    const channelId = mattermostId();
    const send = (i: number, text: string) => void mm.post({ userId: users[i]!, channelId, message: text });
    for (const u of users) await pair('mattermost', u);
    wsChannels.push({
      name: 'mattermost',
      label: 'Mattermost WebSocket',
      warm: () => accepted('mattermost', 'warm up', () => send(0, 'warm up'), 1000),
      send,
    });
  }
  if (wsChannels.length > 0) {
    if (out.length > 0) out.push('');
    out.push(`channels bench (WebSocket channels through egress) on ${machine()}`);
    const rows: Array<Array<string | number>> = [];
    for (const ch of wsChannels) {
      await ch.warm();
      for (const c of LEVELS) {
        const before = await queuedOn(ch.name);
        const latencies: number[] = [];
        let next = 0;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: c }, async (_, w) => {
            while (next < MESSAGES) {
              const text = `bench ${c} ${next++}`;
              const s = performance.now();
              await accepted(ch.name, text, () => ch.send(w, text));
              latencies.push(performance.now() - s);
            }
          }),
        );
        const seconds = (performance.now() - t0) / 1000;
        const stored = (await queuedOn(ch.name)) - before;
        if (stored !== MESSAGES) throw new Error(`${ch.name} at concurrency ${c}: ${stored} of ${MESSAGES} messages reached TALON_INBOUND`);
        const l = summarize(latencies.sort((a, b) => a - b));
        rows.push([ch.label, c, MESSAGES, fmt(MESSAGES / seconds, 0), fmt(l.p50, 1), fmt(l.p99, 1)]);
      }
    }
    out.push(table(['channel', 'concurrency', 'messages', 'accepted/s', 'p50 ms', 'p99 ms'], rows));
    out.push(
      'concurrency: messages in flight from the fake (sent, not yet accepted); accepted: published to TALON_INBOUND, the stream checked to hold them all',
    );
  }
  sub.unsubscribe();
} finally {
  await cp.stop();
  await mm?.close();
}
console.log(out.join('\n'));
