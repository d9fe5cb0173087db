// Recent egress decisions from the TALON_AUDIT stream, newest first, read by
// sequence (STREAM.MSG.GET; the gateway has no consumer or subscription there).
// Each decision names the vault secrets injected (never values) and the reason
// of a refusal, including the vault's (secret not bound to host, sealed, expired),
// and the end user the request was made for when the calling workload named one.
import { STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { TalonError } from '@talon/kit/errors';
import { EgressDecision } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';

export interface AuditEntry {
  seq: number;
  atMs: number;
  principal: string;
  /** The Talon user the request was made for ('' when none was named). */
  user: string;
  method: string;
  host: string;
  port: number;
  path: string;
  allowed: boolean;
  reason: string;
  status: number;
  durationMs: number;
  secrets: string[];
  findings: string[];
  redactions: number;
}

export class AuditReader {
  private readonly jsm: JetStreamManager;
  constructor(jsm: JetStreamManager) {
    this.jsm = jsm;
  }

  /** Up to `limit` decisions with sequence below `before` (0 = from the newest). */
  async egressDecisions(limit: number, before = 0, maxScan = 2000): Promise<{ entries: AuditEntry[]; next: number }> {
    const subject = SUBJECTS.auditEgress('decision');
    let last: number;
    let first: number;
    try {
      const info = await this.jsm.streams.info(STREAMS.audit.name);
      last = info.state.last_seq;
      first = info.state.first_seq;
    } catch (err) {
      throw new TalonError('unavailable', 'the audit stream is unreachable; retry shortly', { cause: err });
    }
    const entries: AuditEntry[] = [];
    let seq = before > 0 ? Math.min(before - 1, last) : last;
    let scanned = 0;
    for (; seq >= first && seq > 0 && entries.length < limit && scanned < maxScan; seq--, scanned++) {
      const m = await this.jsm.streams.getMessage(STREAMS.audit.name, { seq }).catch(() => null);
      if (!m || m.subject !== subject) continue;
      try {
        const d = EgressDecision.decode(m.data);
        entries.push({
          seq,
          atMs: d.atMs,
          principal: d.principal,
          user: d.user,
          method: d.method,
          host: d.host,
          port: d.port,
          path: d.path,
          allowed: d.allowed,
          reason: d.reason,
          status: d.status,
          durationMs: d.durationMs,
          secrets: [...d.secrets],
          findings: [...d.findings],
          redactions: d.redactions,
        });
      } catch {
        /* skip undecodable */
      }
    }
    return { entries, next: seq >= first && seq > 0 ? seq + 1 : 0 };
  }
}
