// Messages between a sandbox node (parent) and its plugin host processes (children),
// sent over the Node IPC channel with structured-clone serialisation. A plugin host
// holds no credentials and no network client: everything it may do beyond computing
// is a host call the parent answers.

export interface RunLimits {
  /** Extism kernel allocations per call (bytes), the plugin's own linear memory is capped by the module's declared maximum. */
  maxAllocBytes: number;
  maxOutputBytes: number;
  maxVarBytes: number;
  maxLogLines: number;
}

export interface RunJob {
  t: 'run';
  id: number;
  sha256: string;
  /** Present when the parent knows the child lacks the module (or after `need-wasm`). */
  wasm?: Uint8Array;
  entrypoint: string;
  input: string;
  /** JSON Schema text validated in the child (a hostile pattern can only burn this plugin's time). */
  inputSchema: string;
  /** Declared maximum pages of the module's memories (for reporting a memory-cap trap). */
  maxPages: number;
  limits: RunLimits;
}

export interface HostCallResult {
  t: 'host-res';
  id: number;
  callId: number;
  /** JSON handed back to the plugin. */
  result?: string;
  /** Makes the host function throw, which traps the plugin with this error. */
  fatal?: { code: string; message: string };
}

export type ToChild = RunJob | HostCallResult | { t: 'wasm'; id: number; sha256: string; wasm: Uint8Array };

export interface RunDone {
  t: 'done';
  id: number;
  ok: boolean;
  output?: Uint8Array;
  error?: { code: string; message: string };
  logs: string[];
  /** Wall time inside the child (compile/instantiate + call). */
  elapsedUs: number;
}

export type FromChild =
  | { t: 'ready' }
  /** Ready for the next call; `id` is the call after which the host prepared a fresh instance. */
  | { t: 'idle'; id: number }
  | { t: 'need-wasm'; id: number; sha256: string }
  | { t: 'host-call'; id: number; callId: number; fn: string; payload: string }
  | RunDone;
