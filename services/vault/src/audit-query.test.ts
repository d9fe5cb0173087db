import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgument } from '@talon/kit/errors';
import { AuditLogRequest } from '@talon/proto';
import { auditFilter, auditWhere, isFiltered } from './audit-query.ts';

const req = (over: Partial<AuditLogRequest>) => AuditLogRequest.fromPartial(over);

describe('vault audit filters', () => {
  it('an empty request is the newest 100, unfiltered', () => {
    const f = auditFilter(req({}));
    assert.equal(f.limit, 100);
    assert.equal(isFiltered(f), false);
    assert.deepEqual(auditWhere(f), { where: '', params: [] });
    assert.equal(auditFilter(req({ limit: 5000 })).limit, 1000);
  });

  it('turns every filter into a parameter, never into SQL text', () => {
    const f = auditFilter(req({ sinceMs: 1000, untilMs: 2000, principal: "x' or 1=1 --", decision: 'deny', secretName: 'llm_api_key' }));
    assert.ok(isFiltered(f));
    const { where, params } = auditWhere(f);
    assert.equal(
      where,
      'where at >= to_timestamp($1::bigint / 1000.0) and at < to_timestamp($2::bigint / 1000.0) and (principal = $3 or caller = $3) and allowed = $4 and secret_name = $5',
    );
    assert.deepEqual(params, [1000, 2000, "x' or 1=1 --", false, 'llm_api_key']);
    assert.ok(!where.includes('or 1=1'));
    assert.deepEqual(auditWhere(auditFilter(req({ decision: 'allow' }))).params, [true]);
  });

  it('refuses an unknown decision', () => {
    assert.throws(() => auditFilter(req({ decision: 'maybe' })), InvalidArgument);
  });
});
