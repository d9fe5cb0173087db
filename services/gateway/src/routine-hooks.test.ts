import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WebhookRejected } from './channels/types.ts';
import { acceptRoutineHook, type RoutineHookDeps } from './routine-hooks.ts';

function deps(valid: boolean) {
  const published: Array<{ subject: string; data: string; msgID: string }> = [];
  const d: RoutineHookDeps = {
    ingress: {
      verify: async () => {
        if (!valid) throw new WebhookRejected('the webhook webhook signature does not match');
      },
    },
    redactor: {
      redactTexts: async (texts) =>
        texts.map((t) =>
          t.includes('SECRET') ? { text: t.replaceAll('SECRET', '[REDACTED:test]'), labels: ['test'] } : { text: t, labels: [] },
        ),
    },
    js: {
      publish: (async (subject: string, data: Uint8Array, o: { msgID: string }) => {
        published.push({ subject, data: new TextDecoder().decode(data), msgID: o.msgID });
        return { duplicate: false, seq: published.length, stream: 'TALON_EVENTS', domain: '' };
      }) as unknown as RoutineHookDeps['js']['publish'],
    },
  };
  return { d, published };
}

describe('POST /hooks/routine/<name>', () => {
  it('queues a verified event on the routine webhook subject, redacted', async () => {
    const { d, published } = deps(true);
    const r = await acceptRoutineHook(d, 'ci', { 'x-talon-signature': 'sha256=ab' }, Buffer.from('{"token":"SECRET"}'));
    assert.equal(r.status, 202);
    assert.equal(published.length, 1);
    assert.equal(published[0]!.subject, 'talon.events.webhook.ci');
    assert.equal(published[0]!.data, '{"token":"[REDACTED:test]"}');
    assert.match(published[0]!.msgID, /^hook-ci-[0-9a-f]{32}$/);
  });

  it('publishes nothing for a bad signature or a bad name', async () => {
    const bad = deps(false);
    await assert.rejects(acceptRoutineHook(bad.d, 'ci', {}, Buffer.from('{}')), WebhookRejected);
    assert.equal(bad.published.length, 0);
    const good = deps(true);
    await assert.rejects(acceptRoutineHook(good.d, 'Bad.Name', {}, Buffer.from('{}')), /no routine webhook/);
    assert.equal(good.published.length, 0);
  });
});
