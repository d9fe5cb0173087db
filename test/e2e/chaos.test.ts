// The short chaos run of `npm test` (the long one is `npm run chaos`): one of each
// process as under `talon up`, every service, nats-server and the database process killed
// with SIGKILL in turn (or, on the PostgreSQL server, every connection dropped), the vault
// sealed and unsealed — while turns keep coming. Every turn must be answered exactly once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Chaos, chaosLine, testDatabaseKind, type ChaosOptions } from '@talon/testkit';

async function assertExactlyOnce(opts: ChaosOptions, faults: number): Promise<void> {
  // Its progress goes to the test's output: a failure on a busy CI machine says which fault it followed.
  const report = await new Chaos({ ...opts, log: (line) => console.log(`chaos: ${line}`) }).run();
  const line = chaosLine(report);
  assert.ok(report.faults.length >= faults, `every fault ran: ${report.faults.join('; ')}`);
  assert.ok(report.turns >= opts.turns, line);
  assert.deepEqual(report.problems, [], line);
  assert.equal(report.lost, 0, line);
  assert.equal(report.duplicated, 0, line);
  assert.equal(report.answered, report.turns, line);
}

describe('chaos, short', () => {
  it('answers every turn exactly once while processes die', async () => {
    await assertExactlyOnce({ turns: 40, concurrency: 4, mode: 'single', calmTurns: 8 }, 8);
  });

  it('does the same on a 3-node NATS cluster with two of every service', async (t) => {
    // The cluster shares one PostgreSQL server (the embedded database serves one platform process).
    if (testDatabaseKind() !== 'native') {
      t.skip('runs against the PostgreSQL server (TALON_TEST_DATABASE=native)');
      return;
    }
    await assertExactlyOnce({ turns: 40, concurrency: 4, mode: 'cluster', calmTurns: 8 }, 8);
  });
});
