// Adapter between the proxy and the leak scanner (./scan): rule set selection,
// the exact-value index from the vault, and response redaction.
import type { SecretFingerprint } from '@talon/proto';
import { BUILTIN_RULES, LeakScanner, redactText, ResponseRedactor, scanHost, type ScanFinding } from './scan/index.ts';
import type { RedactorLike, ScannerLike } from './proxy.ts';

/** Label of what was found, as records name it: the rule id, or `secret:<name>` for a vault secret. */
function recordLabel(f: Pick<ScanFinding, 'kind' | 'id'>): string {
  return f.kind === 'secret' ? `secret:${f.id}` : f.id;
}

/**
 * Label shown to the person whose text was redacted: the rule id, or
 * `vault_secret` — a vault secret's name is operator metadata, not theirs to learn.
 */
export function userLabel(f: Pick<ScanFinding, 'kind' | 'id'>): string {
  return f.kind === 'secret' ? 'vault_secret' : f.id;
}

export interface UserRedaction {
  text: string;
  labels: string[];
}

export class UnknownScanRule extends Error {
  constructor(ids: readonly string[]) {
    super(`unknown leak-scanner rule id(s): ${ids.join(', ')}`);
    this.name = 'UnknownScanRule';
  }
}

/**
 * A small memo of results that depend only on the input and the fingerprints in
 * force: destination hosts and short header values repeat on almost every
 * request. Cleared whenever the vault's fingerprints change; bounded in entries
 * and in key length.
 */
class Memo<T> {
  readonly #map = new Map<string, T>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(key: string, compute: () => T): T {
    if (key.length > 256) return compute();
    const hit = this.#map.get(key);
    if (hit !== undefined) return hit;
    const v = compute();
    if (this.#map.size >= this.#max) this.#map.clear();
    this.#map.set(key, v);
    return v;
  }
  clear(): void {
    this.#map.clear();
  }
}

export function createScanner(opts: {
  maxScanBytes: number;
  disabledRules?: readonly string[];
}): ScannerLike & { ruleIds: readonly string[]; redactForUser(text: string): UserRedaction } {
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
  const redactWith = (
    text: string,
    label: (f: ScanFinding) => string,
    marker: (f: ScanFinding) => string,
    location: ScanFinding['location'],
    field?: string,
  ) => {
    const r = redactText(scanner, text, { location, ...(field !== undefined ? { field } : {}), marker });
    return { text: r.text, labels: [...new Set(r.findings.map(label))] };
  };
  const hosts = new Memo<ScanFinding[]>(4096);
  const recorded = new Memo<{ text: string; labels: string[] }>(1024);
  return {
    ruleIds: scanner.ruleIds,
    redact: (text, location, field) =>
      recorded.get(`${location}\0${field ?? ''}\0${text}`, () =>
        redactWith(text, recordLabel, (f) => `[REDACTED:${recordLabel(f)}]`, location, field),
      ),
    labels: (text, location, field) => [...new Set(scanner.scanText(text, location, field).map(recordLabel))],
    scanHost: (host) => hosts.get(host, () => scanHost(scanner, host)),
    redactForUser: (text) => redactWith(text, userLabel, (f) => `[redacted:${userLabel(f)}]`, 'body'),
    scanRequest: (req) => scanner.scanRequest(req),
    setFingerprints: (fps: readonly SecretFingerprint[]) => {
      scanner.setFingerprints(fps);
      hosts.clear();
      recorded.clear();
    },
    createRedactor: redactor,
    redactText(text) {
      const r = redactor();
      const out = Buffer.concat([r.push(Buffer.from(text, 'utf8')), r.end()]);
      return { text: r.redactions > 0 ? out.toString('utf8') : text, redactions: r.redactions };
    },
  };
}
