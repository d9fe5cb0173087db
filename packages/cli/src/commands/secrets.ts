// `talon secrets set|list|rm|rotate`: write-only administration of vault secrets.
// Values come from stdin (or a prompt with echo off), never from argv, and are
// never printed; `list` shows names and policies only.
import type { Command } from 'commander';
import { placementName } from '@talon/kit/placements';
import { Placement, type SecretInfo, type SecretPolicy } from '@talon/proto';
import { CliError } from '../context.ts';
import { readHidden, vaultAdmin } from './vault.ts';

function collect(value: string, prev: string[]): string[] {
  return [
    ...prev,
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ];
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `--expires`: an ISO 8601 time (2026-01-31, 2026-01-31T12:00:00Z) or a duration from now (90d, 12h, 30m, 2w). */
export function parseExpiry(s: string, nowMs = Date.now()): number {
  const d = /^(\d+)\s*([smhdw])$/.exec(s.trim());
  let at: number;
  if (d) at = nowMs + Number(d[1]) * UNIT_MS[d[2]!]!;
  else if (/^\d{4}-\d{2}-\d{2}/.test(s.trim())) at = Date.parse(s.trim());
  else at = NaN;
  if (!Number.isFinite(at))
    throw new CliError(`--expires ${JSON.stringify(s)}: give an ISO 8601 time (2026-01-31T12:00:00Z) or a duration such as 90d, 12h, 30m`);
  if (at <= nowMs) throw new CliError(`--expires ${JSON.stringify(s)} is in the past`);
  return at;
}

function placementText(p: SecretPolicy | undefined): string {
  if (!p) return '-';
  // Unspecified is stored as bearer (the vault's default).
  const label = placementName(p.placement || Placement.PLACEMENT_BEARER);
  return p.field ? `${label} ${p.field}` : label;
}

function summary(i: SecretInfo): string {
  const p = i.policy;
  const exp = p && p.expiresAtMs ? `, expires ${new Date(p.expiresAtMs).toISOString()}` : '';
  if (p?.verifyOnly) return `verification key (never sent anywhere) for ${p.principals.join(', ')}${exp}`;
  return `${placementText(p)} to ${p?.hosts.join(', ') ?? '-'} for ${p?.principals.join(', ') ?? '-'}${exp}`;
}

interface SetOptions {
  host: string[];
  bearer?: boolean;
  basic?: boolean;
  header?: string;
  query?: string;
  path?: boolean;
  wsFrame?: boolean;
  principal: string[];
  expires?: string;
  verify?: boolean;
}

function placementOf(o: SetOptions): { placement: Placement; field: string } {
  const chosen: Array<{ placement: Placement; field: string }> = [];
  if (o.bearer) chosen.push({ placement: Placement.PLACEMENT_BEARER, field: '' });
  if (o.basic) chosen.push({ placement: Placement.PLACEMENT_BASIC, field: '' });
  if (o.header !== undefined) chosen.push({ placement: Placement.PLACEMENT_HEADER, field: o.header });
  if (o.query !== undefined) chosen.push({ placement: Placement.PLACEMENT_QUERY, field: o.query });
  if (o.path) chosen.push({ placement: Placement.PLACEMENT_PATH, field: '' });
  if (o.wsFrame) chosen.push({ placement: Placement.PLACEMENT_WEBSOCKET_FRAME, field: '' });
  if (chosen.length > 1) throw new CliError('choose one placement: --bearer, --basic, --header NAME, --query NAME, --path or --ws-frame');
  return chosen[0] ?? { placement: Placement.PLACEMENT_BEARER, field: '' };
}

export function registerSecrets(program: Command): void {
  const secrets = program
    .command('secrets')
    .description(
      'store secrets in the vault and bind each to hosts, a placement and principals (values are read from stdin, never printed)',
    );

  secrets
    .command('set')
    .description(
      'store a secret (a new version if NAME exists). The value is read from stdin, or prompted for with echo off on a terminal; one trailing newline is removed',
    )
    .argument('<name>', 'secret name: a-z, 0-9 and _, used in placeholders as {{secret:NAME}} (the LLM key is llm_api_key)')
    .option(
      '--host <hosts>',
      'host(s) the value may be sent to, comma-separated or repeated: api.example.com, api.example.com:8443, *.example.com, 203.0.113.7 (no port = 443)',
      collect,
      [],
    )
    .option('--bearer', 'Authorization: Bearer <value> (default)')
    .option('--basic', 'Authorization: Basic; the value is user:password')
    .option('--header <name>', 'the value goes in this request header')
    .option('--query <name>', 'the value goes in this query parameter')
    .option('--path', 'the value goes in the URL path')
    .option(
      '--ws-frame',
      'the value goes inside a WebSocket text frame sent through egress (a gateway IDENTIFY token); JSON-escaped in a JSON frame',
    )
    .option(
      '--principal <principals>',
      'who may use it: orchestrator, gateway, skill:name@version, or mcp:<server> (for an MCP server’s headers); comma-separated or repeated (default orchestrator)',
      collect,
      [],
    )
    .option('--expires <when>', 'refuse the secret after this ISO 8601 time or duration from now (90d, 12h)')
    .option(
      '--verify',
      'a webhook verification key (Slack signing secret, Telegram secret token, Discord public key): checked inside the vault, never sent anywhere; no --host; default principal gateway',
    )
    .action(async (name: string, o: SetOptions) => {
      let policy: SecretPolicy;
      if (o.verify) {
        if (o.host.length > 0 || o.bearer || o.basic || o.header !== undefined || o.query !== undefined || o.path) {
          throw new CliError('--verify keys are bound to no host and no placement; drop --host and the placement flags');
        }
        policy = {
          hosts: [],
          placement: Placement.PLACEMENT_UNSPECIFIED,
          field: '',
          principals: o.principal.length > 0 ? o.principal : ['gateway'],
          expiresAtMs: o.expires ? parseExpiry(o.expires) : 0,
          verifyOnly: true,
        };
      } else {
        if (o.host.length === 0) throw new CliError('--host needs at least one host (or --verify for a webhook verification key)');
        const { placement, field } = placementOf(o);
        policy = {
          hosts: o.host,
          placement,
          field,
          principals: o.principal.length > 0 ? o.principal : ['orchestrator'],
          expiresAtMs: o.expires ? parseExpiry(o.expires) : 0,
        };
      }
      const value = await readHidden(`Value for ${name} (input hidden): `, 'value');
      let info: SecretInfo;
      try {
        info = await vaultAdmin((c) => c.setSecret, { name, value, policy });
      } finally {
        value.fill(0);
      }
      console.log(`Stored secret ${info.name} version ${info.version} (data key ${info.keyId}): ${summary(info)}.`);
    });

  secrets
    .command('list')
    .description('names, versions and policies of the stored secrets (never values)')
    .action(async () => {
      const r = await vaultAdmin((c) => c.listSecrets, {});
      if (r.secrets.length === 0) {
        console.log('No secrets. Store one with: talon secrets set NAME --host HOST  (value on stdin)');
        return;
      }
      const rows = r.secrets.map((s) => [
        s.name,
        String(s.version),
        placementText(s.policy),
        s.policy?.hosts.join(',') ?? '',
        s.policy?.principals.join(',') ?? '',
        s.policy?.expiresAtMs ? new Date(s.policy.expiresAtMs).toISOString() : 'never',
        String(s.keyId),
        new Date(s.createdAtMs).toISOString(),
      ]);
      const head = ['NAME', 'VERSION', 'PLACEMENT', 'HOSTS', 'PRINCIPALS', 'EXPIRES', 'KEY', 'CREATED'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
      for (const row of [head, ...rows])
        console.log(
          row
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd(),
        );
    });

  secrets
    .command('rm')
    .description('delete a secret and all its versions')
    .argument('<name>')
    .action(async (name: string) => {
      const r = await vaultAdmin((c) => c.deleteSecret, { name });
      console.log(`Deleted secret ${name} (${r.versionsDeleted} version${r.versionsDeleted === 1 ? '' : 's'}).`);
    });

  secrets
    .command('rotate')
    .description('store a new value for an existing secret (same policy, next version); the value is read like `set`')
    .argument('<name>')
    .action(async (name: string) => {
      const value = await readHidden(`New value for ${name} (input hidden): `, 'value');
      let info: SecretInfo;
      try {
        info = await vaultAdmin((c) => c.rotateSecret, { name, value });
      } finally {
        value.fill(0);
      }
      console.log(`Rotated secret ${info.name} to version ${info.version} (data key ${info.keyId}): ${summary(info)}.`);
    });
}
