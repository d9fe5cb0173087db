// The one reading of a NATS KV entry and the consumer-free bucket access every
// shared record uses. A key is live only when its last operation is a PUT with a
// value: DEL and PURGE markers, and the empty value a compare-and-set "tombstone"
// writes (a pairing code being decided), mean "no record".
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV, KvEntry } from '@nats-io/kv';
import { TalonError } from '@talon/kit/errors';
import { type NatsConnection, openDirectKv } from '@talon/kit/nats';

/** The entry when it holds a live record, else null. */
export function liveEntry(e: KvEntry | null | undefined): KvEntry | null {
  return e && e.operation === 'PUT' && e.value.length > 0 ? e : null;
}

/** A KV bucket read by direct get and listed through stream info: no consumer is ever created. */
export interface Bucket {
  readonly name: string;
  readonly kv: KV;
  /** The live entry under `key`, or null. Throws TalonError('unavailable') when NATS fails. */
  get(key: string): Promise<KvEntry | null>;
  /** Keys under `prefix` (e.g. "user."; "" for all), sorted. */
  keys(prefix: string): Promise<string[]>;
}

/** Lists a bucket's keys under `prefix` through stream info (needs STREAM.INFO, not a consumer). */
export async function bucketKeys(jsm: JetStreamManager, name: string, prefix: string): Promise<string[]> {
  const p = `$KV.${name}.`;
  const info = await jsm.streams.info(`KV_${name}`, { subjects_filter: `${p}${prefix}>` });
  return Object.keys(info.state.subjects ?? {})
    .map((s) => s.slice(p.length))
    .sort();
}

export async function openBucket(nc: NatsConnection, name: string, jsm?: JetStreamManager): Promise<Bucket> {
  const kv = await openDirectKv(nc, name);
  const m = jsm ?? (await jetstreamManager(nc, { checkAPI: false }));
  return {
    name,
    kv,
    async get(key) {
      let e: KvEntry | null;
      try {
        e = await kv.get(key);
      } catch (err) {
        throw new TalonError('unavailable', `NATS KV ${name} is unreachable; retry shortly`, { cause: err });
      }
      return liveEntry(e);
    },
    async keys(prefix) {
      try {
        return await bucketKeys(m, name, prefix);
      } catch (err) {
        throw new TalonError('unavailable', `NATS KV ${name} is unreachable; retry shortly`, { cause: err });
      }
    },
  };
}

/** Decodes every live record under `prefix`. Deleted keys and undecodable records are skipped. */
export async function readAll<T>(
  b: Bucket,
  prefix: string,
  decode: (v: Uint8Array) => T,
  limit = 10_000,
): Promise<Array<{ key: string; revision: number; value: T }>> {
  const out: Array<{ key: string; revision: number; value: T }> = [];
  for (const key of (await b.keys(prefix)).slice(0, limit)) {
    const e = await b.get(key);
    if (!e) continue;
    try {
      out.push({ key, revision: e.revision, value: decode(e.value) });
    } catch {
      /* an undecodable record is skipped, not fatal for a listing */
    }
  }
  return out;
}

/** A compare-and-set lost: the key changed (or exists) since the revision written against. */
export function isWrongSequence(err: unknown): boolean {
  const e = err as { name?: string; code?: unknown; message?: string } | undefined;
  if (e?.name === 'JetStreamApiError' && (e.code === 10071 || e.code === 10164)) return true;
  return /wrong last sequence/i.test(String(e?.message ?? ''));
}
