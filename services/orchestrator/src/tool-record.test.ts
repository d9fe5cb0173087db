import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ToolCallAudit } from '@talon/proto';
import type { ToolCallReport } from './agent-loop.ts';
import { toolAuditEvent, toolRecordContent, toolRecordTurn } from './tool-record.ts';

const skillTool = {
  name: 'skill_weather',
  description: '',
  parameters: { type: 'object' },
  meta: { skill: 'weather', version: '1.2.0', requiresApproval: true },
  handler: async () => '',
};

function report(over: Partial<ToolCallReport> = {}): ToolCallReport {
  return {
    call: { id: 'c1', name: 'skill_weather', arguments: '{"city":"Oslo"}' },
    tool: skillTool,
    callIndex: 3,
    step: 2,
    ok: true,
    code: 'ok',
    ms: 41.6,
    outputChars: 120,
    ...over,
  };
}

describe('tool call records and audit', () => {
  it('records a skill call in memory as a small JSON summary with an idempotent id', () => {
    const t = toolRecordTurn('in-1', report({ note: { approvalId: 'tc-9', approval: 'approved', decidedBy: 'token:t1' } }), 5);
    assert.equal(t.id, 'in-1:tool:3');
    assert.equal(t.role, 'tool');
    assert.equal(t.source, 'tool');
    assert.deepEqual(JSON.parse(t.content), {
      tool: 'skill_weather',
      skill: 'weather',
      version: '1.2.0',
      input: '{"city":"Oslo"}',
      outcome: 'ok',
      duration_ms: 42,
      approval: 'approved',
      approval_id: 'tc-9',
    });
  });

  it('cuts long inputs and scrubs credential shapes from them', () => {
    const key = `talon_pat_${'A1b2C3d4'.repeat(4)}`;
    const c = JSON.parse(
      toolRecordContent(
        report({
          ok: false,
          code: 'timeout',
          call: { id: 'c', name: 'skill_weather', arguments: `{"k":"${key}","pad":"${'x'.repeat(3000)}"}` },
        }),
      ),
    ) as { input: string; outcome: string };
    assert.equal(c.outcome, 'timeout');
    assert.ok(!c.input.includes(key), 'a token shape is scrubbed');
    assert.ok(c.input.length < 1100);
    assert.match(c.input, /more characters\]$/);
  });

  it('audits without the input: only its hash and size', () => {
    const ev = toolAuditEvent('in-1', { userId: 'alice', channel: 'api', threadId: 't' }, report(), 7);
    const bytes = ToolCallAudit.encode(ev).finish();
    assert.ok(!Buffer.from(bytes).toString('latin1').includes('Oslo'), 'the audit event carries no input');
    assert.equal(ev.eventId, 'in-1:tool:3');
    assert.equal(ev.skill, 'weather');
    assert.equal(ev.version, '1.2.0');
    assert.equal(ev.outcome, 'ok');
    assert.equal(ev.inputBytes, 15);
    assert.match(ev.inputSha256, /^[0-9a-f]{64}$/);
    const builtin = toolAuditEvent('in-1', undefined, report({ tool: undefined, ok: false, code: 'unknown_tool' }), 7);
    assert.equal(builtin.skill, '');
    assert.equal(builtin.outcome, 'unknown_tool');
  });
});
