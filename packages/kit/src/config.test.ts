import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bool, ConfigError, int, isHostPort, list, loadConfig, oneOf, optionalStr, port, str, url } from './config.ts';

const spec = {
  port: port('SVC_PORT', { doc: 'd', default: 8080 }),
  name: str('SVC_NAME', { doc: 'd' }),
  pass: str('SVC_PASS', { doc: 'd', secret: true, pattern: /^p/ }),
  mode: oneOf('SVC_MODE', ['a', 'b'] as const, { doc: 'd', default: 'a' }),
  on: bool('SVC_ON', { doc: 'd', default: false }),
  n: int('SVC_N', { doc: 'd', default: 3, min: 1, max: 5 }),
  u: url('SVC_URL', { doc: 'd', default: 'https://x.test' }),
  l: list('SVC_LIST', { doc: 'd', default: [], item: isHostPort }),
  opt: optionalStr('SVC_OPT', { doc: 'd' }),
};

describe('loadConfig', () => {
  it('parses, applies defaults and freezes', () => {
    const c = loadConfig('svc', spec, { SVC_NAME: 'x', SVC_PASS: 'pw', SVC_ON: 'yes', SVC_LIST: 'a.test:1, [::1]:2' });
    assert.equal(c.port, 8080);
    assert.equal(c.on, true);
    assert.deepEqual(c.l, ['a.test:1', '[::1]:2']);
    assert.equal(c.opt, undefined);
    assert.ok(Object.isFrozen(c));
    assert.throws(() => ((c as { port: number }).port = 1));
  });

  it('refuses a variable still set under the name it had before a rename, and names the new one', () => {
    const hostSpec = { host: str('GATEWAY_HOST', { doc: 'h', default: '127.0.0.1' }) };
    assert.throws(
      () => loadConfig('gateway', hostSpec, { TALON_GATEWAY_HOST: '0.0.0.0' }),
      (err: ConfigError) => /TALON_GATEWAY_HOST: was renamed GATEWAY_HOST\. Set GATEWAY_HOST instead/.test(err.message),
    );
    // A spec that does not read the new name is not concerned by the old one.
    assert.equal(loadConfig('svc', spec, { SVC_NAME: 'x', SVC_PASS: 'pw', TALON_GATEWAY_HOST: '0.0.0.0' }).name, 'x');
  });

  it('reports every problem at once, naming keys and fixes, hiding secrets', () => {
    try {
      loadConfig('svc', spec, {
        SVC_PORT: '99999',
        SVC_PASS: 'hunter2',
        SVC_MODE: 'c',
        SVC_N: '9',
        SVC_URL: 'ftp://x',
        SVC_LIST: 'nohost',
      });
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const keys = err.problems.map((p) => p.key).sort();
      assert.deepEqual(keys, ['SVC_LIST', 'SVC_MODE', 'SVC_N', 'SVC_NAME', 'SVC_PASS', 'SVC_PORT', 'SVC_URL']);
      assert.match(err.message, /SVC_NAME: is required but not set\. Set SVC_NAME to/);
      assert.match(err.message, /SVC_PORT: expected an integer from 0 to 65535, got "99999"/);
      assert.match(err.message, /SVC_PASS: expected a value matching \^p, got <hidden>/);
      assert.doesNotMatch(err.message, /hunter2/);
      assert.match(err.message, /or unset it for the default \(a\)/);
    }
  });

  it('treats blank values as unset', () => {
    const c = loadConfig('svc', spec, { SVC_NAME: 'x', SVC_PASS: 'p', SVC_PORT: '  ' });
    assert.equal(c.port, 8080);
  });

  it('validates host:port items', () => {
    assert.ok(isHostPort('127.0.0.1:11434'));
    assert.ok(isHostPort('[::1]:80'));
    assert.ok(!isHostPort('127.0.0.1'));
    assert.ok(!isHostPort('host:99999'));
    assert.ok(!isHostPort('http://x:1'));
  });
});
