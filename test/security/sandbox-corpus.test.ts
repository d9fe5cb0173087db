// The malicious-plugin corpus (test/security/malicious/corpus.ts), attempted for real
// against a live sandbox node with a real egress and vault: each attack must end in a
// clean SkillError, and after each one the same node (same process) keeps serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Objm } from '@nats-io/obj';
import { createClient, unary } from '@talon/kit/grpc';
import { OBJECT_BUCKETS } from '@talon/kit/subjects';
import { Placement, VaultAdminServiceClient, type SkillResult } from '@talon/proto';
import type { TestPlatform } from '@talon/testkit';
import { SkillAdmin, SkillPackageError } from '@talon/records/skills';
import {
  builtSkill,
  collectEgressDecisions,
  forceApproved,
  installApproved,
  invoke,
  signedPackage,
  startFakeUpstream,
  startSandboxPlatform,
  trustTestPublisher,
  type FakeUpstream,
} from '../../services/sandbox/test/support.ts';
import { INSTALL_CASES, RUN_CASES } from './malicious/corpus.ts';

const PASS = `sandbox corpus ${randomBytes(8).toString('hex')}`;
const CANARY = `canary-${randomBytes(24).toString('base64url')}`;

/** Egress refusal codes (x-talon-egress-error) a plugin sees for a destination it may not reach. */
const REFUSALS = new Set(['host_not_allowed', 'policy_denied', 'private_address', 'permission_denied']);

function leakForms(v: string): string[] {
  const b = Buffer.from(v);
  return [
    v,
    b.toString('base64'),
    b.toString('base64').replace(/=+$/, ''),
    b.toString('base64url'),
    b.toString('hex'),
    encodeURIComponent(v),
  ];
}
function assertNoCanary(text: string, where: string): void {
  for (const f of leakForms(CANARY)) assert.ok(!text.includes(f), `${where} contains a form of the canary secret`);
}

describe('malicious plugin corpus against a live sandbox node', () => {
  let tp: TestPlatform;
  let upstream: FakeUpstream; // the approved third-party API
  let stranger: FakeUpstream; // reachable by egress (allow-private) but approved for nobody
  let trap: FakeUpstream; // a "metadata service" on loopback that must never see a connection
  let slow: FakeUpstream; // never answers
  let sandboxPid: number | undefined;
  const probeHosts: string[] = [];

  const nc = () => tp.admin();

  /** The node still answers a good skill, from the same process. */
  async function stillServing(): Promise<void> {
    const r = await invoke(await nc(), 'unit-convert', { value: 2, from: 'kg', to: 'g' });
    assert.equal(r.error, undefined, `node stopped serving: ${JSON.stringify(r.error)}`);
    assert.equal(r.output, '{"value":2000,"unit":"g"}');
    const proc = tp.platform.process('sandbox');
    assert.ok(proc?.running, 'the sandbox process is alive');
    assert.equal(proc.pid, sandboxPid, 'same sandbox process (it was not restarted)');
  }

  before(async () => {
    upstream = await startFakeUpstream((r) => {
      if (r.url.startsWith('/echo')) return { body: JSON.stringify({ youSent: r.headers }) };
      return {};
    });
    stranger = await startFakeUpstream();
    trap = await startFakeUpstream();
    slow = await startFakeUpstream(() => ({ hang: true }));
    const up = `127.0.0.1:${upstream.port}`;
    probeHosts.push(up, '169.254.169.254:80', `127.0.0.1:${trap.port}`, `127.0.0.1:${slow.port}`);
    tp = await startSandboxPlatform({
      services: ['vault', 'egress'],
      env: {
        TALON_VAULT_PASSPHRASE: PASS,
        // Loopback fakes egress may reach; the trap port and the metadata address are NOT here.
        TALON_EGRESS_ALLOW_PRIVATE: [up, `127.0.0.1:${stranger.port}`, `127.0.0.1:${slow.port}`].join(','),
      },
      // No egress policy file: a skill's destinations come only from its approved
      // record in talon_skills (installApproved below).
      sandboxEnv: { SANDBOX_CONCURRENCY: '3', SANDBOX_HTTP_CALLS_PER_INVOCATION: '16' },
    });
    sandboxPid = tp.platform.process('sandbox')?.pid;
    // The "still serving" probe gets a generous budget (its manifest says 1 s, queueing
    // included): right after a hostile plugin its host is being replaced, and on a busy
    // machine a cold host can take longer than that. Whether it is served is the point.
    await installApproved(await nc(), builtSkill('examples', 'unit-convert'), { permissions: { timeoutMs: 10_000 } });
    for (const c of RUN_CASES) await installApproved(await nc(), builtSkill('malicious', c.source));
    // The probe's tests are about egress, not time: a generous budget. Its 1 s copy is for the timeout test.
    await installApproved(await nc(), builtSkill('malicious', 'http-probe'), { permissions: { hosts: probeHosts, timeoutMs: 10_000 } });
    await installApproved(await nc(), builtSkill('malicious', 'http-probe'), {
      name: 'slow-probe',
      permissions: { hosts: probeHosts, timeoutMs: 1000 },
    });
    await installApproved(await nc(), builtSkill('malicious', 'exfil'), { permissions: { hosts: [up], secrets: ['canary'] } });
    await installApproved(await nc(), builtSkill('malicious', 'host-call-flood'), { permissions: { hosts: [up] } });
    await stillServing();
  });

  after(async () => {
    await Promise.all([upstream, stranger, trap, slow].map((u) => u?.close()));
    await tp?.stop();
  });

  describe('contained at run time by the sandbox', () => {
    for (const c of RUN_CASES) {
      it(`${c.source}: ${c.attack} -> ${c.code}`, async () => {
        const t0 = Date.now();
        const r = await invoke(await nc(), c.source, {});
        assert.equal(r.error?.code, c.code, JSON.stringify(r.error));
        if (c.message) assert.match(r.error!.message, c.message);
        assert.match(r.error!.message, new RegExp(`^${c.source}@1\\.0\\.0: `), 'the error names the skill');
        assert.equal(r.output, '');
        // Its deadline counts time queued for a host too (hosts are being replaced after earlier cases).
        if (c.code === 'timeout') assert.ok(Date.now() - t0 < 6000, 'stopped at its 1 s timeout, not the 15 s request timeout');
        await stillServing();
      });
    }
  });

  describe('refused at install, and refused again by the node if forced into the registry', () => {
    for (const c of INSTALL_CASES) {
      it(`${c.source}: ${c.attack} -> ${c.installRefusal}`, async () => {
        await trustTestPublisher(await nc());
        await assert.rejects(
          new SkillAdmin(await nc()).install(signedPackage(builtSkill('malicious', c.source))),
          (e: unknown) => e instanceof SkillPackageError && e.reason === c.installRefusal && (!c.message || c.message.test(e.message)),
        );
        assert.equal(await new SkillAdmin(await nc()).get(c.source, '1.0.0'), undefined, 'nothing was recorded');
        await forceApproved(await nc(), builtSkill('malicious', c.source));
        const r = await invoke(await nc(), c.source, {});
        assert.equal(r.error?.code, c.code, JSON.stringify(r.error));
        if (c.message) assert.match(r.error!.message, c.message);
        await stillServing();
      });
    }
  });

  describe('network: the only way out is egress, as the skill', () => {
    const probe = async (requests: unknown[]) => invoke(await nc(), 'http-probe', { requests });
    const results = (r: SkillResult) =>
      (JSON.parse(r.output) as { results: Array<{ status: number; errorCode: string; errorMessage: string; body: string }> }).results;

    it('reaches an approved host through egress, labelled with the skill, whatever headers it forges [sandbox + egress]', async () => {
      const audit = collectEgressDecisions(await nc());
      try {
        const before = upstream.requests.length;
        const r = await invoke(await nc(), 'http-probe', {
          requests: [
            {
              url: `${upstream.url}/hello`,
              headers: { 'x-talon-skill': 'unit-convert@1.0.0', 'proxy-authorization': 'Basic Zm9vOmJhcg==', 'x-ok': 'yes' },
            },
          ],
        });
        assert.equal(r.error, undefined, JSON.stringify(r.error));
        assert.equal(results(r)[0]?.status, 200);
        assert.equal(r.hostCalls, 1);
        const seen = upstream.requests.slice(before);
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.headers['x-ok'], 'yes');
        assert.equal(seen[0]!.headers['proxy-authorization'], undefined);
        // The header names the real skill between sandbox and egress; egress consumes it.
        assert.notEqual(seen[0]!.headers['x-talon-skill'], 'unit-convert@1.0.0');
        const d = await tp.until('egress’s decision on /hello', () => audit.decisions.find((x) => x.path === '/hello'));
        assert.equal(d?.principal, 'skill:http-probe@1.0.0', 'egress saw the request as the skill, not as the sandbox or the forged id');
        assert.equal(d?.allowed, true);
      } finally {
        audit.stop();
      }
      await stillServing();
    });

    it('is refused hosts it was not approved for, and nothing connects to them [egress]', async () => {
      const r = await probe([
        { url: 'https://example.org/' },
        { url: `${stranger.url}/x` },
        { url: `https://${upstream.port}.example.net/` },
      ]);
      assert.equal(r.error, undefined);
      const res = results(r);
      for (const x of res) assert.ok(REFUSALS.has(x.errorCode), `refused by egress (${x.errorCode || x.status})`);
      assert.match(res[0]!.errorMessage, /skill:http-probe@1\.0\.0 may not GET https:\/\/example\.org/);
      console.log(`unapproved hosts: ${res.map((x) => x.errorCode).join(' ')}`);
      assert.equal(stranger.connections, 0, 'the unapproved server saw no connection');
      await stillServing();
    });

    it('cannot reach private, loopback, link-local or metadata addresses, even when a rule names them [egress]', async () => {
      const r = await probe([
        { url: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' },
        { url: `http://127.0.0.1:${trap.port}/` },
        { url: `http://[::1]:${trap.port}/` },
        { url: `http://localhost:${trap.port}/` },
        { url: 'http://10.0.0.1/' },
        { url: `http://127.0.0.1:${tp.ports.nats}/` },
      ]);
      assert.equal(r.error, undefined);
      const codes = results(r).map((x) => x.errorCode);
      console.log(`private addresses: ${codes.join(' ')}`);
      for (const c of codes) assert.ok(REFUSALS.has(c), `refused by egress (${c})`);
      assert.equal(trap.connections, 0, 'nothing connected to the loopback trap');
      await stillServing();
    });

    it('is stopped at its timeout while waiting inside a host call; the node keeps serving [sandbox]', async () => {
      const t0 = Date.now();
      const asked = slow.requests.length;
      let settled = false;
      const pending = invoke(await nc(), 'slow-probe', { requests: [{ url: `${slow.url}/never` }] }).finally(() => (settled = true));
      // Inside the host call once its request reached the silent server (or already stopped, on a very busy machine).
      await tp.until('the probe’s request to reach the silent server', () => slow.requests.length > asked || settled);
      await stillServing(); // served while the probe waits
      const r = await pending;
      assert.equal(r.error?.code, 'timeout', JSON.stringify(r.error));
      const took = Date.now() - t0;
      assert.ok(took >= 950 && took < 6000, `stopped at its 1 s timeout (${took} ms)`);
      await stillServing();
    });

    it('a flood of host calls is cut off at the per-call budget [sandbox]', async () => {
      const before = upstream.requests.length;
      const r = await invoke(await nc(), 'host-call-flood', { url: `${upstream.url}/flood` }, { timeoutMs: 20_000 });
      assert.equal(r.error?.code, 'rate_limited', JSON.stringify(r.error));
      assert.match(r.error!.message, /more than 16 HTTP requests/);
      assert.ok(upstream.requests.length - before <= 16, `at most 16 requests left the node (${upstream.requests.length - before})`);
      await stillServing();
    });
  });

  describe('secrets [egress: placement, principal binding, scanning, response redaction]', () => {
    before(async () => {
      const addr = `127.0.0.1:${tp.ports.grpc.vault}`;
      const vault = createClient(VaultAdminServiceClient, addr, tp.platform.tls('admin'), 'vault');
      try {
        const st = await unary(vault, vault.status, {});
        if (st.sealed) await unary(vault, vault.unseal, { passphrase: PASS });
        const policy = (principals: string[]) => ({
          hosts: [`127.0.0.1:${upstream.port}`],
          placement: Placement.PLACEMENT_BEARER,
          field: '',
          principals,
          expiresAtMs: 0,
        });
        await unary(vault, vault.setSecret, { name: 'canary', value: Buffer.from(CANARY), policy: policy(['skill:exfil@1.0.0']) });
        await unary(vault, vault.setSecret, {
          name: 'not_granted',
          value: Buffer.from(`${CANARY}-other`),
          policy: policy(['orchestrator']),
        });
      } finally {
        vault.close();
      }
      await tp.egressCaughtUpWithVault(); // egress learns the new secrets (and their fingerprints) at its next poll
    });

    let attempts: Array<{ attempt: string; status: number; errorCode: string }> = [];
    let output = '';
    let sent: FakeUpstream['requests'] = [];

    it('every exfiltration attempt goes to egress as the skill and ends cleanly; the node keeps serving [sandbox]', async () => {
      const audit = collectEgressDecisions(await nc());
      const before = upstream.requests.length;
      try {
        const r = await invoke(await nc(), 'exfil', { base: upstream.url }, { timeoutMs: 20_000 });
        assert.equal(r.error, undefined, JSON.stringify(r.error));
        output = r.output;
        attempts = (JSON.parse(r.output) as { results: typeof attempts }).results;
        assert.deepEqual(
          attempts.map((a) => a.attempt),
          ['query', 'body', 'header', 'base64', 'percent', 'echo', 'reflect', 'ungranted'],
        );
        assert.equal(r.hostCalls, 8);
        const mine = await tp
          .until('egress’s decisions on the attempts', () => {
            const m = audit.decisions.filter((d) => d.port === upstream.port);
            return m.length >= 8 && m;
          })
          .catch(() => audit.decisions.filter((d) => d.port === upstream.port));
        assert.ok(mine.length >= 8, `egress decided every attempt (${mine.length})`);
        for (const d of mine) assert.equal(d.principal, 'skill:exfil@1.0.0');
        sent = upstream.requests.slice(before);
      } finally {
        audit.stop();
      }
      console.log(`exfil attempts: ${attempts.map((a) => `${a.attempt}=${a.errorCode || a.status}`).join(' ')}`);
      const ungranted = attempts.find((a) => a.attempt === 'ungranted')!;
      assert.ok(
        REFUSALS.has(ungranted.errorCode),
        `a secret the skill was not granted is refused (${ungranted.errorCode || ungranted.status})`,
      );
      assertNoCanary(tp.log('sandbox'), 'the sandbox log');
      await stillServing();
    });

    // Egress's part: placement and principal binding stop the direct forms; the
    // echo-and-reflect path is stopped by response redaction and the outbound scan.
    it('the canary never reaches the plugin, and leaves only as the bound header to the bound host [egress]', () => {
      assert.ok(attempts.length > 0, 'the previous test ran the plugin');
      for (const req of sent) {
        const { authorization, ...rest } = req.headers;
        assertNoCanary(`${req.url}\n${JSON.stringify(rest)}\n${req.body}`, `upstream request ${req.method} ${req.url.slice(0, 40)}`);
        if (!req.url.startsWith('/echo')) assertNoCanary(String(authorization ?? ''), `Authorization of ${req.url.slice(0, 40)}`);
      }
      assertNoCanary(output, 'the plugin output');
    });
  });

  describe('integrity', () => {
    it('a binary replaced after approval (in the object store and the node cache) is refused; restoring it restores service', async () => {
      // Its own binary (the template's): content-addressed storage shares identical binaries.
      const rec = await installApproved(await nc(), builtSkill('template'), { name: 'tamper-target' });
      const greet = async () => invoke(await nc(), 'tamper-target', { name: 'Ada' });
      assert.equal((await greet()).output, '{"greeting":"Hello, Ada!"}');
      const cacheDir = join(tp.home, 'sandbox', 'cache');
      assert.ok(readdirSync(cacheDir).includes(`${rec.sha256}.wasm`), 'the node cached the verified binary');
      // The attacker swaps in another (valid, hostile) module under the approved hash.
      const evil = new Uint8Array(readFileSync(join(builtSkill('malicious', 'http-probe'), 'skill.wasm')));
      await (await new Objm(await nc()).open(OBJECT_BUCKETS.skillBinaries)).putBlob({ name: rec.sha256 }, evil);
      writeFileSync(join(cacheDir, `${rec.sha256}.wasm`), evil);
      await tp.platform.stopService('sandbox');
      tp.platform.startService('sandbox');
      await tp.platform.waitHealthy(['sandbox']);
      sandboxPid = tp.platform.process('sandbox')?.pid;
      const r = await greet();
      assert.equal(r.error?.code, 'integrity_error', JSON.stringify(r.error));
      assert.match(r.error!.message, /modified after approval/);
      await stillServing();
      // Re-installing the signed package puts the intact binary back; the approval (bound to the hash) still holds.
      const res = await new SkillAdmin(await nc()).install(signedPackage(builtSkill('template'), { manifest: { name: 'tamper-target' } }));
      assert.equal(res.outcome, 'unchanged');
      assert.equal((await greet()).output, '{"greeting":"Hello, Ada!"}');
    });
  });
});
