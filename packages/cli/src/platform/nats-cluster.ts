// A nats-server configuration for one node of a JetStream cluster (compose and
// Kubernetes, docs/architecture.md §10): the single-node configuration of
// renderNatsConfig plus a cluster block. Every node reads the same file; each takes
// its unique server_name (JetStream needs one per node) from an environment variable,
// which nats-server substitutes when it reads the file. Routes authenticate with a
// password only the nodes know: a client that can reach the route port (every
// container on the compose bus network can) must not join as a trusted server.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { renderNatsConfig, type NatsUser } from '@talon/kit/subjects';
import { CliError } from '../context.ts';
import { writePrivate } from './home.ts';

/** The environment variable each node sets to its own name (a StatefulSet pod's name, a compose service's name). */
export const NATS_SERVER_NAME_ENV = 'NATS_SERVER_NAME';
export const NATS_CLUSTER_PORT = 6222;
const ROUTE_USER = 'route';

export interface NatsClusterOptions {
  host: string;
  port: number;
  storeDir: string;
  users: Record<NatsUser, string>;
  /** Cluster name, the same on every node. */
  name: string;
  /** host:port of every node's route listener, this node's own included (nats-server skips a route to itself). */
  routes: string[];
  /** Route password, shared by the nodes (clusterPassword keeps it stable across `talon init` runs). */
  password: string;
  /** host:port of the monitoring endpoint (/healthz for probes); absent: none. */
  monitor?: string;
}

/** Parses `a:6222,b:6222` (a port may be left out) into host:port routes. */
export function parseRoutes(list: string): string[] {
  const routes = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((r) => (/:\d+$/.test(r) ? r : `${r}:${NATS_CLUSTER_PORT}`));
  for (const r of routes) {
    if (!/^[a-zA-Z0-9.-]+:\d{1,5}$/.test(r))
      throw new CliError(`--nats-cluster: route ${JSON.stringify(r)} is not host:port (e.g. nats-0.nats-cluster:6222)`);
  }
  if (routes.length < 2) throw new CliError('--nats-cluster: a NATS cluster needs at least two routes (three for JetStream replicas 3)');
  return routes;
}

export function renderNatsClusterConfig(o: NatsClusterOptions): string {
  if (!/^[a-zA-Z0-9_-]+$/.test(o.name)) throw new Error(`cluster name ${JSON.stringify(o.name)}: use letters, digits, - and _`);
  if (!/^[a-f0-9]{32,}$/.test(o.password)) throw new Error('the route password must be at least 32 hex characters');
  const base = renderNatsConfig({ host: o.host, port: o.port, storeDir: o.storeDir, users: o.users });
  const lines = base.split('\n');
  const at = lines.findIndex((l) => l.startsWith('server_name:'));
  if (at < 0) throw new Error('renderNatsConfig wrote no server_name line');
  // Unquoted, so nats-server substitutes the variable from its environment.
  lines[at] = `server_name: $${NATS_SERVER_NAME_ENV}`;
  const routeUrls = o.routes.map((r) => JSON.stringify(`nats-route://${ROUTE_USER}:${o.password}@${r}`)).join(', ');
  return [
    ...lines.slice(0, -1),
    o.monitor ? `http: ${JSON.stringify(o.monitor)}` : '',
    'cluster {',
    `  name: ${JSON.stringify(o.name)}`,
    `  listen: ${JSON.stringify(`${o.host}:${NATS_CLUSTER_PORT}`)}`,
    `  authorization { user: ${JSON.stringify(ROUTE_USER)}, password: ${JSON.stringify(o.password)} }`,
    `  routes: [${routeUrls}]`,
    '}',
    '',
  ]
    .filter((l, i, all) => l !== '' || i === all.length - 1)
    .join('\n');
}

/** The route password in `file`, created (mode 0600) on first use so a second `talon init` keeps the nodes agreeing. */
export function clusterPassword(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const password = randomBytes(24).toString('hex');
  writePrivate(file, `${password}\n`);
  return password;
}
