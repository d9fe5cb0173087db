// Routine firing jitter with two orchestrators: a routine due every second fires N
// times; for each slot, how late its turn was queued (actual − scheduled: the claim in
// NATS KV, the prompt's redaction through egress and the JetStream publish), read from
// the orchestrators' "routines: fired" log lines. Also counts slots fired twice (must
// be 0) and slots left out between the first and the last.
//   npm run bench:routines [-- --firings 100]
import { benchArgs } from './args.ts';
import { MissedRunPolicy } from '@talon/proto';
import { Users } from '@talon/records/identity';
import { Routines } from '@talon/records/routines';
import { startTestPlatform } from '@talon/testkit';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({ options: { firings: { type: 'string', default: '100' } } });
const FIRINGS = Number(values.firings);
if (!Number.isInteger(FIRINGS) || FIRINGS < 2) throw new Error('--firings must be a whole number of at least 2');

interface Fired {
  slot: string;
  late_ms: number;
}

console.log(`bench:routines on ${machine()}; ${FIRINGS} firings of a routine due every second, 2 orchestrators`);
const tp = await startTestPlatform({ replicas: { orchestrator: 2 }, env: { TALON_LOG_LEVEL: 'info' } });
try {
  const nc = await tp.admin();
  await (await new Users(nc).open()).ensure('bench');
  const routines = await new Routines(nc).open();
  const now = Date.now();
  await routines.create({
    name: 'jitter',
    cron: '* * * * * *',
    timeZone: 'UTC',
    prompt: 'bench routine',
    userId: 'bench',
    trigger: '',
    heartbeat: false,
    checklist: '',
    deliver: 'web',
    missed: MissedRunPolicy.MISSED_RUN_POLICY_SKIP,
    paused: false,
    createdAtMs: now,
    updatedAtMs: now,
    activeSinceMs: now,
    createdBy: 'bench',
  });
  const fired = (): Fired[] =>
    ['orchestrator', 'orchestrator-2'].flatMap((i) =>
      tp
        .log(i)
        .split('\n')
        .filter((l) => l.includes('"routines: fired"'))
        .map((l) => JSON.parse(l) as Fired),
    );
  await tp.until(`${FIRINGS} firings`, () => fired().length >= FIRINGS || undefined, FIRINGS * 1000 + 60_000);
  const cur = await routines.get('jitter');
  if (cur) await routines.update({ ...cur.routine, paused: true }, cur.revision);

  const all = fired();
  const bySlot = new Map<string, number>();
  for (const f of all) bySlot.set(f.slot, (bySlot.get(f.slot) ?? 0) + 1);
  const slots = [...bySlot.keys()].map((s) => Date.parse(s)).sort((a, b) => a - b);
  const missing = slots.length > 0 ? (slots.at(-1)! - slots[0]!) / 1000 + 1 - slots.length : 0;
  const twice = [...bySlot.values()].filter((n) => n > 1).length;
  const s = summarize(all.map((f) => f.late_ms));
  const perReplica = ['orchestrator', 'orchestrator-2'].map((i) => tp.log(i).split('"routines: fired"').length - 1);
  console.log(
    `\n${table(
      ['firings', 'p50 ms', 'p99 ms', 'max ms', 'fired twice', 'slots left out', 'fired by replica 1 / 2'],
      [[all.length, fmt(s.p50, 0), fmt(s.p99, 0), fmt(s.max, 0), twice, missing, perReplica.join(' / ')]],
    )}`,
  );
  console.log('\nActual − scheduled: when the turn was queued on TALON_INBOUND (after the KV claim and the redaction round trip).');
} finally {
  await tp.stop();
}
