// Where the embedded database's single thread goes, statement by statement: the wire
// server reports every unit it ran (the client's messages up to Sync or Query) with the
// milliseconds PGlite took, and this sums them by the SQL they executed. A unit that
// only binds a statement prepared earlier is counted under the SQL its Parse carried.
// No I/O: pglite-server prints the table when asked (`--profile-statements`, SIGUSR2),
// and bench:turn-profile divides it by the turns it ran.
// Parameters travel apart (in Bind) and are never read; a simple query carries its values
// in its text, so every key goes through `redact` (pglite-server passes the log scrubber).

/** Characters of a statement's text kept as its key (whitespace collapsed). */
export const STATEMENT_KEY_CHARS = 160;
/**
 * Prepared statement names remembered at most: each connection prepares its own, and the
 * wire server closes them unseen when it goes, so a long run with many reconnects would
 * otherwise keep every name. Past the bound the oldest are forgotten (counted as
 * "prepared before profiling" if bound again).
 */
export const PREPARED_NAMES_KEPT = 4096;

export interface StatementRow {
  /** The statement's SQL, whitespace collapsed, at most STATEMENT_KEY_CHARS. */
  sql: string;
  calls: number;
  ms: number;
}

const OTHER = '(no statement: startup, close or flush)';

/** Reads the NUL-terminated string at `at`; returns it and the offset after its NUL. */
function cstring(b: Buffer, at: number): [string, number] {
  const end = b.indexOf(0, at);
  if (end < 0) return ['', b.length];
  return [b.toString('utf8', at, end), end + 1];
}

export class StatementProfile {
  private readonly redact: (sql: string) => string;
  private rows = new Map<string, { calls: number; ms: number }>();
  /** Prepared statement name (as the session knows it) -> its key. */
  private readonly prepared = new Map<string, string>();
  private since = Date.now();

  constructor(opts: { redact: (sql: string) => string }) {
    this.redact = opts.redact;
  }

  private key(sql: string): string {
    return this.redact(sql.replace(/\s+/g, ' ').trim()).slice(0, STATEMENT_KEY_CHARS);
  }

  /** Counts one unit of frontend messages that PGlite ran in `ms`. */
  record(unit: Uint8Array, ms: number): void {
    const k = this.statementOf(Buffer.from(unit.buffer, unit.byteOffset, unit.byteLength)) ?? OTHER;
    const row = this.rows.get(k) ?? { calls: 0, ms: 0 };
    row.calls += 1;
    row.ms += ms;
    this.rows.set(k, row);
  }

  /** The rows since the last take, most time first, and the milliseconds they cover; starts anew. */
  take(now = Date.now()): { sinceMs: number; rows: StatementRow[] } {
    const rows = [...this.rows].map(([sql, r]) => ({ sql, calls: r.calls, ms: r.ms })).sort((a, b) => b.ms - a.ms);
    const sinceMs = now - this.since;
    this.rows = new Map();
    this.since = now;
    return { sinceMs, rows };
  }

  private remember(name: string, sql: string): void {
    this.prepared.delete(name);
    this.prepared.set(name, sql);
    // A Map iterates in insertion order: its first key is the oldest.
    if (this.prepared.size > PREPARED_NAMES_KEPT) this.prepared.delete(this.prepared.keys().next().value!);
  }

  /** The first statement a unit executes: a simple Query's text, a Parse's, or the one a Bind names. */
  private statementOf(b: Buffer): string | undefined {
    let found: string | undefined;
    for (let i = 0; i + 5 <= b.length;) {
      const type = b[i];
      const len = b.readInt32BE(i + 1);
      if (len < 4) break;
      const body = b.subarray(i + 5, Math.min(b.length, i + 1 + len));
      if (type === 0x51 /* Query */) found ??= this.key(cstring(body, 0)[0]);
      else if (type === 0x50 /* Parse */) {
        const [name, at] = cstring(body, 0);
        const sql = this.key(cstring(body, at)[0]);
        if (name !== '') this.remember(name, sql);
        found ??= sql;
      } else if (type === 0x42 /* Bind */ && found === undefined) {
        const [, at] = cstring(body, 0);
        const statement = cstring(body, at)[0];
        found = this.prepared.get(statement) ?? `(statement ${statement || 'unnamed'} prepared before profiling)`;
      }
      i += 1 + len;
    }
    return found;
  }
}

/** The rows as aligned text lines, `per` dividing ms and calls (e.g. by turns). */
export function formatStatementRows(rows: readonly StatementRow[], per = 1, limit = 15): string[] {
  const top = rows.slice(0, limit);
  const total = rows.reduce((s, r) => s + r.ms, 0);
  return [
    `${'ms'.padStart(8)} ${'calls'.padStart(7)} ${'ms/call'.padStart(8)}  statement`,
    ...top.map(
      (r) =>
        `${(r.ms / per).toFixed(2).padStart(8)} ${(r.calls / per).toFixed(2).padStart(7)} ${(r.ms / r.calls).toFixed(2).padStart(8)}  ${r.sql}`,
    ),
    `${(total / per).toFixed(2).padStart(8)} ${''.padStart(7)} ${''.padStart(8)}  all statements (${rows.length})`,
  ];
}
