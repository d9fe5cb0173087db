import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { EgressDecision } from '@talon/proto';
import { auditFilterOptions, decisionMatches, formatDecision, parseAuditFilter, type AuditFilterFlags } from '../audit-filter.ts';
import { CliError, homeDir, withAdminNats } from '../context.ts';
import { decisionsToHar } from '../har.ts';

const PRINCIPAL = /^[a-z0-9][a-z0-9:@._-]{0,127}$/;

function credentialsFile(): string {
  return process.env.EGRESS_PROXY_CREDENTIALS_FILE ?? join(homeDir(), 'egress', 'proxy-credentials.json');
}

function readCredentials(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  return (JSON.parse(readFileSync(file, 'utf8')) as { credentials?: Record<string, string> }).credentials ?? {};
}

function writeCredentials(file: string, creds: Record<string, string>): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify({ credentials: creds }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/**
 * Reads the newest egress decisions from the audit stream (oldest first). With
 * `notBeforeMs` the backward scan stops a minute past that time (replicas publish
 * slightly out of order), instead of reading the whole stream.
 */
export async function readDecisions(
  limit: number,
  filter: (d: EgressDecision) => boolean = () => true,
  notBeforeMs = 0,
): Promise<EgressDecision[]> {
  return withAdminNats(async (nc) => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAMS.audit.name);
    const out: EgressDecision[] = [];
    const subject = SUBJECTS.auditEgress('decision');
    for (let seq = info.state.last_seq; seq >= info.state.first_seq && seq > 0 && out.length < limit; seq--) {
      const m = await jsm.streams.getMessage(STREAMS.audit.name, { seq }).catch(() => null);
      if (!m || m.subject !== subject) continue;
      const d = EgressDecision.decode(m.data);
      if (notBeforeMs > 0 && Number(d.atMs) < notBeforeMs - 60_000) break;
      if (filter(d)) out.push(d);
    }
    return out.reverse();
  });
}

export function registerEgress(program: Command): void {
  const egress = program
    .command('egress')
    .description('the egress proxy: interception CA, proxy credentials, and an HTTP archive of decisions');
  egress
    .command('ca')
    .description('print where the TLS interception CA certificate is (clients that use CONNECT must trust it)')
    .action(() => {
      const dir = process.env.EGRESS_CA_DIR ?? join(homeDir(), 'egress', 'ca');
      const pem = join(dir, 'mitmproxy-ca-cert.pem');
      if (!existsSync(pem)) throw new CliError(`no interception CA in ${dir} yet; it is created when egress first starts`);
      console.log(pem);
    });
  const cred = egress
    .command('credential')
    .description('per-principal proxy credentials for tools that cannot present a Talon certificate');
  cred
    .command('create')
    .description('create (or replace) the credential of a principal and print it once, as a proxy URL')
    .requiredOption('--principal <name>', 'the principal the credential acts as; give it destinations in EGRESS_POLICY_FILE')
    .action((o: { principal: string }) => {
      if (!PRINCIPAL.test(o.principal)) throw new CliError('--principal must be lower-case letters, digits and :@._-');
      const password = randomBytes(24).toString('base64url');
      const file = credentialsFile();
      const creds = readCredentials(file);
      creds[o.principal] = createHash('sha256').update(password).digest('hex');
      writeCredentials(file, creds);
      process.stderr.write(`Credential for principal "${o.principal}" stored (hash only) in ${file}. Shown once:\n`);
      process.stdout.write(`${o.principal}:${password}\n`);
    });
  cred
    .command('list')
    .description('principals that have a proxy credential')
    .action(() => {
      const names = Object.keys(readCredentials(credentialsFile()));
      console.log(names.length ? names.join('\n') : 'No proxy credentials.');
    });
  cred
    .command('revoke')
    .argument('<principal>')
    .description('remove a principal’s credential (effective on its next request)')
    .action((principal: string) => {
      const file = credentialsFile();
      const creds = readCredentials(file);
      if (!(principal in creds)) throw new CliError(`no credential for ${principal}`);
      delete creds[principal];
      writeCredentials(file, creds);
      console.log(`Revoked the proxy credential of ${principal}.`);
    });
  const audit = egress
    .command('audit')
    .description('egress decisions, newest first: who called which host, allowed or refused, and the rule behind it (names, never values)');
  auditFilterOptions(audit, { def: 50, max: 10_000 })
    .option('--user <id>', 'only requests made for this Talon user (a turn or skill call of theirs, a reply to them)')
    .addHelpText(
      'after',
      '\nExamples:\n  talon egress audit --decision deny --since 2h\n  talon egress audit --principal skill:weather@1.0.0 --secret weather_api_key\n  talon egress audit --user alice --decision deny',
    )
    .action(async (o: AuditFilterFlags) => {
      const f = parseAuditFilter(o, Date.now(), { def: 50, max: 10_000 });
      const decisions = await readDecisions(f.limit, (d) => decisionMatches(f, d), f.sinceMs);
      if (decisions.length === 0) {
        console.log(
          f.sinceMs || f.untilMs || f.principal || f.decision || f.secret || f.user
            ? 'No egress decisions match.'
            : 'No egress decisions yet.',
        );
        return;
      }
      for (const d of decisions.reverse()) console.log(formatDecision(d));
    });
  egress
    .command('har')
    .description('write the newest egress decisions as an HTTP Archive (HAR 1.2); secret values are never in it')
    .option('--limit <n>', 'most decisions to include', '500')
    .option('--principal <name>', 'only this caller')
    .option('--refused', 'only refused requests')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (o: { limit: string; principal?: string; refused?: boolean; output?: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new CliError('--limit must be a positive integer');
      const decisions = await readDecisions(limit, (d) => (!o.principal || d.principal === o.principal) && (!o.refused || !d.allowed));
      const har = `${JSON.stringify(decisionsToHar(decisions), null, 2)}\n`;
      if (o.output) {
        writeFileSync(o.output, har, { mode: 0o600 });
        process.stderr.write(`wrote ${decisions.length} entries to ${o.output}\n`);
      } else process.stdout.write(har);
    });
}
