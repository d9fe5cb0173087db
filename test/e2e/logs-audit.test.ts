// Logs and audit an operator can use (docs/architecture.md, "Logs and audit"):
// one request line per gateway request (route template, status, principal; never
// the token or the body), failed logins with the client address, secret names in
// the vault's log while values never appear in any log, the filters of
// `talon vault audit` and `talon egress audit`, run as the CLI, and the end user
// each egress decision was made for, in the CLI and in the UI's audit API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from 'undici';
import { egressAs, startFakeLlm, startTestPlatform, viaEgress, type FakeLlm, type TestPlatform } from '@talon/testkit';

const CANARY = `logcnry${randomBytes(20).toString('hex')}`;
const OTHER_VALUE = `othercnry${randomBytes(20).toString('hex')}`;
const PASSPHRASE = `logs-${randomBytes(8).toString('hex')}`;
const BODY_MARK = `body-mark-${randomBytes(6).toString('hex')}`;

type Line = Record<string, unknown>;
const lines = (text: string): Line[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

describe('logs and audit an operator can use', () => {
  let tp: TestPlatform;
  let llm: FakeLlm;
  let orch: Client | undefined;
  let gw: Client | undefined;
  let token: string;

  const cli = (args: string[], input?: string) => tp.cli(args, input);
  const cliOk = (args: string[]): string[] => {
    const r = cli(args);
    assert.equal(r.status, 0, `talon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l.trim() !== '');
  };

  before(async () => {
    llm = await startFakeLlm({
      respond: (req) => ({ text: req.headers.authorization === `Bearer ${CANARY}` ? 'authorised answer' : 'unauthorised' }),
    });
    tp = await startTestPlatform({
      llm: false,
      database: 'embedded',
      services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'],
      env: {
        TALON_LLM_BASE_URL: llm.url,
        TALON_LLM_MODEL: 'fake-model',
        TALON_LLM_API_KEY_SECRET: 'llm_api_key',
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${llm.port}`,
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
      },
    });
    const host = `127.0.0.1:${llm.port}`;
    for (const [name, value, principal] of [
      ['llm_api_key', CANARY, 'orchestrator'],
      // Bound to the same host for another principal: the orchestrator asking for it is refused by the vault.
      ['other_key', OTHER_VALUE, 'gateway'],
    ] as const) {
      const r = cli(['secrets', 'set', name, '--host', host, '--bearer', '--principal', principal], `${value}\n`);
      assert.equal(r.status, 0, r.stderr);
    }
    await tp.egressCaughtUpWithVault();
    token = await tp.token('logan');
  });

  after(async () => {
    await orch?.close();
    await gw?.close();
    await tp?.stop();
    await llm?.close();
  });

  it('a chat request writes exactly one request line: route, status, principal; never the token or the body', async () => {
    const res = await tp.chat(token, { messages: [{ role: 'user', content: `hello ${BODY_MARK}` }] }, { 'x-talon-conversation': 'logs' });
    assert.equal(res.status, 200, res.text);
    assert.match(res.text, /authorised answer/);
    const health = await fetch(`${tp.gatewayUrl}/healthz`);
    await health.body?.cancel();
    const chatLines = await tp.until('the request line of the chat', () => {
      const found = lines(tp.log('gateway')).filter((l) => l.msg === 'request' && l.route === '/v1/chat/completions');
      return found.length > 0 ? found : undefined;
    });
    assert.equal(chatLines.length, 1, JSON.stringify(chatLines));
    const l = chatLines[0]!;
    assert.equal(l.level, 30, 'info');
    assert.equal(l.method, 'POST');
    assert.equal(l.status, 200);
    assert.equal(l.user, 'logan');
    assert.equal(typeof l.token_id, 'string');
    assert.equal(typeof l.duration_ms, 'number');
    assert.match(String(l.client), /127\.0\.0\.1/);
    const gatewayLog = tp.log('gateway');
    assert.ok(!gatewayLog.includes(token), 'the token is never logged');
    assert.ok(!gatewayLog.includes(BODY_MARK), 'the body is never logged');
    assert.ok(!lines(gatewayLog).some((x) => x.msg === 'request' && String(x.route).includes('health')), 'probes are not logged');
  });

  it('a bad token writes a failed-login line with the client address and the reason', async () => {
    const bad = `talon_pat_${'0f'.repeat(32)}`;
    const res = await tp.chat(bad, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 401);
    const failed = await tp.until('the failed-login line', () =>
      lines(tp.log('gateway')).find((l) => l.msg === 'authentication failed' && l.reason === 'unknown_token'),
    );
    assert.equal(failed.level, 40, 'warn');
    assert.match(String(failed.client), /127\.0\.0\.1/);
    const refused = await tp.until('the request line of the refused request', () =>
      lines(tp.log('gateway')).find((l) => l.msg === 'request' && l.status === 401),
    );
    assert.equal(refused.user, undefined);
    assert.ok(!tp.log('gateway').includes(bad), 'the presented token is never logged');
  });

  it('secret names are in the vault log; values are in no log', async () => {
    const vaultLines = lines(tp.log('vault'));
    assert.ok(
      vaultLines.some((l) => l.msg === 'secret stored' && l.secret === 'llm_api_key'),
      'the vault log names the secret it stored',
    );
    assert.ok(!vaultLines.some((l) => l.secret === '[REDACTED]'), 'no secret name is censored');
    const dir = join(tp.home, 'logs');
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const v of [CANARY, OTHER_VALUE]) assert.ok(!text.includes(v), `${f} holds a secret value`);
    }
  });

  it('talon vault audit filters by secret, decision, principal and time', async () => {
    orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    const refused = await viaEgress(orch, `${llm.url}/v1/models`, { headers: { authorization: 'Bearer {{secret:other_key}}' } });
    assert.equal(refused.status, 403, refused.text);

    const bySecret = cliOk(['vault', 'audit', '--secret', 'llm_api_key', '--limit', '100']);
    assert.ok(bySecret.length > 0);
    for (const l of bySecret) assert.match(l, /secret=llm_api_key\b/);
    assert.ok(
      bySecret.some((l) => /ALLOW/.test(l) && /principal=orchestrator/.test(l)),
      bySecret.join('\n'),
    );

    const denied = cliOk(['vault', 'audit', '--decision', 'deny']);
    assert.ok(denied.length > 0);
    for (const l of denied) assert.match(l, /DENY/);
    assert.ok(
      denied.some((l) => /secret=other_key/.test(l)),
      denied.join('\n'),
    );

    const byPrincipal = cliOk(['vault', 'audit', '--principal', 'admin']);
    for (const l of byPrincipal) assert.match(l, /caller=admin|principal=admin/);
    assert.ok(
      byPrincipal.some((l) => /set_secret|SetSecret|set/.test(l)),
      byPrincipal.join('\n'),
    );

    assert.deepEqual(cliOk(['vault', 'audit', '--since', new Date(Date.now() + 3_600_000).toISOString()]), ['No audit records match.']);
    assert.ok(cliOk(['vault', 'audit', '--since', '1h', '--secret', 'other_key']).length > 0);

    const badDecision = cli(['vault', 'audit', '--decision', 'maybe']);
    assert.notEqual(badDecision.status, 0);
    assert.match(badDecision.stderr, /--decision takes allow or deny/);
    const badSince = cli(['vault', 'audit', '--since', 'yesterday']);
    assert.notEqual(badSince.status, 0);
    assert.match(badSince.stderr, /--since takes a duration/);
  });

  it('talon egress audit filters by principal, decision and secret, and names the rule', async () => {
    gw = egressAs(tp.home, tp.ports.egressProxy, 'gateway');
    // The gateway may reach only the chat platforms: refused by policy.
    const refused = await viaEgress(gw, `${llm.url}/v1/models`);
    assert.equal(refused.status, 403, refused.text);
    await tp.until('the gateway refusal in the audit stream', () =>
      cliOk(['egress', 'audit', '--principal', 'gateway']).some((l) => /DENY/.test(l)),
    );

    const gateway = cliOk(['egress', 'audit', '--principal', 'gateway']);
    for (const l of gateway) assert.match(l, /principal=gateway\b/);
    const orchestrator = cliOk(['egress', 'audit', '--principal', 'orchestrator', '--limit', '200']);
    assert.ok(orchestrator.length > 0);
    for (const l of orchestrator) assert.match(l, /principal=orchestrator\b/);

    const refusals = cliOk(['egress', 'audit', '--decision', 'deny']);
    for (const l of refusals) assert.match(l, /DENY/);
    assert.ok(refusals.some((l) => /principal=gateway/.test(l) && /reason=\w+/.test(l)));

    const withSecret = cliOk(['egress', 'audit', '--secret', 'llm_api_key', '--decision', 'allow']);
    assert.ok(withSecret.length > 0);
    for (const l of withSecret) assert.match(l, /ALLOW.*secrets=[^ ]*llm_api_key/);
    for (const l of [...gateway, ...orchestrator, ...refusals]) {
      for (const v of [CANARY, OTHER_VALUE]) assert.ok(!l.includes(v));
    }
  });

  it('an egress decision names the user the turn ran for, in talon egress audit --user and the UI audit API', async () => {
    const res = await tp.chat(token, { messages: [{ role: 'user', content: 'whose call is this?' }] }, { 'x-talon-conversation': 'who' });
    assert.equal(res.status, 200, res.text);
    const mine = await tp.until('the turn’s LLM decision for logan', () => {
      const found = cliOk(['egress', 'audit', '--user', 'logan', '--limit', '200']);
      return found.some((l) => /ALLOW/.test(l)) ? found : undefined;
    });
    for (const l of mine) assert.match(l, /principal=orchestrator {2}user=logan {2}/);
    assert.ok(
      mine.some((l) => l.includes(`POST 127.0.0.1:${llm.port}/`) && /secrets=llm_api_key/.test(l)),
      mine.join('\n'),
    );
    assert.deepEqual(cliOk(['egress', 'audit', '--user', 'nobody-here']), ['No egress decisions match.']);
    const badUser = cli(['egress', 'audit', '--user', 'Not A User']);
    assert.notEqual(badUser.status, 0);
    assert.match(badUser.stderr, /--user takes a Talon user id/);
    // The user is told to egress, never to the provider.
    assert.ok(llm.requests.length > 0);
    for (const r of llm.requests) assert.equal(r.headers['x-talon-user'], undefined, 'x-talon-user reached the LLM provider');

    // A refusal for a user: the UI's audit API names the user and the rule behind it.
    orch ??= egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    const refused = await viaEgress(orch, `${llm.url}/v1/models`, {
      headers: { authorization: 'Bearer {{secret:other_key}}', 'x-talon-user': 'logan' },
    });
    assert.equal(refused.status, 403, refused.text);
    const op = await tp.token('opal', { scope: 'operator' });
    type Entry = { principal: string; user: string; allowed: boolean; reason: string; findings: string[]; secrets: string[] };
    const entries = await tp.until('the refusal in the UI audit API', async () => {
      const r = await fetch(`${tp.gatewayUrl}/v1/admin/audit?limit=200`, { headers: { authorization: `Bearer ${op}` } });
      assert.equal(r.status, 200);
      const body = (await r.json()) as { entries: Entry[] };
      return body.entries.some((e) => !e.allowed && e.user === 'logan') ? body.entries : undefined;
    });
    const refusal = entries.find((e) => !e.allowed && e.user === 'logan')!;
    assert.equal(refusal.principal, 'orchestrator');
    assert.match(refusal.reason, /^secret_/, 'the rule behind the refusal');
    assert.ok(
      entries.some((e) => e.allowed && e.user === 'logan' && e.principal === 'orchestrator' && e.secrets.includes('llm_api_key')),
      'the turn’s LLM call, with its user',
    );
  });
});
