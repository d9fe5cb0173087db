// talon_http_request: the only way a plugin reaches the network. The plugin hands
// over a JSON request; the node checks its shape, applies per-call and per-skill
// budgets, strips anything that could speak for someone else, labels the request with
// the skill (x-talon-skill: name@version) and sends it to egress over the node's own
// mTLS identity. Egress decides whether that skill version may reach that host and
// which of its secrets it may use; a refusal comes back to the plugin as a JSON error.
import { SKILL_HEADER, skillId } from '@talon/kit/contracts';
import { TalonError } from '@talon/kit/errors';
import type { EgressClient, EgressRequest, EgressResponse } from '@talon/kit/egress';
import type { HostCallAnswer } from './host/pool.ts';

export { SKILL_HEADER };

export interface BridgeLimits {
  /** Host calls one invocation may make; the next one traps the plugin. */
  maxCallsPerInvocation: number;
  /** Sustained host calls per second per skill version on this node (token bucket). */
  callsPerSecondPerSkill: number;
  burstPerSkill: number;
  maxRequestBytes: number;
  maxResponseBytes: number;
  maxHeaders: number;
  maxUrlLength: number;
}

/** The request JSON a plugin passes to talon_http_request. */
export interface PluginHttpRequest {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Headers a plugin may not set: hop-by-hop, proxy credentials, trace context and anything Talon-internal. */
const FORBIDDEN_HEADER =
  /^(host|connection|keep-alive|proxy-.*|te|trailer|transfer-encoding|upgrade|content-length|expect|traceparent|tracestate|baggage|x-talon-.*)$/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Response headers not worth handing to a plugin (hop-by-hop). */
const DROP_RESPONSE_HEADER = new Set(['connection', 'keep-alive', 'transfer-encoding', 'trailer', 'upgrade', 'proxy-authenticate']);

export class BadPluginRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadPluginRequest';
  }
}

/** Parses and checks a plugin's request; throws BadPluginRequest with what is wrong. Pure. */
export function parsePluginRequest(
  payload: string,
  limits: Pick<BridgeLimits, 'maxRequestBytes' | 'maxHeaders' | 'maxUrlLength'>,
): EgressRequest {
  if (Buffer.byteLength(payload) > limits.maxRequestBytes + 64 * 1024)
    throw new BadPluginRequest(`request is larger than ${limits.maxRequestBytes} bytes`);
  let r: PluginHttpRequest;
  try {
    r = JSON.parse(payload) as PluginHttpRequest;
  } catch {
    throw new BadPluginRequest('talon_http_request takes a JSON object {method, url, headers, body}');
  }
  if (typeof r !== 'object' || r === null || typeof r.url !== 'string') throw new BadPluginRequest('the request needs a "url" string');
  const method = (r.method ?? 'GET').toUpperCase();
  if (!METHODS.has(method)) throw new BadPluginRequest(`method ${String(r.method).slice(0, 20)} is not supported`);
  if (r.url.length > limits.maxUrlLength) throw new BadPluginRequest(`url is longer than ${limits.maxUrlLength} characters`);
  let url: URL;
  try {
    url = new URL(r.url);
  } catch {
    throw new BadPluginRequest('url must be an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new BadPluginRequest('url must use https (or http)');
  if (url.username || url.password)
    throw new BadPluginRequest('credentials in the URL are refused; use a {{secret:NAME}} placeholder in a header');
  const headers: Record<string, string> = {};
  const given = r.headers ?? {};
  if (typeof given !== 'object' || Array.isArray(given)) throw new BadPluginRequest('headers must be an object of strings');
  const entries = Object.entries(given);
  if (entries.length > limits.maxHeaders) throw new BadPluginRequest(`more than ${limits.maxHeaders} headers`);
  for (const [k, v] of entries) {
    if (typeof v !== 'string' || !HEADER_NAME.test(k) || /[\r\n\0]/.test(v))
      throw new BadPluginRequest(`header ${k.slice(0, 40)} is malformed`);
    // Dropped silently: the plugin cannot speak for egress, another skill or the proxy hop.
    if (FORBIDDEN_HEADER.test(k)) continue;
    headers[k.toLowerCase()] = v;
  }
  if (r.body !== undefined && typeof r.body !== 'string') throw new BadPluginRequest('body must be a string');
  if (r.body !== undefined && Buffer.byteLength(r.body) > limits.maxRequestBytes)
    throw new BadPluginRequest(`body is larger than ${limits.maxRequestBytes} bytes`);
  return { method, url: url.toString(), headers, body: r.body };
}

class TokenBucket {
  tokens: number;
  last: number;
  constructor(burst: number) {
    this.tokens = burst;
    this.last = Date.now();
  }
  take(rate: number, burst: number): boolean {
    const now = Date.now();
    this.tokens = Math.min(burst, this.tokens + ((now - this.last) / 1000) * rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export interface InvocationContext {
  skill: string;
  version: string;
  invocationId: string;
  /** The Talon user the invocation runs for (SkillInvocation.user_id); egress records it on each request. */
  userId?: string;
  /** Host calls made so far in this invocation. */
  calls: number;
}

export interface Egress {
  request(req: EgressRequest): Promise<EgressResponse>;
}

function answer(body: unknown): HostCallAnswer {
  return { result: JSON.stringify(body) };
}

function errorAnswer(code: string, message: string): HostCallAnswer {
  return answer({ error: { code, message } });
}

export class HttpBridge {
  private readonly egress: Egress;
  private readonly limits: BridgeLimits;
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(egress: Egress | EgressClient, limits: BridgeLimits) {
    this.egress = egress;
    this.limits = limits;
  }

  /** Answers one host call of a running plugin. Never throws. */
  async handle(ctx: InvocationContext, fn: string, payload: string, signal: AbortSignal): Promise<HostCallAnswer> {
    if (fn !== 'talon_http_request') return { fatal: { code: 'import_not_allowed', message: `unknown host function ${fn.slice(0, 60)}` } };
    ctx.calls += 1;
    if (ctx.calls > this.limits.maxCallsPerInvocation) {
      return {
        fatal: {
          code: 'rate_limited',
          message: `the skill made more than ${this.limits.maxCallsPerInvocation} HTTP requests in one call and was stopped`,
        },
      };
    }
    const id = skillId(ctx.skill, ctx.version);
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = new TokenBucket(this.limits.burstPerSkill);
      this.buckets.set(id, bucket);
      if (this.buckets.size > 10_000) this.buckets.delete(this.buckets.keys().next().value!);
    }
    if (!bucket.take(this.limits.callsPerSecondPerSkill, this.limits.burstPerSkill)) {
      return errorAnswer(
        'rate_limited',
        `skill ${id} is over its rate of ${this.limits.callsPerSecondPerSkill} HTTP requests per second on this node`,
      );
    }
    let req: EgressRequest;
    try {
      req = parsePluginRequest(payload, this.limits);
    } catch (err) {
      return errorAnswer('invalid_argument', (err as Error).message);
    }
    req.headers = { ...req.headers, [SKILL_HEADER]: id };
    if (ctx.userId) req.user = ctx.userId;
    req.signal = signal;
    let res: EgressResponse;
    try {
      res = await this.egress.request(req);
    } catch (err) {
      if (signal.aborted) return { fatal: { code: 'timeout', message: 'the invocation ended while the request was in flight' } };
      if (err instanceof TalonError) return errorAnswer(err.code, err.message);
      return errorAnswer('unavailable', 'the request could not be sent through egress');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.limits.maxResponseBytes) {
          res.body.destroy();
          return errorAnswer('payload_too_large', `the response is larger than ${this.limits.maxResponseBytes} bytes`);
        }
        chunks.push(chunk);
      }
    } catch {
      if (signal.aborted) return { fatal: { code: 'timeout', message: 'the invocation ended while the response was being read' } };
      return errorAnswer('upstream_error', 'the response was cut off');
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined || DROP_RESPONSE_HEADER.has(k)) continue;
      headers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    return answer({ status: res.status, headers, body: Buffer.concat(chunks).toString('utf8') });
  }
}
