import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { checkHealth } from '@talon/kit/grpc';
import { pkiPaths, SERVICES } from '@talon/kit/service';
import { CliError, homeDir, whereIs } from '../context.ts';

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('ask services for their grpc.health.v1 status over mTLS (exit 2 if any is not serving); also the container probe')
    .option('--service <name>', `only one of: ${SERVICES.join(', ')}`)
    .option(
      '--address <host:port>',
      'where the service listens (default: the talon up running under TALON_HOME, else 127.0.0.1 and its <NAME>_GRPC_PORT)',
    )
    .option('--cert <file>', 'client certificate (default: the admin certificate in TALON_HOME/pki)')
    .option('--key <file>', 'client key')
    .option('--ca <file>', 'CA certificate')
    .option('--quiet', 'print nothing; only the exit code')
    .action(async (o: { service?: string; address?: string; cert?: string; key?: string; ca?: string; quiet?: boolean }) => {
      const services = o.service ? SERVICES.filter((s) => s === o.service) : [...SERVICES];
      if (services.length === 0) throw new CliError(`unknown service ${o.service}; choose from ${SERVICES.join(', ')}`);
      if (o.address && services.length !== 1) throw new CliError('--address needs --service');
      const p = pkiPaths(homeDir(), 'admin');
      let tls;
      try {
        tls = {
          ca: readFileSync(o.ca ?? process.env.TALON_TLS_CA ?? p.ca),
          cert: readFileSync(o.cert ?? p.cert),
          key: readFileSync(o.key ?? p.key),
        };
      } catch {
        throw new CliError(
          `no client certificate (looked in ${homeDir()}/pki); start Talon once with \`npm start\` or pass --cert/--key/--ca`,
        );
      }
      let bad = 0;
      for (const s of services) {
        const where = o.address ? { ok: true as const, address: o.address } : whereIs(s);
        if (!where.ok) {
          // Nothing to ask anywhere: say so once instead of six connection errors.
          if (where.reason === 'not-running') throw new CliError(where.message, 69);
          bad += 1;
          if (!o.quiet) console.log(`${s.padEnd(13)} -  NOT STARTED (${where.message})`);
          continue;
        }
        const addr = where.address;
        const status = await checkHealth(addr, tls, s, { timeoutMs: 2000 }).catch((e: Error) => `UNREACHABLE (${e.message})`);
        if (status !== 'SERVING') bad += 1;
        if (!o.quiet) console.log(`${s.padEnd(13)} ${addr}  ${status}`);
      }
      if (bad > 0) throw new CliError(`${bad} service(s) not serving`, 2);
    });
}
