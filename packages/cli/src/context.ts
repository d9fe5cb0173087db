// What every CLI command needs: where TALON_HOME is, how to reach NATS as the
// admin identity, and errors that tell the operator what to do next.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats, type NatsConnection } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { DEFAULT_PORTS, talonHome } from '@talon/kit/service';

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export function homeDir(): string {
  return talonHome(process.env);
}

export function natsUrl(): string {
  return process.env.TALON_NATS_URL ?? `nats://127.0.0.1:${process.env.TALON_NATS_PORT ?? DEFAULT_PORTS.nats}`;
}

export async function adminNats(): Promise<NatsConnection> {
  const home = homeDir();
  const seed = join(home, 'nats', 'admin.nk');
  if (!existsSync(seed)) {
    throw new CliError(`no Talon installation in ${home} (missing ${seed}). Start Talon first with \`npm start\` (or set TALON_HOME).`);
  }
  try {
    return await connectNats({
      servers: natsUrl(),
      user: 'admin',
      seedFile: seed,
      log: createLogger({ service: 'talon', level: 'silent' }),
      connectTimeoutMs: 3000,
    });
  } catch {
    throw new CliError(`cannot reach Talon's NATS at ${natsUrl()}. Is Talon running? Start it with \`npm start\` in another terminal.`);
  }
}

export async function withAdminNats<T>(fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await adminNats();
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}
