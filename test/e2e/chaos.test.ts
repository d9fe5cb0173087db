// The short chaos run of `npm test` (the long one is `npm run chaos`): one of each
// process as under `talon up`, every service, nats-server and the database process killed
// with SIGKILL in turn (or, on the PostgreSQL server, every connection dropped), the vault
// sealed and unsealed — while turns keep coming. Every turn must be answered exactly once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Chaos, chaosLine } from '@talon/testkit';

describe('chaos, short', () => {
  it('answers every turn exactly once while processes die', async () => {
    const report = await new Chaos({ turns: 40, concurrency: 4, mode: 'single', calmTurns: 8 }).run();
    const line = chaosLine(report);
    assert.ok(report.faults.length >= 8, `every fault ran: ${report.faults.join('; ')}`);
    assert.ok(report.turns >= 40, line);
    assert.deepEqual(report.problems, [], line);
    assert.equal(report.lost, 0, line);
    assert.equal(report.duplicated, 0, line);
    assert.equal(report.answered, report.turns, line);
  });
});
