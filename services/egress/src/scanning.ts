// Adapter between the proxy and the leak scanner (./scan): rule set selection,
// the exact-value index from the vault, response redaction, and a worker pool
// (scan-pool.ts) that scans large bodies off the event loop.
import type { SecretFingerprint } from '@talon/proto';
import { BUILTIN_RULES, LeakScanner, redactText, ResponseRedactor, scanHost, type ScanFinding } from './scan/index.ts';
import type { RedactorLike, ScannerLike } from './proxy.ts';
import { defaultScanWorkers, ScanPool } from './scan-pool.ts';

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

/** The leak scanner with the built-in rules less the disabled ones (inline, and in each scan-pool worker). */
export function leakScanner(opts: { maxScanBytes: number; disabledRules?: readonly string[] }): LeakScanner {
  const disabled = new Set(opts.disabledRules ?? []);
  const unknown = [...disabled].filter((id) => !BUILTIN_RULES.some((r) => r.id === id));
  if (unknown.length > 0) throw new UnknownScanRule(unknown);
  return new LeakScanner({ maxScanBytes: opts.maxScanBytes, rules: BUILTIN_RULES.filter((r) => !disabled.has(r.id)) });
}

/**
 * Bodies from this size on are scanned in a worker. Below it a scan holds the
 * event loop for a millisecond or two at most, and handing it over costs more
 * than it saves: copying the body and two messages, about 0.1-0.3 ms of CPU,
 * while the cores are busy with TLS and the rest of the request anyway
 * (measured on 2 cores with 256 KiB bodies: fewer requests per second, and more
 * CPU per request, with the pool than inline).
 */
export const POOL_MIN_BYTES = 1024 * 1024;

export function createScanner(opts: {
  maxScanBytes: number;
  disabledRules?: readonly string[];
  /** Scan-pool worker threads for large bodies; 0 scans everything inline. Default: defaultScanWorkers(). */
  workers?: number;
}): ScannerLike & { ruleIds: readonly string[]; redactForUser(text: string): UserRedaction; close(): Promise<void> } {
  const scanner = leakScanner(opts);
  const workers = opts.workers ?? defaultScanWorkers();
  const pool =
    workers > 0 ? new ScanPool({ size: workers, maxScanBytes: opts.maxScanBytes, disabledRules: opts.disabledRules ?? [] }) : null;
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
    scanRequest: (req) => {
      const len = req.body.length;
      return (pool !== null && len >= POOL_MIN_BYTES && len <= opts.maxScanBytes ? pool.scan(req) : null) ?? scanner.scanRequest(req);
    },
    setFingerprints: (fps: readonly SecretFingerprint[]) => {
      scanner.setFingerprints(fps);
      pool?.setFingerprints(fps);
      hosts.clear();
      recorded.clear();
    },
    createRedactor: redactor,
    close: async () => {
      await pool?.close();
    },
    redactText(text) {
      const r = redactor();
      const out = Buffer.concat([r.push(Buffer.from(text, 'utf8')), r.end()]);
      return { text: r.redactions > 0 ? out.toString('utf8') : text, redactions: r.redactions };
    },
  };
}
