import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { METRICS_PATH, prometheusYml, scrapeAddress, targetGroups, targetsJson, type MetricsEndpoint } from './prometheus.ts';

const endpoints: MetricsEndpoint[] = [
  { instance: 'orchestrator-2', service: 'orchestrator', port: 40_002 },
  { instance: 'gateway', service: 'gateway', port: 7411 },
  { instance: 'orchestrator', service: 'orchestrator', port: 40_001 },
  // Not reported yet (bound to 0): left out until it is.
  { instance: 'sandbox', service: 'sandbox', port: 0 },
  { instance: 'vault', service: 'vault', bindHost: '0.0.0.0', port: 7414 },
];

describe('Prometheus file-based discovery', () => {
  it('lists one target group per instance with a port, labelled with service and instance, sorted', () => {
    assert.deepEqual(targetGroups(endpoints), [
      { targets: ['127.0.0.1:7411'], labels: { service: 'gateway', instance: 'gateway' } },
      { targets: ['127.0.0.1:40001'], labels: { service: 'orchestrator', instance: 'orchestrator' } },
      { targets: ['127.0.0.1:40002'], labels: { service: 'orchestrator', instance: 'orchestrator-2' } },
      { targets: ['127.0.0.1:7414'], labels: { service: 'vault', instance: 'vault' } },
    ]);
  });

  it('writes JSON in the file-SD shape: host:port targets, valid label names, string values', () => {
    const parsed = JSON.parse(targetsJson(endpoints)) as unknown[];
    assert.equal(parsed.length, 4);
    for (const g of parsed as Array<Record<string, unknown>>) {
      assert.deepEqual(Object.keys(g).sort(), ['labels', 'targets']);
      for (const t of g.targets as string[]) assert.match(t, /^(\[[0-9a-f:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/);
      for (const [k, v] of Object.entries(g.labels as Record<string, unknown>)) {
        assert.match(k, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
        assert.ok(!k.startsWith('__'), `${k}: a reserved label would be dropped`);
        assert.equal(typeof v, 'string');
      }
    }
  });

  it('is stable: the same endpoints in another order give the same bytes (no rewrite)', () => {
    assert.equal(targetsJson(endpoints), targetsJson(endpoints.toReversed()));
    assert.notEqual(targetsJson(endpoints), targetsJson([...endpoints, { instance: 'sandbox', service: 'sandbox', port: 7415 }]));
  });

  it('reaches a wildcard bind on loopback and brackets IPv6', () => {
    assert.equal(scrapeAddress(undefined, 7411), '127.0.0.1:7411');
    assert.equal(scrapeAddress('', 7411), '127.0.0.1:7411');
    assert.equal(scrapeAddress('0.0.0.0', 7411), '127.0.0.1:7411');
    assert.equal(scrapeAddress('::', 7411), '[::1]:7411');
    assert.equal(scrapeAddress('::1', 7411), '[::1]:7411');
    assert.equal(scrapeAddress('10.0.0.5', 7411), '10.0.0.5:7411');
    assert.equal(scrapeAddress('localhost', 7411), 'localhost:7411');
  });

  it('writes a prometheus.yml that scrapes /metrics of the targets file, whatever its path', () => {
    const targetsFile = '/home/o p/.talon "x"/prometheus/targets.json';
    const cfg = parse(prometheusYml({ targetsFile })) as {
      global: { scrape_interval: string };
      scrape_configs: Array<{ job_name: string; metrics_path: string; file_sd_configs: Array<{ files: string[] }> }>;
    };
    assert.equal(cfg.global.scrape_interval, '15s');
    assert.equal(cfg.scrape_configs.length, 1);
    assert.equal(cfg.scrape_configs[0]!.metrics_path, METRICS_PATH);
    assert.deepEqual(cfg.scrape_configs[0]!.file_sd_configs, [{ files: [targetsFile] }]);
    assert.equal((parse(prometheusYml({ targetsFile, scrapeInterval: '5s' })) as typeof cfg).global.scrape_interval, '5s');
    assert.throws(() => prometheusYml({ targetsFile, scrapeInterval: '5 seconds\nfoo: 1' }), /Prometheus duration/);
  });
});
