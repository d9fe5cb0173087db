// Prometheus discovery for `talon up`: the content of TALON_HOME/prometheus/targets.json
// (file-based service discovery, one target group per service instance) and of a
// prometheus.yml that scrapes it. Pure: the platform passes the instances and the
// ports they reported, and writes the files (platform.ts). Prometheus re-reads
// targets.json by itself when it changes, so a restart on another port needs no reload.
import { METRICS_PATH } from '@talon/kit/internal-http';
import type { ServiceName } from '@talon/kit/service';

export { METRICS_PATH };
/** The scrape job of `talon up`'s prometheus.yml (the dashboards do not depend on it). */
export const SCRAPE_JOB = 'talon';
/** Folder under TALON_HOME with both files. */
export const PROMETHEUS_DIR = 'prometheus';
export const TARGETS_FILE = 'targets.json';
export const CONFIG_FILE = 'prometheus.yml';

/** One service instance's internal HTTP listener. */
export interface MetricsEndpoint {
  /** The platform's instance name: `orchestrator`, `orchestrator-2`… */
  instance: string;
  service: ServiceName;
  /** What `<SERVICE>_INTERNAL_HOST` says it binds (unset: loopback). */
  bindHost?: string | undefined;
  port: number;
}

/** One entry of a file-SD file (https://prometheus.io/docs/prometheus/latest/configuration/configuration/#file_sd_config). */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/**
 * The address a scraper on this machine uses for a listener bound to `bindHost`: a
 * wildcard bind is reached on loopback; an IPv6 literal is bracketed.
 */
export function scrapeAddress(bindHost: string | undefined, port: number): string {
  const host = (bindHost ?? '').trim();
  if (host === '' || host === '0.0.0.0') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]:${port}`;
  return `${host}:${port}`;
}

/**
 * The target groups: one per instance that has a port, labelled with `service` and
 * `instance` (the platform's instance name rather than host:port, so `up` reads
 * `orchestrator-2`). The dashboards do not need them: every series carries
 * `service_name` and `service_instance_id` itself, however it is collected.
 * Sorted by instance name so the file changes only when an endpoint does.
 */
export function targetGroups(endpoints: readonly MetricsEndpoint[]): TargetGroup[] {
  return endpoints
    .filter((e) => Number.isInteger(e.port) && e.port > 0 && e.port < 65536)
    .toSorted((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0))
    .map((e) => ({ targets: [scrapeAddress(e.bindHost, e.port)], labels: { service: e.service, instance: e.instance } }));
}

/** targets.json: the file-SD JSON Prometheus reads. */
export function targetsJson(endpoints: readonly MetricsEndpoint[]): string {
  return `${JSON.stringify(targetGroups(endpoints), null, 2)}\n`;
}

export interface PrometheusConfigOptions {
  /** Absolute path of targets.json (Prometheus resolves a relative one against its own config file). */
  targetsFile: string;
  /** Default 15s. */
  scrapeInterval?: string;
}

/**
 * prometheus.yml for `prometheus --config.file=<TALON_HOME>/prometheus/prometheus.yml`.
 * Strings are written as JSON, which YAML reads as double-quoted scalars, so any path is safe.
 */
export function prometheusYml(opts: PrometheusConfigOptions): string {
  const interval = opts.scrapeInterval ?? '15s';
  if (!/^\d+(ms|s|m|h)$/.test(interval)) throw new Error(`scrape interval ${interval} is not a Prometheus duration such as 15s`);
  return [
    '# Written by `talon up` (rewritten on every start): scrapes every Talon service instance',
    '# listed in targets.json, which `talon up` keeps current. Run:',
    '#   prometheus --config.file=<this file>',
    '# and open the dashboards of deploy/grafana with this Prometheus as their data source.',
    'global:',
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    'scrape_configs:',
    `  - job_name: ${JSON.stringify(SCRAPE_JOB)}`,
    `    metrics_path: ${JSON.stringify(METRICS_PATH)}`,
    '    file_sd_configs:',
    `      - files: [${JSON.stringify(opts.targetsFile)}]`,
    '',
  ].join('\n');
}
