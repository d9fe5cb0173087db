// Chaos: turns keep coming (two users, streaming and not, some with a tool call) while
// processes are killed with SIGKILL one after another, the database drops every
// connection (or restarts), and the vault is sealed and unsealed. Afterwards every turn
// is looked up in memory through the API: each must be answered exactly once, and no
// user message or answer may be missing or doubled. `npm run chaos` runs the long
// version (a 3-node NATS cluster and two of every service); a short one is in `npm test`.
import pg from 'pg';
import { parseDatabaseUrl } from '@talon/kit/database-url';
import { pgClientConfig } from '@talon/kit/db';
import { createClient, unary } from '@talon/kit/grpc';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import { VaultAdminServiceClient } from '@talon/proto';
import { receivedTexts, type RecordedLlmRequest } from './fake-llm.ts';
import { startTestPlatform, streamedText, type TestPlatform } from './harness.ts';
import { waitFor } from './wait.ts';
import { nativeAdminUrl, testDatabaseKind } from './database.ts';
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.ts';

export interface ChaosOptions {
  /** Turns to drive at least (more when the faults take longer). */
  turns: number;
  /** Turns in flight at once. */
  concurrency: number;
  /** `cluster`: 3 nats-server nodes and two of every service; `single`: one of each, as `talon up`. */
  mode: 'cluster' | 'single';
  /**
   * On a native database: `private` (default) runs a PostgreSQL server of the run's own and
   * restarts it; `shared` uses TALON_TEST_DATABASE_URL's server and drops every connection to
   * the test database instead (restarting a shared server would break its other users).
   */
  postgres?: 'private' | 'shared';
  /** Calm turns before the faults (their latency is the baseline). */
  calmTurns?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  turns: number;
  answered: number;
  lost: number;
  duplicated: number;
  /** Turns whose HTTP answer was cut off (its gateway died) and that were found answered in memory. */
  answeredViaHistory: number;
  /** Turns whose connection was cut before the gateway queued them (not in memory): sent again. */
  resentNotAccepted: number;
  /** Turns the model was asked for more than once (a redelivery after the answer was obtained). */
  llmRepeats: number;
  faults: string[];
  calm: { p50: number; p99: number };
  chaos: { p50: number; p99: number };
  problems: string[];
}

const PASSPHRASE = 'chaos passphrase: correct horse battery staple';
const USERS = ['alice', 'bob'] as const;

/** The model: `TOOL [id]` saves a note with memory_save, then answers; anything else is answered at once. */
function respond(req: RecordedLlmRequest) {
  const texts = receivedTexts(req);
  const user = [...texts].reverse().find((m) => m.role === 'user')?.text ?? '';
  const id = /\[(c\d+)\]/.exec(user)?.[1] ?? 'unknown';
  if (texts.some((m) => m.role === 'tool')) return { text: `answer ${id} after a note` };
  if (user.startsWith('TOOL ')) return { toolCalls: [{ name: 'memory_save', arguments: { text: `chaos note ${id}` } }] };
  return { text: `answer ${id}` };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const summary = (lat: number[]) => {
  const s = [...lat].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
};

interface Turn {
  id: string;
  user: (typeof USERS)[number];
  conversation: string;
  stream: boolean;
  tool: boolean;
  /** delivered: the client got the answer; unknown: the connection broke after it was sent. */
  /** delivered; cut: the connection or body broke (fate unknown); error: the platform answered with an error status. */
  outcome?: 'delivered' | 'unknown' | 'error';
  ms?: number;
}

export class Chaos {
  private readonly opts: ChaosOptions;
  private tp!: TestPlatform;
  private readonly tokens = new Map<string, string>();
  private readonly faults: string[] = [];
  private readonly problems: string[] = [];
  private next = 0;
  private gatewayTurn = 0;
  private readonly progress: string[] = [];
  private resent = 0;
  private aborted = false;
  private privatePg: PrivatePostgres | undefined;

  constructor(opts: ChaosOptions) {
    this.opts = opts;
  }

  private say(line: string): void {
    this.opts.log?.(line);
  }

  async run(): Promise<ChaosReport> {
    const cluster = this.opts.mode === 'cluster';
    const replicas = Object.fromEntries(SERVICES.map((s) => [s, cluster ? 2 : 1])) as Record<ServiceName, number>;
    this.say(`starting the platform (${cluster ? '3 nats-server nodes, two of every service' : 'one of each, as talon up'})`);
    if (testDatabaseKind() === 'native' && (this.opts.postgres ?? 'private') === 'private') {
      this.say('starting a PostgreSQL server of its own (it will be restarted)');
      this.privatePg = await startPrivatePostgres();
    }
    this.tp = await startTestPlatform({
      ...(this.privatePg ? { nativeAdminUrl: this.privatePg.url } : {}),
      llm: { respond },
      autoRestart: true,
      onProgress: (m) => this.progress.push(m),
      ...(cluster ? { natsNodes: 3, replicas } : {}),
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        TALON_LOG_LEVEL: process.env.TALON_TEST_LOG_LEVEL ?? 'warn',
        GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '1000000',
        GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '1000000',
        GATEWAY_TURN_TIMEOUT_MS: '120000',
      },
    });
    this.say(`platform home ${this.tp.home} (TALON_TEST_KEEP_HOME=1 keeps it after the run)`);
    try {
      for (const u of USERS) this.tokens.set(u, await this.tp.token(u));
      const calm = await this.drive(this.opts.calmTurns ?? Math.min(100, Math.ceil(this.opts.turns / 3)), () => false);
      this.say(`calm: ${calm.length} turns`);
      const schedule = this.schedule();
      let faultsDone = false;
      const faulting = this.runFaults(schedule).finally(() => {
        faultsDone = true;
      });
      let chaos: Turn[];
      try {
        chaos = await this.drive(this.opts.turns, () => !faultsDone);
      } catch (err) {
        // No fault may outlive the run (the platform is stopped below).
        this.aborted = true;
        await faulting.catch(() => undefined);
        throw err;
      }
      await faulting;
      this.say(`chaos: ${chaos.length} turns during ${this.faults.length} faults`);
      await this.tp.platform.waitHealthy(undefined, 120_000);
      return await this.verify([...calm, ...chaos], calm, chaos);
    } finally {
      await this.tp.stop();
      await this.privatePg?.stop();
    }
  }

  /** Runs turns until `atLeast` are done and `more()` says stop; returns them. */
  private async drive(atLeast: number, more: () => boolean): Promise<Turn[]> {
    const done: Turn[] = [];
    await Promise.all(
      Array.from({ length: this.opts.concurrency }, async () => {
        while (done.length + this.opts.concurrency <= atLeast || more()) {
          const k = this.next++;
          const turn: Turn = {
            id: `c${k}`,
            user: USERS[k % 2]!,
            conversation: `chaos-${k % 24}`,
            stream: k % 3 === 0,
            tool: k % 5 === 0,
          };
          await this.send(turn);
          done.push(turn);
        }
      }),
    );
    return done;
  }

  /**
   * Sends one turn. A refused connection or a 503/429 means it was not accepted: it is sent
   * again (to the next gateway). Any other failure may come after the turn was accepted, so
   * it is never resent: verify() looks for it in memory.
   */
  private async send(turn: Turn): Promise<void> {
    const text = `${turn.tool ? 'TOOL ' : ''}[${turn.id}] from ${turn.user}`;
    const t0 = performance.now();
    for (let attempt = 0; ; attempt++) {
      const urls = this.tp.platform.gatewayUrls;
      const url = urls[this.gatewayTurn++ % urls.length]!;
      let res: Response;
      try {
        res = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${this.tokens.get(turn.user)!}`,
            'x-talon-conversation': turn.conversation,
          },
          body: JSON.stringify({ stream: turn.stream, messages: [{ role: 'user', content: text }] }),
          signal: AbortSignal.timeout(180_000),
        });
      } catch (err) {
        const code = (err as { cause?: { code?: string } }).cause?.code;
        if (code === 'ECONNREFUSED' && attempt < 200) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        turn.outcome = 'unknown';
        return;
      }
      const body = await res.text().catch(() => undefined);
      if ((res.status === 503 || res.status === 429) && attempt < 200) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (res.status === 200 && body !== undefined) {
        let answer: string | undefined;
        try {
          answer = turn.stream
            ? streamedText(body)
            : (JSON.parse(body) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content;
        } catch {
          answer = undefined; // a body cut off by a dying gateway
        }
        if (answer?.includes(`answer ${turn.id}`)) {
          turn.outcome = 'delivered';
          turn.ms = performance.now() - t0;
          return;
        }
        // A stream cut off by a dying gateway has no [DONE] (or no parsable body): the turn's fate
        // is read from memory like any other cut-off request. A whole answer that is wrong is a problem.
        const cutOff = answer === undefined || (turn.stream && !body.includes('data: [DONE]'));
        if (!cutOff) this.problems.push(`${turn.id}: answered with something else: ${String(answer).slice(0, 120)}`);
      }
      // An error status is the platform's own answer: the turn failed, it is not resent.
      if (res.status !== 200 && body !== undefined) {
        turn.outcome = 'error';
        this.problems.push(`${turn.id}: HTTP ${res.status} ${body.slice(0, 160)}`);
        return;
      }
      turn.outcome = 'unknown';
      return;
    }
  }

  /** One of each fault, in turn, each after the platform has recovered from the previous one. */
  private schedule(): Array<{ name: string; run: () => Promise<void> }> {
    const p = this.tp.platform;
    const kill = (name: string) => ({
      name: `kill -9 ${name}`,
      run: async () => {
        const proc = p.process(name);
        if (!proc?.running) throw new Error(`${name} is not running`);
        const before = this.progress.filter((m) => m === `${name} restarted`).length;
        proc.kill('SIGKILL');
        await waitFor(
          () => (this.progress.filter((m) => m === `${name} restarted`).length > before ? true : undefined),
          120_000,
          `${name} to be restarted`,
        );
      },
    });
    const out = (['gateway', 'orchestrator', 'sandbox', 'egress', 'memory', 'vault'] as const).map((s) => kill(s));
    out.push(kill(this.opts.mode === 'cluster' ? 'nats-2' : 'nats'));
    if (this.tp.database === 'embedded') out.push(kill('pglite'));
    else
      out.push({
        name: this.privatePg ? 'restart PostgreSQL' : 'PostgreSQL drops every connection',
        run: () => this.postgresFault(),
      });
    out.push({ name: 'seal, then unseal the vault', run: () => this.sealAndUnseal() });
    return out;
  }

  private async runFaults(schedule: Array<{ name: string; run: () => Promise<void> }>): Promise<void> {
    for (const f of schedule) {
      if (this.aborted) return;
      // Let turns flow between faults, then wait until every instance is healthy again.
      await new Promise((r) => setTimeout(r, 1000));
      this.say(`fault: ${f.name} (turns sent so far: ${this.next})`);
      const t0 = Date.now();
      await f.run();
      await this.tp.platform.waitHealthy(undefined, 120_000);
      this.faults.push(`${f.name} (healthy again after ${Date.now() - t0} ms)`);
    }
  }

  private async postgresFault(): Promise<void> {
    if (this.privatePg) return this.privatePg.restart();
    const client = new pg.Client(pgClientConfig(nativeAdminUrl()));
    await client.connect();
    try {
      const db = parseDatabaseUrl(this.tp.platform.adminDatabaseUrl()).database;
      await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [db]);
    } finally {
      await client.end();
    }
  }

  private async sealAndUnseal(): Promise<void> {
    const p = this.tp.platform;
    const vaults = p
      .instanceNames('vault')
      .map((i) => createClient(VaultAdminServiceClient, `127.0.0.1:${p.portOf(i, 'grpc')}`, p.tls('admin'), 'vault'));
    try {
      for (const v of vaults) await unary(v, v.seal, {});
      await new Promise((r) => setTimeout(r, 1000));
      for (const v of vaults) await unary(v, v.unseal, { passphrase: PASSPHRASE });
    } finally {
      for (const v of vaults) v.close();
    }
  }

  /** Reads every conversation back and counts each turn's user message and answer. */
  private async verify(all: Turn[], calm: Turn[], chaos: Turn[]): Promise<ChaosReport> {
    const seen = new Map<string, { user: number; answer: number }>();
    const count = async () => {
      seen.clear();
      for (const u of USERS)
        for (const conv of new Set(all.filter((t) => t.user === u).map((t) => t.conversation)))
          for (const m of await this.messages(u, conv)) {
            const id = /\[(c\d+)\]/.exec(m.content)?.[1] ?? /answer (c\d+)/.exec(m.content)?.[1];
            if (!id) continue;
            const c = seen.get(id) ?? { user: 0, answer: 0 };
            if (m.role === 'user') c.user++;
            else if (m.role === 'assistant' && m.content.includes(`answer ${id}`)) c.answer++;
            seen.set(id, c);
          }
    };
    // Answers are recorded after they are delivered, and turns cut off mid-flight may still be
    // finishing (a redelivery): wait until every turn has its answer in memory, bounded.
    await waitFor(
      async () => {
        await count();
        return all.every((t) => (seen.get(t.id)?.answer ?? 0) >= 1) ? true : undefined;
      },
      60_000,
      'every turn to be answered in memory',
    ).catch(() => undefined);
    // A connection cut before the gateway queued the turn: the platform never accepted it, and
    // memory (after the wait above) says so. The client sends it again, as a person would.
    const notAccepted = all.filter((t) => t.outcome === 'unknown' && (seen.get(t.id)?.user ?? 0) === 0);
    for (const t of notAccepted) {
      await this.send(t);
      this.resent++;
    }
    if (notAccepted.length > 0)
      await waitFor(
        async () => {
          await count();
          return notAccepted.every((t) => (seen.get(t.id)?.answer ?? 0) >= 1) ? true : undefined;
        },
        60_000,
        'turns sent again to be answered in memory',
      ).catch(() => undefined);
    await count();
    let answered = 0;
    let lost = 0;
    let duplicated = 0;
    let viaHistory = 0;
    for (const t of all) {
      const c = seen.get(t.id) ?? { user: 0, answer: 0 };
      if (c.user > 1 || c.answer > 1) {
        duplicated++;
        this.problems.push(`${t.id}: ${c.user} user messages and ${c.answer} answers in memory`);
      }
      if (c.answer === 0 || c.user === 0) {
        lost++;
        this.problems.push(`${t.id}: ${c.user === 0 ? 'no user message' : 'no answer'} in memory (client: ${t.outcome ?? 'none'})`);
      } else {
        answered++;
        if (t.outcome !== 'delivered') viaHistory++;
      }
    }
    const asked = new Map<string, number>();
    for (const r of this.tp.llm!.requests) {
      const texts = receivedTexts(r);
      if (texts.some((m) => m.role === 'tool')) continue;
      const user = [...texts].reverse().find((m) => m.role === 'user')?.text ?? '';
      const id = /\[(c\d+)\]/.exec(user)?.[1];
      if (id) asked.set(id, (asked.get(id) ?? 0) + 1);
    }
    const lat = (ts: Turn[]) => summary(ts.filter((t) => t.ms !== undefined).map((t) => t.ms!));
    return {
      turns: all.length,
      answered,
      lost,
      duplicated,
      answeredViaHistory: viaHistory,
      resentNotAccepted: this.resent,
      llmRepeats: [...asked.values()].filter((n) => n > 1).length,
      faults: this.faults,
      calm: lat(calm),
      chaos: lat(chaos),
      problems: this.problems,
    };
  }

  private async messages(user: string, conversation: string): Promise<Array<{ role: string; content: string }>> {
    const out: Array<{ role: string; content: string }> = [];
    let before = '';
    for (let attempt = 0; ;) {
      const res = await fetch(
        `${this.tp.gatewayUrl}/v1/conversations/${conversation}/messages?limit=200${before ? `&before=${encodeURIComponent(before)}` : ''}`,
        { headers: { authorization: `Bearer ${this.tokens.get(user)!}` } },
      );
      if (res.status === 404) return out;
      // Reading back right after the faults: a dependency may still be catching up (retried, like a client would).
      if ((res.status === 503 || res.status === 504) && ++attempt < 100) {
        await res.body?.cancel();
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (res.status !== 200) throw new Error(`reading ${conversation}: HTTP ${res.status} ${await res.text()}`);
      const page = (await res.json()) as { messages: Array<{ role: string; content: string }>; nextBefore: string | null };
      out.push(...page.messages);
      if (!page.nextBefore) return out;
      before = page.nextBefore;
    }
  }
}

/** The line `npm run chaos` ends with. */
export function chaosLine(r: ChaosReport): string {
  const f = (n: number) => n.toFixed(0);
  return `turns ${r.turns}, answered ${r.answered}, lost ${r.lost}, duplicated ${r.duplicated}; during chaos p50 ${f(r.chaos.p50)} ms, p99 ${f(r.chaos.p99)} ms (calm p50 ${f(r.calm.p50)} ms, p99 ${f(r.calm.p99)} ms)`;
}
