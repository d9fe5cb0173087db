// A verifier reached over HTTP on loopback or a Unix socket only: a local
// attestation agent or key-broker adapter in the same TEE (pod or VM) that checks the
// evidence against the vendor's certificate chain (Intel's DCAP collateral for TDX,
// AMD's KDS for SEV-SNP) or a remote service such as a Trustee KBS. The vault itself
// never reaches a remote host (docs/architecture.md §6: only egress does): the
// address is refused unless it is a literal loopback address or a socket path.
// Request and response JSON are documented in docs/confidential-computing.md.
import { request } from 'node:http';
import { MEASUREMENT_HEX, reportDataFor, type Evidence, type Expected, type FailureCode, type Verdict, type Verifier } from './types.ts';

const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_CLAIMS = 32;

export type LocalEndpoint =
  { kind: 'tcp'; host: '127.0.0.1' | '::1'; port: number; path: string } | { kind: 'unix'; socketPath: string; path: string };

/** `http://127.0.0.1:PORT/path`, `http://[::1]:PORT/path` or `unix:/absolute/path.sock`; undefined for anything else. */
export function parseLocalEndpoint(raw: string): LocalEndpoint | undefined {
  if (raw.startsWith('unix:')) {
    const socketPath = raw.slice('unix:'.length);
    return socketPath.startsWith('/') && !socketPath.includes('\0') ? { kind: 'unix', socketPath, path: '/' } : undefined;
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' || u.username || u.password) return undefined;
  const host = u.hostname === '[::1]' ? '::1' : u.hostname;
  if (host !== '127.0.0.1' && host !== '::1') return undefined;
  return { kind: 'tcp', host, port: u.port === '' ? 80 : Number(u.port), path: `${u.pathname}${u.search}` };
}

export const LOCAL_ENDPOINT_EXPECT = 'http://127.0.0.1:PORT/path, http://[::1]:PORT/path or unix:/path/to/socket (loopback only)';

export interface AttestRequestBody {
  version: 1;
  tee: Evidence['tee'];
  /** base64 */
  nonce: string;
  /** hex, 64 bytes: what the evidence's report_data must equal */
  report_data: string;
  /** base64, null when the agent collects its own evidence (tee "none") */
  evidence: string | null;
  aux: string | null;
  measurements: string[];
}

export interface HttpVerifierOptions {
  endpoint: LocalEndpoint;
  /** Allowed measurements, passed on for the verifier to enforce (it may have its own policy). */
  measurements: readonly string[];
}

function fail(code: FailureCode, reason: string): Verdict {
  return { ok: false, code, reason };
}

export class HttpVerifier implements Verifier {
  readonly name = 'http';
  private readonly endpoint: LocalEndpoint;
  private readonly measurements: readonly string[];

  constructor(o: HttpVerifierOptions) {
    this.endpoint = o.endpoint;
    this.measurements = o.measurements.filter((m) => MEASUREMENT_HEX.test(m));
  }

  async verify(evidence: Evidence, expected: Expected, signal: AbortSignal): Promise<Verdict> {
    const nonce = Buffer.from(expected.nonce).toString('base64');
    const body: AttestRequestBody = {
      version: 1,
      tee: evidence.tee,
      nonce,
      report_data: reportDataFor(expected.nonce).toString('hex'),
      evidence: evidence.tee === 'none' ? null : Buffer.from(evidence.report).toString('base64'),
      aux: evidence.aux ? Buffer.from(evidence.aux).toString('base64') : null,
      measurements: [...this.measurements],
    };
    let res: { status: number; text: string };
    try {
      res = await this.post(JSON.stringify(body), signal);
    } catch (err) {
      if (signal.aborted) return fail('verifier_timeout', 'the verifier did not answer in time');
      return fail(
        'verifier_unavailable',
        `the verifier at ${this.where()} cannot be reached (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
    if (res.status !== 200) return fail('verifier_unavailable', `the verifier at ${this.where()} answered HTTP ${res.status}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.text);
    } catch {
      return fail('verifier_bad_response', 'the verifier answered with something that is not JSON');
    }
    return judge(parsed, nonce);
  }

  private where(): string {
    return this.endpoint.kind === 'unix' ? `unix:${this.endpoint.socketPath}` : `${this.endpoint.host}:${this.endpoint.port}`;
  }

  private post(payload: string, signal: AbortSignal): Promise<{ status: number; text: string }> {
    const e = this.endpoint;
    const target = e.kind === 'unix' ? { socketPath: e.socketPath } : { host: e.host, port: e.port, family: e.host === '::1' ? 6 : 4 };
    return new Promise((resolve, reject) => {
      const req = request(
        {
          ...target,
          path: e.path,
          method: 'POST',
          signal,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) {
              req.destroy(new Error('response too large'));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** The response contract: `{ ok: true, nonce, claims? }` or `{ ok: false, reason }`. Anything else fails closed. */
export function judge(parsed: unknown, nonce: string): Verdict {
  if (typeof parsed !== 'object' || parsed === null) return fail('verifier_bad_response', 'the verifier answer is not a JSON object');
  const r = parsed as Record<string, unknown>;
  if (r.ok === false) {
    const reason = typeof r.reason === 'string' ? r.reason.slice(0, 200) : 'no reason given';
    return fail('verifier_refused', `the verifier refused the evidence: ${reason}`);
  }
  if (r.ok !== true) return fail('verifier_bad_response', 'the verifier answer has no boolean "ok"');
  // Echoing the nonce shows the verdict was made for this request, not replayed.
  if (r.nonce !== nonce) return fail('verifier_bad_response', 'the verifier answer does not echo this request’s nonce');
  const claims: Record<string, string> = {};
  if (typeof r.claims === 'object' && r.claims !== null) {
    for (const [k, v] of Object.entries(r.claims).slice(0, MAX_CLAIMS)) {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') claims[k.slice(0, 64)] = String(v).slice(0, 200);
    }
  }
  return { ok: true, claims };
}
