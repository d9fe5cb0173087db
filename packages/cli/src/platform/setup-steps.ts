// The platform's one-time steps that need crypto and client libraries (PKI, nkeys, NATS,
// pg, gRPC). `talon up` runs each in a short-lived child process (./setup-child.ts,
// ./setup-main.ts) so the supervisor, which lives as long as the platform, never loads
// those libraries: they cost it ≈80 MiB resident for nothing at idle (docs/architecture.md
// §11). One table, one request and one answer type per step.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectNats, provisionJetStream } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { DatabaseUrlError } from '@talon/kit/database-url';
import type { NatsUser } from '@talon/kit/subjects';
import { bootstrapDatabase, type BootstrapOptions, type DbOwner } from './database.ts';
import { layout } from './home.ts';
import { ensureNkeys, ensurePki } from './identity.ts';
import { loadConfig } from '@talon/kit/config';
import { llmModelFields, modelsConfig } from '@talon/kit/models';
import { vaultAdmin } from '../commands/vault.ts';
import { keyCommands, modelLines } from '../models-summary.ts';

export interface SetupSteps {
  /** The CA, a certificate per identity and an nkey per NATS user (kept when present). */
  identity: { req: { home: string }; res: { created: string[]; users: Record<NatsUser, string> } };
  /** Connects to NATS as admin (proving the server is Talon's) and provisions JetStream unless told not to. */
  nats: { req: { home: string; servers: string; provision: boolean; replicas: number; timeoutMs: number }; res: object };
  /** Database bootstrap, retried until the server answers or the time is up. */
  database: { req: BootstrapOptions & { timeoutMs: number }; res: { urls: Record<DbOwner, string> } };
  /**
   * What `talon up` prints once started: the vault's seal state (undefined when it did not
   * answer), the configured models and the commands that store their keys.
   */
  summary: {
    req: object;
    res: { vault: { initialized: boolean; sealed: boolean; secrets: number } | undefined; models: string[]; keys: string[] };
  };
}
export type StepName = keyof SetupSteps;
export const STEP_NAMES: readonly StepName[] = ['identity', 'nats', 'database', 'summary'];

type Handlers = { [K in StepName]: (req: SetupSteps[K]['req'], signal: AbortSignal) => Promise<SetupSteps[K]['res']> };

export const STEPS: Handlers = {
  async identity({ home }) {
    const l = layout(home);
    const created: string[] = [];
    await ensurePki(l, (what) => created.push(what));
    return { created, users: ensureNkeys(l) };
  },

  async nats({ home, servers, provision, replicas, timeoutMs }) {
    const nc = await connectNats({
      servers,
      user: 'admin',
      seedFile: join(layout(home).nats, 'admin.nk'),
      log: createLogger({ service: 'talon-up', level: 'silent' }),
      connectTimeoutMs: 15_000,
    });
    try {
      if (!provision) return {};
      // A new cluster elects its JetStream leader after its nodes meet: provisioning waits for it.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          await provisionJetStream(nc, { replicas });
          return {};
        } catch (err) {
          if (replicas === 1 || Date.now() > deadline) throw err;
          await sleep(250);
        }
      }
    } finally {
      await nc.drain();
    }
  },

  async database({ timeoutMs, ...opts }, signal) {
    const deadline = Date.now() + timeoutMs;
    let lastErr: unknown;
    while (Date.now() < deadline) {
      signal.throwIfAborted();
      try {
        return { urls: await bootstrapDatabase(opts) };
      } catch (err) {
        lastErr = err;
        // Waiting does not fix a missing extension or a URL that cannot be read.
        if (err instanceof DatabaseUrlError || /pgvector/.test(String((err as Error).message))) throw err;
        await sleep(300);
      }
    }
    throw new Error(`database not reachable: ${String((lastErr as Error | undefined)?.message ?? lastErr)}`);
  },

  async summary() {
    const vault = await vaultAdmin((c) => c.status, {}).then(
      (st) => ({ initialized: st.initialized, sealed: st.sealed, secrets: st.secrets }),
      () => undefined,
    );
    // The services parsed the same variables already, so this cannot fail after a good start.
    const models = modelsConfig(loadConfig('talon', llmModelFields(), process.env));
    return { vault, models: modelLines(models), keys: keyCommands(models) };
  },
};

function isStep(v: unknown): v is StepName {
  return typeof v === 'string' && (STEP_NAMES as readonly string[]).includes(v);
}

function run<K extends StepName>(step: K, req: SetupSteps[K]['req'], signal: AbortSignal): Promise<SetupSteps[K]['res']> {
  return STEPS[step](req, signal);
}

/** Runs the step a request names (requests come from ./setup-child.ts: our own JSON). */
export async function runStep(msg: object, signal: AbortSignal): Promise<unknown> {
  if (!('step' in msg) || !('req' in msg) || !isStep(msg.step)) throw new Error('setup child: the request names no known step');
  // The request was built by SetupChild.run for this very step (typed there).
  return run(msg.step, msg.req as SetupSteps[typeof msg.step]['req'], signal);
}
