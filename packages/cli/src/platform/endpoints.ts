// Where the listeners of a Talon on this machine are, and which variable sets each.
// `talon up` gives every internal listener a free port unless its variable sets one
// (the gateway keeps 8080: people browse to it), then writes the ports it got to
// TALON_HOME/run/platform.json (run-file.ts). Every CLI command finds a service with
// resolveEndpoint: one rule, here, so two Talons on one machine never reach each
// other's NATS or vault. Pure: the callers read the environment and the file.
import { DEFAULT_PORTS, SERVICES, type ServiceName } from '@talon/kit/service';

/**
 * Where everything listens. 0 means "any free port": the process binds port 0 and
 * reports what it got (TALON_PORTS_FILE, nats-server's ports file), and the platform
 * hands that number to whoever connects to it. Picking a free port here and binding it
 * later in another process is a race a busy machine loses.
 */
export interface PlatformPorts {
  gatewayHttp: number;
  nats: number;
  pglite: number;
  egressProxy: number;
  grpc: Record<ServiceName, number>;
  /** Each service's internal HTTP port (/livez, /readyz, /metrics). */
  internal: Record<ServiceName, number>;
}

/** The variables that set the platform-wide ports. */
export const PORT_VARIABLES = {
  gatewayHttp: 'TALON_GATEWAY_PORT',
  nats: 'TALON_NATS_PORT',
  pglite: 'TALON_PGLITE_PORT',
  egressProxy: 'EGRESS_PROXY_PORT',
} as const;

export function grpcPortVariable(s: ServiceName): string {
  return `${s.toUpperCase()}_GRPC_PORT`;
}
export function internalPortVariable(s: ServiceName): string {
  return `${s.toUpperCase()}_INTERNAL_PORT`;
}

function perService(f: (s: ServiceName) => number): Record<ServiceName, number> {
  return {
    gateway: f('gateway'),
    orchestrator: f('orchestrator'),
    memory: f('memory'),
    vault: f('vault'),
    sandbox: f('sandbox'),
    egress: f('egress'),
  };
}

/**
 * The ports `talon up` asks for: each variable's value when set, else 0 (a free port)
 * except the gateway's public port, 8080 unless TALON_GATEWAY_PORT says otherwise.
 * A value that is not a port stops the start, naming the variable.
 */
export function defaultPorts(env: Record<string, string | undefined> = process.env): PlatformPorts {
  const n = (key: string, unset: number): number => {
    const raw = env[key]?.trim();
    if (raw === undefined || raw === '') return unset;
    const v = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(v >= 0 && v < 65536))
      throw new Error(`${key}=${raw} is not a port: use a whole number from 1 to 65535, or unset it to pick a free port`);
    return v;
  };
  return {
    gatewayHttp: n(PORT_VARIABLES.gatewayHttp, DEFAULT_PORTS.gatewayHttp),
    nats: n(PORT_VARIABLES.nats, 0),
    pglite: n(PORT_VARIABLES.pglite, 0),
    egressProxy: n(PORT_VARIABLES.egressProxy, 0),
    grpc: perService((s) => n(grpcPortVariable(s), 0)),
    internal: perService((s) => n(internalPortVariable(s), 0)),
  };
}

/** Every port that is set (not 0) among those a start binds, with the variable that sets it. */
export function setPorts(
  ports: PlatformPorts,
  o: { services: readonly ServiceName[]; embedded: boolean },
): Array<{ port: number; variable: string }> {
  const all: Array<{ port: number; variable: string }> = [{ port: ports.nats, variable: PORT_VARIABLES.nats }];
  if (o.embedded) all.push({ port: ports.pglite, variable: PORT_VARIABLES.pglite });
  if (o.services.includes('gateway')) all.push({ port: ports.gatewayHttp, variable: PORT_VARIABLES.gatewayHttp });
  if (o.services.includes('egress')) all.push({ port: ports.egressProxy, variable: PORT_VARIABLES.egressProxy });
  for (const s of o.services)
    all.push({ port: ports.grpc[s], variable: grpcPortVariable(s) }, { port: ports.internal[s], variable: internalPortVariable(s) });
  return all.filter((p) => p.port !== 0);
}

/** What to say when a port that is set is taken: the variable, its value, and the way out. */
export function portTakenMessage(variable: string, port: number): string {
  // The gateway's port is fixed by default, so "unset it" would not help there.
  return variable === PORT_VARIABLES.gatewayHttp
    ? `${variable}=${port} is in use by another process; set ${variable} to another port (0 picks a free one)`
    : `${variable}=${port} is in use by another process; choose another or unset it to pick a free port`;
}

/** What a running `talon up` writes to TALON_HOME/run/platform.json. */
export interface RunInfo {
  /** The `talon up` (or test) process that supervises the platform. */
  pid: number;
  /** NATS client URL(s), comma-separated. */
  natsUrl: string;
  /** The ports in use (a service that was not started has 0). */
  ports: PlatformPorts;
}

/** The run file as the CLI finds it: none, left by a supervisor that has exited, or current. */
export type RunState = { kind: 'absent' } | { kind: 'stale'; pid: number } | { kind: 'running'; info: RunInfo };

export function serializeRunInfo(info: RunInfo): string {
  return `${JSON.stringify(info, null, 2)}\n`;
}

const isPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 65536;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The run file's content, or undefined when it is not one (then it tells nothing). */
export function parseRunInfo(text: string): RunInfo | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(v) || !isRecord(v.ports)) return undefined;
  const { pid, natsUrl, ports } = v;
  const grpc = ports.grpc;
  const internal = ports.internal;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || typeof natsUrl !== 'string' || natsUrl === '') return undefined;
  if (!isRecord(grpc) || !isRecord(internal)) return undefined;
  const { gatewayHttp, nats, pglite, egressProxy } = ports;
  if (!isPort(gatewayHttp) || !isPort(nats) || !isPort(pglite) || !isPort(egressProxy)) return undefined;
  if (!SERVICES.every((s) => isPort(grpc[s]) && isPort(internal[s]))) return undefined;
  return {
    pid,
    natsUrl,
    ports: {
      gatewayHttp,
      nats,
      pglite,
      egressProxy,
      grpc: perService((s) => Number(grpc[s])),
      internal: perService((s) => Number(internal[s])),
    },
  };
}

/** What the CLI connects to: NATS (its URL list) or a service's gRPC listener (host:port). */
export type Endpoint = 'nats' | ServiceName;

export type Resolved = { ok: true; address: string; from: string } | { ok: false; reason: 'not-running' | 'not-started'; message: string };

/** Variables that name a whole address, for a platform run some other way (containers, an admin pod). */
const ADDRESS_VARIABLES: Partial<Record<Endpoint, string>> = { nats: 'TALON_NATS_URL', vault: 'TALON_VAULT_ADDR' };

/** The variable that sets an endpoint's port under `talon up`. */
export function endpointPortVariable(target: Endpoint): string {
  return target === 'nats' ? PORT_VARIABLES.nats : grpcPortVariable(target);
}

export function notRunningMessage(home: string, run: RunState, runFile: string): string {
  if (run.kind === 'stale')
    return `Talon is not running under TALON_HOME=${home}: the talon up that wrote ${runFile} (pid ${run.pid}) has exited; start it with \`talon up\``;
  return `Talon is not running under TALON_HOME=${home}; start it with \`talon up\` (or set TALON_HOME to the folder of the Talon you mean)`;
}

/**
 * Where `target` listens, in this order: a variable naming its whole address
 * (TALON_NATS_URL, TALON_VAULT_ADDR: a platform run some other way); the run file of
 * the `talon up` running under TALON_HOME; the variable that set its port; else a
 * failure saying Talon is not running there (never a default port another Talon may hold).
 */
export function resolveEndpoint(
  target: Endpoint,
  o: { env: Record<string, string | undefined>; home: string; run: RunState; runFile: string },
): Resolved {
  const addressVar = ADDRESS_VARIABLES[target];
  const address = addressVar ? o.env[addressVar]?.trim() : undefined;
  if (addressVar && address) return { ok: true, address, from: addressVar };
  if (o.run.kind === 'running') {
    const { info } = o.run;
    if (target === 'nats') return { ok: true, address: info.natsUrl, from: o.runFile };
    const port = info.ports.grpc[target];
    if (port > 0) return { ok: true, address: `127.0.0.1:${port}`, from: o.runFile };
    return {
      ok: false,
      reason: 'not-started',
      message: `the Talon running under TALON_HOME=${o.home} (pid ${info.pid}) was started without ${target}`,
    };
  }
  const variable = endpointPortVariable(target);
  const raw = o.env[variable]?.trim() ?? '';
  const port = /^\d+$/.test(raw) ? Number(raw) : 0;
  if (port > 0 && port < 65536)
    return { ok: true, address: target === 'nats' ? `nats://127.0.0.1:${port}` : `127.0.0.1:${port}`, from: variable };
  return { ok: false, reason: 'not-running', message: notRunningMessage(o.home, o.run, o.runFile) };
}
