// The example skills, built from source and run in real plugin hosts, with the host
// side of talon_http_request answered by a stand-in for the third-party API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@talon/kit/log';
import { HostPool, type HostCallAnswer, type HostJob } from '../src/host/pool.ts';
import { parsePluginRequest } from '../src/http-bridge.ts';
import { sha256Hex } from '@talon/records/skills';
import { builtSkill, ensureSkillsBuilt } from './support.ts';

let pool: HostPool;

async function run(
  dir: string,
  input: unknown,
  onHttp: (req: ReturnType<typeof parsePluginRequest>) => HostCallAnswer = () => ({
    result: '{"error":{"code":"host_not_allowed","message":"no"}}',
  }),
): Promise<{ ok: boolean; output: string; error?: { code: string; message: string }; calls: number }> {
  const wasm = new Uint8Array(readFileSync(join(dir, 'skill.wasm')));
  const m = JSON.parse(readFileSync(join(dir, 'skill.json'), 'utf8')) as { inputSchema: unknown; permissions: { memoryMb: number } };
  let calls = 0;
  const job: HostJob = {
    skillKey: dir,
    sha256: sha256Hex(wasm),
    wasm,
    entrypoint: 'run',
    input: JSON.stringify(input),
    inputSchema: JSON.stringify(m.inputSchema),
    maxPages: m.permissions.memoryMb * 16,
    limits: { maxAllocBytes: m.permissions.memoryMb << 20, maxOutputBytes: 1 << 20, maxVarBytes: 1 << 20, maxLogLines: 5 },
    deadline: Date.now() + 5000,
    onHostCall: async (_fn, payload) => {
      calls += 1;
      return onHttp(parsePluginRequest(payload, { maxRequestBytes: 1 << 20, maxHeaders: 64, maxUrlLength: 8192 }));
    },
  };
  const r = await pool.run(job);
  return { ok: r.ok, output: r.output ? Buffer.from(r.output).toString() : '', error: r.error, calls };
}

const reply = (status: number, body: unknown): HostCallAnswer => ({
  result: JSON.stringify({ status, headers: {}, body: JSON.stringify(body) }),
});

describe('example skills', () => {
  before(async () => {
    await ensureSkillsBuilt();
    pool = new HostPool({
      size: 1,
      perSkill: 1,
      queueLimit: 8,
      heapMb: 96,
      rssLimitBytes: 512 << 20,
      warmTimeoutMs: 2000,
      log: createLogger({ service: 't', level: 'silent' }),
    });
    await pool.start();
  });
  after(async () => {
    await pool?.close();
  });

  it('unit-convert converts within a dimension and explains what it cannot do', async () => {
    const uc = builtSkill('examples', 'unit-convert');
    assert.equal((await run(uc, { value: 212, from: 'F', to: 'C' })).output, '{"value":100,"unit":"C"}');
    assert.equal((await run(uc, { value: 1, from: 'lb', to: 'g' })).output, '{"value":453.59237,"unit":"g"}');
    assert.equal((await run(uc, { value: 0, from: 'K', to: 'C' })).output, '{"value":-273.15,"unit":"C"}');
    const bad = await run(uc, { value: 1, from: 'km', to: 'kg' });
    assert.equal(bad.error?.code, 'plugin_error');
    assert.match(bad.error!.message, /cannot convert length to mass/);
    assert.equal(bad.calls, 0, 'a pure skill makes no host calls');
  });

  it('weather asks api.open-meteo.com (through the host) and summarises the answer', async () => {
    let seen: ReturnType<typeof parsePluginRequest> | undefined;
    const r = await run(builtSkill('examples', 'weather'), { latitude: 52.52, longitude: 13.41 }, (req) => {
      seen = req;
      return reply(200, {
        latitude: 52.52,
        longitude: 13.419998,
        current_units: { temperature_2m: '°C' },
        current: { time: '2026-11-26T12:00', temperature_2m: 7.4, relative_humidity_2m: 81, wind_speed_10m: 14.2, weather_code: 3 },
      });
    });
    assert.equal(r.ok, true, JSON.stringify(r.error));
    assert.equal(seen?.method, 'GET');
    const url = new URL(seen!.url);
    assert.equal(url.host, 'api.open-meteo.com');
    assert.equal(url.searchParams.get('latitude'), '52.52');
    assert.equal(url.searchParams.get('longitude'), '13.41');
    assert.deepEqual(JSON.parse(r.output), {
      latitude: 52.52,
      longitude: 13.41,
      time: '2026-11-26T12:00',
      temperatureC: 7.4,
      relativeHumidity: 81,
      windSpeedKmh: 14.2,
      weatherCode: 3,
    });
    const refused = await run(builtSkill('examples', 'weather'), { latitude: 0, longitude: 0 });
    assert.match(refused.error!.message, /weather request failed: host_not_allowed/);
    assert.equal((await run(builtSkill('examples', 'weather'), { latitude: 91, longitude: 0 })).error?.code, 'invalid_argument');
  });

  it('github-issues sends only the token placeholder and lists issues, skipping pull requests', async () => {
    let seen: ReturnType<typeof parsePluginRequest> | undefined;
    const r = await run(builtSkill('examples', 'github-issues'), { owner: 'talon', repo: 'talon', limit: 5 }, (req) => {
      seen = req;
      return reply(200, [
        {
          number: 7,
          title: 'Sandbox "escape"?',
          state: 'open',
          user: { login: 'eve' },
          comments: 2,
          html_url: 'https://github.com/talon/talon/issues/7',
        },
        { number: 6, title: 'A PR', state: 'open', user: { login: 'bob' }, comments: 0, html_url: 'u', pull_request: { url: 'x' } },
        {
          number: 5,
          title: 'Docs',
          state: 'open',
          user: { login: 'ada' },
          comments: 0,
          html_url: 'https://github.com/talon/talon/issues/5',
        },
      ]);
    });
    assert.equal(r.ok, true, JSON.stringify(r.error));
    assert.equal(seen?.url, 'https://api.github.com/repos/talon/talon/issues?state=open&per_page=5');
    assert.equal(seen?.headers?.authorization, 'Bearer {{secret:github_token}}', 'the skill holds a placeholder, never the token');
    assert.equal(seen?.headers?.['user-agent'], 'talon-skill-github-issues');
    const out = JSON.parse(r.output) as { repository: string; issues: Array<{ number: number; title: string; author: string }> };
    assert.equal(out.repository, 'talon/talon');
    assert.deepEqual(
      out.issues.map((i) => [i.number, i.title, i.author]),
      [
        [7, 'Sandbox "escape"?', 'eve'],
        [5, 'Docs', 'ada'],
      ],
    );
    const missing = await run(builtSkill('examples', 'github-issues'), { owner: 'a', repo: 'b' }, () =>
      reply(404, { message: 'Not Found' }),
    );
    assert.match(missing.error!.message, /repository a\/b not found/);
    assert.equal((await run(builtSkill('examples', 'github-issues'), { owner: '../x', repo: 'b' })).error?.code, 'invalid_argument');
  });

  it('the `talon skills new` template builds and greets', async () => {
    assert.equal((await run(builtSkill('template'), { name: 'Grace' })).output, '{"greeting":"Hello, Grace!"}');
  });
});
