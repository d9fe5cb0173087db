// Finding and running nats-server with the generated per-workload configuration.
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { renderNatsConfig, type NatsUser } from '@talon/kit';

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

export function writeNatsConfig(opts: {
  file: string;
  host: string;
  port: number;
  storeDir: string;
  users: Record<NatsUser, string>;
}): void {
  writeFileSync(opts.file, renderNatsConfig(opts), { mode: 0o600 });
}
