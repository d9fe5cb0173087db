// What every CLI command needs: where TALON_HOME is, where its services listen, how
// to reach NATS as the admin identity, and errors that tell the operator what to do next.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from '@talon/kit/nats';
import { talonHome } from '@talon/kit/service';
import { resolveEndpoint, type Endpoint, type Resolved } from './platform/endpoints.ts';
import { readRunState, runFilePath } from './platform/run-file.ts';

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

/** Where `target` of the Talon under TALON_HOME listens, or why it cannot be reached (the rule: endpoints.ts). */
export function whereIs(target: Endpoint): Resolved {
  const home = homeDir();
  return resolveEndpoint(target, { env: process.env, home, run: readRunState(home), runFile: runFilePath(home) });
}

/** `whereIs`, failing with its message (exit 69, EX_UNAVAILABLE) when Talon is not running there. */
export function locate(target: Endpoint): string {
  const r = whereIs(target);
  if (!r.ok) throw new CliError(r.message, 69);
  return r.address;
}

export function natsUrl(): string {
  return locate('nats');
}

export async function adminNats(): Promise<NatsConnection> {
  const home = homeDir();
  const seed = join(home, 'nats', 'admin.nk');
  if (!existsSync(seed)) {
    throw new CliError(`no Talon installation in ${home} (missing ${seed}). Start Talon first with \`npm start\` (or set TALON_HOME).`);
  }
  const servers = natsUrl();
  // Loaded here, not at the top: `talon up` imports this module and stays free of client libraries.
  const [{ connectNats }, { createLogger }] = await Promise.all([import('@talon/kit/nats'), import('@talon/kit/log')]);
  try {
    return await connectNats({
      servers,
      user: 'admin',
      seedFile: seed,
      log: createLogger({ service: 'talon', level: 'silent' }),
      connectTimeoutMs: 3000,
    });
  } catch {
    throw new CliError(`cannot reach Talon's NATS at ${servers}. Is Talon running? Start it with \`npm start\` in another terminal.`);
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
