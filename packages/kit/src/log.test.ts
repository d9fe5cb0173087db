import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, scrub } from './log.ts';

function capture() {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, log: createLogger({ service: 'test', level: 'debug', destination: dest as never }) };
}

describe('log redaction', () => {
  it('censors sensitive keys at any depth', () => {
    const { lines, log } = capture();
    log.info(
      { headers: { authorization: 'Bearer abc.def.ghi', 'x-api-key': 'k123456' }, password: 'pw', nested: { deeper: { token: 't' } } },
      'request',
    );
    const out = lines.join('');
    assert.doesNotMatch(out, /abc\.def\.ghi|k123456|"pw"/);
    assert.match(out, /\[REDACTED\]/);
  });

  it('scrubs credential shapes from free text, messages and errors', () => {
    const { lines, log } = capture();
    const tok = `talon_pat_${'a'.repeat(64)}`;
    log.warn({ detail: `token was ${tok}` }, `calling https://x.test/?api_key=SECRETVALUE&x=1 with Bearer ${'z'.repeat(30)}`);
    log.error({ err: new Error(`boom ${tok}`) }, 'failed');
    const out = lines.join('');
    assert.doesNotMatch(out, new RegExp(tok));
    assert.doesNotMatch(out, /SECRETVALUE|zzzzzzzzzz/);
    assert.match(out, /api_key=\[REDACTED\]&x=1/);
  });

  it('scrub leaves ordinary text alone and removes PEM keys and NATS seeds', () => {
    assert.equal(scrub('hello world 123'), 'hello world 123');
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----';
    assert.equal(scrub(`k=${pem}`), 'k=[REDACTED]');
    assert.equal(scrub(`seed SUAM${'A'.repeat(54)}`), 'seed [REDACTED]');
  });
});

describe('secret names in logs', () => {
  it('keeps a secret name visible and never a value', () => {
    const { lines, log } = capture();
    const value = `sk-${'Q'.repeat(40)}`;
    log.info({ secret: 'llm_api_key', version: 2, secretValue: value }, 'secret stored');
    log.info({ secrets: ['telegram_bot_token', 'slack_bot_token'], count: 2 }, 'injected');
    log.info({ secrets: 3 }, 'scan index refreshed');
    const out = lines.join('');
    assert.match(out, /"secret":"llm_api_key"/);
    assert.match(out, /"secrets":\["telegram_bot_token","slack_bot_token"\]/);
    assert.match(out, /"secrets":3/);
    assert.doesNotMatch(out, /QQQQQQQQ/);
  });

  it('censors a value-shaped string put in a secret name field by mistake', () => {
    const { lines, log } = capture();
    const value = `sk-${'Z'.repeat(40)}`;
    log.warn({ secret: value, nested: { secretName: 'Bearer abcdefghijklmnop' } }, 'oops');
    log.warn({ secrets: ['ok_name', value] }, 'oops');
    log.warn({ secret: { value } }, 'oops');
    const out = lines.join('');
    assert.doesNotMatch(out, /ZZZZZZZZ|abcdefghijklmnop/);
    assert.match(out, /"secret":"\[REDACTED\]"/);
    assert.match(out, /"secrets":\["ok_name","\[REDACTED\]"\]/);
  });
});

describe('log robustness', () => {
  it('accepts a non-Error err without throwing', () => {
    const { lines, log } = capture();
    log.warn({ err: 'plain string with Bearer abcdefghijk' }, 'x');
    log.warn({ err: undefined }, 'y');
    assert.match(lines.join(''), /Bearer \[REDACTED\]/);
  });
});
