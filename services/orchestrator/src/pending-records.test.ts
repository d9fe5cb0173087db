import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PendingRecords, withRetries } from './pending-records.ts';

const conv = (threadId: string) => ({ userId: 'u1', channel: 'api', threadId });

describe('PendingRecords', () => {
  it('makes the next turn of a conversation wait for the held record, and only that conversation', async () => {
    const p = new PendingRecords();
    const hold = p.hold(conv('a'));
    let waited = false;
    const next = p.settled(conv('a')).then(() => (waited = true));
    let other = false;
    await p.settled(conv('b')).then(() => (other = true));
    assert.equal(other, true, 'another conversation does not wait');
    await p.settled(undefined);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(waited, false, 'still recording');
    hold.release();
    await next;
    assert.equal(waited, true);
    assert.equal(p.size, 0, 'forgotten once released');
  });

  it('waits for every overlapping hold of a conversation; releasing twice is harmless', async () => {
    const p = new PendingRecords();
    const first = p.hold(conv('a'));
    const second = p.hold(conv('a'));
    let waited = false;
    const next = p.settled(conv('a')).then(() => (waited = true));
    first.release();
    first.release();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(waited, false, 'the second is still being written');
    assert.equal(p.size, 1);
    second.release();
    await next;
    assert.equal(p.size, 0);
  });

  it('a turn without a conversation neither holds nor waits', async () => {
    const p = new PendingRecords();
    p.hold(undefined).release();
    assert.equal(p.size, 0);
    await p.settled(undefined);
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
