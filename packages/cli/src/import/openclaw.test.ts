import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { REPO_ROOT } from '../platform/platform.ts';
import { planText } from '../commands/import.ts';
import { parseDotenv, planOpenClawImport, readOpenClawDir, type OpenClawFiles } from './openclaw.ts';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/openclaw');

function files(texts: Record<string, string>, skillDirs: string[] = []): OpenClawFiles {
  return { texts: new Map(Object.entries(texts)), unread: [], skillDirs };
}

/** Everything a plan could show: its printable fields, String/JSON/inspect of the whole, and the command's text. */
function everythingShown(plan: ReturnType<typeof planOpenClawImport>): string {
  const text = planText('/x', plan, { apply: false, user: 'alice', status: new Map(), docStatus: new Map() }).join('\n');
  return [text, JSON.stringify(plan), inspect(plan, { depth: 10 }), String(plan.values)].join('\n');
}

describe('OpenClaw import plan', () => {
  const plan = planOpenClawImport(readOpenClawDir(FIXTURE), { user: 'alice' });

  it('binds every credential to its Talon secret name, hosts, placement and principal', () => {
    const rows = plan.secrets.map(
      (s) => `${s.name} ${s.placement}${s.field ? ` ${s.field}` : ''} ${s.hosts.join(',')} ${s.principals.join(',')}`,
    );
    assert.deepEqual(rows, [
      'anthropic_api_key header x-api-key api.anthropic.com orchestrator',
      'openai_api_key bearer api.openai.com orchestrator',
      'moonshot_api_key bearer api.moonshot.ai orchestrator',
      'telegram_bot_token path api.telegram.org gateway',
      'discord_bot_token header authorization discord.com gateway',
      'discord_gateway_token frame gateway.discord.gg,*.discord.gg gateway',
      'slack_bot_token bearer slack.com gateway',
      'slack_app_token bearer slack.com gateway',
    ]);
    // The values are the files' (auth profile first, then the config, then .env), as bytes for the vault only.
    assert.equal(plan.values.bytes('anthropic_api_key').toString(), 'sk-ant-api03-CANARY-anthropic-key');
    assert.equal(plan.values.bytes('moonshot_api_key').toString(), 'sk-CANARY-moonshot-key'); // ${MOONSHOT_API_KEY} from .env, unquoted
    assert.equal(plan.values.bytes('discord_gateway_token').toString(), plan.values.bytes('discord_bot_token').toString());
  });

  it('turns models and channels into settings Talon parses', () => {
    const models = plan.settings.find((s) => s.startsWith('TALON_LLM_MODELS='))!;
    const doc = JSON.parse(models.slice("TALON_LLM_MODELS='".length, -1)) as Array<{
      name: string;
      targets: Array<{ key: string; model: string }>;
    }>;
    assert.equal(doc[0]!.name, 'anthropic/claude-sonnet-4-5');
    assert.deepEqual(
      doc[0]!.targets.map((t) => t.model),
      ['claude-sonnet-4-5', 'gpt-4o', 'kimi-k2-0905-preview'],
    );
    assert.equal(doc.find((m) => m.name === 'local-vllm/qwen3-8b')!.targets[0]!.key, 'none');
    assert.ok(plan.settings.includes('TALON_EGRESS_ALLOW_PRIVATE=127.0.0.1:8000'));
    assert.ok(plan.settings.includes('TALON_CHANNELS=telegram,discord,slack'));
  });

  it('plans memory documents with stable keys, and lists what it leaves out with the reason', () => {
    assert.deepEqual(
      plan.documents.map((d) => `${d.key} ${d.from}`),
      [
        'openclaw:MEMORY.md workspace/MEMORY.md',
        'openclaw:USER.md workspace/USER.md',
        'openclaw:memory:2026-11-30.md workspace/memory/2026-11-30.md',
        'openclaw:memory:2026-12-01.md workspace/memory/2026-12-01.md',
      ],
    );
    const out = plan.notImported.join('\n');
    assert.match(out, /skill weather \(skills\/weather\): not a signed WASM skill/);
    assert.match(out, /skill pdf-notes \(workspace\/skills\/pdf-notes\): not a signed WASM skill/);
    assert.match(out, /model codex-proxy\/gpt-5-codex: uses the openai-responses API/);
    assert.match(out, /OAuth login of openai-codex/);
    assert.match(out, /channel whatsapp/);
    assert.match(out, /gateway\.auth\.token/);
    assert.deepEqual(plan.credentialFiles, ['.env', 'agents/main/agent/auth-profiles.json', 'credentials/oauth.json', 'openclaw.json']);
    assert.deepEqual(plan.unreadCredentialFiles, ['credentials/telegram-allowFrom.json', 'credentials/whatsapp/default/creds.json']);
    assert.ok(plan.filesRead.includes('workspace/MEMORY.md') && !plan.filesRead.includes('credentials/whatsapp/default/creds.json'));
  });

  it('shows no credential value anywhere: text, JSON, inspect', () => {
    const shown = everythingShown(plan);
    assert.doesNotMatch(shown, /CANARY/);
    assert.equal(plan.values.size, 8);
    assert.ok(plan.values.leaksInto(`x ${plan.values.bytes('slack_app_token').toString()} y`));
  });

  it('without --user, memory documents are listed as not imported', () => {
    const p = planOpenClawImport(readOpenClawDir(FIXTURE));
    assert.equal(p.documents.length, 0);
    assert.match(p.notImported.join('\n'), /give --user NAME/);
  });

  it('resolves ${VAR} and env SecretRefs from .env and the env block, and says what it cannot resolve', () => {
    const p = planOpenClawImport(
      files({
        'openclaw.json': `{
          env: { TG: 'tg-CANARY-from-env-block' },
          agents: { defaults: { model: 'anthropic/claude-x' } },
          models: { providers: { anthropic: { apiKey: { source: 'env', provider: 'default', id: 'ANTHROPIC_KEY' } } } },
          channels: { telegram: { botToken: '\${TG}' }, discord: { token: '\${NOWHERE}' }, slack: { botToken: { source: 'file', id: '/x' } } },
        }`,
        '.env': "export ANTHROPIC_KEY='ak-CANARY-quoted' \n# comment\n",
      }),
    );
    assert.equal(p.values.bytes('anthropic_api_key').toString(), 'ak-CANARY-quoted');
    assert.equal(p.values.bytes('telegram_bot_token').toString(), 'tg-CANARY-from-env-block');
    assert.ok(!p.secrets.some((s) => s.name.startsWith('discord') || s.name.startsWith('slack')));
    assert.ok(p.settings.includes('TALON_CHANNELS=telegram'));
    assert.match(p.notImported.join('\n'), /channels\.discord\.token in openclaw\.json: names \$NOWHERE/);
    assert.match(p.notImported.join('\n'), /channels\.slack\.botToken in openclaw\.json: a file reference/);
    assert.doesNotMatch(everythingShown(p), /CANARY/);
  });

  it('refuses a provider base URL that carries credentials, without printing it', () => {
    const p = planOpenClawImport(
      files({
        'openclaw.json': `{ agents: { defaults: { model: 'proxy/m1' } },
          models: { providers: { proxy: { baseUrl: 'https://user:pw-CANARY@llm.example.com/v1?key=CANARY-q', api: 'openai-completions' } } } }`,
      }),
    );
    assert.equal(p.settings.length, 0);
    assert.match(p.notImported.join('\n'), /provider proxy's baseUrl carries credentials/);
    assert.doesNotMatch(everythingShown(p), /CANARY/);
  });

  it('names the place of a syntax error, never the text around it', () => {
    assert.throws(
      () => planOpenClawImport(files({ 'openclaw.json': `{\n  channels: { telegram: { botToken: 'CANARY-unterminated } } }` })),
      (err: Error) => /openclaw\.json is not valid JSON5 \(line \d+, column \d+\)/.test(err.message) && !err.message.includes('CANARY'),
    );
  });

  it('enables Slack only with the bot token and a way in (app token or signing secret)', () => {
    const only = planOpenClawImport(files({ 'openclaw.json': `{ channels: { slack: { botToken: 'xoxb-CANARY-1' } } }` }));
    assert.ok(!only.settings.some((s) => s.startsWith('TALON_CHANNELS')));
    const events = planOpenClawImport(
      files({ 'openclaw.json': `{ channels: { slack: { botToken: 'xoxb-CANARY-1', signingSecret: 'sig-CANARY-2' } } }` }),
    );
    assert.deepEqual(events.settings, ['GATEWAY_SLACK_MODE=events', 'TALON_CHANNELS=slack']);
    assert.equal(events.secrets.find((s) => s.name === 'slack_signing_secret')!.placement, 'verify');
  });

  it('parses dotenv lines', () => {
    assert.deepEqual(
      [...parseDotenv('A=1\nexport B="two words"\n# C=3\nD = x # note\nE=\n bad line\n')],
      [
        ['A', '1'],
        ['B', 'two words'],
        ['D', 'x'],
      ],
    );
  });
});
