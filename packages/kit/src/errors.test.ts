import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { asTalonError, ERROR_TABLE, fromGrpcError, httpErrorBody, isDependencyUnavailable, TalonError, toGrpcError } from './errors.ts';

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

describe('asTalonError', () => {
  it('answers unavailable for a dependency that is away, internal for anything else', () => {
    const gone = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
      Object.assign(new Error('connection failure'), { code: '08006' }),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      Object.assign(new Error('timeout'), { name: 'TimeoutError' }),
      Object.assign(new Error('closed connection'), { name: 'ClosedConnectionError' }),
      Object.assign(new Error('JetStream system temporarily unavailable'), { name: 'JetStreamApiError', status: 503 }),
      new Error('request failed', { cause: Object.assign(new Error('no responders'), { name: 'NoResponders' }) }),
      // A response body cut off because the peer died (undici), as fetch reports it too.
      Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }),
      new TypeError('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) }),
    ];
    for (const e of gone) assert.equal(asTalonError(e).code, 'unavailable', e.message);
    assert.ok(isDependencyUnavailable(gone[0]));
    // A wrong query or a constraint is the request's or the code's fault, not an outage.
    assert.equal(asTalonError(Object.assign(new Error('duplicate key'), { code: '23505' })).code, 'internal');
    assert.equal(asTalonError(new TypeError('x is undefined')).code, 'internal');
    // JetStream refusing a request for good (a 400: bad config, a 404: no such stream) is not an outage.
    assert.equal(asTalonError(Object.assign(new Error('stream not found'), { name: 'JetStreamApiError', status: 404 })).code, 'internal');
    const own = new TalonError('not_found', 'no such secret');
    assert.equal(asTalonError(own), own);
  });
});

describe('httpErrorBody', () => {
  it("names OpenAI's error type for the status and keeps Talon's reason in code", () => {
    const body = (code: ConstructorParameters<typeof TalonError>[0]) => httpErrorBody(new TalonError(code, 'm')).error;
    assert.deepEqual(body('invalid_argument'), { code: 'invalid_argument', message: 'm', type: 'invalid_request_error', param: null });
    assert.equal(body('unauthenticated').type, 'authentication_error');
    assert.equal(body('policy_denied').type, 'permission_error');
    assert.equal(body('not_found').type, 'not_found_error');
    assert.equal(body('rate_limited').type, 'rate_limit_error');
    assert.equal(body('timeout').type, 'server_error');
    assert.equal(body('payload_too_large').type, 'invalid_request_error');
    // OpenAI's own answer to an unknown model: 404, but an invalid request naming the field.
    assert.deepEqual(body('model_not_found'), { code: 'model_not_found', message: 'm', type: 'invalid_request_error', param: 'model' });
    assert.equal(new TalonError('model_not_found', 'm').httpStatus, 404);
  });

  it('names the field an error gives (OpenAI param)', () => {
    const e = new TalonError('invalid_value', 'm', { param: 'tools[0].function.name' });
    assert.deepEqual(httpErrorBody(e).error, {
      code: 'invalid_value',
      message: 'm',
      type: 'invalid_request_error',
      param: 'tools[0].function.name',
    });
    assert.equal(new TalonError('model_not_vision_capable', 'm').httpStatus, 400);
  });
});
