// `talon import openclaw DIR` against the running platform, on a fixture shaped like a real
// ~/.openclaw whose every credential is a canary: the default run only prints the plan and
// changes nothing; --apply stores each credential in the vault with its hosts, placement and
// principal and the memory Markdown as the user's memory documents (recalled in a later
// chat); a second --apply changes nothing; no canary ever appears in what the CLI prints.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { REPO_ROOT } from '@talon/cli/platform';
import { receivedTexts, startTestPlatform, type TestPlatform } from '@talon/testkit';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/openclaw');
const IMPORTED = [
  'anthropic_api_key',
  'openai_api_key',
  'moonshot_api_key',
  'telegram_bot_token',
  'discord_bot_token',
  'discord_gateway_token',
  'slack_bot_token',
  'slack_app_token',
];

describe('talon import openclaw', () => {
  let tp: TestPlatform;
  let db: pg.Client;

  const run = (...args: string[]) => {
    const r = tp.cli(['import', 'openclaw', FIXTURE, '--user', 'alice', ...args]);
    const all = `${r.stdout}\n${r.stderr}`;
    assert.doesNotMatch(all, /CANARY/, 'the CLI printed a credential value');
    assert.equal(r.status, 0, all);
    return r.stdout;
  };
  const secretRows = () => {
    const r = tp.cli(['secrets', 'list']);
    assert.equal(r.status, 0, r.stderr);
    return new Map(
      r.stdout
        .split('\n')
        .slice(1)
        .map((l) => l.split(/\s{2,}/))
        .map((c) => [c[0]!, `${c[1]} ${c[2]} ${c[3]} ${c[4]}`]),
    );
  };
  const documents = async () =>
    (
      await db.query<{ doc_key: string; n: number }>(
        `select d.doc_key, (select count(*)::int from memory.vector_embeddings e where e.document_id = d.id) as n
           from memory.documents d where d.user_id = 'alice' order by d.doc_key`,
      )
    ).rows;

  before(async () => {
    tp = await startTestPlatform({ env: { TALON_VAULT_PASSPHRASE: `import-${randomBytes(8).toString('hex')}` } });
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
  });
  after(async () => {
    await db?.end();
    await tp?.stop();
  });

  it('without --apply prints the plan, names files and skills, and changes nothing', async () => {
    const out = run();
    assert.match(out, /nothing changed; run again with --apply/);
    for (const name of IMPORTED) assert.match(out, new RegExp(`store\\s+${name}: `));
    assert.match(out, /TALON_CHANNELS=telegram,discord,slack/);
    assert.match(out, /TALON_LLM_MODELS='\[\{"name":"anthropic\/claude-sonnet-4-5"/);
    assert.match(out, /skill weather \(skills\/weather\): not a signed WASM skill/);
    assert.match(out, /skill pdf-notes \(workspace\/skills\/pdf-notes\): not a signed WASM skill/);
    assert.match(out, /Files read:\n {2}\.env {3}\(holds credentials in plaintext\)\n {2}agents\/main\/agent\/auth-profiles\.json/);
    assert.ok(out.includes(`${FIXTURE}/credentials/whatsapp/default/creds.json   (not read)`));
    const stored = secretRows();
    for (const name of IMPORTED) assert.ok(!stored.has(name), `${name} stored by a dry run`);
    assert.deepEqual(await documents(), []);
  });

  it('--apply stores the credentials with their bindings and the memory documents', async () => {
    const out = run('--apply');
    assert.match(out, /^Imported the OpenClaw state in /);
    for (const name of IMPORTED) assert.match(out, new RegExp(`stored\\s+${name}: `));
    assert.match(out, /stored\s+openclaw:MEMORY\.md \(from workspace\/MEMORY\.md/);
    const stored = secretRows();
    assert.equal(stored.get('anthropic_api_key'), '1 header x-api-key api.anthropic.com orchestrator');
    assert.equal(stored.get('openai_api_key'), '1 bearer api.openai.com orchestrator');
    assert.equal(stored.get('telegram_bot_token'), '1 path api.telegram.org gateway');
    assert.equal(stored.get('discord_bot_token'), '1 header authorization discord.com gateway');
    assert.equal(stored.get('discord_gateway_token'), '1 frame gateway.discord.gg,*.discord.gg gateway');
    assert.equal(stored.get('slack_app_token'), '1 bearer slack.com gateway');
    const docs = await documents();
    assert.deepEqual(
      docs.map((d) => d.doc_key),
      ['openclaw:MEMORY.md', 'openclaw:USER.md', 'openclaw:memory:2026-11-30.md', 'openclaw:memory:2026-12-01.md'],
    );
    assert.ok(
      docs.every((d) => d.n > 0),
      'every document is chunked for search',
    );
    // The values are in the vault only: the memory database never holds one.
    const leaked = await db.query(`select 1 from memory.vector_embeddings where content like '%CANARY%'`);
    assert.equal(leaked.rowCount, 0);
  });

  it('a second --apply keeps the stored secrets and leaves the documents unchanged', async () => {
    const before = await documents();
    const out = run('--apply');
    for (const name of IMPORTED) assert.match(out, new RegExp(`kept\\s+${name}: `));
    assert.equal((out.match(/unchanged\s+openclaw:/g) ?? []).length, 4);
    assert.deepEqual(await documents(), before);
    assert.equal(secretRows().get('anthropic_api_key')?.split(' ')[0], '1', 'no new version');
    const replaced = run('--apply', '--replace-secrets');
    assert.match(replaced, /stored v2\s+anthropic_api_key: /);
    assert.equal(secretRows().get('anthropic_api_key')?.split(' ')[0], '2');
  });

  it('the imported memory is recalled in alice’s chats', async () => {
    const token = await tp.token('alice');
    const n = tp.llm!.requests.length;
    const res = await tp.chat(
      token,
      { messages: [{ role: 'user', content: 'What does my cat Pastelito eat?' }] },
      { 'x-talon-conversation': 'cat' },
    );
    assert.equal(res.status, 200, res.text);
    const req = tp.llm!.requests.slice(n).at(-1)!;
    const memory = receivedTexts(req).find((m) => m.role === 'user' && m.text.includes('<untrusted source="memory"'))?.text ?? '';
    assert.match(memory, /salmon pâté/, 'the imported MEMORY.md was recalled');
  });
});
