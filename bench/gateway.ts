// Gateway edge figures:
//   1. inbound webhooks per second accepted durably (signature verified by the vault
//      through egress, sender paired, stored in JetStream before the 200), Telegram
//      (token scheme) and Slack (HMAC), at a few concurrencies, with latency;
//   2. concurrent WebSocket connections held (authenticated) and gateway memory per
//      connection, with a liveness check over a sample of them afterwards.
// The orchestrator is not started: accepted messages stay queued in JetStream, so the
// figure is the gateway's intake, not the agent's throughput.
//   node_modules/.bin/node bench/gateway.ts [--webhooks 3000] [--connections 5000]
import { benchArgs } from './args.ts';
import { Agent, request } from 'undici';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, pairedKey, STREAMS } from '@talon/kit/subjects';
import { Pairing } from '@talon/proto';
import WebSocket from 'ws';
import { startChannelPlatform } from '../packages/testkit/src/fake-platforms.ts';
import { fmt, machine, rssMiB, summarize, table } from './lib.ts';

const { values } = benchArgs({
  options: {
    webhooks: { type: 'string', default: '3000' },
    connections: { type: 'string', default: '5000' },
    senders: { type: 'string', default: '200' },
  },
});
const WEBHOOKS = Number(values.webhooks);
const CONNECTIONS = Number(values.connections);
const SENDERS = Number(values.senders);

const cp = await startChannelPlatform({
  services: ['memory', 'vault', 'egress', 'sandbox', 'gateway'],
  env: {
    TALON_LOG_LEVEL: 'warn',
    GATEWAY_RATE_LIMIT_WEBHOOK_PER_MIN: '100000000',
    GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '100000000',
    GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '100000000',
    GATEWAY_WS_MAX_PER_ADDRESS: String(CONNECTIONS + 10),
    GATEWAY_WS_MAX_CONNECTIONS: String(CONNECTIONS + 10),
  },
});
const gwPid = cp.tp.platform.process('gateway')!.pid!;
const out: string[] = [`gateway bench on ${machine()}`];
try {
  const admin = await cp.tp.admin();
  await cp.talon(['users', 'add', 'bench']);
  // Pair the senders directly (the operator step is not what is measured).
  const pk = await new Kvm(admin).open(KV_BUCKETS.pairings);
  for (let i = 0; i < SENDERS; i++) {
    for (const [ch, account] of [
      ['telegram', String(500_000 + i)],
      ['slack', `${cp.slack.teamId}.U0B${i}`],
    ] as const) {
      await pk.put(
        pairedKey(ch, account),
        Pairing.encode({
          identity: { channel: ch, account, displayName: '' },
          userId: 'bench',
          approvedAtMs: Date.now(),
          approvedBy: 'bench',
          code: '',
          threadId: '',
        }).finish(),
      );
    }
  }
  // WebSocket connections held (first, on a fresh gateway, so its memory growth is theirs).
  const token = await cp.tp.token('ws-bench');
  const wsUrl = `${cp.gatewayUrl.replace('http', 'ws')}/v1/ws`;
  const rss0 = rssMiB(gwPid);
  const sockets: WebSocket[] = [];
  const t0 = performance.now();
  const BATCH = 200;
  for (let i = 0; i < CONNECTIONS; i += BATCH) {
    const batch = await Promise.all(
      Array.from(
        { length: Math.min(BATCH, CONNECTIONS - i) },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(wsUrl, ['talon.v1', `talon.bearer.${token}`], { origin: cp.gatewayUrl, perMessageDeflate: false });
            ws.once('message', () => resolve(ws));
            ws.once('error', reject);
          }),
      ),
    );
    sockets.push(...batch);
  }
  const openSecs = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 2000));
  const rss1 = rssMiB(gwPid);
  // Liveness: a sample answers ping.
  const sample = sockets.filter((_, i) => i % Math.max(1, Math.floor(CONNECTIONS / 200)) === 0);
  const p0 = performance.now();
  await Promise.all(
    sample.map(
      (ws) =>
        new Promise<void>((resolve) => {
          ws.once('message', () => resolve());
          ws.send(JSON.stringify({ type: 'ping' }));
        }),
    ),
  );
  const pingMs = performance.now() - p0;
  out.push(
    '',
    'WebSocket connections held (authenticated, idle; measured first on a fresh gateway):',
    table(
      [
        'connections',
        'open time s',
        'opened/s',
        'RSS before MiB',
        'RSS after MiB',
        'KiB per connection',
        `ping ${sample.length} (ms, all)`,
      ],
      [
        [
          CONNECTIONS,
          fmt(openSecs, 1),
          fmt(CONNECTIONS / openSecs, 0),
          fmt(rss0, 0),
          fmt(rss1, 0),
          fmt(((rss1 - rss0) * 1024) / CONNECTIONS, 1),
          fmt(pingMs, 0),
        ],
      ],
    ),
  );
  for (const ws of sockets) ws.terminate();

  // Warm up (and fail fast when webhooks cannot be verified).
  const probe = await cp.telegram.deliver(cp.gatewayUrl, cp.telegram.message(500_000, 'warm up'));
  if (probe.status !== 200) {
    out.push(
      '',
      `Webhooks not measured: the gateway answered ${probe.status} ${probe.text.slice(0, 200)} (is EgressService.VerifyWebhook implemented?)`,
    );
  } else await webhooks();
} finally {
  await cp.stop();
}
console.log(out.join('\n'));

async function webhooks(): Promise<void> {
  const admin = await cp.tp.admin();
  const jsm = await jetstreamManager(admin);
  const queued = async () => (await jsm.streams.info(STREAMS.inbound.name)).state.messages;

  const agent = new Agent({ connections: 128, pipelining: 1 });
  let update = 10_000_000;
  const send = {
    telegram: async (i: number) => {
      const body = JSON.stringify(cp.telegram.message(500_000 + (i % SENDERS), `bench ${i}`, { updateId: update++ }));
      const res = await request(`${cp.gatewayUrl}/hooks/telegram`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': cp.telegram.webhookSecret },
        body,
      });
      await res.body.text();
      return res.statusCode;
    },
    slack: async (i: number) => {
      const raw = JSON.stringify(
        cp.slack.messageEvent(`U0B${i % SENDERS}`, 'D0BENCH', `bench ${i}`, { ts: `1700000000.${String(i).padStart(6, '0')}` }),
      );
      const ts = Math.floor(Date.now() / 1000);
      const res = await request(`${cp.gatewayUrl}/hooks/slack`, {
        method: 'POST',
        dispatcher: agent,
        headers: {
          'content-type': 'application/json',
          'x-slack-request-timestamp': String(ts),
          'x-slack-signature': cp.slack.sign(ts, raw),
        },
        body: raw,
      });
      await res.body.text();
      return res.statusCode;
    },
  };
  const rows: Array<Array<string | number>> = [];
  let offset = 0;
  for (const ch of ['telegram', 'slack'] as const) {
    for (const conc of [1, 16, 64]) {
      const n = conc === 1 ? Math.min(500, WEBHOOKS) : WEBHOOKS;
      const before = await queued();
      const lat: number[] = [];
      let next = 0;
      let failed = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: conc }, async () => {
          while (next < n) {
            const i = offset + next++;
            const s = performance.now();
            const status = await send[ch](i);
            if (status !== 200) failed += 1;
            lat.push(performance.now() - s);
          }
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      offset += n;
      const stored = (await queued()) - before;
      const st = summarize(lat);
      rows.push([ch, conc, n, stored, failed, fmt(stored / secs, 0), fmt(st.p50), fmt(st.p99), fmt(rssMiB(gwPid), 0)]);
    }
  }
  out.push('', 'Inbound webhooks accepted durably (JetStream-acked before 200; signature verified through egress/vault):');
  out.push(table(['channel', 'concurrency', 'sent', 'stored', 'non-200', 'accepted/s', 'p50 ms', 'p99 ms', 'gateway RSS MiB'], rows));
  await agent.close();
  await jsm.streams.purge(STREAMS.inbound.name);
}
