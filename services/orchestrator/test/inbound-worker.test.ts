// The inbound worker against a real nats-server, as the orchestrator's own NATS
// identity: a changed ack wait reaches the existing durable consumer, and an answer
// obtained while memory is down is stored, delivered once, acknowledged, and recorded
// later by the resumer's sweep — without asking the model again. The turn engine is a
// stand-in (its model and memory are what fail here); worker, resumer and KV are real.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { TalonError } from '@talon/kit/errors';
import { InFlight } from '@talon/kit/lifecycle';
import { createLogger } from '@talon/kit/log';
import { connectNats, type NatsConnection } from '@talon/kit/nats';
import { CONSUMERS, STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { InboundMessage, Role, type OutboundMessage, type Turn } from '@talon/proto';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';
import { ApprovalBook } from '../src/approvals.ts';
import { TurnResumer } from '../src/resume.ts';
import { Slots } from '../src/slots.ts';
import type { TurnEngine } from '../src/turn-engine.ts';
import { TurnStore, storedStatus } from '../src/turn-state.ts';
import { InboundWorker } from '../src/worker.ts';

const log = createLogger({ service: 'test', level: (process.env.TEST_LOG as 'debug') ?? 'silent' });

type Engine = Pick<TurnEngine, 'start' | 'continue' | 'outbound' | 'publish' | 'errorBody' | 'record' | 'failedRecords'>;

/** A stand-in engine: answers every start, counts model answers, publishes and records as told. */
function stubEngine() {
  const calls = { start: 0, published: [] as OutboundMessage[], recorded: [] as Turn[][], memoryUp: false };
  const engine: Engine = {
    async start(inbound, _attempt, run) {
      calls.start += 1;
      run?.step('context_ready');
      const records: Turn[] = [
        { id: `${inbound.id}:assistant`, role: 'assistant', source: 'assistant', content: 'the answer', createdAtMs: 1 },
      ];
      return {
        kind: 'reply',
        records,
        body: { content: 'the answer', model: 'm', finishReason: 'stop', usage: undefined, error: undefined, attempt: 1 },
      };
    },
    continue: () => Promise.reject(new Error('not used')),
    outbound: (inbound, body) => ({ ...body, inboundId: inbound.id, conversation: inbound.conversation, requestId: '', createdAtMs: 1 }),
    async publish(_inbound, msg) {
      calls.published.push(msg);
    },
    errorBody: (code, message, attempt) => ({
      content: '',
      model: 'm',
      finishReason: 'error',
      usage: undefined,
      error: { code, message },
      attempt,
    }),
    async record(_conv, turns) {
      if (!calls.memoryUp) throw new TalonError('unavailable', 'memory is not reachable');
      calls.recorded.push(turns);
    },
    failedRecords: () => [],
  };
  return { engine, calls };
}

describe('inbound worker', () => {
  let tp: TestPlatform;
  const conns: NatsConnection[] = [];
  const stops: Array<() => Promise<void> | void> = [];
  const orchestratorNc = async () => {
    const nc = await connectNats({
      servers: tp.platform.natsUrl,
      user: 'orchestrator',
      seedFile: join(tp.home, 'nats', 'orchestrator.nk'),
      log,
    });
    conns.push(nc);
    return nc;
  };

  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
  });
  after(async () => {
    for (const s of stops) await s();
    for (const nc of conns) await nc.close().catch(() => undefined);
    await tp?.stop();
  });

  it('applies a changed ack wait to the existing consumer', async () => {
    const nc = await orchestratorNc();
    const turns = new TurnStore(nc);
    await turns.start();
    const opts = { nc, log, engine: stubEngine().engine, turns, owner: 'w', leaseMs: 30_000, maxDeliver: 5, concurrency: 2 };
    await new InboundWorker({ ...opts, ackWaitMs: 30_000 }).ensureConsumer();
    const jsm = await jetstreamManager(await tp.admin());
    assert.equal((await jsm.consumers.info(STREAMS.inbound.name, CONSUMERS.orchestratorInbound)).config.ack_wait, nanos(30_000));
    await new InboundWorker({ ...opts, ackWaitMs: 5000 }).ensureConsumer();
    assert.equal((await jsm.consumers.info(STREAMS.inbound.name, CONSUMERS.orchestratorInbound)).config.ack_wait, nanos(5000));
  });

  it('stores an answer obtained while memory is down, acknowledges it, and the sweep records it once memory is back', async () => {
    const nc = await orchestratorNc();
    const turns = new TurnStore(nc);
    await turns.start();
    const { engine, calls } = stubEngine();
    const slots = new Slots(2);
    const inFlight = new InFlight();
    const worker = new InboundWorker({
      nc,
      log,
      engine,
      turns,
      owner: 'w1',
      leaseMs: 30_000,
      ackWaitMs: 2000,
      maxDeliver: 5,
      concurrency: 2,
      slots,
      inFlight,
    });
    await worker.start();
    stops.push(() => worker.stopIntake());

    const inbound = InboundMessage.fromPartial({
      id: 'mem-down-1',
      conversation: { userId: 'u1', channel: 'api', threadId: 't1' },
      messages: [{ role: Role.ROLE_USER, content: 'hello' }],
      reply: { subject: SUBJECTS.apiReply('test'), requestId: 'r1', streamSubject: '' },
    });
    await jetstream(await tp.admin()).publish(SUBJECTS.inbound('api'), InboundMessage.encode(inbound).finish(), { msgID: inbound.id });

    // Answered and delivered once; the record failed, so the stored turn waits (released) and the message is acknowledged.
    await waitFor(
      async () => {
        const t = await turns.get(inbound.id);
        return t !== undefined && storedStatus(t.turn) === 'delivered' && t.turn.owner === '';
      },
      20_000,
      'the stored answer to be released for the sweep',
    );
    const jsm = await jetstreamManager(await tp.admin());
    await waitFor(
      async () => (await jsm.consumers.info(STREAMS.inbound.name, CONSUMERS.orchestratorInbound)).num_ack_pending === 0,
      10_000,
      'the message to be acknowledged',
    );
    assert.equal(calls.start, 1);
    assert.equal(calls.published.length, 1);
    assert.equal(calls.recorded.length, 0);

    // Memory is back: any replica's sweep records the stored answer, without a model call or a second reply.
    calls.memoryUp = true;
    const nc2 = await orchestratorNc();
    const turns2 = new TurnStore(nc2);
    await turns2.start();
    const approvals = new ApprovalBook(nc2);
    await approvals.start();
    const resumer = new TurnResumer({
      nc: nc2,
      log,
      turns: turns2,
      approvals,
      engine,
      slots,
      inFlight,
      leaseMs: 30_000,
      sweepMs: 200,
      maxAttempts: 3,
    });
    resumer.start();
    stops.push(() => resumer.stop());
    await waitFor(
      async () => storedStatus((await turns.get(inbound.id))!.turn) === 'done',
      20_000,
      'the stored turn to be recorded and done',
    );
    assert.deepEqual(
      calls.recorded.map((r) => r.map((t) => t.id)),
      [['mem-down-1:assistant']],
    );
    assert.equal(calls.start, 1, 'the model was asked once');
    assert.equal(calls.published.length, 1, 'the reply went out once');
  });
});
