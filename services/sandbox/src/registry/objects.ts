// Reads an object from a NATS object store bucket with direct gets only (the
// metadata entry by subject, then each chunk by sequence), so a reader needs no
// right to create consumers. The object's SHA-256 digest is checked here; callers
// check the content hash they expect on top.
import { createHash } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';

export class ObjectReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ObjectReadError';
  }
}

interface ObjectMeta {
  name: string;
  nuid: string;
  size: number;
  chunks: number;
  digest?: string;
  deleted?: boolean;
}

function metaSubject(bucket: string, name: string): string {
  // The object store names metadata by padded base64url of the object name.
  const b64 = Buffer.from(name, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
  return `$O.${bucket}.M.${b64}`;
}

/** Returns the object's bytes, or undefined when there is no such (live) object. */
export async function readObject(jsm: JetStreamManager, bucket: string, name: string, maxBytes: number): Promise<Uint8Array | undefined> {
  const stream = `OBJ_${bucket}`;
  const m = await jsm.direct.getMessage(stream, { last_by_subj: metaSubject(bucket, name) });
  if (!m) return undefined;
  const meta = m.json<ObjectMeta>();
  if (meta.deleted) return undefined;
  if (!Number.isSafeInteger(meta.size) || meta.size < 0 || meta.size > maxBytes) {
    throw new ObjectReadError(`object ${name} is ${meta.size} bytes, above the ${maxBytes}-byte limit`);
  }
  const out = new Uint8Array(meta.size);
  const chunkSubject = `$O.${bucket}.C.${meta.nuid}`;
  let offset = 0;
  let seq = 0;
  for (let i = 0; i < meta.chunks; i++) {
    const c = await jsm.direct.getMessage(stream, { seq, next_by_subj: chunkSubject });
    if (!c) throw new ObjectReadError(`object ${name} is missing chunk ${i + 1} of ${meta.chunks}`);
    if (offset + c.data.length > meta.size) throw new ObjectReadError(`object ${name} has more data than its declared size`);
    out.set(c.data, offset);
    offset += c.data.length;
    seq = c.seq + 1;
  }
  if (offset !== meta.size) throw new ObjectReadError(`object ${name} has ${offset} bytes, expected ${meta.size}`);
  if (meta.digest) {
    const want = meta.digest.replace(/^SHA-256=/i, '');
    const got = createHash('sha256').update(out).digest();
    const ok = want === got.toString('base64url') || want === got.toString('base64url') + '=' || want === got.toString('base64');
    if (!ok) throw new ObjectReadError(`object ${name} does not match its stored digest`);
  }
  return out;
}
