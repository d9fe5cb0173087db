// `talon skills` end to end, as a publisher and an operator would use it: keygen,
// new, build, sign, trust, install, approve, invoke, revoke — and the refusals.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestPlatform } from '@talon/testkit';
import { builtSkill, invoke, signedPackage, startSandboxPlatform, writePackage } from './support.ts';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

describe('talon skills (CLI)', () => {
  let tp: TestPlatform;
  let work: string;

  function talon(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((done) => {
      const p = spawn(process.execPath, [join(ROOT, 'packages', 'cli', 'src', 'bin.ts'), ...args], {
        cwd: work,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TALON_HOME: tp.home, TALON_NATS_URL: tp.platform.natsUrl },
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => done({ code: code ?? 1, stdout, stderr }));
    });
  }

  function run(cmd: string, args: string[]): Promise<number> {
    return new Promise((done) => spawn(cmd, args, { cwd: ROOT, stdio: 'inherit' }).on('exit', (c) => done(c ?? 1)));
  }

  before(async () => {
    tp = await startSandboxPlatform({ services: [], sandboxEnv: { SANDBOX_CONCURRENCY: '1' } });
    work = mkdtempSync(join(tmpdir(), 'talon-skills-cli-'));
  });
  after(async () => {
    await tp?.stop();
  });

  it('takes a skill from `new` to an approved, running skill, and back to revoked', async () => {
    const key = join(work, 'publisher.pem');
    const kg = await talon(['skills', 'keygen', '--out', key]);
    assert.equal(kg.code, 0, kg.stderr + kg.stdout);
    const pub = kg.stdout.trim();
    assert.match(pub, /^ed25519:[A-Za-z0-9_-]{43}$/);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal((await talon(['skills', 'keygen', '--out', key])).code, 1, 'keygen does not overwrite without --force');

    const dir = join(work, 'hello');
    const created = await talon(['skills', 'new', 'hello', '--dir', dir]);
    assert.equal(created.code, 0, created.stderr + created.stdout);
    assert.ok(existsSync(join(dir, 'assembly', 'talon', 'index.ts')), 'the SDK is vendored into the project');
    assert.equal(await run(process.execPath, [join(ROOT, 'skills', 'build.ts'), dir]), 0);
    const pkgDir = join(dir, 'build');
    const signed = await talon(['skills', 'sign', pkgDir, '--key', key]);
    assert.equal(signed.code, 0, signed.stderr);
    assert.match(signed.stdout, /Signed hello@0\.1\.0/);

    const untrusted = await talon(['skills', 'install', pkgDir]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /refused \(publisher_untrusted\).*talon skills trust ed25519:/);

    assert.equal((await talon(['skills', 'trust', pub, '--label', 'me'])).code, 0);
    const inst = await talon(['skills', 'install', pkgDir]);
    assert.equal(inst.code, 0, inst.stderr);
    assert.match(inst.stdout, /Installed hello@0\.1\.0 \(pending\)/);
    assert.match(inst.stdout, /network: {3}none/);
    assert.match(inst.stdout, /talon skills approve hello@0\.1\.0/);
    assert.match((await talon(['skills', 'list'])).stdout, /hello@0\.1\.0\s+pending/);
    assert.equal((await invoke(await tp.admin(), 'hello', { name: 'Ada' })).error?.code, 'not_approved');

    const ap = await talon(['skills', 'approve', 'hello@0.1.0']);
    assert.equal(ap.code, 0, ap.stderr);
    assert.match(ap.stdout, /Approved hello@0\.1\.0/);
    assert.equal((await invoke(await tp.admin(), 'hello', { name: 'Ada' })).output, '{"greeting":"Hello, Ada!"}');

    assert.equal((await talon(['skills', 'revoke', 'hello@0.1.0', '--reason', 'test'])).code, 0);
    const list = JSON.parse((await talon(['skills', 'list', '--json'])).stdout) as Array<{ id: string; status: string }>;
    assert.deepEqual(
      list.find((s) => s.id === 'hello@0.1.0'),
      { ...list.find((s) => s.id === 'hello@0.1.0'), status: 'revoked' },
    );
    assert.equal((await invoke(await tp.admin(), 'hello', { name: 'Ada' })).error?.code, 'not_approved');

    // A binary changed after signing is refused at install.
    appendFileSync(join(pkgDir, 'skill.wasm'), Buffer.from([0]));
    const tampered = await talon(['skills', 'install', pkgDir]);
    assert.equal(tampered.code, 1);
    assert.match(tampered.stderr, /refused \(signature_invalid\)/);
  });

  it('refuses hostile modules at install with the reason and what to do', async () => {
    await talon([
      'skills',
      'trust',
      JSON.parse(readFileSync(join(writePackage(signedPackage(builtSkill('malicious', 'trap'))), 'skill.sig'), 'utf8')).publicKey,
    ]);
    for (const [source, re] of [
      ['wasi-fs', /refused \(wasi_import\): the module imports WASI \(filesystem/],
      ['undeclared-host-fn', /refused \(import_not_allowed\).*extism:host\/user::talon_exec/],
      ['unbounded-memory', /refused \(memory_unbounded\).*--maximumMemory/],
      ['oversized-memory', /refused \(memory_too_large\).*4096 MiB/],
    ] as const) {
      const r = await talon(['skills', 'install', writePackage(signedPackage(builtSkill('malicious', source)))]);
      assert.equal(r.code, 1, source);
      assert.match(r.stderr, re);
    }
    const bad = await talon(['skills', 'approve', 'nope']);
    assert.match(bad.stderr, /name the version too: nope@<version>/);
  });
});
