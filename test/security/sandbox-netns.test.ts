// docs/architecture.md invariant 4: a sandbox node has no route to the network except the
// egress proxy and NATS. The node runs inside its own network namespace whose only
// way out is a veth link to the host, filtered by nftables to exactly the NATS and
// egress ports. From inside, the node (and any process next to it) reaches nothing
// else, not even a server egress itself can reach, while invocations through NATS and
// plugin HTTP through egress still work.
//
// Needs root, iproute2 and nftables (installed here with apt-get when missing; CI
// should preinstall the Debian package `nftables`).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestPlatform } from '@talon/testkit';
import { builtSkill, installApproved, invoke, startFakeUpstream, type FakeUpstream } from '../../services/sandbox/test/support.ts';
import { startSandboxPlatform } from '../../services/sandbox/test/support.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const id = process.pid % 10_000;
const NS = `talon-sbx-${id}`;
const VETH_HOST = `tsb${id}h`;
const VETH_NS = `tsb${id}n`;
const SUBNET = 10 + (process.pid % 200);
const HOST_IP = `10.213.${SUBNET}.1`;
const NS_IP = `10.213.${SUBNET}.2`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function ensureTool(bin: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0) return;
  // Test setup only: the CI image should preinstall it.
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) throw new Error(`${bin} is missing and apt-get install ${pkg} failed; install ${pkg} (Debian) to run this test`);
}

/** Runs connection probes from inside the namespace; returns target -> "ok" | error code. */
function probeFromNamespace(
  targets: Array<{ host: string; port: number }>,
  udp: Array<{ host: string; port: number }> = [],
): Record<string, string> {
  const script = `
    import { createConnection } from 'node:net';
    import { createSocket } from 'node:dgram';
    const targets = ${JSON.stringify(targets)};
    const udp = ${JSON.stringify(udp)};
    const out = {};
    await Promise.all(targets.map((t) => new Promise((done) => {
      const s = createConnection({ host: t.host, port: t.port });
      const timer = setTimeout(() => { out[t.host + ':' + t.port] = 'ETIMEDOUT'; s.destroy(); done(); }, 1500);
      s.once('connect', () => { clearTimeout(timer); out[t.host + ':' + t.port] = 'ok'; s.destroy(); done(); });
      s.once('error', (e) => { clearTimeout(timer); out[t.host + ':' + t.port] = e.code || e.message; done(); });
    })));
    // A DNS query over UDP: any answer would be a way out.
    await Promise.all(udp.map((t) => new Promise((done) => {
      const s = createSocket('udp4');
      const key = 'udp:' + t.host + ':' + t.port;
      const timer = setTimeout(() => { out[key] = 'no answer'; s.close(); done(); }, 1500);
      s.once('message', () => { clearTimeout(timer); out[key] = 'ok'; s.close(); done(); });
      s.once('error', (e) => { clearTimeout(timer); out[key] = e.code || e.message; try { s.close(); } catch {} done(); });
      const q = Buffer.from('abcd01000001000000000000076578616d706c6503636f6d0000010001', 'hex');
      s.send(q, t.port, t.host, (e) => { if (e) { clearTimeout(timer); out[key] = e.code || e.message; try { s.close(); } catch {} done(); } });
    })));
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
}

const relayed = new Set<Socket>();

/** A TCP relay on the host end of the veth link to a loopback-only service. */
function relay(listenHost: string, port: number, targetPort: number): Promise<Server> {
  const server = createServer((a) => {
    const b = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [a, b]) {
      relayed.add(s);
      s.once('close', () => relayed.delete(s));
    }
    a.pipe(b).pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
  });
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, listenHost, () => done(server));
  });
}

function netnsInode(pid: number): number {
  return statSync(`/proc/${pid}/ns/net`).ino;
}

function childPids(pid: number): number[] {
  const f = `/proc/${pid}/task/${pid}/children`;
  return existsSync(f)
    ? readFileSync(f, 'utf8')
        .trim()
        .split(/\s+/)
        .filter((x) => x !== '')
        .map(Number)
    : [];
}

describe(
  'a sandbox node in a network namespace reaches only NATS and egress',
  { skip: process.getuid?.() !== 0 ? 'needs root (ip netns, nftables)' : false },
  () => {
    let tp: TestPlatform;
    let upstream: FakeUpstream;
    let node: ChildProcess | undefined;
    let nodeLog = '';
    const relays: Server[] = [];
    let natsPort = 0;
    let egressPort = 0;

    before(async () => {
      ensureTool('ip', 'iproute2');
      ensureTool('nft', 'nftables');
      // Listens on every address: egress reaches it on loopback, and without the
      // firewall the namespace could reach it on the host end of the veth link.
      upstream = await startFakeUpstream(() => ({ body: '{"from":"upstream"}' }), '0.0.0.0');
      tp = await startSandboxPlatform({
        services: ['egress'],
        env: { TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${upstream.port}` },
        egressPolicy: { rules: [{ principal: 'skill:http-probe@1.0.0', host: '127.0.0.1', port: upstream.port, methods: ['GET'] }] },
        sandboxEnv: { SANDBOX_CONCURRENCY: '1' },
      });
      // The platform's own sandbox node is not under test here: stop it so every invocation
      // below is answered by the node inside the namespace.
      await tp.platform.stopService('sandbox');
      natsPort = tp.ports.nats;
      egressPort = tp.ports.egressProxy;

      spawnSync('ip', ['netns', 'del', NS]);
      sh('ip', ['netns', 'add', NS]);
      sh('ip', ['link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_NS]);
      sh('ip', ['link', 'set', VETH_NS, 'netns', NS]);
      sh('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', VETH_HOST]);
      sh('ip', ['link', 'set', VETH_HOST, 'up']);
      sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
      sh('ip', ['netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/30`, 'dev', VETH_NS]);
      sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', VETH_NS, 'up']);
      // A default route, so that "unreachable" below is the firewall's doing, not a missing route.
      sh('ip', ['netns', 'exec', NS, 'ip', 'route', 'add', 'default', 'via', HOST_IP]);
      relays.push(await relay(HOST_IP, natsPort, natsPort), await relay(HOST_IP, egressPort, egressPort));
    });

    after(async () => {
      node?.kill('SIGKILL');
      for (const r of relays) r.close();
      // Destroyed, not ended: once the namespace is gone a FIN to it is never acknowledged,
      // and an ended socket would keep this file's process alive until TCP gives up (~15 min).
      for (const s of relayed) s.destroy();
      relayed.clear();
      spawnSync('ip', ['netns', 'del', NS]);
      spawnSync('ip', ['link', 'del', VETH_HOST]);
      await upstream?.close();
      await tp?.stop();
    });

    it('without the firewall the namespace could reach the host (control)', () => {
      const r = probeFromNamespace([{ host: HOST_IP, port: upstream.port }]);
      assert.equal(r[`${HOST_IP}:${upstream.port}`], 'ok', 'routing works, so the refusals below are the firewall');
    });

    it('with the firewall, NATS and egress are the only destinations', () => {
      const rules = `
      table inet talon_sandbox {
        chain output {
          type filter hook output priority 0; policy drop;
          oifname "lo" accept
          ct state established,related accept
          ip daddr ${HOST_IP} tcp dport { ${natsPort}, ${egressPort} } accept
          reject with icmpx type admin-prohibited
        }
        chain input {
          type filter hook input priority 0; policy drop;
          iifname "lo" accept
          ct state established,related accept
        }
      }`;
      const r = spawnSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: rules, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const res = probeFromNamespace(
        [
          { host: HOST_IP, port: natsPort },
          { host: HOST_IP, port: egressPort },
          { host: HOST_IP, port: upstream.port }, // the very server egress may reach
          { host: HOST_IP, port: tp.ports.grpc.egress },
          { host: '1.1.1.1', port: 443 },
          { host: '8.8.8.8', port: 53 },
          { host: '169.254.169.254', port: 80 },
          { host: '127.0.0.1', port: natsPort }, // the host's loopback is not this namespace's
        ],
        [
          { host: '8.8.8.8', port: 53 },
          { host: HOST_IP, port: 53 },
        ],
      );
      console.log(`from inside ${NS}: ${JSON.stringify(res)}`);
      assert.equal(res[`${HOST_IP}:${natsPort}`], 'ok');
      assert.equal(res[`${HOST_IP}:${egressPort}`], 'ok');
      for (const [target, outcome] of Object.entries(res)) {
        if (target === `${HOST_IP}:${natsPort}` || target === `${HOST_IP}:${egressPort}`) continue;
        assert.notEqual(outcome, 'ok', `${target} must be unreachable from the namespace`);
      }
    });

    it('the sandbox node runs inside the namespace and serves invocations over NATS', async () => {
      const env = {
        ...tp.platform.serviceEnv('sandbox'),
        TALON_NATS_URL: `nats://${HOST_IP}:${natsPort}`,
        SANDBOX_EGRESS_URL: `https://${HOST_IP}:${egressPort}`,
        SANDBOX_CONCURRENCY: '2',
        SANDBOX_CACHE_DIR: mkdtempSync(join(tmpdir(), 'talon-sbx-cache-')),
      };
      node = spawn('ip', ['netns', 'exec', NS, process.execPath, join(ROOT, 'services', 'sandbox', 'src', 'main.ts')], {
        env: env as NodeJS.ProcessEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      await new Promise<void>((ready, fail) => {
        const onData = (d: Buffer) => {
          nodeLog += d.toString();
          if (nodeLog.includes('sandbox ready')) ready();
        };
        node!.stdout!.on('data', onData);
        node!.stderr!.on('data', onData);
        node!.once('exit', (c) => fail(new Error(`the namespaced node exited (${c}): ${nodeLog.slice(-1500)}`)));
      });
      const pid = node.pid!;
      const nsIno = statSync(`/run/netns/${NS}`).ino;
      assert.equal(netnsInode(pid), nsIno, 'the node process lives in the namespace');
      assert.notEqual(netnsInode(process.pid), nsIno);
      const hosts = () => childPids(pid).filter((c) => readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('child.ts'));
      assert.equal(hosts().length, 0, 'no plugin host before the first call');

      const nc = await tp.admin();
      await installApproved(nc, builtSkill('examples', 'unit-convert'));
      // The skill's 1 s timeout counts from the moment its (cold) plugin host takes the call.
      const r = await invoke(nc, 'unit-convert', { value: 3, from: 'ft', to: 'in' });
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      assert.equal(r.output, '{"value":36,"unit":"in"}');
      // Hosts start with calls (and stay SANDBOX_HOST_IDLE_MS, a minute by default): the call's host is there.
      const started = hosts();
      assert.equal(started.length, 1, 'one call, one plugin host');
      for (const h of started) assert.equal(netnsInode(h), nsIno, 'its plugin hosts live there too');
    });

    it('plugin HTTP leaves through egress, while the same server is unreachable directly', async () => {
      const nc = await tp.admin();
      await installApproved(nc, builtSkill('malicious', 'http-probe'), {
        permissions: { hosts: [`127.0.0.1:${upstream.port}`], timeoutMs: 5000 },
      });
      const before = upstream.requests.length;
      const r = await invoke(nc, 'http-probe', {
        requests: [{ url: `http://127.0.0.1:${upstream.port}/via-egress` }, { url: `http://${HOST_IP}:${upstream.port}/direct` }],
      });
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      const [viaEgress, direct] = (JSON.parse(r.output) as { results: Array<{ status: number; errorCode: string; body: string }> }).results;
      assert.equal(viaEgress?.status, 200);
      assert.equal(viaEgress?.body, '{"from":"upstream"}');
      assert.notEqual(direct?.status, 200, `the veth address is not an approved destination (${direct?.errorCode})`);
      assert.deepEqual(
        upstream.requests.slice(before).map((x) => x.url),
        ['/via-egress'],
        'only the egress-carried request arrived',
      );
      const res = probeFromNamespace([{ host: HOST_IP, port: upstream.port }]);
      assert.notEqual(res[`${HOST_IP}:${upstream.port}`], 'ok', 'and nothing in the namespace can connect to it directly');
    });
  },
);
