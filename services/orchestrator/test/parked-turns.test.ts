// Parked turns against a real nats-server, as the orchestrator's own NATS identity
// (so its permissions are exercised too): several replicas race to continue one
// decided turn and exactly one does; a replica that dies mid-continuation is taken
// over once its lease lapses, and the turn is still answered once. The LLM is a
// scripted stand-in (a third party); engine, resumer, stores and KV are the real ones.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { approvalKey, inboxPrefix, KV_BUCKETS } from '@talon/kit/subjects';
import { connectNats } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { InFlight } from '@talon/kit/lifecycle';
import { Approval, ApprovalStatus, InboundMessage, OutboundMessage, ParkedTurn, ParkedTurnStatus, Role } from '@talon/proto';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import type { CompletionClient } from '../src/agent-loop.ts';
import { ApprovalBook } from '../src/approvals.ts';
import type { LlmResult } from '../src/llm/types.ts';
import { singleModel } from '../src/llm/router.ts';
import type { MemoryApi } from '../src/memory.ts';
import { TurnResumer } from '../src/resume.ts';
import { Slots } from '../src/slots.ts';
import { ToolAudit } from '../src/tool-record.ts';
import type { Tool } from '../src/tools/registry.ts';
import { TurnEngine } from '../src/turn-engine.ts';
import { TurnStore, turnKey } from '../src/turn-state.ts';
import { decideApproval } from '../../../packages/cli/src/commands/approvals.ts';

const log = createLogger({ service: 'test', level: 'silent' });
const REPLY_SUBJECT = 'talon.outbound.api.parked-test';

function llmResult(content: string, toolCalls: LlmResult['toolCalls'] = []): LlmResult {
  return {
    content,
    toolCalls,
    finishReason: toolCalls.length ? 'tool_calls' : 'stop',
    model: 'fake',
    usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
  };
}

/** Asks for the guarded tool, then answers with what it returned; `hangAfterTool` never answers the second call. */
function fakeLlm(opts: { hangAfterTool?: boolean } = {}): CompletionClient & { model: string; calls: number } {
  return {
    model: 'fake',
    calls: 0,
    async complete(req) {
      this.calls += 1;
      const last = req.messages.at(-1)!;
      if (last.role !== 'tool') return llmResult('asking', [{ id: 'c1', name: 'guarded', arguments: '{"n":1}' }]);
      if (opts.hangAfterTool) return new Promise<LlmResult>(() => undefined);
      return llmResult(`answer after ${last.content.includes('ran') ? 'run' : 'no run'}`);
    },
  };
}

const noMemory = new Proxy({} as MemoryApi, {
  get: (_t, p) => (p === 'then' ? undefined : () => Promise.reject(new Error(`memory.${String(p)} is not used in this test`))),
});

interface Replica {
  nc: NatsConnection;
  engine: TurnEngine;
  resumer: TurnResumer;
  llm: ReturnType<typeof fakeLlm>;
}

describe('parked turns across replicas', () => {
  let tp: TestPlatform;
  let toolRuns = 0;
  const replicas: Replica[] = [];

  const guarded: Tool = {
    name: 'guarded',
    description: 'needs approval',
    parameters: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false },
    meta: { skill: 'guarded', version: '1.0.0', requiresApproval: true },
    async handler(_args, ctx) {
      assert.equal(ctx.userApproved, true);
      toolRuns += 1;
      return 'ran';
    },
  };

  async function replica(opts: { hangAfterTool?: boolean; leaseMs?: number } = {}): Promise<Replica> {
    const nc = await connectNats({
      servers: tp.platform.natsUrl,
      user: 'orchestrator',
      seedFile: join(tp.home, 'nats', 'orchestrator.nk'),
      log,
    });
    const approvals = new ApprovalBook(nc);
    const turns = new TurnStore(nc);
    await approvals.start();
    await turns.start();
    const llm = fakeLlm(opts);
    const engine = new TurnEngine({
      nc,
      log,
      llm: singleModel(llm),
      memory: noMemory,
      systemPrompt: 'test',
      historyTurns: 0,
      recordTurns: false,
      recall: { request: () => Promise.reject(new Error('unused')) },
      recallLimit: 0,
      contextBudgetTokens: 8000,
      recallBudgetTokens: 0,
      tools: [guarded],
      parking: { approvals, turns, approvalTtlMs: 60_000 },
      audit: new ToolAudit(nc, log),
      toolLimits: { maxSteps: 4, timeoutMs: 30_000, toolTimeoutMs: 5000, maxCallsPerStep: 4, maxToolOutputChars: 1000 },
    });
    const resumer = new TurnResumer({
      nc,
      log,
      turns,
      approvals,
      engine,
      slots: new Slots(4),
      inFlight: new InFlight(),
      leaseMs: opts.leaseMs ?? 1000,
      sweepMs: 200,
      maxAttempts: 3,
    });
    const r = { nc, engine, resumer, llm };
    replicas.push(r);
    return r;
  }

  const inbound = (id: string): InboundMessage => ({
    id,
    conversation: { userId: 'alice', channel: 'api', threadId: id },
    messages: [{ role: Role.ROLE_USER, content: 'go', name: '' }],
    redacted: [],
    stream: false,
    reply: { subject: REPLY_SUBJECT, streamSubject: '', requestId: id },
    model: '',
    receivedAtMs: Date.now(),
  });

  const stored = async (id: string) => {
    const e = await (await new Kvm(await tp.admin()).open(KV_BUCKETS.turns)).get(turnKey(id));
    return e ? ParkedTurn.decode(e.value) : undefined;
  };

  /** Counts every reply published for a request (core subscription: JetStream's deduplication does not hide a second publish). */
  const countReplies = async (requestId: string) => {
    const seen: OutboundMessage[] = [];
    const sub = (await tp.admin()).subscribe(REPLY_SUBJECT, {
      callback: (_e, m) => {
        const o = OutboundMessage.decode(m.data);
        if (o.requestId === requestId) seen.push(o);
        m.respond(); // acknowledged like the gateway does (a reply is sent until acknowledged)
      },
    });
    await (await tp.admin()).flush();
    return { seen, stop: () => sub.unsubscribe() };
  };

  const until = async (cond: () => boolean | Promise<boolean>, ms: number, what: string) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  /** Waits until each replica has begun `n` more sweeps: "nothing (more) happens" is shown over sweeps, not over time. */
  const moreSweeps = async (rs: ReadonlyArray<{ resumer: { counters: { sweeps: number } } }>, n: number) => {
    const from = rs.map((r) => r.resumer.counters.sweeps);
    await until(() => rs.every((r, i) => r.resumer.counters.sweeps >= from[i]! + n), 30_000, `${n} more sweeps of every replica`);
  };

  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
  });
  after(async () => {
    for (const r of replicas) {
      r.resumer.stop();
      await r.nc.close().catch(() => undefined);
    }
    await tp?.stop();
  });

  it('exactly one of three replicas continues a decided turn', async () => {
    toolRuns = 0;
    const a = await replica();
    const b = await replica();
    const c = await replica();
    const out = await a.engine.start(inbound('race-1'), 1);
    assert.equal(out.kind, 'parked');
    const t = await stored('race-1');
    assert.equal(t?.status, ParkedTurnStatus.PARKED_TURN_STATUS_PARKED);
    const ap = Approval.decode((await (await new Kvm(await tp.admin()).open(KV_BUCKETS.approvals)).get(approvalKey(t!.approvalId)))!.value);
    assert.equal(ap.status, ApprovalStatus.APPROVAL_STATUS_PENDING);
    assert.equal(ap.requestedBy, 'orchestrator');

    const replies = await countReplies('race-1');
    for (const r of [a, b, c]) r.resumer.start();
    await moreSweeps([a, b, c], 3);
    assert.equal(replies.seen.length, 0, 'nothing continues before the decision');
    await decideApproval(await tp.admin(), ap.id, true, '', 'cli:test');
    await until(() => replies.seen.length > 0, 30_000, 'the reply');
    await moreSweeps([a, b, c], 4); // room for a second continuation to show up
    replies.stop();
    assert.equal(replies.seen.length, 1, 'one reply');
    assert.equal(replies.seen[0]!.content, 'asking\n\nanswer after run');
    assert.equal(toolRuns, 1, 'the approved call ran once');
    assert.equal(a.llm.calls + b.llm.calls + c.llm.calls, 2, 'one model call before the park, one after');
    assert.equal(a.resumer.counters.claims + b.resumer.counters.claims + c.resumer.counters.claims, 1, 'one claim won');
    const done = await stored('race-1');
    assert.equal(done?.status, ParkedTurnStatus.PARKED_TURN_STATUS_DONE);
    assert.equal(done?.inbound.length, 0, 'nothing of the conversation is kept');
    for (const r of [a, b, c]) r.resumer.stop();
  });

  it('takes over a turn whose replica died mid-continuation once its lease lapses, and answers once', async () => {
    toolRuns = 0;
    const dying = await replica({ hangAfterTool: true, leaseMs: 1000 });
    assert.equal((await dying.engine.start(inbound('lease-1'), 1)).kind, 'parked');
    const replies = await countReplies('lease-1');
    dying.resumer.start();
    await decideApproval(await tp.admin(), (await stored('lease-1'))!.approvalId, true, '', 'cli:test');
    await until(() => toolRuns === 1 && dying.llm.calls === 2, 30_000, 'the first replica to run the call and hang');
    const claimed = await stored('lease-1');
    assert.equal(claimed?.status, ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING);
    assert.equal(claimed?.owner, dying.resumer.owner);
    // The replica dies: no more lease renewals.
    dying.resumer.stop();
    await dying.nc.close();

    const heir = await replica({ leaseMs: 1000 });
    heir.resumer.start();
    await until(() => replies.seen.length > 0, 30_000, 'the reply from the replica that took over');
    await moreSweeps([heir], 3); // room for a second reply to show up
    replies.stop();
    assert.equal(replies.seen.length, 1);
    assert.equal(replies.seen[0]!.content, 'asking\n\nanswer after run');
    assert.equal(heir.resumer.counters.claims, 1);
    const done = await stored('lease-1');
    assert.equal(done?.status, ParkedTurnStatus.PARKED_TURN_STATUS_DONE);
    assert.equal(done?.claims, 2, 'claimed twice: by the replica that died and by its heir');
    // The call ran again: a continuation that dies before its reply is redone (at least once).
    assert.equal(toolRuns, 2);
    heir.resumer.stop();
  });
  it('asks again when a turn was parked but its approval never written (crash in between)', async () => {
    const r = await replica();
    // Park normally, then remove the approval as if the process died before writing it.
    assert.equal((await r.engine.start(inbound('lost-approval'), 1)).kind, 'parked');
    const t = (await stored('lost-approval'))!;
    await (await new Kvm(await tp.admin()).open(KV_BUCKETS.approvals)).purge(approvalKey(t.approvalId));
    r.resumer.start();
    const again = await (async () => {
      const kv = await new Kvm(await tp.admin()).open(KV_BUCKETS.approvals);
      for (const end = Date.now() + 30_000; Date.now() < end;) {
        const e = await kv.get(approvalKey(t.approvalId));
        if (e && e.operation === 'PUT') return Approval.decode(e.value);
        await new Promise((res) => setTimeout(res, 50));
      }
      return undefined;
    })();
    assert.ok(again, 'the sweep re-created the approval');
    assert.equal(again.status, ApprovalStatus.APPROVAL_STATUS_PENDING);
    assert.equal(again.id, t.approvalId);
    r.resumer.stop();
  });

  it('publishes a reply computed before a crash instead of computing another', async () => {
    const r = await replica();
    const turns = new TurnStore(r.nc);
    await turns.start();
    const inb = inbound('reply-stored');
    const reply: OutboundMessage = {
      inboundId: inb.id,
      conversation: inb.conversation,
      requestId: inb.id,
      content: 'the reply computed before the crash',
      model: 'fake',
      finishReason: 'stop',
      usage: undefined,
      error: undefined,
      createdAtMs: 1,
      attempt: 1,
    };
    await turns.create(
      ParkedTurn.fromPartial({
        inboundId: inb.id,
        status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING,
        inbound: Buffer.from(InboundMessage.encode(inb).finish()),
        owner: 'a-replica-that-died',
        leaseUntilMs: Date.now() - 1,
        claims: 1,
        attempt: 1,
        reply: Buffer.from(OutboundMessage.encode(reply).finish()),
      }),
    );
    const replies = await countReplies(inb.id);
    const calls = r.llm.calls;
    r.resumer.start();
    await until(() => replies.seen.length > 0, 30_000, 'the stored reply');
    await moreSweeps([r], 3); // room for a second reply to show up
    replies.stop();
    assert.equal(replies.seen.length, 1);
    assert.equal(replies.seen[0]!.content, 'the reply computed before the crash');
    assert.equal(r.llm.calls, calls, 'no model call');
    assert.equal((await stored(inb.id))?.status, ParkedTurnStatus.PARKED_TURN_STATUS_DONE);
    r.resumer.stop();
  });
});

describe("the orchestrator's NATS rights around skills and approvals", () => {
  let tp: TestPlatform;
  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
  });
  after(async () => {
    await tp?.stop();
  });

  async function attempt(op: (nc: NatsConnection) => void | Promise<void>): Promise<boolean> {
    const seed = new TextEncoder().encode(readFileSync(join(tp.home, 'nats', 'orchestrator.nk'), 'utf8').trim());
    const nc = await connect({
      servers: tp.platform.natsUrl,
      authenticator: nkeyAuthenticator(seed),
      inboxPrefix: inboxPrefix('orchestrator'),
    });
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'error') errors.push(String((s as { error?: unknown }).error));
    })();
    try {
      await op(nc);
      await nc.flush();
      await new Promise((r) => setTimeout(r, 300));
      return errors.some((e) => /permissions violation/i.test(e));
    } finally {
      await nc.close();
    }
  }

  for (const subject of [
    `$KV.${KV_BUCKETS.skills}.skill.evil.1.0.0`,
    `$KV.${KV_BUCKETS.skills}.publisher.0123456789abcdef`,
    `$KV.${KV_BUCKETS.approvals}.other.x`,
    `$KV.${KV_BUCKETS.users}.user.mallory`,
    `$KV.${KV_BUCKETS.tokens}.x`,
    'talon.audit.egress.decision',
    'talon.audit.sandbox.invocation',
  ]) {
    it(`refuses publishing to ${subject}`, async () => {
      assert.equal(await attempt((nc) => nc.publish(subject, new TextEncoder().encode('x'))), true);
    });
  }

  it('refuses reading other buckets and subscribing to their changes', async () => {
    assert.equal(await attempt((nc) => void nc.subscribe(`$KV.${KV_BUCKETS.pairings}.>`)), true);
    assert.equal(await attempt((nc) => void nc.subscribe(`$KV.${KV_BUCKETS.tokens}.>`)), true);
    assert.equal(
      await attempt((nc) => nc.publish(`$JS.API.DIRECT.GET.KV_${KV_BUCKETS.tokens}.$KV.${KV_BUCKETS.tokens}.x`, new Uint8Array(0))),
      true,
    );
  });

  it('allows its own audit subject and approval records', async () => {
    assert.equal(await attempt((nc) => nc.publish('talon.audit.orchestrator.tool', new Uint8Array(0))), false);
    assert.equal(await attempt((nc) => void nc.subscribe(`$KV.${KV_BUCKETS.approvals}.approval.>`)), false);
    assert.equal(await attempt((nc) => void nc.subscribe(`$KV.${KV_BUCKETS.skills}.>`)), false);
  });
});
