import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { checkHealth, DEFAULT_PORTS, pkiPaths, SERVICES } from '@talon/kit';
import { CliError, homeDir } from '../context.ts';

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('ask every service for its grpc.health.v1 status (over mTLS, as the admin identity)')
    .option('--service <name>', `only one of: ${SERVICES.join(', ')}`)
    .action(async (o: { service?: string }) => {
      const services = o.service ? SERVICES.filter((s) => s === o.service) : [...SERVICES];
      if (services.length === 0) throw new CliError(`unknown service ${o.service}; choose from ${SERVICES.join(', ')}`);
      const p = pkiPaths(homeDir(), 'admin');
      let tls;
      try {
        tls = { ca: readFileSync(p.ca), cert: readFileSync(p.cert), key: readFileSync(p.key) };
      } catch {
        throw new CliError(`no admin certificate in ${homeDir()}/pki; start Talon once with \`npm start\``);
      }
      let bad = 0;
      for (const s of services) {
        const port = Number(process.env[`${s.toUpperCase()}_GRPC_PORT`] ?? DEFAULT_PORTS.grpc[s]);
        const status = await checkHealth(`127.0.0.1:${port}`, tls, s, { timeoutMs: 2000 }).catch((e: Error) => `UNREACHABLE (${e.message})`);
        if (status !== 'SERVING') bad += 1;
        console.log(`${s.padEnd(13)} 127.0.0.1:${port}  ${status}`);
      }
      if (bad > 0) throw new CliError(`${bad} service(s) not serving`, 2);
    });
}
