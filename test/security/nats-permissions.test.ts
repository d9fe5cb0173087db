// docs/architecture.md invariant 5: each service's NATS credentials allow only its own
// subjects; publishing or subscribing elsewhere is refused by nats-server itself.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { inboxPrefix } from '@talon/kit/subjects';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

async function connectAs(tp: TestPlatform, user: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const seed = new TextEncoder().encode(readFileSync(join(tp.home, 'nats', `${user}.nk`), 'utf8').trim());
  const nc = await connect({ servers: tp.platform.natsUrl, authenticator: nkeyAuthenticator(seed), inboxPrefix: inboxPrefix(user) });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') errors.push(String((s as { error?: unknown }).error));
  })();
  return { nc, errors };
}

/** Publishes as `user` and reports whether an admin subscriber saw the message and whether the server complained. */
async function tryPublish(tp: TestPlatform, user: string, subject: string): Promise<{ delivered: boolean; refused: boolean }> {
  const admin = await tp.admin();
  const seen = admin.subscribe(subject, { max: 1 });
  await admin.flush();
  const { nc, errors } = await connectAs(tp, user);
  try {
    nc.publish(subject, new TextEncoder().encode('probe'));
    await nc.flush();
    const delivered = await Promise.race([
      (async () => {
        for await (const _ of seen) return true;
        return false;
      })(),
      new Promise<boolean>((r) => setTimeout(() => r(false), 400)),
    ]);
    await new Promise((r) => setTimeout(r, 100));
    return { delivered, refused: errors.some((e) => /permissions violation/i.test(e)) };
  } finally {
    seen.unsubscribe();
    await nc.close();
  }
}

async function trySubscribe(tp: TestPlatform, user: string, subject: string): Promise<{ refused: boolean }> {
  const { nc, errors } = await connectAs(tp, user);
  try {
    const sub = nc.subscribe(subject);
    let subErr = '';
    const done = (async () => {
      try {
        for await (const _ of sub) break;
      } catch (e) {
        subErr = String(e);
      }
    })();
    await nc.flush();
    await new Promise((r) => setTimeout(r, 300));
    sub.unsubscribe();
    await done;
    return { refused: /permissions violation/i.test(subErr) || errors.some((e) => /permissions violation/i.test(e)) };
  } finally {
    await nc.close();
  }
}

describe('NATS per-service permissions (enforced by nats-server)', () => {
  let tp: TestPlatform;
  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
  });
  after(async () => {
    await tp?.stop();
  });

  it('lets each service publish on its own subjects', async () => {
    assert.deepEqual(await tryPublish(tp, 'gateway', 'talon.inbound.probe'), { delivered: true, refused: false });
    assert.deepEqual(await tryPublish(tp, 'orchestrator', 'talon.outbound.probe'), { delivered: true, refused: false });
    // A routine's firing is a turn on its own inbound subject (never a channel's).
    assert.deepEqual(await tryPublish(tp, 'orchestrator', 'talon.inbound.routine'), { delivered: true, refused: false });
    assert.deepEqual(await tryPublish(tp, 'egress', 'talon.audit.egress.probe'), { delivered: true, refused: false });
    // Conversation requests: the gateway asks, the orchestrator answers.
    assert.deepEqual(await tryPublish(tp, 'gateway', 'talon.conversations.list'), { delivered: true, refused: false });
    assert.equal((await trySubscribe(tp, 'orchestrator', 'talon.conversations.>')).refused, false);
    // Routine events: the gateway publishes signed routine webhooks, an orchestrator announces stored documents.
    assert.deepEqual(await tryPublish(tp, 'gateway', 'talon.events.webhook.probe'), { delivered: true, refused: false });
    assert.deepEqual(await tryPublish(tp, 'orchestrator', 'talon.events.document'), { delivered: true, refused: false });
  });

  for (const [user, subject] of [
    ['gateway', 'talon.outbound.api.forged'],
    ['gateway', 'talon.skill.invoke.anything'],
    ['orchestrator', 'talon.inbound.api'],
    ['orchestrator', 'talon.inbound.telegram'],
    // Routines are written by the operator only; their runs by orchestrators (and the operator).
    ['orchestrator', '$KV.talon_routines.routine.forged'],
    ['gateway', '$KV.talon_routines.routine.forged'],
    ['gateway', '$KV.talon_routine_runs.run.forged.1'],
    ['sandbox', '$KV.talon_routine_runs.run.forged.1'],
    // Agent profiles (prompt, models, tools) are written by the operator only.
    ['orchestrator', '$KV.talon_agents.agent.forged'],
    ['gateway', '$KV.talon_agents.agent.forged'],
    ['orchestrator', 'talon.audit.egress.decision'],
    ['egress', 'talon.outbound.api.x'],
    ['egress', 'talon.inbound.api'],
    ['sandbox', 'talon.outbound.api.x'],
    ['sandbox', 'talon.inbound.api'],
    ['sandbox', '$JS.API.STREAM.DELETE.TALON_AUDIT'],
    ['gateway', '$JS.API.STREAM.PURGE.TALON_INBOUND'],
    ['orchestrator', 'talon.conversations.forget'],
    // Answering requests (allow_responses) is no licence to publish on anyone's inbox.
    ['orchestrator', '_INBOX.gateway.forged'],
    ['sandbox', 'talon.conversations.forget'],
    ['egress', 'talon.conversations.list'],
    // Only the operator CLI imports memory documents (talon import openclaw).
    ['gateway', 'talon.conversations.document'],
    // Routine events: each workload only its own kind; an operator's subjects need admin credentials.
    ['gateway', 'talon.events.deploys'],
    ['gateway', 'talon.events.document'],
    ['orchestrator', 'talon.events.webhook.forged'],
    ['orchestrator', 'talon.events.deploys'],
    ['egress', 'talon.events.deploys'],
    ['sandbox', 'talon.events.webhook.forged'],
  ] as const) {
    it(`refuses ${user} publishing to ${subject}`, async () => {
      const r = await tryPublish(tp, user, subject);
      assert.equal(r.delivered, false, 'message must not be delivered');
      assert.equal(r.refused, true, 'server must report a permissions violation');
    });
  }

  for (const [user, subject] of [
    ['sandbox', 'talon.inbound.>'],
    ['egress', 'talon.outbound.>'],
    ['orchestrator', '_INBOX.gateway.>'],
    ['gateway', 'talon.audit.>'],
    ['gateway', 'talon.conversations.>'],
    ['sandbox', 'talon.conversations.>'],
    ['egress', 'talon.conversations.>'],
    ['gateway', 'talon.events.>'],
    ['sandbox', 'talon.events.>'],
  ] as const) {
    it(`refuses ${user} subscribing to ${subject}`, async () => {
      assert.equal((await trySubscribe(tp, user, subject)).refused, true);
    });
  }

  it('refuses a connection without credentials and one with an unknown nkey', async () => {
    await assert.rejects(connect({ servers: tp.platform.natsUrl, reconnect: false }), /authorization/i);
    const { createUser } = await import('@nats-io/nkeys');
    await assert.rejects(
      connect({ servers: tp.platform.natsUrl, reconnect: false, authenticator: nkeyAuthenticator(createUser().getSeed()) }),
      /authorization/i,
    );
  });
});
