import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NATS_USERS, natsPermissions, renderNatsConfig } from './subjects.ts';

function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
const canPublish = (u: (typeof NATS_USERS)[number], subject: string) => natsPermissions(u).publish.allow.some((p) => matches(p, subject));

describe('per-service NATS permissions', () => {
  it('keeps each workload to its own subjects', () => {
    assert.ok(canPublish('gateway', 'talon.inbound.api'));
    assert.ok(!canPublish('gateway', 'talon.outbound.api.x'));
    assert.ok(canPublish('orchestrator', 'talon.outbound.api.x'));
    assert.ok(!canPublish('orchestrator', 'talon.inbound.api'));
    assert.ok(!canPublish('sandbox', 'talon.outbound.api.x'));
    assert.ok(!canPublish('egress', 'talon.inbound.api'));
    for (const u of NATS_USERS)
      if (u !== 'admin') assert.ok(!canPublish(u, '$JS.API.STREAM.DELETE.TALON_AUDIT'), `${u} cannot delete audit`);
  });

  it('renders a nats-server config with one nkey user per workload', () => {
    const users = Object.fromEntries(NATS_USERS.map((u, i) => [u, `UKEY${i}`])) as Record<(typeof NATS_USERS)[number], string>;
    const conf = renderNatsConfig({ host: '127.0.0.1', port: 4223, storeDir: '/tmp/js', users });
    for (const u of NATS_USERS) assert.match(conf, new RegExp(`# ${u}\\n\\s+nkey: "UKEY${NATS_USERS.indexOf(u)}"`));
    assert.match(conf, /jetstream \{\n {2}store_dir: "\/tmp\/js"/);
    assert.match(conf, /allow_responses: true/);
  });
});
