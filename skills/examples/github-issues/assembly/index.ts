// github-issues: GET https://api.github.com/repos/{owner}/{repo}/issues with the token as a
// placeholder; egress swaps in the value on the way out (and only towards api.github.com).
import { fail, httpGet, input, JSONArray, JSONObject, output, secret, urlEncode } from '../../../sdk/assembly/index';

export function run(): i32 {
  const args = input();
  const owner = args.getString('owner');
  const repo = args.getString('repo');
  const state = args.getString('state', 'open');
  const limit = <i32>args.getNumber('limit', 10);
  const url =
    'https://api.github.com/repos/' +
    urlEncode(owner) +
    '/' +
    urlEncode(repo) +
    '/issues?state=' +
    urlEncode(state) +
    '&per_page=' +
    limit.toString();
  const headers = new Map<string, string>();
  headers.set('Authorization', 'Bearer ' + secret('github_token'));
  headers.set('Accept', 'application/vnd.github+json');
  headers.set('X-GitHub-Api-Version', '2022-11-28');
  headers.set('User-Agent', 'talon-skill-github-issues');
  const res = httpGet(url, headers);
  if (res.errorCode.length > 0) return fail('GitHub request failed: ' + res.errorCode + ': ' + res.errorMessage);
  if (res.status == 404) return fail('repository ' + owner + '/' + repo + ' not found (or the token cannot see it)');
  if (!res.ok) return fail('api.github.com answered HTTP ' + res.status.toString());
  const list = res.json();
  const issues = new JSONArray();
  let n = 0;
  for (let i = 0; i < list.length && n < limit; i++) {
    const it = list.at(i)!;
    if (it.has('pull_request')) continue; // the issues API also lists pull requests
    const user = it.get('user');
    issues.raw(
      new JSONObject()
        .num('number', it.getNumber('number'))
        .str('title', it.getString('title'))
        .str('state', it.getString('state'))
        .str('author', user == null ? '' : user.getString('login'))
        .num('comments', it.getNumber('comments'))
        .str('url', it.getString('html_url'))
        .toString(),
    );
    n++;
  }
  output(
    new JSONObject()
      .str('repository', owner + '/' + repo)
      .raw('issues', issues.toString())
      .toString(),
  );
  return 0;
}
