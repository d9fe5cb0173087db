import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import { MAX_TOOLS, parseClientTools, parseImagePart, parseToolCallId, parseToolCalls } from './openai-parts.ts';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const dataUrl = (type: string, bytes: Buffer) => `data:${type};base64,${bytes.toString('base64')}`;
const tool = (name: unknown, extra: Record<string, unknown> = {}) => ({
  type: 'function',
  function: { name, description: 'd', parameters: { type: 'object', properties: { q: { type: 'string' } } }, ...extra },
});

/** Asserts an OpenAI-style 400: the public field at fault and the code. */
function refused(fn: () => unknown, param: string, code = 'invalid_value'): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TalonError);
    assert.equal(err.param, param);
    assert.equal(err.code, code);
    assert.equal(err.httpStatus, 400);
    return true;
  });
}

describe('client tools', () => {
  it('accepts function tools and maps tool_choice', () => {
    const r = parseClientTools([tool('get_weather'), tool('lookup-2', { description: undefined, parameters: undefined })], {
      type: 'function',
      function: { name: 'lookup-2' },
    });
    assert.equal(r?.tools.length, 2);
    assert.deepEqual(r?.tools[0], {
      name: 'get_weather',
      description: 'd',
      parametersJson: JSON.stringify({ type: 'object', properties: { q: { type: 'string' } } }),
    });
    assert.deepEqual(JSON.parse(r!.tools[1]!.parametersJson), { type: 'object', properties: {} });
    assert.equal(r?.choice, 'function:lookup-2');
    assert.equal(parseClientTools([tool('a')], 'required')?.choice, 'required');
    assert.equal(parseClientTools([tool('a')], undefined)?.choice, '');
    assert.equal(parseClientTools(undefined, undefined), undefined);
    assert.equal(parseClientTools(null, 'none'), undefined);
  });

  it('refuses bad definitions naming the field', () => {
    refused(() => parseClientTools([tool('ok'), tool('bad name')], undefined), 'tools[1].function.name');
    refused(() => parseClientTools([tool('x'.repeat(65))], undefined), 'tools[0].function.name');
    refused(() => parseClientTools([tool('a'), tool('a')], undefined), 'tools[1].function.name');
    refused(() => parseClientTools([{ type: 'code_interpreter' }], undefined), 'tools[0].type');
    refused(() => parseClientTools([tool('a', { parameters: { type: 'string' } })], undefined), 'tools[0].function.parameters');
    refused(() => parseClientTools([tool('a', { parameters: [] })], undefined), 'tools[0].function.parameters');
    refused(
      () => parseClientTools([tool('a', { parameters: { type: 'object', description: 'x'.repeat(70_000) } })], undefined),
      'tools[0].function.parameters',
    );
    refused(() => parseClientTools([tool('a', { description: 'x'.repeat(9000) })], undefined), 'tools[0].function.description');
    refused(
      () =>
        parseClientTools(
          Array.from({ length: MAX_TOOLS + 1 }, (_, i) => tool(`t${i}`)),
          undefined,
        ),
      'tools',
    );
    refused(() => parseClientTools([], undefined), 'tools');
    refused(() => parseClientTools('tools', undefined), 'tools', 'invalid_argument');
    refused(() => parseClientTools([tool('a')], 'sometimes'), 'tool_choice');
    refused(() => parseClientTools([tool('a')], { type: 'function', function: { name: 'b' } }), 'tool_choice.function.name');
    refused(() => parseClientTools(undefined, 'required'), 'tool_choice');
  });

  it('reads tool calls and call ids of the history, arguments untouched', () => {
    const calls = parseToolCalls([{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a": not json' } }], 2);
    assert.deepEqual(calls, [{ id: 'call_1', name: 'f', arguments: '{"a": not json' }]);
    assert.deepEqual(parseToolCalls(undefined, 0), []);
    refused(() => parseToolCalls([{ id: '', function: { name: 'f' } }], 3), 'messages[3].tool_calls[0].id');
    refused(() => parseToolCalls([{ id: 'c', function: { name: 'f f' } }], 3), 'messages[3].tool_calls[0].function.name');
    refused(() => parseToolCalls([{ id: 'c', function: { name: 'f', arguments: {} } }], 1), 'messages[1].tool_calls[0].function.arguments');
    assert.equal(parseToolCallId('call_1', 0), 'call_1');
    assert.equal(parseToolCallId(undefined, 0), '');
    refused(() => parseToolCallId(7, 4), 'messages[4].tool_call_id');
  });
});

describe('image parts', () => {
  const at = 'messages[0].content[1].image_url';
  it('accepts a data: URL whose bytes match its type, and https URLs', () => {
    assert.deepEqual(parseImagePart({ url: dataUrl('image/png', PNG), detail: 'low' }, at, 1024), {
      url: dataUrl('image/png', PNG),
      detail: 'low',
    });
    assert.equal(parseImagePart({ url: 'https://example.org/cat.png' }, at, 1024).detail, '');
  });

  it('refuses what is not an image, too large, or not https', () => {
    refused(() => parseImagePart({ url: dataUrl('image/jpeg', PNG) }, at, 1024), `${at}.url`);
    refused(() => parseImagePart({ url: dataUrl('image/svg+xml', Buffer.from('<svg/>')) }, at, 1024), `${at}.url`);
    refused(() => parseImagePart({ url: 'data:text/plain;base64,aGk=' }, at, 1024), `${at}.url`);
    refused(
      () => parseImagePart({ url: dataUrl('image/png', Buffer.concat([PNG, Buffer.alloc(2000)])) }, at, 1024),
      `${at}.url`,
      'image_too_large',
    );
    refused(() => parseImagePart({ url: 'http://example.org/cat.png' }, at, 1024), `${at}.url`);
    refused(() => parseImagePart({ url: 'file:///etc/passwd' }, at, 1024), `${at}.url`);
    refused(() => parseImagePart({ url: 'https://u:p@example.org/x.png' }, at, 1024), `${at}.url`);
    refused(() => parseImagePart({ url: dataUrl('image/png', PNG), detail: 'ultra' }, at, 1024), `${at}.detail`);
  });
});
