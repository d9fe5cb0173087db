import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ERROR_TABLE, fromGrpcError, TalonError, toGrpcError } from './errors.ts';

describe('error table', () => {
  it('uses snake_case codes and sane statuses', () => {
    for (const [code, m] of Object.entries(ERROR_TABLE)) {
      assert.match(code, /^[a-z]+(_[a-z]+)*$/);
      assert.ok(m.http >= 400 && m.http < 600);
    }
  });

  it('round-trips codes through gRPC metadata', () => {
    const g = toGrpcError(new TalonError('policy_denied', 'nope'));
    assert.equal(g.code, status.PERMISSION_DENIED);
    const back = fromGrpcError(g);
    assert.equal(back.code, 'policy_denied');
    assert.equal(back.message, 'nope');
    assert.equal(back.httpStatus, 403);
  });

  it('never leaks internal error details', () => {
    const g = toGrpcError(new Error('database password is hunter2'));
    assert.equal(g.details, 'internal error');
  });

  it('maps bare gRPC statuses', () => {
    assert.equal(fromGrpcError({ code: status.UNAVAILABLE, details: 'down' }).code, 'unavailable');
    assert.equal(fromGrpcError({ code: status.DEADLINE_EXCEEDED }).code, 'timeout');
  });
});
