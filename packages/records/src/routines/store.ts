// talon_routines (definitions, written by admin) and talon_routine_runs (one record
// per firing: claim, lease, outcome; written by the orchestrators, and by admin for
// run-now and rm). Every state change is a create or a compare-and-set on the
// record's revision, so two replicas never both fire one slot.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { KV_BUCKETS, routineKey, routineRunKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { Routine, RoutineRun } from '@talon/proto';
import { isWrongSequence, openBucket, readAll, type Bucket } from '../kv.ts';
import { runsToPrune } from './rules.ts';

export class Routines {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.routines, jsm);
    return this;
  }

  async get(name: string): Promise<{ routine: Routine; revision: number } | undefined> {
    const e = await this.b.get(routineKey(name));
    return e ? { routine: Routine.decode(e.value), revision: e.revision } : undefined;
  }

  async list(): Promise<Routine[]> {
    return (await readAll(this.b, 'routine.', (v) => Routine.decode(v))).map((r) => r.value);
  }

  /** Creates a routine; false when one of that name exists. */
  async create(r: Routine): Promise<boolean> {
    try {
      await this.b.kv.create(routineKey(r.name), Routine.encode(r).finish());
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Compare-and-set; throws (isWrongSequence) when the record changed since `revision`. */
  async update(r: Routine, revision: number): Promise<void> {
    await this.b.kv.update(routineKey(r.name), Routine.encode(r).finish(), revision);
  }

  async remove(name: string): Promise<void> {
    await this.b.kv.purge(routineKey(name));
  }
}

export class RoutineRuns {
  private b!: Bucket;
  private jsm!: JetStreamManager;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.jsm = jsm ?? (await jetstreamManager(this.nc, { checkAPI: false }));
    this.b = await openBucket(this.nc, KV_BUCKETS.routineRuns, this.jsm);
    return this;
  }

  async get(name: string, scheduledAtMs: number): Promise<{ run: RoutineRun; revision: number } | undefined> {
    const e = await this.b.get(routineRunKey(name, scheduledAtMs));
    return e ? { run: RoutineRun.decode(e.value), revision: e.revision } : undefined;
  }

  /** Creates the record of a firing; false when the slot has one already (another replica, or run-now). */
  async create(run: RoutineRun): Promise<number | false> {
    try {
      return await this.b.kv.create(routineRunKey(run.routine, run.scheduledAtMs), RoutineRun.encode(run).finish());
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Compare-and-set: the new revision, or false when the record changed since `revision`. */
  async update(run: RoutineRun, revision: number): Promise<number | false> {
    try {
      return await this.b.kv.update(routineRunKey(run.routine, run.scheduledAtMs), RoutineRun.encode(run).finish(), revision);
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /**
   * Reads, changes and writes a run by compare-and-set, again when another writer came
   * first (up to `tries`). `change` returning undefined leaves the record as it is.
   * Returns the record written, or undefined (no record, unchanged, or always beaten).
   */
  async modify(
    name: string,
    scheduledAtMs: number,
    change: (run: RoutineRun) => RoutineRun | undefined,
    tries = 5,
  ): Promise<RoutineRun | undefined> {
    for (let i = 0; i < tries; i++) {
      const cur = await this.get(name, scheduledAtMs);
      if (!cur) return undefined;
      const next = change(cur.run);
      if (!next) return undefined;
      if ((await this.update(next, cur.revision)) !== false) return next;
    }
    return undefined;
  }

  /** Scheduled instants of a routine's runs, oldest first. */
  async slots(name: string): Promise<number[]> {
    const prefix = `run.${name}.`;
    return (await this.b.keys(prefix))
      .map((k) => Number(k.slice(prefix.length)))
      .filter((n) => Number.isSafeInteger(n))
      .sort((a, b) => a - b);
  }

  /** A routine's runs, newest first (at most `limit`). */
  async recent(name: string, limit: number): Promise<RoutineRun[]> {
    const slots = (await this.slots(name)).reverse().slice(0, limit);
    const out: RoutineRun[] = [];
    for (const s of slots) {
      const r = await this.get(name, s);
      if (r) out.push(r.run);
    }
    return out;
  }

  /** Every run record of every routine (a replica's start: requests and claims left open). */
  async all(): Promise<RoutineRun[]> {
    return (await readAll(this.b, 'run.', (v) => RoutineRun.decode(v))).map((r) => r.value);
  }

  /**
   * Removes a routine's runs beyond the newest `keep`; returns how many. Removed from the
   * stream (not a KV purge, whose marker would stay a key for ever): a routine firing
   * every minute leaves nothing behind but its newest runs.
   */
  async prune(name: string, keep?: number): Promise<number> {
    const old = runsToPrune(await this.slots(name), keep);
    for (const s of old)
      await this.jsm.streams.purge(`KV_${KV_BUCKETS.routineRuns}`, { filter: `$KV.${KV_BUCKETS.routineRuns}.${routineRunKey(name, s)}` });
    return old.length;
  }

  /** Purges every run of a routine (talon routines rm). */
  async removeAll(name: string): Promise<number> {
    return this.prune(name, 0);
  }
}
