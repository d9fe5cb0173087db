import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { TalonError } from '@talon/kit/errors';
import type { EgressRequest, EgressResponse } from '@talon/kit/egress';
import {
  BadPluginRequest,
  HttpBridge,
  parsePluginRequest,
  SKILL_HEADER,
  type BridgeLimits,
  type InvocationContext,
} from './http-bridge.ts';

const LIMITS: BridgeLimits = {
  maxCallsPerInvocation: 3,
  callsPerSecondPerSkill: 1000,
  burstPerSkill: 1000,
  maxRequestBytes: 1024,
  maxResponseBytes: 64,
  maxHeaders: 8,
  maxUrlLength: 200,
};

class RecordingEgress {
  readonly seen: EgressRequest[] = [];
  reply: (req: EgressRequest) => Promise<EgressResponse> = async () => ({
    status: 200,
    headers: { 'content-type': 'text/plain', connection: 'close' },
    body: Readable.from([Buffer.from('hello')]) as never,
  });
  request(req: EgressRequest): Promise<EgressResponse> {
    this.seen.push(req);
    return this.reply(req);
  }
}

const ctx = (): InvocationContext => ({ skill: 'weather', version: '1.0.0', invocationId: 'i', calls: 0 });
const signal = new AbortController().signal;

describe('plugin HTTP requests (talon_http_request)', () => {
  it('drops headers a plugin may not set and refuses malformed requests', () => {
    const r = parsePluginRequest(
      JSON.stringify({
        method: 'post',
        url: 'https://api.example.com/x?q=1',
        headers: { 'X-Talon-Skill': 'admin@9.9.9', Host: 'evil', 'Proxy-Authorization': 'x', traceparent: '00-x', Accept: 'a/b' },
        body: 'b',
      }),
      LIMITS,
    );
    assert.deepEqual(r, { method: 'POST', url: 'https://api.example.com/x?q=1', headers: { accept: 'a/b' }, body: 'b' });
    for (const [bad, re] of [
      ['nope', /JSON object/],
      [JSON.stringify({ url: 'file:///etc/passwd' }), /https/],
      [JSON.stringify({ url: 'https://u:p@x.com/' }), /credentials in the URL/],
      [JSON.stringify({ url: 'https://x.com/', headers: { a: 'x\r\nInjected: 1' } }), /malformed/],
      [JSON.stringify({ url: 'https://x.com/', method: 'CONNECT' }), /not supported/],
      [JSON.stringify({ url: `https://x.com/${'a'.repeat(300)}` }), /longer than/],
      [JSON.stringify({ url: 'https://x.com/', body: 'x'.repeat(2000) }), /larger than/],
    ] as const) {
      assert.throws(
        () => parsePluginRequest(bad, LIMITS),
        (e: unknown) => e instanceof BadPluginRequest && re.test(e.message),
        bad.slice(0, 40),
      );
    }
  });

  it('names the invocation’s user to egress, never one the plugin claims', async () => {
    const egress = new RecordingEgress();
    const bridge = new HttpBridge(egress, LIMITS);
    await bridge.handle(
      { ...ctx(), userId: 'alice' },
      'talon_http_request',
      JSON.stringify({ url: 'https://api.example.com/', headers: { 'X-Talon-User': 'mallory', 'x-talon-user': 'mallory' } }),
      signal,
    );
    assert.equal(egress.seen[0]?.user, 'alice');
    assert.deepEqual(
      Object.keys(egress.seen[0]?.headers ?? {}).filter((k) => k.toLowerCase() === 'x-talon-user'),
      [],
      'the plugin’s header is dropped',
    );
  });

  it('sends through egress labelled with the skill id, whatever the plugin claimed', async () => {
    const egress = new RecordingEgress();
    const bridge = new HttpBridge(egress, LIMITS);
    const ans = await bridge.handle(
      ctx(),
      'talon_http_request',
      JSON.stringify({ url: 'https://api.example.com/', headers: { 'x-talon-skill': 'forged@1.0.0' } }),
      signal,
    );
    assert.equal(egress.seen[0]?.headers?.[SKILL_HEADER], 'weather@1.0.0');
    assert.equal(egress.seen[0]?.user, undefined, 'an invocation for nobody names no user');
    assert.deepEqual(JSON.parse(ans.result!), { status: 200, headers: { 'content-type': 'text/plain' }, body: 'hello' });
  });

  it('returns egress refusals to the plugin as JSON errors', async () => {
    const egress = new RecordingEgress();
    egress.reply = async () => {
      throw new TalonError('host_not_allowed', 'skill:weather@1.0.0 may not GET https://evil.example:443');
    };
    const ans = await new HttpBridge(egress, LIMITS).handle(
      ctx(),
      'talon_http_request',
      JSON.stringify({ url: 'https://evil.example/' }),
      signal,
    );
    assert.deepEqual(JSON.parse(ans.result!), {
      error: { code: 'host_not_allowed', message: 'skill:weather@1.0.0 may not GET https://evil.example:443' },
    });
  });

  it('stops an invocation that exceeds its host-call budget and rate-limits a skill', async () => {
    const egress = new RecordingEgress();
    const bridge = new HttpBridge(egress, LIMITS);
    const c = ctx();
    const req = JSON.stringify({ url: 'https://api.example.com/' });
    for (let i = 0; i < 3; i++) assert.ok((await bridge.handle(c, 'talon_http_request', req, signal)).result);
    const fourth = await bridge.handle(c, 'talon_http_request', req, signal);
    assert.equal(fourth.fatal?.code, 'rate_limited');
    assert.equal(egress.seen.length, 3);

    const slow = new HttpBridge(egress, { ...LIMITS, callsPerSecondPerSkill: 1, burstPerSkill: 2 });
    const codes = [];
    for (let i = 0; i < 3; i++)
      codes.push(JSON.parse((await slow.handle(ctx(), 'talon_http_request', req, signal)).result!).error?.code ?? 'ok');
    assert.deepEqual(codes, ['ok', 'ok', 'rate_limited']);
  });

  it('refuses oversized responses and unknown host functions', async () => {
    const egress = new RecordingEgress();
    egress.reply = async () => ({ status: 200, headers: {}, body: Readable.from([Buffer.alloc(100)]) as never });
    const ans = await new HttpBridge(egress, LIMITS).handle(
      ctx(),
      'talon_http_request',
      JSON.stringify({ url: 'https://a.example/' }),
      signal,
    );
    assert.equal(JSON.parse(ans.result!).error.code, 'payload_too_large');
    const unknown = await new HttpBridge(egress, LIMITS).handle(ctx(), 'talon_exec', '{}', signal);
    assert.equal(unknown.fatal?.code, 'import_not_allowed');
  });
});
