import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StateWatch, type VaultStateView } from './watch.ts';

function fakeState(initial: VaultStateView) {
  const s = { ...initial, reads: 0, fail: false };
  const watch = new StateWatch(
    async () => {
      s.reads += 1;
      if (s.fail) throw new Error('database away');
      return { epoch: s.epoch, sealed: s.sealed };
    },
    () => s.sealed,
  );
  return { s, watch };
}

describe('StateWatch', () => {
  it('sends the state on subscribe and again only when epoch or seal state moved', async () => {
    const { s, watch } = fakeState({ epoch: 3, sealed: false });
    const got: VaultStateView[] = [];
    const sub = watch.subscribe((v) => got.push(v));
    await sub.done;
    assert.deepEqual(got, [{ epoch: 3, sealed: false }]);
    await watch.changed();
    await watch.changed();
    assert.equal(got.length, 1, 'nothing moved: nothing sent');
    s.epoch = 4;
    await watch.changed();
    s.sealed = true;
    await watch.changed();
    assert.deepEqual(got.slice(1), [
      { epoch: 4, sealed: false },
      { epoch: 4, sealed: true },
    ]);
    sub.unsubscribe();
    s.epoch = 5;
    const reads = s.reads;
    await watch.changed();
    assert.equal(got.length, 3);
    assert.equal(s.reads, reads, 'nobody watching: nothing is read');
  });

  it('coalesces a burst of changes into at most one more read', async () => {
    const { s, watch } = fakeState({ epoch: 1, sealed: false });
    const got: VaultStateView[] = [];
    await watch.subscribe((v) => got.push(v)).done;
    const reads = s.reads;
    s.epoch = 2;
    await Promise.all([watch.changed(), watch.changed(), watch.changed(), watch.changed()]);
    assert.ok(s.reads - reads <= 2, `${s.reads - reads} reads`);
    assert.deepEqual(got.at(-1), { epoch: 2, sealed: false });
    assert.equal(got.length, 2);
  });

  it('a new subscriber gets the current state even while another read runs; the database away still reports a seal', async () => {
    const { s, watch } = fakeState({ epoch: 7, sealed: false });
    const a: VaultStateView[] = [];
    const b: VaultStateView[] = [];
    const first = watch.subscribe((v) => a.push(v));
    const second = watch.subscribe((v) => b.push(v));
    await Promise.all([first.done, second.done]);
    assert.deepEqual(a, [{ epoch: 7, sealed: false }]);
    assert.deepEqual(b, [{ epoch: 7, sealed: false }]);
    s.fail = true;
    s.sealed = true;
    await watch.changed();
    assert.deepEqual(a.at(-1), { epoch: 7, sealed: true });
  });
});
