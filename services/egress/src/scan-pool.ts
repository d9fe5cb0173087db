// Leak scans of large requests off the event loop: a few worker threads, each
// with a LeakScanner built from the same rules and fed the same fingerprints, so
// that scanning a large body no longer stalls every other request egress serves.
// The findings are those of the inline scanner (same code, same input, in the
// same order). Small requests stay inline, where posting costs more than scanning;
// when the queue is full the caller scans inline too (backpressure, not refusal).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TalonError } from '@talon/kit/errors';
import type { SecretFingerprint } from '@talon/proto';
import type { ScanFinding, ScanRequestInput } from './scan/index.ts';

export interface ScanPoolOptions {
  /** Worker threads. */
  size: number;
  maxScanBytes: number;
  disabledRules?: readonly string[];
  /** Body bytes queued across the pool before `scan` declines (the caller then scans inline). Default 64 MiB. */
  maxQueuedBytes?: number;
  /** The worker's module (tests stand in a failing one). Default: scan-worker.ts. */
  workerUrl?: URL;
}

/** What a worker is started with. */
export interface ScanWorkerData {
  maxScanBytes: number;
  disabledRules: readonly string[];
  fingerprints: SecretFingerprint[];
}

/** `body` holds the request body in its first `length` bytes; the reply hands it back for reuse. */
export type ScanWorkerRequest =
  | { kind: 'fingerprints'; fingerprints: SecretFingerprint[] }
  | { kind: 'scan'; id: number; url: string; headers: ScanRequestInput['headers']; body: ArrayBuffer; length: number };

export type ScanWorkerReply = { id: number; body: ArrayBuffer } & ({ findings: ScanFinding[] } | { error: string });

/** A scan whose worker failed: refused (503), never forwarded unscanned. */
export class ScanWorkerFailed extends TalonError {
  constructor(detail: string) {
    super('unavailable', `leak scan failed in a worker thread (${detail}); retry`);
    this.name = 'ScanWorkerFailed';
  }
}

/** Default pool size: a worker per core but the one the event loop keeps busy, at least one, at most four. */
export function defaultScanWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

interface Job {
  resolve: (f: ScanFinding[]) => void;
  reject: (err: Error) => void;
  bytes: number;
}

/** Spare transfer buffers kept, in bytes: a fresh large ArrayBuffer (zeroed, page-faulted) costs more than copying a body into a used one. */
const MAX_SPARE_BYTES = 16 * 1024 * 1024;
/** Transfer buffers are sized in powers of two from this, so that bodies of similar sizes share them. */
const MIN_TRANSFER_BYTES = 64 * 1024;

interface Slot {
  /** null until the slot's first scan, and once it failed: a new one is started for the next scan given to the slot. */
  worker: Worker | null;
  jobs: Map<number, Job>;
  queuedBytes: number;
}

const WORKER_URL = new URL('./scan-worker.ts', import.meta.url);

export class ScanPool {
  readonly #slots: Slot[] = [];
  readonly #opts: Required<ScanPoolOptions>;
  #fingerprints: SecretFingerprint[] = [];
  #nextId = 1;
  #queuedBytes = 0;
  #closed = false;
  readonly #spare: ArrayBuffer[] = [];
  #spareBytes = 0;

  constructor(opts: ScanPoolOptions) {
    if (!Number.isSafeInteger(opts.size) || opts.size < 1)
      throw new RangeError(`scan pool size must be a positive integer, got ${opts.size}`);
    this.#opts = { disabledRules: [], maxQueuedBytes: 64 * 1024 * 1024, workerUrl: WORKER_URL, ...opts };
    // Workers start with the first scan given to their slot, not here: only bodies of a
    // megabyte or more come to the pool, and an egress that never sees one would keep a
    // thread with its own scanner (≈0.3 s of CPU at start, ≈20 MiB resident) for nothing.
    for (let i = 0; i < opts.size; i++) this.#slots.push({ worker: null, jobs: new Map(), queuedBytes: 0 });
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Replaces the fingerprints in every worker; scans posted afterwards use them (each worker reads its messages in order). */
  setFingerprints(fps: readonly SecretFingerprint[]): void {
    // Plain copies: a proto message carries more than the scanner reads.
    this.#fingerprints = fps.map((f) => ({
      name: f.name,
      forms: f.forms.map((x) => ({ encoding: x.encoding, length: x.length, prefix: x.prefix, sha256: x.sha256 })),
    }));
    for (const slot of this.#slots)
      slot.worker?.postMessage({ kind: 'fingerprints', fingerprints: this.#fingerprints } satisfies ScanWorkerRequest);
  }

  /**
   * The findings of `req` from a worker, or null when the pool declines it (queue
   * full, or closed): the caller then scans inline. The body is copied, so the
   * caller's buffer stays its own.
   */
  scan(req: ScanRequestInput): Promise<ScanFinding[]> | null {
    const bytes = req.body.length;
    if (this.#closed || (this.#queuedBytes > 0 && this.#queuedBytes + bytes > this.#opts.maxQueuedBytes)) return null;
    let slot = this.#slots[0]!;
    for (const s of this.#slots) if (s.queuedBytes < slot.queuedBytes) slot = s;
    const worker = slot.worker ?? this.#start(slot);
    const id = this.#nextId++;
    const body = this.#buffer(bytes);
    new Uint8Array(body, 0, bytes).set(req.body);
    return new Promise<ScanFinding[]>((resolve, reject) => {
      if (slot.jobs.size === 0) worker.ref();
      slot.jobs.set(id, { resolve, reject, bytes });
      slot.queuedBytes += bytes;
      this.#queuedBytes += bytes;
      const msg: ScanWorkerRequest = { kind: 'scan', id, url: req.url, headers: req.headers, body, length: bytes };
      worker.postMessage(msg, [body]);
    });
  }

  /** Stops the workers; scans still pending are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots.splice(0);
    for (const slot of slots) this.#fail(slot, 'the pool closed');
    await Promise.all(slots.flatMap((s) => (s.worker === null ? [] : [s.worker.terminate()])));
  }

  /** Starts the slot's worker (with the fingerprints in force). */
  #start(slot: Slot): Worker {
    const data: ScanWorkerData = {
      maxScanBytes: this.#opts.maxScanBytes,
      disabledRules: [...this.#opts.disabledRules],
      fingerprints: this.#fingerprints,
    };
    const worker = new Worker(this.#opts.workerUrl, { workerData: data, name: 'egress-scan' });
    slot.worker = worker;
    worker.on('message', (reply: ScanWorkerReply) => {
      this.#recycle(reply.body);
      const job = slot.jobs.get(reply.id);
      if (job === undefined) return;
      this.#settle(slot, reply.id, job);
      if ('error' in reply) job.reject(new ScanWorkerFailed(reply.error));
      else job.resolve(reply.findings);
    });
    // A worker that fails is not restarted here (that could loop, and runs at process exit too): the next scan starts one.
    const failed = (detail: string) => {
      if (slot.worker !== worker) return;
      slot.worker = null;
      this.#fail(slot, detail);
    };
    worker.on('error', (err) => failed(err.message));
    worker.on('exit', (code) => failed(`exited with code ${code}`));
    // Idle workers do not keep the process alive; a pending scan does (see scan). After the listeners: adding one refs again.
    worker.unref();
    return worker;
  }

  /** A transfer buffer of at least `bytes`: a spare one of the same size class, else a new one. */
  #buffer(bytes: number): ArrayBuffer {
    let size = MIN_TRANSFER_BYTES;
    while (size < bytes) size *= 2;
    for (let i = this.#spare.length - 1; i >= 0; i--) {
      const b = this.#spare[i]!;
      if (b.byteLength !== size) continue;
      this.#spare.splice(i, 1);
      this.#spareBytes -= size;
      return b;
    }
    return new ArrayBuffer(size);
  }

  #recycle(b: ArrayBuffer): void {
    if (this.#closed || this.#spareBytes + b.byteLength > MAX_SPARE_BYTES) return;
    this.#spare.push(b);
    this.#spareBytes += b.byteLength;
  }

  #settle(slot: Slot, id: number, job: Job): void {
    slot.jobs.delete(id);
    slot.queuedBytes -= job.bytes;
    this.#queuedBytes -= job.bytes;
    if (slot.jobs.size === 0) slot.worker?.unref();
  }

  #fail(slot: Slot, detail: string): void {
    for (const [id, job] of [...slot.jobs]) {
      this.#settle(slot, id, job);
      job.reject(new ScanWorkerFailed(detail));
    }
  }
}
