import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPorts, type RunInfo } from './endpoints.ts';
import { processAlive, readRunState, removeRunFile, runFilePath, writeRunFile } from './run-file.ts';

describe('TALON_HOME/run/platform.json', () => {
  const home = mkdtempSync(join(tmpdir(), 'talon-run-file-'));
  mkdirSync(join(home, 'run'));
  const info: RunInfo = { pid: process.pid, natsUrl: 'nats://127.0.0.1:41001', ports: { ...defaultPorts({}), nats: 41001 } };

  it('is absent until written, then names the running platform (owner-only, no temporary left)', () => {
    assert.deepEqual(readRunState(home), { kind: 'absent' });
    writeRunFile(home, info);
    assert.deepEqual(readRunState(home), { kind: 'running', info });
    assert.equal(statSync(runFilePath(home)).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(home, 'run')), ['platform.json']);
  });

  it('is stale once the process that wrote it is gone', () => {
    writeRunFile(home, { ...info, pid: 123_456 });
    assert.deepEqual(
      readRunState(home, () => false),
      { kind: 'stale', pid: 123_456 },
    );
  });

  it('is removed only by the process that wrote it', () => {
    writeRunFile(home, { ...info, pid: process.ppid });
    removeRunFile(home);
    assert.equal(readRunState(home).kind, 'running', 'another supervisor’s file stays');
    writeRunFile(home, info);
    removeRunFile(home);
    assert.deepEqual(readRunState(home), { kind: 'absent' });
    writeFileSync(runFilePath(home), 'not json');
    assert.deepEqual(readRunState(home), { kind: 'absent' });
    rmSync(home, { recursive: true, force: true });
  });

  it('tells a live process from a dead one', () => {
    assert.equal(processAlive(process.pid), true);
    assert.equal(processAlive(2 ** 22 + 1), false);
  });
});
