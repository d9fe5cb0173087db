// Input: {"requests": [{"method", "url", "headers": {...}, "body"}]}. Output: one result per request.
import { httpRequest, input, JSONArray, JSONObject, output } from '../../../sdk/assembly/index';

export function run(): i32 {
  const reqs = input().get('requests');
  const results = new JSONArray();
  if (reqs != null) {
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs.at(i)!;
      const headers = new Map<string, string>();
      const h = r.get('headers');
      if (h != null) for (let j = 0; j < h.keys.length; j++) headers.set(h.keys[j], h.items[j].s);
      const body = r.get('body');
      const res = httpRequest(r.getString('method', 'GET'), r.getString('url'), headers, body == null ? null : body.s);
      const b = res.body.length > 4000 ? res.body.substring(0, 4000) : res.body;
      results.raw(
        new JSONObject()
          .num('status', res.status)
          .str('errorCode', res.errorCode)
          .str('errorMessage', res.errorMessage)
          .str('body', b)
          .toString(),
      );
    }
  }
  output(new JSONObject().raw('results', results.toString()).toString());
  return 0;
}
