import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config.ts';
import { internalResponse, internalRoutes, startInternalHttp, type InternalResponse } from './internal-http.ts';
import { Readiness } from './readiness.ts';

const json = (r: InternalResponse): unknown => JSON.parse(r.body);

function setup(opts: { facts?: () => Record<string, unknown>; alive?: () => boolean } = {}) {
  const readiness = new Readiness(() => undefined);
  const route = internalRoutes({ readiness, ...opts });
  return { readiness, get: (url: string, method = 'GET') => route({ method, url }) };
}

describe('internal HTTP routes', () => {
  it('/livez answers ok while alive and 503 once stopped', async () => {
    let alive = true;
    const { get } = setup({ alive: () => alive });
    const r = await get('/livez');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok\n');
    assert.match(r.headers['content-type']!, /^text\/plain/);
    alive = false;
    assert.equal((await get('/livez')).status, 503);
  });

  it('/livez does not depend on readiness: a service waiting for NATS is alive', async () => {
    const { readiness, get } = setup();
    readiness.setServing('SERVING');
    readiness.setDependency('nats', false);
    assert.equal((await get('/livez')).status, 200);
    assert.equal((await get('/readyz')).status, 503);
  });

  it('/readyz follows the readiness, naming what is missing', async () => {
    const { readiness, get } = setup();
    let r = await get('/readyz');
    assert.equal(r.status, 503, 'not ready before the service says SERVING');
    assert.deepEqual(json(r), { status: 'not_ready', missing: [] });
    readiness.setServing('SERVING');
    r = await get('/readyz');
    assert.equal(r.status, 200);
    assert.deepEqual(json(r), { status: 'ready', missing: [] });
    assert.match(r.headers['content-type']!, /^application\/json/);
    assert.equal(r.headers['cache-control'], 'no-store');
    readiness.setDependency('nats', false);
    readiness.setDependency('database', false);
    r = await get('/readyz');
    assert.equal(r.status, 503);
    assert.deepEqual(json(r), { status: 'not_ready', missing: ['database', 'nats'] });
    readiness.setDependency('nats', true);
    readiness.setDependency('database', true);
    assert.equal((await get('/readyz')).status, 200);
    readiness.setServing('NOT_SERVING');
    assert.equal((await get('/readyz')).status, 503, 'shutting down: not ready');
  });

  it('/readyz adds the facts the service reports, without letting them overwrite status or missing', async () => {
    let sealed = true;
    const { readiness, get } = setup({ facts: () => ({ sealed, status: 'ready', missing: 'none' }) });
    readiness.setServing('SERVING');
    readiness.setDependency('database', false);
    let r = await get('/readyz');
    assert.equal(r.status, 503);
    assert.deepEqual(json(r), { status: 'not_ready', missing: ['database'], sealed: true });
    readiness.setDependency('database', true);
    r = await get('/readyz');
    assert.equal(r.status, 200, 'a sealed vault is still ready');
    assert.deepEqual(json(r), { status: 'ready', missing: [], sealed: true });
    sealed = false;
    assert.deepEqual(json(await get('/readyz')), { status: 'ready', missing: [], sealed: false });
  });

  it('/readyz is not ready when the service cannot report its facts', async () => {
    const { readiness, get } = setup({
      facts: () => {
        throw new Error('keyring state unknown at /srv/secret');
      },
    });
    readiness.setServing('SERVING');
    const r = await get('/readyz');
    assert.equal(r.status, 503);
    const body = json(r) as Record<string, unknown>;
    assert.equal(body.status, 'not_ready');
    assert.doesNotMatch(r.body, /srv\/secret/, 'the exception text is not shown');
  });

  it('HEAD gives the GET status and headers without a body', async () => {
    const { readiness, get } = setup();
    readiness.setServing('SERVING');
    const g = await get('/readyz');
    const h = await get('/readyz', 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(h.body, '');
    assert.equal(h.headers['content-length'], g.headers['content-length']);
    assert.equal(h.headers['content-length'], String(Buffer.byteLength(g.body)));
    assert.equal((await get('/livez', 'HEAD')).status, 200);
  });

  it('ignores the query; other paths are 404 and other methods 405, with short bodies', async () => {
    const { get } = setup();
    assert.equal((await get('/livez?verbose=1')).status, 200);
    for (const url of ['/', '/livez/', '/LIVEZ', '/healthz', '/readyz/../livez', 'http://x/livez', '/metrics']) {
      const r = await get(url);
      assert.equal(r.status, 404, url);
      assert.ok(r.body.length < 120, url);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']) {
      const r = await get('/livez', method);
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, 'GET, HEAD');
    }
  });

  it('serves more routes registered by one option (a /metrics handler), HEAD included', async () => {
    const readiness = new Readiness(() => undefined);
    let calls = 0;
    const route = internalRoutes({
      readiness,
      routes: {
        '/metrics': () => {
          calls += 1;
          return internalResponse(200, 'text/plain; version=0.0.4', 'talon_up 1\n');
        },
        '/broken': () => Promise.reject(new Error('collector at /srv/x failed')),
      },
    });
    const r = await route({ method: 'GET', url: '/metrics' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'talon_up 1\n');
    assert.equal((await route({ method: 'HEAD', url: '/metrics' })).body, '');
    assert.equal((await route({ method: 'POST', url: '/metrics' })).status, 405);
    assert.equal(calls, 2);
    const broken = await route({ method: 'GET', url: '/broken' });
    assert.equal(broken.status, 500);
    assert.doesNotMatch(broken.body, /srv/);
    assert.equal((await route({ method: 'GET', url: '/livez' })).status, 200, 'the probes are still there');
  });

  it('refuses a route that would replace a probe', () => {
    const readiness = new Readiness(() => undefined);
    assert.throws(
      () => internalRoutes({ readiness, routes: { '/readyz': () => internalResponse(200, 'text/plain', 'lie') } }),
      /already served/,
    );
    assert.throws(
      () => internalRoutes({ readiness, routes: { metrics: () => internalResponse(200, 'text/plain', '') } }),
      /must start with/,
    );
  });
});

describe('internal HTTP server', () => {
  it('serves the routes on loopback, refuses a taken port naming the variable, and stops answering when closed', async () => {
    const readiness = new Readiness(() => undefined);
    readiness.setServing('SERVING');
    const first = await startInternalHttp({ service: 'vault', host: '127.0.0.1', port: 0, readiness, facts: () => ({ sealed: false }) });
    try {
      const base = `http://127.0.0.1:${first.port}`;
      const live = await fetch(`${base}/livez`);
      assert.equal(live.status, 200);
      assert.equal(await live.text(), 'ok\n');
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready', missing: [], sealed: false });
      const head = await fetch(`${base}/readyz`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');
      // A body is never read: the answer comes and the connection is closed.
      const post = await fetch(`${base}/readyz`, { method: 'POST', body: 'ping' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('connection'), 'close');
      await post.body?.cancel();

      await assert.rejects(
        startInternalHttp({ service: 'vault', host: '127.0.0.1', port: first.port, readiness }),
        (err: unknown) => err instanceof ConfigError && /VAULT_INTERNAL_PORT/.test(err.message) && /already in use/.test(err.message),
      );
    } finally {
      await first.close();
    }
    await assert.rejects(fetch(`http://127.0.0.1:${first.port}/livez`));
  });
});
