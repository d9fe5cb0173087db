// The sandbox's metrics (definitions: @talon/kit/metrics): invocations by outcome
// (`ok` or the SkillResult error code) and their duration. The hosts gauge is
// observed in main.ts.
import { codeLabel, counter, histogram, METRICS } from '@talon/kit/metrics';

const invocations = counter(METRICS.sandboxInvocations);
const duration = histogram(METRICS.sandboxInvocationDuration);

/** Counts one answered invocation. */
export function countInvocation(res: { error?: { code: string } | undefined; durationMs: number }): void {
  invocations.add({ outcome: res.error ? codeLabel(res.error.code) : 'ok' });
  duration.record(res.durationMs / 1000, {});
}
