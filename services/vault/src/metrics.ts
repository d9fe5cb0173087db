// The vault's metrics (definitions: @talon/kit/metrics): resolves by outcome —
// `released`, or the refusal's error code (a closed set: kit/errors) — never the
// secret's name or the caller. The sealed gauge is observed in main.ts.
import { TalonError } from '@talon/kit/errors';
import { codeLabel, counter, METRICS } from '@talon/kit/metrics';

const resolves = counter(METRICS.vaultResolves);

/** The `outcome` of a resolve that threw: its error code, `internal` for anything else. Pure. */
export function resolveOutcome(err: unknown): string {
  return err instanceof TalonError ? codeLabel(err.code) : 'internal';
}

/** Counts one resolve by its outcome and passes the result (or the refusal) on. */
export async function countResolve<T>(pending: Promise<T>): Promise<T> {
  try {
    const r = await pending;
    resolves.add({ outcome: 'released' });
    return r;
  } catch (err) {
    resolves.add({ outcome: resolveOutcome(err) });
    throw err;
  }
}
