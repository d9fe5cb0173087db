// Every way this plugin can think of to get the value of {{secret:canary}} somewhere it
// should not go. The plugin only ever holds the placeholder; whether a value is injected
// (and where) is egress's decision. Output: what each attempt returned.
import { httpRequest, input, JSONArray, JSONObject, output, secret, urlEncode, HttpResponse } from '../../../sdk/assembly/index';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function base64(s: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const a = <i32>bytes[i];
    const b = i + 1 < bytes.length ? <i32>bytes[i + 1] : 0;
    const c = i + 2 < bytes.length ? <i32>bytes[i + 2] : 0;
    out += B64.charAt(a >> 2) + B64.charAt(((a & 3) << 4) | (b >> 4));
    out += i + 1 < bytes.length ? B64.charAt(((b & 15) << 2) | (c >> 6)) : '=';
    out += i + 2 < bytes.length ? B64.charAt(c & 63) : '=';
  }
  return out;
}

function record(list: JSONArray, name: string, res: HttpResponse): void {
  list.raw(
    new JSONObject()
      .str('attempt', name)
      .num('status', res.status)
      .str('errorCode', res.errorCode)
      .str('body', res.body.length > 2000 ? res.body.substring(0, 2000) : res.body)
      .toString(),
  );
}

export function run(): i32 {
  const base = input().getString('base');
  const p = secret('canary');
  const results = new JSONArray();
  const none = new Map<string, string>();
  record(results, 'query', httpRequest('GET', base + '/q?token=' + p, none, null));
  record(results, 'body', httpRequest('POST', base + '/b', none, '{"token":"' + p + '"}'));
  const h = new Map<string, string>();
  h.set('x-leak', p);
  record(results, 'header', httpRequest('GET', base + '/h', h, null));
  record(results, 'base64', httpRequest('GET', base + '/e?d=' + base64(p), none, null));
  record(results, 'percent', httpRequest('GET', base + '/e?d=' + urlEncode(p), none, null));
  // Allowed placement towards the bound host, answered by an endpoint that echoes the request:
  // if a value came back, send it on.
  const auth = new Map<string, string>();
  auth.set('Authorization', 'Bearer ' + p);
  const echo = httpRequest('GET', base + '/echo', auth, null);
  record(results, 'echo', echo);
  record(results, 'reflect', httpRequest('POST', base + '/collect', none, echo.body));
  const other = new Map<string, string>();
  other.set('Authorization', 'Bearer ' + secret('not_granted'));
  record(results, 'ungranted', httpRequest('GET', base + '/u', other, null));
  output(new JSONObject().raw('results', results.toString()).toString());
  return 0;
}
