// Egress's metrics (definitions: @talon/kit/metrics), counted from the decision
// record (audit.ts): every decision by kind of caller, allow/deny and reason code,
// and every leak-blocked refusal by scanner rule. Labels never carry a principal's
// name, a host, a path or a secret's name: a vault secret counts as `vault_secret`.
import { codeLabel, counter, METRICS } from '@talon/kit/metrics';
import { SERVICES } from '@talon/kit/service';
import { SKILL_PRINCIPAL_PREFIX } from '@talon/kit/contracts';

const decisions = counter(METRICS.egressDecisions);
const leaksBlocked = counter(METRICS.egressLeaksBlocked);

/** The reason code of a refusal by the leak scanner (proxy.ts, mitm.ts). */
export const LEAK_BLOCKED_REASON = 'secret_leak_blocked';

/** `service`, `skill`, `other` (a proxy-credential principal) or `none` (not identified). Pure. */
export function principalKind(principal: string): 'service' | 'skill' | 'other' | 'none' {
  if (principal === '') return 'none';
  if (principal.startsWith(SKILL_PRINCIPAL_PREFIX)) return 'skill';
  return (SERVICES as readonly string[]).includes(principal) ? 'service' : 'other';
}

/** The `rule` label of a finding: the scanner rule id, `vault_secret` for `secret:<name>`. Pure. */
export function leakRule(finding: string): string {
  return finding.startsWith('secret:') ? 'vault_secret' : codeLabel(finding);
}

/** What of a decision the counters read. */
export interface CountedDecision {
  principal: string;
  allowed: boolean;
  reason: string;
  findings: readonly string[];
}

/** Counts one decision (called where every decision is recorded: AuditSink.record). */
export function countDecision(d: CountedDecision): void {
  decisions.add({ principal_kind: principalKind(d.principal), decision: d.allowed ? 'allow' : 'deny', reason: codeLabel(d.reason) });
  if (d.reason !== LEAK_BLOCKED_REASON) return;
  const rules = new Set(d.findings.map(leakRule));
  if (rules.size === 0) rules.add('unknown');
  for (const rule of rules) leaksBlocked.add({ rule });
}
