import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PendingRecords, withRetries } from './pending-records.ts';

const conv = (threadId: string) => ({ userId: 'u1', channel: 'api', threadId });

function deferred() {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

describe('PendingRecords', () => {
  it('makes the next turn of a conversation wait for the record in flight, and only that conversation', async () => {
    const p = new PendingRecords();
    const d = deferred();
    const run = p.track(conv('a'), () => d.promise);
    let waited = false;
    const next = p.settled(conv('a')).then(() => (waited = true));
    let other = false;
    await p.settled(conv('b')).then(() => (other = true));
    assert.equal(other, true, 'another conversation does not wait');
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(waited, false, 'still recording');
    d.resolve();
    await run;
    await next;
    assert.equal(waited, true);
    assert.equal(p.size, 0, 'forgotten once settled');
  });

  it('a failed record releases the waiters and still fails its own caller', async () => {
    const p = new PendingRecords();
    const d = deferred();
    const run = p.track(conv('a'), () => d.promise);
    d.reject(new Error('memory down'));
    await assert.rejects(run, /memory down/);
    await p.settled(conv('a'));
    assert.equal(p.size, 0);
  });

  it('keeps the newest record of a conversation when two overlap', async () => {
    const p = new PendingRecords();
    const first = deferred();
    const second = deferred();
    void p.track(conv('a'), () => first.promise);
    void p.track(conv('a'), () => second.promise);
    first.resolve();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(p.size, 1, 'the second is still being written');
    second.resolve();
    await p.settled(conv('a'));
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(p.size, 0);
  });
});

describe('withRetries', () => {
  it('retries until the write succeeds', async () => {
    let calls = 0;
    await withRetries(
      async () => {
        if (++calls < 3) throw new Error('busy');
      },
      4,
      1,
    );
    assert.equal(calls, 3);
  });

  it('gives up after the last attempt with the last error', async () => {
    let calls = 0;
    await assert.rejects(
      withRetries(
        async () => {
          calls++;
          throw new Error(`fail ${calls}`);
        },
        3,
        1,
      ),
      /fail 3/,
    );
    assert.equal(calls, 3);
  });
});
