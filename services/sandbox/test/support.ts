// Shared by the sandbox's integration tests, the security suites and the benchmark:
// build the skills, sign and install them as a publisher + operator would, and call
// them over NATS exactly as the orchestrator will.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { EgressDecision, SkillInvocation, SkillRecord, SkillResult, SkillStatus } from '@talon/proto';
import { KV_BUCKETS, OBJECT_BUCKETS, skillRecordKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { startTestPlatform, type TestPlatform, type TestPlatformOptions } from '@talon/testkit';
import { builtSkill, ensureSkillsBuilt } from '../../../skills/build.ts';
import {
  SkillAdmin,
  canonicalJson,
  requestedPermissions,
  validateManifest,
  PACKAGE_FILES,
  type PackageBytes,
  generatePublisherKey,
  sha256Hex,
  signSkill,
} from '@talon/records/skills';

export { builtSkill, ensureSkillsBuilt };

/** One publisher key per test process. */
export const PUBLISHER = generatePublisherKey();

/** Manifest overrides: top-level fields are replaced, `permissions` is merged field by field. */
function merge(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base, ...patch };
  if (patch.permissions && base.permissions) out.permissions = { ...(base.permissions as object), ...(patch.permissions as object) };
  return out;
}

/** A signed package from a build directory, with manifest fields overridden (name, version, permissions...). */
export function signedPackage(
  buildDir: string,
  opts: { manifest?: Record<string, unknown>; wasm?: Uint8Array; key?: { privateKeyPem: string } } = {},
): PackageBytes {
  const manifest = merge(
    JSON.parse(readFileSync(join(buildDir, PACKAGE_FILES.manifest), 'utf8')) as Record<string, unknown>,
    opts.manifest ?? {},
  );
  const wasm = opts.wasm ?? new Uint8Array(readFileSync(join(buildDir, PACKAGE_FILES.wasm)));
  const sig = signSkill((opts.key ?? PUBLISHER).privateKeyPem, sha256Hex(wasm), canonicalJson(manifest));
  return { manifestText: JSON.stringify(manifest, null, 2), wasm, signatureText: JSON.stringify(sig) };
}

/** Writes a package to a directory (for CLI tests). */
export function writePackage(pkg: PackageBytes, dir = mkdtempSync(join(tmpdir(), 'talon-skill-'))): string {
  writeFileSync(join(dir, PACKAGE_FILES.manifest), pkg.manifestText);
  writeFileSync(join(dir, PACKAGE_FILES.wasm), pkg.wasm);
  if (pkg.signatureText) writeFileSync(join(dir, PACKAGE_FILES.signature), pkg.signatureText);
  return dir;
}

export async function trustTestPublisher(nc: NatsConnection): Promise<void> {
  await new SkillAdmin(nc).trust(PUBLISHER.publicKey, 'tests');
}

/** Installs and approves a built skill (after trusting the test publisher). */
export async function installApproved(
  nc: NatsConnection,
  buildDir: string,
  manifest: Record<string, unknown> = {},
  opts: { approve?: boolean; wasm?: Uint8Array } = {},
): Promise<SkillRecord> {
  const admin = new SkillAdmin(nc);
  await trustTestPublisher(nc);
  const res = await admin.install(signedPackage(buildDir, { manifest, wasm: opts.wasm }));
  if (opts.approve === false) return res.record;
  return admin.approve(res.record.name, res.record.version, 'test');
}

/**
 * Writes an approved record and its binary straight into the registry, skipping every
 * install-time check (as a compromised install path or a hand-edited bucket would).
 * The signature is valid, so only the node's own load-time checks stand in the way.
 */
export async function forceApproved(nc: NatsConnection, buildDir: string, manifest: Record<string, unknown> = {}): Promise<SkillRecord> {
  await trustTestPublisher(nc);
  const pkg = signedPackage(buildDir, { manifest });
  const m = validateManifest(JSON.parse(pkg.manifestText));
  const sha = sha256Hex(pkg.wasm);
  const sig = JSON.parse(pkg.signatureText!) as { publicKey: string; signature: string };
  await (await new Objm(nc).open(OBJECT_BUCKETS.skillBinaries)).putBlob({ name: sha }, pkg.wasm);
  const requested = requestedPermissions(m);
  const record: SkillRecord = {
    name: m.name,
    version: m.version,
    sha256: sha,
    manifestJson: canonicalJson(m),
    status: SkillStatus.SKILL_STATUS_APPROVED,
    publisherKey: sig.publicKey,
    signature: sig.signature,
    requested,
    approved: requested,
    description: m.description,
    inputSchemaJson: JSON.stringify(m.inputSchema),
    entrypoint: m.entrypoint ?? 'run',
    wasmSize: pkg.wasm.length,
    moduleMaxPages: 0,
    installedAtMs: Date.now(),
    approvedAtMs: Date.now(),
    revokedAtMs: 0,
    approvedBy: 'forced',
    revokedReason: '',
    approvedSha256: sha,
    imports: [],
  };
  await (await new Kvm(nc).open(KV_BUCKETS.skills)).put(skillRecordKey(m.name, m.version), SkillRecord.encode(record).finish());
  return record;
}

/** Collects egress audit decisions (JetStream subject talon.audit.egress.decision) as they are published. */
export function collectEgressDecisions(nc: NatsConnection): { decisions: EgressDecision[]; stop(): void } {
  const decisions: EgressDecision[] = [];
  const sub = nc.subscribe('talon.audit.egress.>', { callback: (_e, m) => void decisions.push(EgressDecision.decode(m.data)) });
  return { decisions, stop: () => sub.unsubscribe() };
}

export async function invoke(
  nc: NatsConnection,
  skill: string,
  input: unknown,
  opts: { version?: string; timeoutMs?: number; userApproved?: boolean; deadlineMs?: number; subject?: string; userId?: string } = {},
): Promise<SkillResult> {
  const inv: SkillInvocation = {
    invocationId: `t-${Math.random().toString(36).slice(2)}`,
    skill,
    version: opts.version ?? '',
    inputJson: typeof input === 'string' ? input : JSON.stringify(input),
    deadlineMs: opts.deadlineMs ?? 0,
    userId: opts.userId ?? 'tester',
    userApproved: opts.userApproved ?? false,
  };
  const msg = await nc.request(opts.subject ?? `talon.skill.invoke.${skill}`, SkillInvocation.encode(inv).finish(), {
    timeout: opts.timeoutMs ?? 15_000,
  });
  return SkillResult.decode(msg.data);
}

/** A recording HTTP server on loopback standing in for a third-party API. */
export interface FakeUpstream {
  url: string;
  port: number;
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }>;
  connections: number;
  close(): Promise<void>;
}

export async function startFakeUpstream(
  handler: (req: { method: string; url: string; headers: IncomingMessage['headers']; body: string }) => {
    status?: number;
    body?: string;
    hang?: boolean;
  } = () => ({}),
  host = '127.0.0.1',
): Promise<FakeUpstream> {
  const requests: FakeUpstream['requests'] = [];
  let connections = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(r);
      const out = handler(r);
      if (out.hang) return; // never answer
      res.writeHead(out.status ?? 200, { 'content-type': 'application/json' });
      res.end(out.body ?? JSON.stringify({ ok: true, path: r.url }));
    });
  });
  server.on('connection', () => {
    connections += 1;
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * Starts NATS, the database and the given services, then a sandbox node pointed at the
 * platform's egress (SANDBOX_EGRESS_URL; `talon up` wiring for it belongs to the platform).
 */
export async function startSandboxPlatform(
  opts: TestPlatformOptions & { egressPolicy?: { rules: unknown[] }; sandboxEnv?: Record<string, string> } = {},
): Promise<TestPlatform> {
  await ensureSkillsBuilt();
  const env: Record<string, string | undefined> = { ...opts.env };
  if (opts.egressPolicy) {
    const file = join(mkdtempSync(join(tmpdir(), 'talon-policy-')), 'policy.json');
    writeFileSync(file, JSON.stringify(opts.egressPolicy));
    env.EGRESS_POLICY_FILE = file;
  }
  const services = opts.services ?? ['egress'];
  const tp = await startTestPlatform({ llm: false, ...opts, env, services: services.filter((s) => s !== 'sandbox') });
  try {
    Object.assign(tp.platform.opts.env!, { SANDBOX_EGRESS_URL: tp.platform.egressProxyUrl, ...opts.sandboxEnv });
    tp.platform.startService('sandbox');
    await tp.platform.waitHealthy(['sandbox']);
  } catch (err) {
    await tp.stop();
    throw err;
  }
  return tp;
}
