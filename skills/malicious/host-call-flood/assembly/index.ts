import { httpGet, input, JSONObject, output } from '../../../sdk/assembly/index';

export function run(): i32 {
  const url = input().getString('url');
  let answered = 0;
  for (let i = 0; i < 100000; i++) {
    const r = httpGet(url);
    if (r.status > 0 || r.errorCode.length > 0) answered++;
  }
  output(new JSONObject().num('answered', answered).toString());
  return 0;
}
