// The malicious-plugin corpus: every hostile skill the sandbox's security suite runs,
// what it attempts, where it is stopped and by whom. Sources live in skills/malicious/
// (built by `node skills/build.ts`); test/security/sandbox-corpus.test.ts runs each one
// for real against a live sandbox node and checks the node keeps serving.
//
// enforcedBy: `sandbox` = the sandbox node alone stops it; `egress` = the sandbox
// only routes it (to egress, labelled with the skill) and egress's policy, vault binding
// or scanner refuses it; `both` = each layer stops it independently.

export type Enforcer = 'sandbox' | 'egress' | 'both';

export interface CorpusCase {
  /** Directory under skills/malicious. */
  source: string;
  attack: string;
  /** Where it is stopped: refused at `talon skills install`, or contained when run. */
  stage: 'install' | 'run';
  enforcedBy: Enforcer;
  /** Install refusal reason (SkillPackageError.reason) for stage "install". */
  installRefusal?: string;
  /** SkillError.code of the invocation (for "install" cases: when forced into the registry). */
  code: string;
  message?: RegExp;
}

export const RUN_CASES: readonly CorpusCase[] = [
  { source: 'infinite-loop', attack: 'spins forever', stage: 'run', enforcedBy: 'sandbox', code: 'timeout' },
  {
    source: 'start-loop',
    attack: 'spins forever inside its start function (at instantiation)',
    stage: 'run',
    enforcedBy: 'sandbox',
    code: 'timeout',
  },
  {
    source: 'memory-bomb',
    attack: 'memory.grow in a loop, touching every page',
    stage: 'run',
    enforcedBy: 'sandbox',
    code: 'memory_limit',
    message: /16 MiB/,
  },
  {
    source: 'alloc-bomb',
    attack: 'Extism kernel alloc() of 64 MiB blocks in a loop (host-side memory)',
    stage: 'run',
    enforcedBy: 'sandbox',
    code: 'memory_limit',
  },
  { source: 'huge-output', attack: 'returns 8 MiB', stage: 'run', enforcedBy: 'sandbox', code: 'output_too_large' },
  { source: 'deep-recursion', attack: 'unbounded recursion', stage: 'run', enforcedBy: 'sandbox', code: 'trap', message: /stack overflow/ },
  { source: 'trap', attack: 'executes unreachable', stage: 'run', enforcedBy: 'sandbox', code: 'trap', message: /unreachable/ },
];

export const INSTALL_CASES: readonly CorpusCase[] = [
  {
    source: 'wasi-fs',
    attack: 'imports WASI path_open/fd_read',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'wasi_import',
    code: 'refused_module',
    message: /filesystem/,
  },
  {
    source: 'wasi-socket',
    attack: 'imports WASI sock_accept/sock_send',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'wasi_import',
    code: 'refused_module',
    message: /sockets/,
  },
  {
    source: 'wasi-env',
    attack: 'imports WASI environ_get',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'wasi_import',
    code: 'refused_module',
    message: /environment/,
  },
  {
    source: 'undeclared-host-fn',
    attack: 'imports a host function Talon does not provide',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'import_not_allowed',
    code: 'refused_module',
    message: /talon_exec/,
  },
  {
    source: 'extism-http',
    attack: "uses Extism's own http_request to bypass egress",
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'import_not_allowed',
    code: 'refused_module',
    message: /http_request/,
  },
  {
    source: 'imported-memory',
    attack: 'imports its memory from the host',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'import_not_allowed',
    code: 'refused_module',
    message: /memory env::memory/,
  },
  {
    source: 'unbounded-memory',
    attack: 'declares no memory maximum',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'memory_unbounded',
    code: 'refused_module',
    message: /no maximum memory/,
  },
  {
    source: 'oversized-memory',
    attack: 'declares a 4 GiB maximum while asking for 16 MiB',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'memory_too_large',
    code: 'refused_module',
    message: /4096 MiB/,
  },
  {
    source: 'unbounded-table',
    attack: 'declares an unbounded table (table.grow bomb)',
    stage: 'install',
    enforcedBy: 'sandbox',
    installRefusal: 'table_unbounded',
    code: 'refused_module',
    message: /table/,
  },
];

/** Host-call cases, each with its own test in sandbox-corpus.test.ts. */
export const HOST_CALL_CASES: readonly Omit<CorpusCase, 'code'>[] = [
  { source: 'http-probe', attack: 'HTTP to a host the skill was not approved for', stage: 'run', enforcedBy: 'egress' },
  {
    source: 'http-probe',
    attack: 'HTTP to private, loopback, link-local and cloud metadata addresses',
    stage: 'run',
    enforcedBy: 'egress',
  },
  { source: 'http-probe', attack: 'forges x-talon-skill / proxy headers to borrow another identity', stage: 'run', enforcedBy: 'both' },
  {
    source: 'http-probe',
    attack: 'sleeps past its timeout inside a host call (upstream never answers)',
    stage: 'run',
    enforcedBy: 'sandbox',
  },
  {
    source: 'exfil',
    attack: 'moves a granted secret into the query, body, a foreign header, base64 and percent-encoded forms, and reflects it back',
    stage: 'run',
    enforcedBy: 'egress',
  },
  { source: 'exfil', attack: 'uses a secret placeholder it was not granted', stage: 'run', enforcedBy: 'egress' },
  { source: 'host-call-flood', attack: 'calls talon_http_request 100000 times', stage: 'run', enforcedBy: 'sandbox' },
  {
    source: '(any approved skill)',
    attack: 'its binary is replaced in the object store (and in the node cache) after approval',
    stage: 'run',
    enforcedBy: 'sandbox',
  },
];
