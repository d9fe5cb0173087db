import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sendAckedInBackground, sendUntilAcked } from './reply-ack.ts';

/** A clock that moves only when slept on (or by a send's own cost). */
function clock() {
  let t = 0;
  return { now: () => t, sleep: async (ms: number) => void (t += ms), advance: (ms: number) => void (t += ms) };
}

describe('sendUntilAcked', () => {
  it('returns at the first acknowledgement without sending again', async () => {
    const c = clock();
    let sends = 0;
    assert.equal(await sendUntilAcked(async () => void sends++, { deadlineMs: 10_000, retryMs: 500, ...c }), true);
    assert.equal(sends, 1);
  });

  it('sends again after failures (no responders, timeouts) until acknowledged', async () => {
    const c = clock();
    let sends = 0;
    const send = async () => {
      sends += 1;
      c.advance(1000); // each attempt waits for its timeout
      if (sends < 4) throw Object.assign(new Error('no responders'), { name: 'NoResponders' });
    };
    assert.equal(await sendUntilAcked(send, { deadlineMs: 30_000, retryMs: 500, ...c }), true);
    assert.equal(sends, 4);
  });

  it('gives up once the deadline passes: the gateway that waited is gone', async () => {
    const c = clock();
    let sends = 0;
    const send = async () => {
      sends += 1;
      c.advance(2000);
      throw new Error('timeout');
    };
    assert.equal(await sendUntilAcked(send, { deadlineMs: 10_000, retryMs: 500, ...c }), false);
    // An attempt every 2.5 s: at 0, 2.5, 5, 7.5 and 10 s, none starting after the deadline.
    assert.equal(sends, 5);
    assert.ok(c.now() <= 10_000 + 2000);
  });
});

describe('sendAckedInBackground', () => {
  it('resolves after the first attempt, and keeps sending in the background until acknowledged', async () => {
    let sends = 0;
    let ack!: () => void;
    const acked = new Promise<void>((r) => (ack = r));
    const send = async () => {
      sends += 1;
      if (sends < 3) throw new Error('no responders');
      ack();
    };
    const first = await sendAckedInBackground(send, { deadlineMs: 10_000, retryMs: 1, onGiveUp: () => assert.fail('gave up') });
    assert.equal(first, false, 'the first attempt failed: the caller goes on');
    await acked;
    assert.equal(sends, 3);
  });

  it('stops retrying once told the connection is closed for good, and says it gave up', async () => {
    let sends = 0;
    let gaveUp!: () => void;
    const done = new Promise<void>((r) => (gaveUp = r));
    const send = async () => {
      sends += 1;
      throw new Error('closed');
    };
    await sendAckedInBackground(send, { deadlineMs: 60_000, retryMs: 1, stopped: () => sends >= 2, onGiveUp: gaveUp });
    await done;
    assert.equal(sends, 2);
  });
});
