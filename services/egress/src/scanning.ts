// Adapter between the proxy and the leak scanner (./scan): rule set selection,
// the exact-value index from the vault, and response redaction.
import type { SecretFingerprint } from '@talon/proto';
import { BUILTIN_RULES, LeakScanner, ResponseRedactor } from './scan/index.ts';
import type { RedactorLike, ScannerLike } from './proxy.ts';

export class UnknownScanRule extends Error {
  constructor(ids: readonly string[]) {
    super(`unknown leak-scanner rule id(s): ${ids.join(', ')}`);
    this.name = 'UnknownScanRule';
  }
}

export function createScanner(opts: {
  maxScanBytes: number;
  disabledRules?: readonly string[];
}): ScannerLike & { ruleIds: readonly string[] } {
  const disabled = new Set(opts.disabledRules ?? []);
  const unknown = [...disabled].filter((id) => !BUILTIN_RULES.some((r) => r.id === id));
  if (unknown.length > 0) throw new UnknownScanRule(unknown);
  const scanner = new LeakScanner({ maxScanBytes: opts.maxScanBytes, rules: BUILTIN_RULES.filter((r) => !disabled.has(r.id)) });
  const replacement = (name: string) => `[REDACTED:${name}]`;
  const redactor = (): RedactorLike => {
    const r = new ResponseRedactor(scanner.exactMatcher, { replacement });
    return {
      push: (c) => r.push(c),
      end: () => r.end(),
      get redactions() {
        let n = 0;
        for (const v of r.redactions.values()) n += v;
        return n;
      },
    };
  };
  return {
    ruleIds: scanner.ruleIds,
    scanRequest: (req) => scanner.scanRequest(req),
    setFingerprints: (fps: readonly SecretFingerprint[]) => scanner.setFingerprints(fps),
    createRedactor: redactor,
    redactText(text) {
      const r = redactor();
      const out = Buffer.concat([r.push(Buffer.from(text, 'utf8')), r.end()]);
      return { text: r.redactions > 0 ? out.toString('utf8') : text, redactions: r.redactions };
    },
  };
}
