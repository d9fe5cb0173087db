import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Placement } from '@talon/proto';
import {
  applyFrameSecrets,
  applySecrets,
  bytesHavePlaceholderSyntax,
  findFramePlaceholders,
  findPlaceholders,
  hasPlaceholderSyntax,
  PlaceholderError,
} from './placeholders.ts';

const empty = new Uint8Array();
const find = (url: string, headers: Record<string, string> = {}, body = empty) => findPlaceholders({ url: new URL(url), headers, body });

describe('finding placeholders', () => {
  it('classifies each placement', () => {
    assert.deepEqual(find('https://api.test/v1', { authorization: 'Bearer {{secret:llm_api_key}}' }), [
      { name: 'llm_api_key', placement: Placement.PLACEMENT_BEARER, field: '' },
    ]);
    assert.deepEqual(find('https://api.test/v1', { Authorization: 'Basic {{secret:creds}}' }), [
      { name: 'creds', placement: Placement.PLACEMENT_BASIC, field: '' },
    ]);
    assert.deepEqual(find('https://api.test/v1', { authorization: 'Bot {{secret:discord}}' }), [
      { name: 'discord', placement: Placement.PLACEMENT_HEADER, field: 'authorization' },
    ]);
    assert.deepEqual(find('https://api.test/v1', { 'X-Api-Key': '{{secret:k}}' }), [
      { name: 'k', placement: Placement.PLACEMENT_HEADER, field: 'x-api-key' },
    ]);
    assert.deepEqual(find('https://api.test/v1?key={{secret:g}}&q=1'), [{ name: 'g', placement: Placement.PLACEMENT_QUERY, field: 'key' }]);
    assert.deepEqual(find('https://api.telegram.org/bot{{secret:tg}}/sendMessage'), [
      { name: 'tg', placement: Placement.PLACEMENT_PATH, field: '' },
    ]);
    assert.deepEqual(find('https://api.test/plain'), []);
  });

  it('refuses placeholders where a secret must never go', () => {
    const reason = (fn: () => unknown) => {
      try {
        fn();
        return 'none';
      } catch (e) {
        assert.ok(e instanceof PlaceholderError);
        return e.reason;
      }
    };
    assert.equal(
      reason(() => find('https://a.test/', {}, Buffer.from('{"token":"{{secret:x}}"}'))),
      'placeholder_in_body',
    );
    assert.equal(
      reason(() => find('https://a.test/?{{secret:x}}=1')),
      'placeholder_in_query_name',
    );
    assert.equal(
      reason(() => find('https://a.test/#{{secret:x}}')),
      'placeholder_in_fragment',
    );
    assert.equal(
      reason(() => find('https://a.test/', { 'proxy-authorization': 'Basic {{secret:x}}' })),
      'placeholder_in_proxy_auth',
    );
    assert.equal(
      reason(() => find('https://a.test/', { 'x-k': '{{secret:UPPER}}' })),
      'malformed_placeholder',
    );
    assert.equal(
      reason(() => find('https://a.test/', { 'x-k': '{{ secret:x ' })),
      'malformed_placeholder',
    );
    assert.equal(
      reason(() => find('https://a.test/%7B%7Bsecret:bad-name%7D%7D')),
      'malformed_placeholder',
    );
  });
});

describe('applying secrets', () => {
  const values = new Map([
    ['tok', Buffer.from('s3cr3t/+=&?')],
    ['creds', Buffer.from('user:pa ss')],
  ]);

  it('encodes values for their placement', () => {
    const out = applySecrets(
      {
        url: new URL('https://a.test/bot{{secret:tok}}/send?key={{secret:tok}}&q=1'),
        headers: { authorization: 'Basic {{secret:creds}}', 'x-key': '{{secret:tok}}' },
      },
      values,
    );
    assert.equal(out.url.pathname, '/bots3cr3t%2F%2B%3D%26%3F/send');
    assert.equal(out.url.searchParams.get('key'), 's3cr3t/+=&?');
    assert.equal(out.url.searchParams.get('q'), '1');
    assert.equal(out.headers.authorization, `Basic ${Buffer.from('user:pa ss').toString('base64')}`);
    assert.equal(out.headers['x-key'], 's3cr3t/+=&?');
  });

  it('refuses a value that would inject headers', () => {
    assert.throws(
      () =>
        applySecrets(
          { url: new URL('https://a.test/'), headers: { 'x-k': '{{secret:evil}}' } },
          new Map([['evil', Buffer.from('v\r\nx-admin: 1')]]),
        ),
      /control characters/,
    );
  });

  it('never leaves a placeholder unresolved silently', () => {
    assert.throws(
      () => applySecrets({ url: new URL('https://a.test/'), headers: { 'x-k': '{{secret:missing}}' } }, values),
      /was not resolved/,
    );
  });
});

describe('bytesHavePlaceholderSyntax', () => {
  it('answers as hasPlaceholderSyntax does on the latin1 reading of the bytes', () => {
    const cases = [
      '',
      '{{secret:x}}',
      'a {{ secret:x',
      '{{\t\n\u00a0SeCrEt:',
      '{{secret',
      '{{secret;x}}',
      '{{ {{secret:',
      '{secret:x}',
      '{{\u001asecret\u001a',
      `${'{'.repeat(50)}secret:`,
      `${'x'.repeat(1000)}{{ SECRET:y}}`,
    ];
    // Random bytes drawn from the characters that matter.
    const alphabet = Buffer.from('{} secrETSCR:\t\n\u00a0\u001ax', 'latin1');
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 0; n < 3000; n++) {
      const len = Math.floor(rnd() * 24);
      cases.push(Buffer.from(Array.from({ length: len }, () => alphabet[Math.floor(rnd() * alphabet.length)]!)).toString('latin1'));
    }
    for (const c of cases) {
      const bytes = Buffer.from(c, 'latin1');
      assert.equal(bytesHavePlaceholderSyntax(bytes), hasPlaceholderSyntax(bytes.toString('latin1')), JSON.stringify(c));
    }
  });

  it('reads only the view it is given', () => {
    const whole = Buffer.from('xx{{secret:a}}', 'latin1');
    assert.equal(bytesHavePlaceholderSyntax(whole.subarray(0, 2)), false);
    assert.equal(bytesHavePlaceholderSyntax(whole.subarray(2)), true);
  });
});

describe('placeholders in WebSocket frames', () => {
  const FRAME = Placement.PLACEMENT_WEBSOCKET_FRAME;
  it('finds each name once, in the frame placement', () => {
    assert.deepEqual(findFramePlaceholders('{"op":2,"d":{"token":"{{secret:discord_gateway}}","x":"{{ secret:discord_gateway }}"}}'), [
      { name: 'discord_gateway', placement: FRAME, field: '' },
    ]);
    assert.deepEqual(findFramePlaceholders('{"op":1,"d":42}'), []);
  });
  it('refuses malformed placeholders and any in a binary frame', () => {
    assert.throws(
      () => findFramePlaceholders('{"t":"{{secret:Bad-Name}}"}'),
      (e: unknown) => e instanceof PlaceholderError && e.reason === 'malformed_placeholder',
    );
    assert.throws(
      () => findFramePlaceholders(Buffer.from('\x00{{secret:tok}}')),
      (e: unknown) => e instanceof PlaceholderError && e.reason === 'placeholder_in_binary_frame',
    );
    assert.deepEqual(findFramePlaceholders(Buffer.from([0, 1, 2, 123, 123])), []);
  });
  it('JSON-escapes the value inside a JSON frame, so a quote cannot break out of the string', () => {
    const values = new Map([['tok', Buffer.from('a"b\\c')]]);
    const out = applyFrameSecrets('{"d":{"token":"{{secret:tok}}"}}', values);
    assert.deepEqual(JSON.parse(out), { d: { token: 'a"b\\c' } });
    assert.equal(applyFrameSecrets('AUTH {{secret:tok}}', values), 'AUTH a"b\\c');
  });
  it('refuses a placeholder whose value was not resolved', () => {
    assert.throws(
      () => applyFrameSecrets('{"t":"{{secret:other}}"}', new Map()),
      (e: unknown) => e instanceof PlaceholderError && e.reason === 'secret_unresolved',
    );
  });
});
