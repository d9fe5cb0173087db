// Outbound-connected channels: inbound messages accepted per second by Telegram long
// polling from the local fake Bot API (getUpdates through egress, each update paired,
// redacted and stored in JetStream, then confirmed by the next offset), with `c` senders
// each writing their next message as soon as the previous one was confirmed, at
// concurrency 1 and 16. The orchestrator is not started: accepted messages stay queued, so
// the figure is the gateway's intake, not the agent's throughput.
//   node_modules/.bin/node bench/channels.ts [--messages 1000] [--concurrency 1,16]
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, pairedKey, STREAMS } from '@talon/kit/subjects';
import { Pairing } from '@talon/proto';
import { startChannelPlatform } from '../packages/testkit/src/fake-platforms.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1,16' },
  },
});
const MESSAGES = Number(values.messages);
const LEVELS = values.concurrency.split(',').map(Number);
const SENDERS = Math.max(...LEVELS);

const cp = await startChannelPlatform({
  services: ['memory', 'vault', 'egress', 'sandbox', 'gateway'],
  env: {
    TALON_LOG_LEVEL: 'warn',
    GATEWAY_TELEGRAM_MODE: 'polling',
    GATEWAY_TELEGRAM_POLL_TIMEOUT_S: '30',
  },
});
const out: string[] = [`channels bench (Telegram long polling through egress) on ${machine()}`];
try {
  await cp.talon(['users', 'add', 'bench']);
  // Pair the senders directly (the operator step is not what is measured).
  const admin = await cp.tp.admin();
  const pk = await new Kvm(admin).open(KV_BUCKETS.pairings);
  for (let i = 0; i < SENDERS; i++) {
    const account = String(700_000 + i);
    await pk.put(
      pairedKey('telegram', account),
      Pairing.encode({
        identity: { channel: 'telegram', account, displayName: '' },
        userId: 'bench',
        approvedAtMs: Date.now(),
        approvedBy: 'bench',
        code: '',
        threadId: '',
      }).finish(),
    );
  }
  // Warm up: the first poll, the egress connection, the vault's token.
  const warm = cp.telegram.message(700_000, 'warm up');
  cp.telegram.queue(warm);
  await cp.telegram.confirmed(warm.update_id as number);

  const jsm = await jetstreamManager(admin);
  const queued = async () =>
    (await jsm.streams.info(STREAMS.inbound.name, { subjects_filter: 'talon.inbound.telegram' })).state.subjects?.[
      'talon.inbound.telegram'
    ] ?? 0;
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
} finally {
  await cp.stop();
}
console.log(out.join('\n'));
