// Invocations over NATS against a real sandbox node: the registry lifecycle (pending,
// approved, revoked, re-installed, untrusted), version resolution, the request checks,
// the HTTP path through a real egress, and the audit trail.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SkillInvocation, SkillInvocationAudit, SkillResult } from '@talon/proto';
import type { TestPlatform } from '@talon/testkit';
import { SkillAdmin } from '@talon/records/skills';
import {
  PUBLISHER,
  builtSkill,
  collectEgressDecisions,
  installApproved,
  invoke,
  signedPackage,
  startFakeUpstream,
  startSandboxPlatform,
  trustTestPublisher,
  type FakeUpstream,
} from './support.ts';

const KM = { value: 5, from: 'mi', to: 'km' };

describe('sandbox invocations over NATS', () => {
  let tp: TestPlatform;
  let api: FakeUpstream;
  const nc = () => tp.admin();
  const admin = async () => new SkillAdmin(await nc());

  before(async () => {
    api = await startFakeUpstream((r) => ({ body: JSON.stringify({ echo: r.url }) }));
    tp = await startSandboxPlatform({
      env: { TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${api.port}` },
      egressPolicy: { rules: [{ principal: 'skill:http-probe@1.0.0', host: '127.0.0.1', port: api.port, methods: ['GET'] }] },
      sandboxEnv: { SANDBOX_CONCURRENCY: '2' },
    });
  });
  after(async () => {
    await api?.close();
    await tp?.stop();
  });

  it('runs an approved skill and reports version and duration', async () => {
    const rec = await installApproved(await nc(), builtSkill('examples', 'unit-convert'));
    const r = await invoke(await nc(), 'unit-convert', KM);
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.output, '{"value":8.04672,"unit":"km"}');
    assert.equal(r.version, '1.0.0');
    assert.equal(r.hostCalls, 0);
    assert.ok(existsSync(join(tp.home, 'sandbox', 'cache', `${rec.sha256}.wasm`)), 'the verified binary is cached on disk');
  });

  it('does not run an installed skill until it is approved, and stops at once when revoked', async () => {
    const a = await admin();
    await trustTestPublisher(await nc());
    await a.install(signedPackage(builtSkill('examples', 'unit-convert'), { manifest: { name: 'lifecycle' } }));
    let r = await invoke(await nc(), 'lifecycle', KM);
    assert.equal(r.error?.code, 'not_approved');
    assert.match(r.error!.message, /talon skills approve lifecycle@1\.0\.0/);
    await a.approve('lifecycle', '1.0.0', 'test');
    r = await invoke(await nc(), 'lifecycle', KM);
    assert.equal(r.error, undefined, 'approval takes effect on the next call');
    await a.revoke('lifecycle', '1.0.0', 'reported as leaky');
    r = await invoke(await nc(), 'lifecycle', KM, { version: '1.0.0' });
    assert.equal(r.error?.code, 'not_approved', 'revocation takes effect on the next call (no cache delay)');
    assert.match(r.error!.message, /revoked \(reported as leaky\)/);
    assert.match((await invoke(await nc(), 'lifecycle', KM)).error!.message, /1\.0\.0 \(revoked\)/);
    await a.approve('lifecycle', '1.0.0', 'test');
    assert.equal((await invoke(await nc(), 'lifecycle', KM)).error, undefined);
  });

  it('treats a changed binary under the same name@version as a new, unapproved skill', async () => {
    const a = await admin();
    await installApproved(await nc(), builtSkill('examples', 'unit-convert'), { name: 'swap' });
    assert.equal((await invoke(await nc(), 'swap', KM)).error, undefined);
    const res = await a.install(signedPackage(builtSkill('template'), { manifest: { name: 'swap', version: '1.0.0' } }));
    assert.equal(res.outcome, 'replaced');
    const r = await invoke(await nc(), 'swap', KM);
    assert.equal(r.error?.code, 'not_approved');
  });

  it('resolves an empty version to the highest approved one', async () => {
    const a = await admin();
    await installApproved(await nc(), builtSkill('examples', 'unit-convert'), { name: 'versions', version: '1.2.0' });
    await a.install(signedPackage(builtSkill('template'), { manifest: { name: 'versions', version: '1.10.0' } }));
    assert.equal((await invoke(await nc(), 'versions', KM)).version, '1.2.0', '1.10.0 is only pending');
    await a.approve('versions', '1.10.0', 'test');
    const r = await invoke(await nc(), 'versions', { name: 'x' });
    assert.equal(r.version, '1.10.0');
    assert.equal(r.output, '{"greeting":"Hello, x!"}');
    assert.equal((await invoke(await nc(), 'versions', KM, { version: '1.2.0' })).version, '1.2.0');
  });

  it('stops every skill of a publisher the operator no longer trusts', async () => {
    const a = await admin();
    await installApproved(await nc(), builtSkill('examples', 'unit-convert'), { name: 'trusting' });
    await a.untrust(PUBLISHER.publicKey);
    const r = await invoke(await nc(), 'trusting', KM);
    assert.equal(r.error?.code, 'integrity_error');
    assert.match(r.error!.message, /no longer trusted/);
    await a.trust(PUBLISHER.publicKey, 'tests');
    assert.equal((await invoke(await nc(), 'trusting', KM)).error, undefined);
  });

  it('requires the user approval flag for skills that ask for it', async () => {
    await installApproved(await nc(), builtSkill('examples', 'unit-convert'), {
      name: 'asks',
      permissions: { requiresUserApproval: true },
    });
    const r = await invoke(await nc(), 'asks', KM);
    assert.equal(r.error?.code, 'permission_denied');
    assert.match(r.error!.message, /user's approval/);
    assert.equal((await invoke(await nc(), 'asks', KM, { userApproved: true })).error, undefined);
  });

  it('refuses malformed requests with precise codes', async () => {
    const cases: Array<[Promise<SkillResult>, string, RegExp]> = [
      [invoke(await nc(), 'nope', {}), 'not_found', /not installed|no approved version/],
      [invoke(await nc(), 'unit-convert', { value: 'x', from: 'mi', to: 'km' }), 'invalid_argument', /\/value: expected number/],
      [invoke(await nc(), 'unit-convert', 'not json'), 'invalid_argument', /not valid JSON/],
      [invoke(await nc(), 'unit-convert', { pad: 'x'.repeat(300 * 1024) }), 'invalid_argument', /larger than/],
      [
        invoke(await nc(), 'unit-convert', KM, { subject: 'talon.skill.invoke.weather' }),
        'invalid_argument',
        /sent to talon\.skill\.invoke\.weather/,
      ],
      [invoke(await nc(), 'unit-convert', KM, { version: '1.0' }), 'invalid_argument', /semantic version/],
      [invoke(await nc(), 'unit-convert', KM, { deadlineMs: Date.now() - 1 }), 'timeout', /after its deadline/],
    ];
    for (const [p, code, re] of cases) {
      const r = await p;
      assert.equal(r.error?.code, code, JSON.stringify(r.error));
      assert.match(r.error!.message, re);
    }
    const raw = await (await nc()).request('talon.skill.invoke.unit-convert', new Uint8Array([0xff, 0xff, 0xff]), { timeout: 5000 });
    assert.equal(SkillResult.decode(raw.data).error?.code, 'invalid_argument');
  });

  it('honours the caller deadline when it is shorter than the skill timeout', async () => {
    await installApproved(await nc(), builtSkill('malicious', 'infinite-loop'), { permissions: { timeoutMs: 10_000 } });
    const t0 = Date.now();
    const r = await invoke(await nc(), 'infinite-loop', {}, { deadlineMs: Date.now() + 700 });
    assert.equal(r.error?.code, 'timeout');
    assert.ok(Date.now() - t0 < 5000, `stopped at the caller's deadline (not at the skill's 10 s) (${Date.now() - t0} ms)`);
  });

  it('sends plugin HTTP through egress as skill:<name>@<version>; egress refusals come back as clean errors', async () => {
    await installApproved(await nc(), builtSkill('examples', 'weather'));
    const audit = collectEgressDecisions(await nc());
    try {
      const r = await invoke(await nc(), 'weather', { latitude: 52.52, longitude: 13.41 });
      assert.equal(r.error?.code, 'plugin_error');
      // No rule grants weather@1.0.0 in this platform's egress: the refusal is egress's, relayed by the skill.
      assert.match(r.error!.message, /weather request failed: (host_not_allowed|policy_denied|upstream_error)/);
      assert.equal(r.hostCalls, 1);
      const d = await tp
        .until('egress’s decision on the weather call', () => audit.decisions.find((x) => x.host === 'api.open-meteo.com'))
        .catch(() => undefined);
      assert.equal(d?.principal, 'skill:weather@1.0.0');
      assert.equal(d?.path, '/v1/forecast');
    } finally {
      audit.stop();
    }
    await installApproved(await nc(), builtSkill('malicious', 'http-probe'), { permissions: { hosts: [`127.0.0.1:${api.port}`] } });
    const ok = await invoke(await nc(), 'http-probe', { requests: [{ url: `${api.url}/v1/data?x=1` }] });
    const first = (JSON.parse(ok.output) as { results: Array<{ status: number; body: string }> }).results[0]!;
    assert.equal(first.status, 200);
    assert.deepEqual(JSON.parse(first.body), { echo: '/v1/data?x=1' });
  });

  it('publishes an audit record per invocation without inputs or outputs', async () => {
    const seen: SkillInvocationAudit[] = [];
    const sub = (await nc()).subscribe('talon.audit.sandbox.>', {
      callback: (_e, m) => void seen.push(SkillInvocationAudit.decode(m.data)),
    });
    try {
      const inv: SkillInvocation = {
        invocationId: 'audit-1',
        skill: 'unit-convert',
        version: '',
        inputJson: JSON.stringify(KM),
        deadlineMs: 0,
        userId: 'alice',
        userApproved: false,
      };
      await (await nc()).request('talon.skill.invoke.unit-convert', SkillInvocation.encode(inv).finish(), { timeout: 5000 });
      const a = await tp.until('the audit record', () => seen.find((x) => x.invocationId === 'audit-1')).catch(() => undefined);
      assert.ok(a, 'audit record published');
      assert.equal(a.outcome, 'ok');
      assert.equal(a.userId, 'alice');
      assert.equal(a.version, '1.0.0');
      assert.match(a.sha256, /^[0-9a-f]{64}$/);
      assert.ok(!JSON.stringify(a).includes('8.04672'), 'no output in the audit record');
    } finally {
      sub.unsubscribe();
    }
  });

  it('shares invocations across sandbox nodes in the queue group', async () => {
    const env = {
      ...tp.platform.serviceEnv('sandbox'),
      SANDBOX_GRPC_PORT: '0',
      SANDBOX_INTERNAL_PORT: '0',
      SANDBOX_CACHE_DIR: join(tp.home, 'sandbox', 'cache2'),
      TALON_PORTS_FILE: '', // the platform's sandbox reports its ports there; this one reports none
    };
    const { spawn } = await import('node:child_process');
    const second = spawn(process.execPath, [join(import.meta.dirname, '..', 'src', 'main.ts')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        second.stdout.on('data', (d: Buffer) => {
          if (d.toString().includes('sandbox ready')) resolve();
        });
        second.once('exit', (c) => reject(new Error(`second node exited ${c}`)));
      });
      const nodes = new Set<string>();
      const sub = (await nc()).subscribe('talon.audit.sandbox.>', {
        callback: (_e, m) => void nodes.add(SkillInvocationAudit.decode(m.data).node),
      });
      for (let i = 0; i < 40 && nodes.size < 2; i++) await invoke(await nc(), 'unit-convert', KM);
      // Audit records follow the answers: wait for them rather than for a while.
      await tp.until('audit records from both nodes', () => nodes.size >= 2).catch(() => undefined);
      sub.unsubscribe();
      assert.equal(nodes.size, 2, `both nodes answered (${[...nodes].join(', ')})`);
    } finally {
      second.kill('SIGTERM');
    }
  });
});
