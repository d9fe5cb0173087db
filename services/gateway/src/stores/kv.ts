// KV access without consumers: direct gets by key and key listing through stream
// info (the gateway's NATS user has no consumer rights on KV buckets).
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV, type KvEntry } from '@nats-io/kv';
import { TalonError, type NatsConnection, openDirectKv } from '@talon/kit';

export interface Bucket {
  readonly name: string;
  readonly kv: KV;
  get(key: string): Promise<KvEntry | null>;
  keys(prefix: string): Promise<string[]>;
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
      return e && e.operation === 'PUT' && e.value.length > 0 ? e : null;
    },
    async keys(prefix) {
      const p = `$KV.${name}.`;
      try {
        const info = await m.streams.info(`KV_${name}`, { subjects_filter: `${p}${prefix}>` });
        return Object.keys(info.state.subjects ?? {})
          .map((s) => s.slice(p.length))
          .sort();
      } catch (err) {
        throw new TalonError('unavailable', `NATS KV ${name} is unreachable; retry shortly`, { cause: err });
      }
    },
  };
}

/** Decodes every live record under `prefix`. Deleted keys are skipped. */
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
