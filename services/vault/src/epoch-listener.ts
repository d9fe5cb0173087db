// How a vault replica learns that another replica moved the epoch (vault.state lives in
// PostgreSQL, shared by every replica): LISTEN on EPOCH_CHANNEL, which store.bumpEpoch
// notifies in the same transaction (delivered at commit). One dedicated connection, silent
// while nothing changes. A database that does not deliver notifications to another
// connection (a pooler in transaction mode; the embedded PGlite, one session behind its wire
// server) is found by a probe at start; then the epoch is read every `fallbackPollMs`
// instead — a query inside the vault only: no span, no audit row, no log line.
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from '@talon/kit/db';
import type { Logger } from '@talon/kit/log';
import { EPOCH_CHANNEL } from './store.ts';

export interface EpochListenerOptions {
  /** A pool of its own (max 1): its one connection is held for LISTEN. */
  listenPool: Pool;
  /** The vault's pool, used to send the probe notification. */
  pool: Pool;
  log: Logger;
  /** Something may have changed (a notification, a reconnect, a fallback tick). */
  onChange: () => void;
  fallbackPollMs?: number;
  probeTimeoutMs?: number;
}

export interface EpochListener {
  /** 'listen' or 'poll', once the probe decided; undefined before. */
  readonly mode: 'listen' | 'poll' | undefined;
  stop(): void;
}

export function listenForEpochChanges(o: EpochListenerOptions): EpochListener {
  const fallbackPollMs = o.fallbackPollMs ?? 1000;
  const probeTimeoutMs = o.probeTimeoutMs ?? 3000;
  let mode: 'listen' | 'poll' | undefined;
  let stopped = false;
  let client: PoolClient | undefined;
  let timer: NodeJS.Timeout | undefined;
  let backoffMs = 250;
  let probe: { payload: string; arrived: () => void } | undefined;

  const later = (fn: () => void, ms: number) => {
    if (stopped) return;
    timer = setTimeout(fn, ms);
    timer.unref();
  };

  const poll = () => {
    o.onChange();
    later(poll, fallbackPollMs);
  };

  const connect = async (): Promise<void> => {
    if (stopped) return;
    let c: PoolClient | undefined;
    try {
      c = await o.listenPool.connect();
      const held = c;
      held.on('notification', (n) => {
        if (n.channel !== EPOCH_CHANNEL) return;
        if (probe && n.payload === probe.payload) probe.arrived();
        else o.onChange();
      });
      held.on('error', () => lost(held));
      held.on('end', () => lost(held));
      await held.query(`listen ${EPOCH_CHANNEL}`);
      client = held;
      backoffMs = 250;
      if (mode === undefined) {
        const ok = await probeDelivery();
        if (stopped) return;
        mode = ok ? 'listen' : 'poll';
        if (!ok) {
          o.log.info(
            { every_ms: fallbackPollMs },
            'the database does not deliver notifications between connections; other replicas’ changes are found by reading the epoch',
          );
          client = undefined;
          held.release();
          poll();
          return;
        }
      }
      // Changes made while this connection was away were not notified: look once.
      o.onChange();
    } catch {
      c?.release(true);
      client = undefined;
      later(() => void connect(), backoffMs);
      backoffMs = Math.min(backoffMs * 2, 30_000);
    }
  };

  const lost = (c: PoolClient) => {
    if (client !== c || stopped) return;
    client = undefined;
    c.release(true);
    later(() => void connect(), backoffMs);
  };

  const probeDelivery = () =>
    new Promise<boolean>((resolve, reject) => {
      const payload = `probe:${randomUUID()}`;
      const t = setTimeout(() => {
        probe = undefined;
        resolve(false);
      }, probeTimeoutMs);
      probe = {
        payload,
        arrived: () => {
          clearTimeout(t);
          probe = undefined;
          resolve(true);
        },
      };
      o.pool.query('select pg_notify($1, $2)', [EPOCH_CHANNEL, payload]).catch((err: unknown) => {
        clearTimeout(t);
        probe = undefined;
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });

  void connect();
  return {
    get mode() {
      return mode;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = undefined;
      if (c) c.release(true);
    },
  };
}
