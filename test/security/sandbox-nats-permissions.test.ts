// docs/architecture.md invariant 5 for the skill registry: the sandbox identity reads skill
// records and binaries (direct gets and plain subscriptions only, no consumers) and can
// write neither; the admin identity (the CLI) writes them. Enforced by nats-server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { inboxPrefix, KV_BUCKETS, OBJECT_BUCKETS, skillRecordKey } from '@talon/kit/subjects';
import { SkillRecord } from '@talon/proto';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { readObject } from '../../services/sandbox/src/registry/objects.ts';
import { builtSkill, ensureSkillsBuilt, installApproved } from '../../services/sandbox/test/support.ts';

async function connectAs(tp: TestPlatform, user: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const seed = new TextEncoder().encode(readFileSync(join(tp.home, 'nats', `${user}.nk`), 'utf8').trim());
  const nc = await connect({ servers: tp.platform.natsUrl, authenticator: nkeyAuthenticator(seed), inboxPrefix: inboxPrefix(user) });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') errors.push(String((s as { error?: unknown }).error));
  })();
  return { nc, errors };
}

const violated = (errors: string[], subject: string) => errors.some((e) => /permissions violation/i.test(e) && e.includes(subject));

describe('skill registry permissions (enforced by nats-server)', () => {
  let tp: TestPlatform;
  let sandbox: { nc: NatsConnection; errors: string[] };
  let sha = '';
  before(async () => {
    await ensureSkillsBuilt();
    tp = await startTestPlatform({ services: [], llm: false });
    const rec = await installApproved(await tp.admin(), builtSkill('examples', 'unit-convert'));
    sha = rec.sha256;
    sandbox = await connectAs(tp, 'sandbox');
  });
  after(async () => {
    await sandbox?.nc.close();
    await tp?.stop();
  });

  it('lets the sandbox read records (direct get), list versions (stream info) and binaries (direct get)', async () => {
    const kv = await new Kvm(sandbox.nc).open(KV_BUCKETS.skills, { allow_direct: true } as never);
    const e = await kv.get(skillRecordKey('unit-convert', '1.0.0'));
    assert.equal(SkillRecord.decode(e!.value).sha256, sha);
    const jsm = await jetstreamManager(sandbox.nc, { checkAPI: false });
    const info = await jsm.streams.info(`KV_${KV_BUCKETS.skills}`, { subjects_filter: `$KV.${KV_BUCKETS.skills}.skill.>` });
    assert.ok(Object.keys(info.state.subjects ?? {}).includes(`$KV.${KV_BUCKETS.skills}.skill.unit-convert.1.0.0`));
    const bytes = await readObject(jsm, OBJECT_BUCKETS.skillBinaries, sha, 1 << 24);
    assert.equal(bytes?.length, readFileSync(join(builtSkill('examples', 'unit-convert'), 'skill.wasm')).length);
    assert.deepEqual(sandbox.errors, []);
  });

  it('lets the sandbox watch record changes with a plain subscription', async () => {
    const sub = sandbox.nc.subscribe(`$KV.${KV_BUCKETS.skills}.>`, { max: 1 });
    await sandbox.nc.flush();
    const seen = (async () => {
      for await (const m of sub) return m.subject;
      return '';
    })();
    await (await new Kvm(await tp.admin()).open(KV_BUCKETS.skills)).put('skill.probe.1.0.0', new Uint8Array([1]));
    assert.equal(await seen, `$KV.${KV_BUCKETS.skills}.skill.probe.1.0.0`);
  });

  const writes: Array<[string, string]> = [
    ['put a record', `$KV.${KV_BUCKETS.skills}.skill.unit-convert.1.0.0`],
    ['trust a publisher', `$KV.${KV_BUCKETS.skills}.publisher.0000000000000000`],
    ['write a binary chunk', `$O.${OBJECT_BUCKETS.skillBinaries}.C.forged`],
    ['write binary metadata', `$O.${OBJECT_BUCKETS.skillBinaries}.M.forged`],
    ['purge the registry', `$JS.API.STREAM.PURGE.KV_${KV_BUCKETS.skills}`],
    ['delete the registry', `$JS.API.STREAM.DELETE.KV_${KV_BUCKETS.skills}`],
    ['delete a record revision', `$JS.API.STREAM.MSG.DELETE.KV_${KV_BUCKETS.skills}`],
    ['delete the binaries', `$JS.API.STREAM.DELETE.OBJ_${OBJECT_BUCKETS.skillBinaries}`],
    ['change the registry config', `$JS.API.STREAM.UPDATE.KV_${KV_BUCKETS.skills}`],
    ['create a consumer on the registry', `$JS.API.CONSUMER.CREATE.KV_${KV_BUCKETS.skills}`],
    ['read API tokens', `$JS.API.DIRECT.GET.KV_${KV_BUCKETS.tokens}.$KV.${KV_BUCKETS.tokens}.x`],
  ];
  for (const [what, subject] of writes) {
    it(`refuses the sandbox trying to ${what}`, async () => {
      const admin = await tp.admin();
      const seen = admin.subscribe(subject, { max: 1 });
      await admin.flush();
      sandbox.nc.publish(subject, new TextEncoder().encode('{}'));
      await sandbox.nc.flush();
      const delivered = await Promise.race([
        (async () => {
          for await (const _ of seen) return true;
          return false;
        })(),
        new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
      ]);
      seen.unsubscribe();
      assert.equal(delivered, false, 'must not be delivered');
      assert.ok(violated(sandbox.errors, subject), `server reports a permissions violation for ${subject}`);
    });
  }

  it('leaves the registry intact after the attempts', async () => {
    const e = await (await new Kvm(await tp.admin()).open(KV_BUCKETS.skills)).get(skillRecordKey('unit-convert', '1.0.0'));
    assert.equal(SkillRecord.decode(e!.value).sha256, sha);
  });

  it('refuses the sandbox subscribing to the object store subjects or other buckets', async () => {
    const { nc, errors } = await connectAs(tp, 'sandbox');
    try {
      nc.subscribe(`$KV.${KV_BUCKETS.tokens}.>`);
      await nc.flush();
      // The server's refusal arrives as an asynchronous error: wait for it (bounded), then check.
      await tp
        .until('the server to refuse the subscription', () => errors.some((e) => /permissions violation/i.test(e)))
        .catch(() => undefined);
      assert.ok(errors.some((e) => /permissions violation/i.test(e)));
    } finally {
      await nc.close();
    }
  });
});
