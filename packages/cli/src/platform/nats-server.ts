// Finding and running nats-server with the generated per-workload configuration.
import { accessSync, constants, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { renderNatsConfig, type NatsUser } from '@talon/kit/subjects';

export class NatsServerNotFound extends Error {
  constructor() {
    super(
      'nats-server was not found on PATH (or in /usr/sbin, /usr/local/bin). Talon needs NATS with JetStream.\n' +
        '  Debian/Ubuntu: sudo apt-get install nats-server\n' +
        '  macOS:         brew install nats-server\n' +
        '  Or point TALON_NATS_SERVER_BIN at a nats-server binary (2.9 or newer).',
    );
    this.name = 'NatsServerNotFound';
  }
}

export function findNatsServer(env: Record<string, string | undefined> = process.env): string {
  const explicit = env.TALON_NATS_SERVER_BIN;
  if (explicit) {
    accessSync(explicit, constants.X_OK);
    return explicit;
  }
  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin', '/usr/local/sbin', '/opt/homebrew/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, 'nats-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  throw new NatsServerNotFound();
}

/**
 * Writes the server's configuration. Port 0 becomes nats-server's "any free port" (-1);
 * with `portsFileDir` the server writes the ports it bound to `<dir>/<exe>_<pid>.ports`
 * once it is ready (readNatsPortsFile), so nobody has to guess a free port for it.
 */
export function writeNatsConfig(opts: {
  file: string;
  host: string;
  port: number;
  storeDir: string;
  users: Record<NatsUser, string>;
  portsFileDir?: string;
  serverName?: string;
  /** A node of a cluster on loopback: its route port (0: any free one) and the other nodes' route ports. */
  cluster?: { port: number; routes: readonly number[] };
}): void {
  const { cluster, ...rest } = opts;
  const conf = renderNatsConfig({
    ...rest,
    port: opts.port === 0 ? -1 : opts.port,
    ...(cluster
      ? {
          cluster: {
            name: 'talon',
            listen: `${opts.host}:${cluster.port === 0 ? -1 : cluster.port}`,
            routes: cluster.routes.map((p) => `nats-route://${opts.host}:${p}`),
          },
        }
      : {}),
  });
  const portsFile = opts.portsFileDir ? `ports_file_dir: ${JSON.stringify(opts.portsFileDir)}\n` : '';
  writeFileSync(opts.file, conf + portsFile, { mode: 0o600 });
}

/** A port from the ports file nats-server `pid` wrote into `dir` (client, or cluster routes), once written. */
export function readNatsPortsFile(dir: string, pid: number, listener: 'nats' | 'cluster' = 'nats'): number | undefined {
  const name = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`)) : undefined;
  if (!name) return undefined;
  try {
    const url = (JSON.parse(readFileSync(join(dir, name), 'utf8')) as Record<string, string[] | undefined>)[listener]?.[0];
    const port = url ? Number(new URL(url).port) : Number.NaN;
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined; // written in place, not renamed: read again once it is complete
  }
}
