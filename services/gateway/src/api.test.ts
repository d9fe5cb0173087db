import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { TalonError } from '@talon/kit/errors';
import { Api, findRoute, type ApiDeps, type Route } from './api.ts';
import type { Principal } from './auth.ts';
import { jsonResponse } from '../test/json-response.ts';

const alice: Principal = { userId: 'alice', tokenId: 't1', tokenName: 'laptop', scope: 'user', tokenHash: 'h' };
const root: Principal = { userId: 'root', tokenId: 't2', tokenName: 'admin', scope: 'operator', tokenHash: 'h' };
const TOKEN_ID = '0123abcd-0123-4567-89ab-0123456789ab';

/** Stores that answer every call with a minimal valid result and record what they were asked. */
function fakeDeps(calls: string[]): ApiDeps {
  const rec =
    <T>(name: string, value: T) =>
    async (...args: unknown[]) => {
      calls.push(`${name}(${args.map((a) => JSON.stringify(a)).join(',')})`);
      return value;
    };
  return {
    tokens: { rotate: rec('rotate', { token: 'new', info: {} }), list: rec('tokens', []), revoke: rec('revoke', true) },
    approvals: { list: rec('approvals', []), decide: rec('decide', { id: 'a1' }) },
    pairings: {
      pending: rec('pending', []),
      paired: rec('paired', []),
      deny: rec('deny', undefined),
      approve: rec('approve', { pairing: { identity: { channel: 'telegram', account: '1' }, userId: 'alice', code: 'ABCDEFGH' } }),
      unpair: rec('unpair', true),
    },
    users: { list: rec('users', []) },
    skills: { list: rec('skills', []) },
    audit: { egressDecisions: rec('audit', { entries: [], next: 0 }) },
    egress: { secretNames: rec('secrets', []) },
    routines: { list: rec('routines', []) },
    maxBodyBytes: 1024,
  } as unknown as ApiDeps;
}

function request(method: string, body?: unknown): IncomingMessage {
  const req = Readable.from(body === undefined ? [] : [Buffer.from(JSON.stringify(body))]) as unknown as IncomingMessage;
  req.method = method;
  req.headers = body === undefined ? {} : { 'content-type': 'application/json' };
  return req;
}

async function call(api: Api, method: string, target: string, p: Principal, body?: unknown) {
  const { res, out } = jsonResponse();
  const handled = await api.route(request(method, body), res, new URL(target, 'http://gateway.invalid'), p);
  return { handled, ...out };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TalonError, String(err));
    return `${err.code} ${err.httpStatus}: ${err.message}`;
  }
  assert.fail('expected a refusal');
}

// One request per route in the tables: [method, path, body, principal].
const EXAMPLES: Array<[string, string, unknown, Principal]> = [
  ['GET', '/v1/me', undefined, alice],
  ['POST', '/v1/me/token/rotate', {}, alice],
  ['GET', '/v1/approvals?status=pending', undefined, alice],
  ['POST', '/v1/approvals/a%201/deny', { reason: 'no' }, alice],
  ['GET', '/v1/routines', undefined, alice],
  ['GET', '/v1/admin/skills', undefined, root],
  ['GET', '/v1/admin/secrets', undefined, root],
  ['GET', '/v1/admin/users', undefined, root],
  ['POST', `/v1/admin/tokens/${TOKEN_ID}/revoke`, {}, root],
  ['GET', '/v1/admin/pairings', undefined, root],
  ['POST', '/v1/admin/pairings/ABCD-EFGH/approve', { user: 'alice' }, root],
  ['POST', '/v1/admin/pairings/unpair', { channel: 'telegram', account: '1' }, root],
  ['GET', '/v1/admin/audit?limit=5', undefined, root],
];

describe('gateway API route table', () => {
  it('has a route for every example and an example for every route', async () => {
    const calls: string[] = [];
    const api = new Api(fakeDeps(calls));
    const hit = new Set<Route>();
    for (const [method, target, body, p] of EXAMPLES) {
      const path = new URL(target, 'http://x').pathname;
      const found = findRoute([...api.userRoutes, ...api.operatorRoutes], method, path);
      assert.ok(found, `${method} ${path} matches a route`);
      assert.ok(!hit.has(found.route), `${method} ${path} is the only example of its route`);
      hit.add(found.route);
      const r = await call(api, method, target, p, body);
      assert.deepEqual([r.handled, r.status], [true, 200], `${method} ${path}`);
    }
    assert.equal(hit.size, api.userRoutes.length + api.operatorRoutes.length);
    // Captured groups reach the stores decoded and in order.
    assert.ok(
      calls.includes('decide({"userId":"alice","tokenId":"t1","tokenName":"laptop","scope":"user","tokenHash":"h"},"a 1",false,"no")'),
    );
    assert.ok(calls.includes(`revoke("${TOKEN_ID}")`));
    assert.ok(calls.includes('approve("ABCD-EFGH","alice","token:t2")'));
    assert.ok(calls.includes('audit(5,0)'));
    assert.ok(calls.includes('routines("alice")'), 'a user sees the routines that run as them, no one else’s');
  });

  it('leaves unknown paths outside /v1/admin/ to the caller and answers 404 inside it', async () => {
    const api = new Api(fakeDeps([]));
    assert.equal((await call(api, 'GET', '/v1/nothing', alice)).handled, false);
    assert.equal((await call(api, 'GET', '/v1/me/', alice)).handled, false);
    assert.equal(await refusal(call(api, 'GET', '/v1/admin/nothing', root)), 'not_found 404: no route for GET /v1/admin/nothing');
    assert.equal(
      await refusal(call(api, 'POST', '/v1/admin/tokens/not-a-uuid/revoke', root)),
      'not_found 404: no route for POST /v1/admin/tokens/not-a-uuid/revoke',
    );
  });

  it('answers 405 naming the method a known path takes', async () => {
    const api = new Api(fakeDeps([]));
    assert.equal(await refusal(call(api, 'POST', '/v1/me', alice)), 'method_not_allowed 405: use GET for /v1/me');
    assert.equal(
      await refusal(call(api, 'GET', '/v1/approvals/a1/approve', alice)),
      'method_not_allowed 405: use POST for /v1/approvals/a1/approve',
    );
    assert.equal(await refusal(call(api, 'DELETE', '/v1/admin/audit', root)), 'method_not_allowed 405: use GET for /v1/admin/audit');
    assert.equal(
      await refusal(call(api, 'GET', '/v1/admin/pairings/unpair', root)),
      'method_not_allowed 405: use POST for /v1/admin/pairings/unpair',
    );
  });

  it('refuses a user token anywhere under /v1/admin/ before looking the path up', async () => {
    const api = new Api(fakeDeps([]));
    for (const [method, path] of [
      ['GET', '/v1/admin/users'],
      ['POST', '/v1/admin/users'],
      ['GET', '/v1/admin/nothing'],
    ] as const) {
      assert.match(await refusal(call(api, method, path, alice)), /^permission_denied 403: /, `${method} ${path}`);
    }
  });

  it('hands other /v1/ paths to the conversations API before the operator check', async () => {
    const seen: string[] = [];
    const api = new Api({
      ...fakeDeps([]),
      conversations: {
        route: async (_req: IncomingMessage, res: ServerResponse, url: URL) => {
          seen.push(url.pathname);
          if (!url.pathname.startsWith('/v1/conversations')) return false;
          res.writeHead(204).end('null');
          return true;
        },
      },
    });
    assert.equal((await call(api, 'GET', '/v1/conversations', alice)).status, 204);
    assert.equal((await call(api, 'GET', '/v1/me', alice)).status, 200);
    assert.match(await refusal(call(api, 'GET', '/v1/admin/skills', alice)), /^permission_denied/);
    assert.deepEqual(seen, ['/v1/conversations', '/v1/admin/skills']);
  });
});
