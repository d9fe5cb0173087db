import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { upgradeTarget } from './websocket.ts';

describe('upgradeTarget', () => {
  it('maps absolute ws/wss targets to the http/https the policy speaks', () => {
    assert.equal(upgradeTarget('wss://gateway.discord.gg/?v=10', undefined, undefined), 'https://gateway.discord.gg/?v=10');
    assert.equal(upgradeTarget('WS://127.0.0.1:8080/x', undefined, undefined), 'http://127.0.0.1:8080/x');
    assert.equal(upgradeTarget('https://h.test/x', undefined, undefined), 'https://h.test/x');
  });
  it('builds the target of an origin-form upgrade from Host and the scheme header (wss unless told ws)', () => {
    assert.equal(upgradeTarget('/socket?a=1', 'chat.test', undefined), 'https://chat.test/socket?a=1');
    assert.equal(upgradeTarget('/socket', 'chat.test:8080', 'ws'), 'http://chat.test:8080/socket');
  });
  it('leaves what it does not understand to the destination check', () => {
    assert.equal(upgradeTarget('/socket', undefined, 'wss'), undefined);
    assert.equal(upgradeTarget('/socket', 'chat.test', 'gopher'), undefined);
    assert.equal(upgradeTarget('ftp://x.test/', 'chat.test', undefined), undefined);
  });
});
