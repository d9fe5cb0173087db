// Talon skill SDK for AssemblyScript.
//
// A skill exports one function (the manifest's entrypoint, default `run`) that reads
// its JSON input, does its work and writes its output:
//
//   import { input, output, fail, httpGet } from './talon/index';
//   export function run(): i32 { ... output('{"ok":true}'); return 0; }
//
// What a skill can reach is exactly what this file wraps: its input, its output, and
// HTTP requests that the sandbox hands to egress on the skill's behalf (only to hosts
// the operator approved; secrets only as {{secret:NAME}} placeholders, which egress
// fills in). There is no filesystem, environment, clock or randomness.
export * from './json';
import { JSONObject, JSONValue, parse, quote } from './json';

// --- Extism kernel -------------------------------------------------------------
@external('extism:host/env', 'input_length')
declare function input_length(): u64;
@external('extism:host/env', 'input_load_u8')
declare function input_load_u8(offs: u64): u8;
@external('extism:host/env', 'alloc')
declare function alloc(n: u64): u64;
@external('extism:host/env', 'length')
declare function length(offs: u64): u64;
@external('extism:host/env', 'load_u8')
declare function load_u8(offs: u64): u8;
@external('extism:host/env', 'store_u8')
declare function store_u8(offs: u64, v: u8): void;
@external('extism:host/env', 'output_set')
declare function output_set(offs: u64, n: u64): void;
@external('extism:host/env', 'error_set')
declare function error_set(offs: u64): void;
@external('extism:host/env', 'log_info')
declare function log_info(offs: u64): void;

// --- Talon host functions ------------------------------------------------------
@external('extism:host/user', 'talon_http_request')
declare function talon_http_request(offs: u64): u64;

function toHost(bytes: Uint8Array): u64 {
  const offs = alloc(<u64>bytes.length);
  for (let i = 0; i < bytes.length; i++) store_u8(offs + <u64>i, bytes[i]);
  return offs;
}

function fromHost(offs: u64): string {
  const n = <i32>length(offs);
  const buf = new Uint8Array(n);
  for (let i = 0; i < n; i++) buf[i] = load_u8(offs + <u64>i);
  return String.UTF8.decode(buf.buffer);
}

function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

/** The raw input text (JSON, already validated against the manifest's inputSchema). */
export function inputText(): string {
  const n = <i32>input_length();
  const buf = new Uint8Array(n);
  for (let i = 0; i < n; i++) buf[i] = input_load_u8(<u64>i);
  return String.UTF8.decode(buf.buffer);
}

/** The parsed input object. */
export function input(): JSONValue {
  return parse(inputText()).value;
}

/** Sets the skill's result (usually JSON). */
export function output(text: string): void {
  const bytes = utf8(text);
  output_set(toHost(bytes), <u64>bytes.length);
}

/** Reports a failure the caller sees as plugin_error; return its result from the entrypoint. */
export function fail(message: string): i32 {
  error_set(toHost(utf8(message)));
  return 1;
}

/** A debug line in the sandbox's logs (capped per call). */
export function log(message: string): void {
  log_info(toHost(utf8(message)));
}

export class HttpResponse {
  status: i32 = 0;
  headers: JSONValue = new JSONValue();
  body: string = '';
  /** Set when the request did not reach the destination (egress refused it, timeout...). */
  errorCode: string = '';
  errorMessage: string = '';

  get ok(): bool {
    return this.errorCode.length == 0 && this.status >= 200 && this.status < 300;
  }

  header(name: string): string {
    return this.headers.getString(name.toLowerCase());
  }

  json(): JSONValue {
    return parse(this.body).value;
  }
}

/**
 * Sends an HTTP request through egress. `headers` may carry secret placeholders such as
 * "Bearer {{secret:github_token}}" for secrets the skill was granted.
 */
export function httpRequest(method: string, url: string, headers: Map<string, string> | null = null, body: string | null = null): HttpResponse {
  const h = new JSONObject();
  if (headers != null) {
    const keys = headers.keys();
    for (let i = 0; i < keys.length; i++) h.str(keys[i], headers.get(keys[i]));
  }
  const req = new JSONObject().str('method', method).str('url', url).raw('headers', h.toString());
  if (body != null) req.str('body', body);
  const res = new HttpResponse();
  const parsed = parse(fromHost(talon_http_request(toHost(utf8(req.toString())))));
  if (!parsed.ok) {
    res.errorCode = 'invalid_response';
    res.errorMessage = parsed.error;
    return res;
  }
  const v = parsed.value;
  const err = v.get('error');
  if (err != null) {
    res.errorCode = err.getString('code', 'error');
    res.errorMessage = err.getString('message');
    return res;
  }
  res.status = <i32>v.getNumber('status');
  const hs = v.get('headers');
  if (hs != null) res.headers = hs;
  res.body = v.getString('body');
  return res;
}

export function httpGet(url: string, headers: Map<string, string> | null = null): HttpResponse {
  return httpRequest('GET', url, headers, null);
}

/** A placeholder egress replaces with the named secret (only for secrets the skill was granted, only towards their hosts). */
export function secret(name: string): string {
  return '{{secret:' + name + '}}';
}

/** Percent-encodes a URL component. */
export function urlEncode(s: string): string {
  return encodeURIComponent(s);
}

/** JSON string literal helper, re-exported for output building. */
export function jsonString(s: string): string {
  return quote(s);
}

/**
 * AssemblyScript abort handler (build with `--use abort=<path>/talonAbort`): reports
 * the message as the skill's error instead of importing env.abort.
 */
export function talonAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const m = message == null ? 'abort' : message;
  const where = fileName == null ? '' : ' at ' + fileName + ':' + line.toString() + ':' + column.toString();
  error_set(toHost(utf8('aborted: ' + m + where)));
  unreachable();
}
