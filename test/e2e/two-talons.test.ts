// Two Talons on one machine (issue 11): each `talon up`, started through the real CLI
// with its own TALON_HOME and gateway port, gives its internal listeners free ports,
// writes them to TALON_HOME/run/platform.json, and the CLI under each TALON_HOME
// reaches its own platform (before, the second one reached the first one's NATS and
// failed with "Authorization Violation"). A third start whose explicitly set port is
// taken fails at once, naming the variable; a stopped one is reported as not running.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICES } from '@talon/kit/service';
import { readRunState, REPO_ROOT, runFilePath, type RunInfo } from '@talon/cli/platform';
import { waitFor } from '@talon/testkit';

const BIN = join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts');
const base = mkdtempSync(join(tmpdir(), 'talon-two-'));

/** Only what a user's shell would carry: no port or address variable leaks in from the test run. */
function envFor(home: string, extra: Record<string, string>): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TALON_NATS_SERVER_BIN: process.env.TALON_NATS_SERVER_BIN,
    TALON_HOME: home,
    TALON_LLM_API_KEY_SECRET: 'none',
    TALON_SHUTDOWN_TIMEOUT_MS: '5000',
    ...extra,
  };
}

function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A gateway port the way a user picks one: a fixed number, here one below the kernel's range for port 0, free now. */
async function fixedFreePort(not: number[] = []): Promise<number> {
  for (;;) {
    const p = 20_000 + Math.floor(Math.random() * 10_000);
    if (!not.includes(p) && (await listenable(p))) return p;
  }
}

interface Up {
  home: string;
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves once `talon up` says it is up; rejects if it exits first. */
  ready: Promise<void>;
  exited: Promise<number | null>;
}

function talonUp(home: string, extra: Record<string, string>): Up {
  mkdirSync(home, { recursive: true });
  // cwd: a folder without a .env, so only the variables given here apply.
  const child = spawn(process.execPath, [BIN, 'up'], { cwd: base, env: envFor(home, extra), stdio: ['ignore', 'pipe', 'pipe'] });
  const up: Up = { home, child, stdout: '', stderr: '', ready: Promise.resolve(), exited: Promise.resolve(null) };
  up.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  up.ready = new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      up.stdout += d.toString();
      if (up.stdout.includes('Talon is up')) resolve();
    });
    child.stderr!.on('data', (d: Buffer) => (up.stderr += d.toString()));
    void up.exited.then((code) => reject(new Error(`talon up (${home}) exited ${code}:\n${up.stderr}`)));
  });
  // Either outcome is awaited by a test; this only keeps an early exit from being unhandled.
  up.ready.catch(() => undefined);
  return up;
}

function talon(
  home: string,
  args: string[],
  extra: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: base, env: envFor(home, extra), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function runInfo(home: string): RunInfo {
  const run = readRunState(home);
  assert.equal(run.kind, 'running', `${runFilePath(home)} names a running talon up`);
  return run.info;
}

/** Every port of a run file (0 would be a listener that never reported). */
function allPorts(info: RunInfo): number[] {
  const p = info.ports;
  return [p.gatewayHttp, p.nats, p.pglite, p.egressProxy, ...SERVICES.flatMap((s) => [p.grpc[s], p.internal[s]])];
}

describe('two Talons side by side on one machine', { timeout: 240_000 }, () => {
  let a: Up;
  let b: Up;
  let gatewayA: number;
  let gatewayB: number;

  before(async () => {
    gatewayA = await fixedFreePort();
    gatewayB = await fixedFreePort([gatewayA]);
    a = talonUp(join(base, 'a'), { TALON_GATEWAY_PORT: String(gatewayA) });
    // B has a chat platform enabled and none of its secrets stored.
    b = talonUp(join(base, 'b'), { TALON_GATEWAY_PORT: String(gatewayB), TALON_CHANNELS: 'telegram' });
    await Promise.all([a.ready, b.ready]);
  });

  after(async () => {
    for (const up of [a, b]) {
      if (!up || up.child.exitCode !== null || up.child.signalCode !== null) continue;
      up.child.kill('SIGTERM');
      const t = setTimeout(() => up.child.kill('SIGKILL'), 30_000);
      await up.exited;
      clearTimeout(t);
    }
    rmSync(base, { recursive: true, force: true });
  });

  it('each picks its own free internal ports and writes them down; the gateways keep the ports asked for', () => {
    const [ra, rb] = [runInfo(a.home), runInfo(b.home)];
    assert.equal(ra.pid, a.child.pid);
    assert.equal(rb.pid, b.child.pid);
    assert.equal(ra.ports.gatewayHttp, gatewayA);
    assert.equal(rb.ports.gatewayHttp, gatewayB);
    for (const r of [ra, rb])
      assert.ok(
        allPorts(r).every((p) => p > 0 && p < 65_536),
        JSON.stringify(r.ports),
      );
    const shared = allPorts(ra).filter((p) => allPorts(rb).includes(p));
    assert.deepEqual(shared, [], 'no listener shared');
    assert.equal(ra.natsUrl, `nats://127.0.0.1:${ra.ports.nats}`);
    assert.match(a.stdout, new RegExp(`NATS +${ra.natsUrl}`));
  });

  it('names the enabled chat platforms and the state of their vault secrets in what talon up prints', async () => {
    await waitFor(() => b.stdout.includes('Press Ctrl-C'), 10_000, "B's summary");
    assert.match(b.stdout, /^ {2}Channels {2}telegram: NOT WORKING until these vault secrets are stored:$/m);
    assert.match(
      b.stdout,
      /^ +telegram_bot_token \(telegram; named by GATEWAY_TELEGRAM_BOT_TOKEN_SECRET\): npm run talon -- secrets set telegram_bot_token/m,
    );
    assert.doesNotMatch(a.stdout, /Channels/, 'A has no chat platform');
  });

  it('writes the real internal ports into each Prometheus targets file', () => {
    for (const up of [a, b]) {
      const r = runInfo(up.home);
      const groups = JSON.parse(readFileSync(join(up.home, 'prometheus', 'targets.json'), 'utf8')) as Array<{
        targets: string[];
        labels: { service: string };
      }>;
      assert.deepEqual(
        Object.fromEntries(groups.map((g) => [g.labels.service, g.targets])),
        Object.fromEntries(SERVICES.map((s) => [s, [`127.0.0.1:${r.ports.internal[s]}`]])),
      );
    }
  });

  it('the CLI under each TALON_HOME reaches its own platform: health, the vault and NATS', async () => {
    for (const up of [a, b]) {
      const r = runInfo(up.home);
      const health = await talon(up.home, ['health']);
      assert.equal(health.code, 0, health.stderr + health.stdout);
      for (const s of SERVICES) assert.match(health.stdout, new RegExp(`^${s} +127\\.0\\.0\\.1:${r.ports.grpc[s]}  SERVING$`, 'm'));
      const vault = await talon(up.home, ['vault', 'status']);
      assert.equal(vault.code, 0, vault.stderr);
      assert.match(vault.stdout, new RegExp(`^Vault 127\\.0\\.0\\.1:${r.ports.grpc.vault}: SEALED`));
    }
    // A token created over A's NATS exists on A alone.
    const created = await talon(a.home, ['token', 'create', '--name', 'only-a', '--scope', 'operator']);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    const me = (port: number) => fetch(`http://127.0.0.1:${port}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await me(gatewayA)).status, 200);
    assert.equal((await me(gatewayB)).status, 401);
    const listA = await talon(a.home, ['token', 'list']);
    const listB = await talon(b.home, ['token', 'list']);
    assert.equal(listA.code, 0, listA.stderr);
    assert.equal(listB.code, 0, listB.stderr);
    assert.match(listA.stdout, /only-a/);
    assert.doesNotMatch(listB.stdout, /only-a/);
  });

  it('a third start whose set port is taken fails at once, naming the variable, before starting anything', async () => {
    const natsA = runInfo(a.home).ports.nats;
    const home = join(base, 'c');
    const t0 = Date.now();
    const c = talonUp(home, { TALON_GATEWAY_PORT: '0', TALON_NATS_PORT: String(natsA) });
    await assert.rejects(c.ready);
    assert.notEqual(await c.exited, 0);
    assert.ok(Date.now() - t0 < 20_000, `failed in ${Date.now() - t0} ms`);
    assert.match(
      c.stderr,
      new RegExp(`TALON_NATS_PORT=${natsA} is in use by another process; choose another or unset it to pick a free port`),
    );
    assert.ok(!existsSync(join(home, 'pki', 'ca.crt')), 'no CA created');
    assert.ok(!existsSync(join(home, 'logs', 'nats.log')), 'no nats-server started');
    assert.ok(!existsSync(runFilePath(home)), 'no run file');
  });

  it('a stopped Talon is reported as not running; the other one goes on', async () => {
    a.child.kill('SIGTERM');
    assert.equal(await a.exited, 0, a.stderr);
    assert.ok(!existsSync(runFilePath(a.home)), 'run file removed on stop');
    const r = await talon(a.home, ['health']);
    assert.equal(r.code, 69, r.stderr);
    assert.equal(
      r.stderr.trim(),
      `talon: Talon is not running under TALON_HOME=${a.home}; start it with \`talon up\` (or set TALON_HOME to the folder of the Talon you mean)`,
    );
    const tokens = await talon(a.home, ['token', 'list']);
    assert.equal(tokens.code, 69);
    assert.match(tokens.stderr, /Talon is not running under TALON_HOME=/);
    const stillB = await talon(b.home, ['health', '--quiet']);
    assert.equal(stillB.code, 0, stillB.stderr);
  });
});
