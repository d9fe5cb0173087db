import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routeLabel } from './metrics.ts';

test('the route label is a template from a closed set, never a path with ids or a query', () => {
  assert.equal(routeLabel('/v1/chat/completions'), '/v1/chat/completions');
  assert.equal(routeLabel('/v1/models?x=1'), '/v1/models');
  assert.equal(routeLabel('/healthz'), '/healthz');
  assert.equal(routeLabel('/v1/conversations/4b0c6f1e-0000-4000-8000-000000000000/messages'), '/v1/conversations/{id}/messages');
  assert.equal(routeLabel('/hooks/telegram'), '/hooks/telegram');
  assert.equal(routeLabel('/hooks/evil-name'), '/hooks/{unknown}');
  assert.equal(routeLabel('/wp-admin/setup.php'), '(unmatched)');
  assert.equal(routeLabel(undefined), '/');
});
