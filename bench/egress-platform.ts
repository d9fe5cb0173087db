// The platform the egress benchmarks measure: vault and egress only, a policy letting the
// orchestrator reach the local upstream, and the bench secret stored so requests can carry
// a `{{secret:bench_key}}` placeholder (bench:egress, bench:egress-cpu); and the upstream.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diesWithParent } from '@talon/cli/process';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

/**
 * The upstream the benchmarks send to: in its own process so it does not share the load
 * generator's event loop; it binds port 0 and prints the port it got.
 */
export async function startBenchUpstream(): Promise<{ process: ChildProcess; port: number }> {
  const upstream = spawn(
    ...diesWithParent(process.execPath, [
      '-e',
      `const h=require('node:http').createServer((q,s)=>{let n=0;q.on('data',c=>n+=c.length);q.on('end',()=>{s.writeHead(200,{'content-type':'application/json'});s.end(JSON.stringify({ok:true,bytes:n}))})});h.listen(0,'127.0.0.1',()=>console.log(h.address().port))`,
    ]),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((r) => upstream.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
  return { process: upstream, port };
}

export interface EgressBenchOptions {
  /** A folder of the bench's own (the policy file goes there). */
  dir: string;
  upstreamPort: number;
  /** TALON_METRICS (default: the service's default, on). */
  metrics?: 'on' | 'off';
  nodeArgs?: string[];
}

/** Vault and egress with the bench secret stored; `injecting` is false when it could not be. */
export async function startEgressBench(o: EgressBenchOptions): Promise<{ tp: TestPlatform; injecting: boolean }> {
  writeFileSync(
    join(o.dir, 'policy.json'),
    JSON.stringify({ rules: [{ principal: 'orchestrator', host: '127.0.0.1', port: o.upstreamPort, methods: ['GET', 'POST'] }] }),
  );
  const tp = await startTestPlatform({
    services: ['vault', 'egress'],
    llm: false,
    ...(o.nodeArgs ? { nodeArgs: o.nodeArgs } : {}),
    env: {
      TALON_LOG_LEVEL: 'warn',
      ...(o.metrics ? { TALON_METRICS: o.metrics } : {}),
      TALON_VAULT_PASSPHRASE: 'bench-passphrase-not-secret',
      EGRESS_POLICY_FILE: join(o.dir, 'policy.json'),
      TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${o.upstreamPort}`,
      EGRESS_MAX_REQUEST_BYTES: String(1024 * 1024),
    },
  });
  const set = tp.cli(
    ['secrets', 'set', 'bench_key', '--host', `127.0.0.1:${o.upstreamPort}`, '--bearer', '--principal', 'orchestrator'],
    'bench-secret-value-0123456789abcdef\n',
  );
  if (set.status !== 0) console.error(`(could not store the bench secret, running without injection: ${set.stderr.trim()})`);
  // Egress loads the new secret's fingerprints when the vault announces the change (its log
  // line, which the harness waits on, is below the bench's log level: a pause instead).
  await new Promise((r) => setTimeout(r, 1500));
  return { tp, injecting: set.status === 0 };
}
