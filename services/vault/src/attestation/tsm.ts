// Evidence from the Linux configfs-tsm report interface (Linux 6.7+,
// Documentation/ABI/testing/configfs-tsm): create an entry under
// /sys/kernel/config/tsm/report, write the 64-byte report_data to `inblob`, read
// the report or quote from `outblob` (and the SNP certificate table from
// `auxblob`), then remove the entry. The same interface serves SEV-SNP
// (provider sev_guest) and TDX (provider tdx_guest).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPORT_DATA_BYTES, type Evidence, type EvidenceSource, type TeeKind } from './types.ts';

export const TSM_REPORT_DIR = '/sys/kernel/config/tsm/report';

const PROVIDER: Record<Exclude<TeeKind, 'none'>, string> = { 'sev-snp': 'sev_guest', tdx: 'tdx_guest' };

export class EvidenceUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EvidenceUnavailable';
  }
}

export class ConfigfsTsmSource implements EvidenceSource {
  readonly name = 'configfs-tsm';
  private readonly dir: string;
  private readonly tee: Exclude<TeeKind, 'none'>;

  constructor(tee: Exclude<TeeKind, 'none'>, dir = TSM_REPORT_DIR) {
    this.tee = tee;
    this.dir = dir;
  }

  async collect(reportData: Uint8Array, signal: AbortSignal): Promise<Evidence> {
    if (reportData.length !== REPORT_DATA_BYTES) throw new EvidenceUnavailable(`report_data must be ${REPORT_DATA_BYTES} bytes`);
    const entry = join(this.dir, `talon-vault-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(entry);
    } catch (err) {
      throw new EvidenceUnavailable(
        `cannot create a report entry under ${this.dir} (${(err as NodeJS.ErrnoException).code ?? 'error'}): ` +
          'is this a confidential VM with configfs-tsm (Linux 6.7+, configfs mounted) and is the directory writable by the vault?',
        { cause: err },
      );
    }
    try {
      const provider = (await readFile(join(entry, 'provider'), { encoding: 'utf8', signal })).trim();
      if (provider !== PROVIDER[this.tee]) {
        throw new EvidenceUnavailable(
          `the TSM provider is ${provider || 'unknown'}, not ${PROVIDER[this.tee]}: VAULT_ATTESTATION does not match this machine's TEE`,
        );
      }
      await writeFile(join(entry, 'inblob'), reportData, { signal });
      // generation counts writes to the entry; a change while reading means someone else wrote to it.
      const before = (await readFile(join(entry, 'generation'), { encoding: 'utf8', signal })).trim();
      const report = await readFile(join(entry, 'outblob'), { signal });
      const aux = await readFile(join(entry, 'auxblob'), { signal }).catch(() => undefined);
      const after = (await readFile(join(entry, 'generation'), { encoding: 'utf8', signal })).trim();
      if (before !== after) throw new EvidenceUnavailable('the report entry was written concurrently; try again');
      if (report.length === 0) throw new EvidenceUnavailable('the TSM provider returned an empty report');
      return { tee: this.tee, report, ...(aux && aux.length > 0 ? { aux } : {}) };
    } catch (err) {
      if (err instanceof EvidenceUnavailable) throw err;
      throw new EvidenceUnavailable(
        `reading a report from ${entry} failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`,
        {
          cause: err,
        },
      );
    } finally {
      await rmdir(entry).catch(() => undefined);
    }
  }
}

/** For the http mode, where the local verifier agent collects its own evidence for the nonce. */
export class NoEvidence implements EvidenceSource {
  readonly name = 'none';
  collect(): Promise<Evidence> {
    return Promise.resolve({ tee: 'none', report: new Uint8Array(0) });
  }
}
