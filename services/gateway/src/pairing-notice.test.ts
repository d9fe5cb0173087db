import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pairingNotice } from './ingress.ts';

describe('pairingNotice', () => {
  it('gives the code, both commands the operator needs (a new user first), and how long it lasts', () => {
    const text = pairingNotice('ABCDEF23', 3_600_000);
    assert.match(text, /ABCD-EF23/);
    assert.match(text, /talon pairing approve ABCD-EF23 --user <name>/);
    assert.match(text, /talon users add <name>/);
    assert.match(text, /1 h/);
  });
});
