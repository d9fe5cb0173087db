// NATS subjects, JetStream streams and per-service permissions: one table, no I/O.
// nats-server enforces these permissions; a service publishing elsewhere is refused.

export const SUBJECTS = {
  inbound: (channel: string) => `talon.inbound.${channel}`,
  /**
   * Reply route of the API (HTTP, WebSocket) on one gateway replica: plain NATS, read by
   * that replica's subscription. Not stored: the client waiting for it is on that replica,
   * and the answer itself is kept in memory (a client that lost the connection reads it there).
   */
  apiReply: (gatewayInstance: string) => `talon.outbound.api.${gatewayInstance}`,
  stream: (gateway: string, requestId: string) => `talon.stream.${gateway}.${requestId}`,
  skillInvoke: (skill: string) => `talon.skill.invoke.${skill}`,
  auditEgress: (kind: string) => `talon.audit.egress.${kind}`,
  /** The orchestrator's audit events (`tool`: one per tool call, talon.agent.v1.ToolCallAudit). */
  auditOrchestrator: (kind: string) => `talon.audit.orchestrator.${kind}`,
  /** Reply route of chat-platform channels: stored in TALON_OUTBOUND, any gateway replica delivers it (durable consumer), also after a restart. */
  channelReply: (channel: string) => `talon.outbound.ch.${channel}`,
  /**
   * A user's conversations and memory (talon.memory.v1 request messages, answered with a
   * ConversationsReply): the gateway asks for its authenticated caller, the admin CLI for
   * any user; an orchestrator (queue group ORCHESTRATOR_QUEUE) answers through memory.
   */
  conversations: (op: ConversationOp) => `talon.conversations.${op}`,
  /**
   * Reply route of a turn nobody waits for (a routine delivered to `web`): nothing is
   * published, the answer is only recorded in the user's conversation, where the web UI reads it.
   */
  keptReply: 'talon.outbound.kept',
  /**
   * The admin CLI asks an orchestrator (queue group ORCHESTRATOR_QUEUE) to list a registered
   * MCP server's tools through egress (talon.mcp.v1.McpToolsRequest -> McpToolsReply).
   */
  mcpTools: 'talon.mcp.tools',
  /**
   * Events that fire routines (stream TALON_EVENTS): `webhook.<routine hook>` (the gateway,
   * from POST /hooks/routine/<name>), `document` (an orchestrator stored a memory document),
   * anything else under talon.events. from operators' services (admin credentials).
   */
  events: (kind: string) => `talon.events.${kind}`,
} as const;

/** Operations on talon.conversations.<op>: list, read, delete one, forget all of a user's; store a memory document (operator import only). */
export const CONVERSATION_OPS = ['list', 'messages', 'delete', 'forget', 'document'] as const;
export type ConversationOp = (typeof CONVERSATION_OPS)[number];
/** The operations the gateway asks for its callers (never `document`: only the admin CLI imports memory documents). */
export const GATEWAY_CONVERSATION_OPS: readonly ConversationOp[] = ['list', 'messages', 'delete', 'forget'];

/** Queue group of the orchestrator's request responders (any replica answers, once). */
export const ORCHESTRATOR_QUEUE = 'orchestrator';

/** Filter of the gateway's durable consumer of channel replies on TALON_OUTBOUND (and the stream's only subjects). */
export const CHANNEL_REPLY_FILTER = 'talon.outbound.ch.>';

/**
 * How a reply subject is delivered — the one rule the orchestrator (publishing) and the
 * gateway (reading) share: `durable` is published to JetStream with the turn's message id
 * (stored, de-duplicated, read by the gateway's durable consumer even after a restart),
 * `plain` is a core NATS publish to the replica that holds the request, `kept` publishes
 * nothing (the answer is only recorded in memory). Anything else is not a reply route.
 */
export function replyDelivery(subject: string): 'durable' | 'plain' | 'kept' | undefined {
  if (subject === SUBJECTS.keptReply) return 'kept';
  const m = /^talon\.outbound\.(ch|api)\.[A-Za-z0-9_-]{1,64}$/.exec(subject);
  if (!m) return undefined;
  return m[1] === 'ch' ? 'durable' : 'plain';
}

/** A stream-chunk subject an inbound message may name (talon.stream.<gateway>.<request>). */
export function isStreamSubject(subject: string): boolean {
  return /^talon\.stream\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,128}$/.test(subject);
}

export const STREAMS = {
  inbound: { name: 'TALON_INBOUND', subjects: ['talon.inbound.>'] },
  /** Channel replies only: API replies are plain NATS (replyDelivery). */
  outbound: { name: 'TALON_OUTBOUND', subjects: [CHANNEL_REPLY_FILTER] },
  audit: { name: 'TALON_AUDIT', subjects: ['talon.audit.>'] },
  /** Events that fire routines (SUBJECTS.events); one durable consumer shared by the orchestrators. */
  events: { name: 'TALON_EVENTS', subjects: ['talon.events.>'] },
} as const;

export const KV_BUCKETS = {
  tokens: 'talon_tokens',
  /** Skill records (`skill.<name>.<version>`) and trusted publisher keys (`publisher.<key_id>`); written by admin only. */
  skills: 'talon_skills',
  /** Users (`user.<id>`); written by admin (`talon users`, `talon token create`), read by the gateway. */
  users: 'talon_users',
  /** Channel pairing codes (`pending.<channel>.<account>`, `code.<CODE>`) and approved pairings (`paired.<channel>.<account>`). */
  pairings: 'talon_pairings',
  /** Pending and decided approvals (`approval.<id>`): tool calls and skills. */
  approvals: 'talon_approvals',
  /** Progress of replies the gateway sends to chat platforms (`delivery.<hash>`). */
  deliveries: 'talon_deliveries',
  /** Platform message ids the gateway accepted (`seen.<hash>`), deduplicating retries beyond the stream's window. */
  inboundSeen: 'talon_inbound_seen',
  /** Turns parked while a tool call waits for the user's approval (`turn.<hash>`); written by the orchestrator only. */
  turns: 'talon_turns',
  /** Routines (`routine.<name>`): turns on a schedule; written by admin (`talon routines`), read by the orchestrator. */
  routines: 'talon_routines',
  /** Firings of routines (`run.<routine>.<scheduled ms>`): claims, leases and outcomes; orchestrator and admin. */
  routineRuns: 'talon_routine_runs',
  /** Leader leases (`lease.<service>.<name>`, packages/kit/src/lease.ts): one holder per key across replicas, e.g. `lease.gateway.telegram.<bot>`. */
  leases: 'talon_leases',
  /** Progress of outbound-connected channels (`telegram.offset.<bot>`: the next getUpdates offset; `matrix.since.<token>`: the /sync token); gateway only. */
  channelState: 'talon_channel_state',
  /** Remote MCP servers (`server.<name>`): URL, headers (placeholders), allowlist, approved tools; written by admin (`talon mcp`). */
  mcp: 'talon_mcp',
  /** Agent profiles (`agent.<name>`): prompt, models, tools, memory scope, routes; written by admin (`talon agents`). */
  agents: 'talon_agents',
} as const;

export const OBJECT_BUCKETS = {
  /** Skill .wasm binaries keyed by lower-case hex SHA-256; written by admin only. */
  skillBinaries: 'talon_skill_binaries',
} as const;

/** KV key of a skill version's record. */
export function skillRecordKey(name: string, version: string): string {
  return `skill.${name}.${version}`;
}

/** KV key of a trusted publisher entry. */
export function publisherKey(keyId: string): string {
  return `publisher.${keyId}`;
}

/** KV key of a user record (talon_users). */
export function userKey(id: string): string {
  return `user.${id}`;
}

/** KV key of an approved pairing (talon_pairings); account is [A-Za-z0-9_.-]. */
export function pairedKey(channel: string, account: string): string {
  return `paired.${channel}.${account}`;
}

/** KV key of the pending pairing request of a channel identity (talon_pairings). */
export function pendingPairingKey(channel: string, account: string): string {
  return `pending.${channel}.${account}`;
}

/** KV key of a pairing request by its code (talon_pairings); code without the dash. */
export function pairingCodeKey(code: string): string {
  return `code.${code}`;
}

/** KV key of an approval (talon_approvals). */
export function approvalKey(id: string): string {
  return `approval.${id}`;
}

/** KV key of an MCP server (talon_mcp). */
export function mcpServerKey(name: string): string {
  return `server.${name}`;
}

/** KV key of an agent profile (talon_agents). */
export function agentKey(name: string): string {
  return `agent.${name}`;
}

/** KV key of a routine (talon_routines). */
export function routineKey(name: string): string {
  return `routine.${name}`;
}

/** KV key of one firing of a routine (talon_routine_runs): the routine and the scheduled instant. */
export function routineRunKey(name: string, scheduledAtMs: number): string {
  return `run.${name}.${scheduledAtMs}`;
}

export const CONSUMERS = {
  orchestratorInbound: 'orchestrator',
  /** The gateway's durable consumer of channel replies (TALON_OUTBOUND, filter CHANNEL_REPLY_FILTER). */
  gatewayChannels: 'gateway-channels',
  /** The orchestrators' shared durable consumer of routine events (TALON_EVENTS): each event goes to one replica. */
  orchestratorEvents: 'orchestrator-events',
} as const;

export const SANDBOX_QUEUE = 'sandbox';

/** Workloads that hold NATS credentials. vault and memory deliberately have none. */
export const NATS_USERS = ['gateway', 'orchestrator', 'egress', 'sandbox', 'admin'] as const;
export type NatsUser = (typeof NATS_USERS)[number];

export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** Lets a responder reply to a request's reply subject once (request/reply without broad publish rights). */
  allow_responses?: boolean;
}

export function inboxPrefix(user: string): string {
  return `_INBOX.${user}`;
}

const js = (...parts: string[]): string => `$JS.API.${parts.join('.')}`;

/**
 * Read-only access to a KV bucket without creating consumers: stream info (KV open),
 * direct get of keys under `prefix` (last-by-subject requests carry the key in the
 * subject, so the grant can be narrowed to a prefix), and listing keys via stream info.
 * Subscribing to `$KV.<bucket>.<prefix>` (live updates) is granted separately.
 */
export function kvReadRights(bucket: string, prefix = '>'): string[] {
  return [js('STREAM.INFO', `KV_${bucket}`), js('DIRECT.GET', `KV_${bucket}`, `$KV.${bucket}.${prefix}`)];
}

/**
 * Read-only access to an object store bucket without creating consumers: the metadata
 * entry by name (last-by-subject direct get) and the chunks by sequence (direct get
 * with a JSON body naming next_by_subj). Read with a direct-get reader, not Objm.open.
 */
export function objectReadRights(bucket: string): string[] {
  return [js('DIRECT.GET', `OBJ_${bucket}`), js('DIRECT.GET', `OBJ_${bucket}`, `$O.${bucket}.M.>`)];
}

/** Read and write access to a KV bucket (put, create, update, delete) without consumers. */
export function kvWriteRights(bucket: string): string[] {
  return [...kvReadRights(bucket), `$KV.${bucket}.>`];
}

function consumerRights(stream: string, durable: string): string[] {
  return [
    js('STREAM.INFO', stream),
    js('CONSUMER.INFO', stream, durable),
    js('CONSUMER.CREATE', stream),
    js('CONSUMER.CREATE', stream, durable),
    js('CONSUMER.CREATE', stream, durable, '>'),
    js('CONSUMER.DURABLE.CREATE', stream, durable),
    js('CONSUMER.MSG.NEXT', stream, durable),
    `$JS.ACK.${stream}.${durable}.>`,
  ];
}

export function natsPermissions(user: NatsUser): NatsPermissions {
  switch (user) {
    case 'gateway':
      // Edge: publishes inbound turns and its callers' conversation requests; reads
      // tokens, users and skills; keeps pairings, approvals decisions, delivery progress
      // and inbound dedupe marks; consumes channel replies durably; reads (never writes)
      // the audit stream for operators. Token writes are revocation and rotation
      // requested through the operator API.
      return {
        publish: {
          allow: [
            'talon.inbound.>',
            ...GATEWAY_CONVERSATION_OPS.map((op) => SUBJECTS.conversations(op)),
            js('INFO'),
            js('STREAM.INFO', STREAMS.inbound.name),
            js('STREAM.INFO', `KV_${KV_BUCKETS.tokens}`),
            js('DIRECT.GET', `KV_${KV_BUCKETS.tokens}`, '>'),
            js('DIRECT.GET', `KV_${KV_BUCKETS.tokens}`),
            js('STREAM.MSG.GET', `KV_${KV_BUCKETS.tokens}`),
            `$KV.${KV_BUCKETS.tokens}.>`,
            ...kvReadRights(KV_BUCKETS.users),
            ...kvReadRights(KV_BUCKETS.skills),
            // The caller's routines and their runs, for the web UI (never written here).
            ...kvReadRights(KV_BUCKETS.routines),
            ...kvReadRights(KV_BUCKETS.routineRuns),
            // Agent names clients may give as `model` (/v1/models; never written here).
            ...kvReadRights(KV_BUCKETS.agents),
            ...[KV_BUCKETS.pairings, KV_BUCKETS.approvals, KV_BUCKETS.deliveries, KV_BUCKETS.inboundSeen, KV_BUCKETS.channelState].flatMap(
              kvWriteRights,
            ),
            // Its own leases only (a channel's poller or connection: one replica at a time).
            ...kvReadRights(KV_BUCKETS.leases, 'lease.gateway.>'),
            `$KV.${KV_BUCKETS.leases}.lease.gateway.>`,
            ...consumerRights(STREAMS.outbound.name, CONSUMERS.gatewayChannels),
            // Signed routine webhooks (POST /hooks/routine/<name>) become routine events; no other event subject.
            `${SUBJECTS.events('webhook')}.>`,
            js('STREAM.INFO', STREAMS.audit.name),
            js('STREAM.MSG.GET', STREAMS.audit.name),
          ],
        },
        // New pairings (from the CLI or another replica) are announced to the paired sender.
        subscribe: {
          allow: ['talon.outbound.>', 'talon.stream.>', `${inboxPrefix('gateway')}.>`, `$KV.${KV_BUCKETS.pairings}.paired.>`],
        },
        // Acknowledges each API reply on the orchestrator's inbox (services/orchestrator/src/reply-ack.ts).
        allow_responses: true,
      };
    case 'orchestrator':
      // Runs turns: consumes inbound, publishes replies, invokes skills and audits each
      // tool call. Reads the skill registry (never writes it); creates tool-call
      // approvals and reads decisions (only `approval.*` keys); keeps its own parked
      // turns. Registry and approval changes arrive on plain subscriptions, no consumers.
      // Answers the gateway's (and the CLI's) conversation requests through memory.
      return {
        publish: {
          allow: [
            'talon.outbound.>',
            'talon.stream.>',
            'talon.skill.invoke.>',
            'talon.audit.orchestrator.>',
            js('INFO'),
            js('STREAM.INFO', STREAMS.outbound.name),
            ...consumerRights(STREAMS.inbound.name, CONSUMERS.orchestratorInbound),
            ...kvReadRights(KV_BUCKETS.skills),
            ...kvReadRights(KV_BUCKETS.approvals),
            `$KV.${KV_BUCKETS.approvals}.approval.>`,
            ...kvWriteRights(KV_BUCKETS.turns),
            // Routines: fires each slot as one turn on its own inbound subject (never a
            // channel's), claims firings and records outcomes; reads routines and users
            // (a disabled user's routine does not run), never writes them.
            SUBJECTS.inbound('routine'),
            ...kvReadRights(KV_BUCKETS.routines),
            ...kvReadRights(KV_BUCKETS.users),
            ...kvWriteRights(KV_BUCKETS.routineRuns),
            // Old runs are removed from the stream, not left as purge markers (RoutineRuns.prune).
            js('STREAM.PURGE', `KV_${KV_BUCKETS.routineRuns}`),
            // Routine events: consumed once across replicas; a stored memory document is announced (no content).
            ...consumerRights(STREAMS.events.name, CONSUMERS.orchestratorEvents),
            SUBJECTS.events('document'),
            // MCP servers: reads the registry (never writes it); lists tools for the CLI.
            ...kvReadRights(KV_BUCKETS.mcp),
            // Agent profiles: which agent answers a turn, and how (never written here).
            ...kvReadRights(KV_BUCKETS.agents),
          ],
        },
        subscribe: {
          allow: [
            `${inboxPrefix('orchestrator')}.>`,
            `$KV.${KV_BUCKETS.skills}.>`,
            `$KV.${KV_BUCKETS.approvals}.approval.>`,
            `$KV.${KV_BUCKETS.routines}.>`,
            `$KV.${KV_BUCKETS.routineRuns}.>`,
            'talon.conversations.>',
            `$KV.${KV_BUCKETS.mcp}.>`,
            SUBJECTS.mcpTools,
          ],
        },
        // Answers conversation requests on the asker's inbox without a broad publish right.
        allow_responses: true,
      };
    case 'egress':
      // Publishes its decisions; reads skill grants and MCP allowlists (never writes them),
      // with live invalidation through a plain subscription to the buckets' subjects.
      return {
        publish: {
          allow: [
            'talon.audit.egress.>',
            js('INFO'),
            js('STREAM.INFO', STREAMS.audit.name),
            ...kvReadRights(KV_BUCKETS.skills),
            ...kvReadRights(KV_BUCKETS.mcp),
          ],
        },
        subscribe: { allow: [`${inboxPrefix('egress')}.>`, `$KV.${KV_BUCKETS.skills}.>`, `$KV.${KV_BUCKETS.mcp}.>`] },
      };
    case 'sandbox':
      // Reads skill records and binaries (never writes them); live record updates
      // arrive as plain subscriptions to the KV subjects, so no consumer rights.
      return {
        publish: {
          allow: [
            'talon.audit.sandbox.>',
            js('INFO'),
            ...kvReadRights(KV_BUCKETS.skills),
            ...objectReadRights(OBJECT_BUCKETS.skillBinaries),
          ],
        },
        subscribe: { allow: ['talon.skill.invoke.>', `${inboxPrefix('sandbox')}.>`, `$KV.${KV_BUCKETS.skills}.>`] },
        allow_responses: true,
      };
    case 'admin':
      return { publish: { allow: ['>'] }, subscribe: { allow: ['>'] } };
  }
}

/**
 * The JetStream streams a workload needs to exist before it can work: read off its
 * permissions (every stream it may ask `STREAM.INFO` about), so the two cannot drift.
 * KV buckets appear as their streams (`KV_<bucket>`), object buckets as `OBJ_<bucket>`.
 */
export function requiredStreams(user: NatsUser): string[] {
  const prefix = '$JS.API.STREAM.INFO.';
  const names = natsPermissions(user)
    .publish.allow.filter((s) => s.startsWith(prefix) && !s.endsWith('>') && !s.endsWith('*'))
    .map((s) => s.slice(prefix.length));
  return [...new Set(names)].sort();
}

/** Renders the authorization block of a nats-server config for the given nkey public keys. */
export function renderNatsConfig(opts: {
  host: string;
  port: number;
  storeDir: string;
  serverName?: string;
  users: Readonly<Record<NatsUser, string>>;
  maxPayload?: number;
  /** One node of a JetStream cluster: its route listener and the other nodes' routes (`nats-route://host:port`). */
  cluster?: { name: string; listen: string; routes: readonly string[] };
}): string {
  const users = NATS_USERS.map((u) => {
    const p = natsPermissions(u);
    const list = (xs: string[]) => xs.map((s) => JSON.stringify(s)).join(', ');
    return [
      `    { # ${u}`,
      `      nkey: ${JSON.stringify(opts.users[u])}`,
      `      permissions: {`,
      `        publish: { allow: [${list(p.publish.allow)}] }`,
      `        subscribe: { allow: [${list(p.subscribe.allow)}] }`,
      p.allow_responses ? `        allow_responses: true` : '',
      `      }`,
      `    }`,
    ]
      .filter((l) => l !== '')
      .join('\n');
  });
  return [
    '# Generated by `talon up`; edits are overwritten. Each Talon workload has its own',
    '# nkey user limited to its own subjects (docs/architecture.md invariant 5).',
    `server_name: ${JSON.stringify(opts.serverName ?? 'talon')}`,
    `listen: ${JSON.stringify(`${opts.host}:${opts.port}`)}`,
    `max_payload: ${opts.maxPayload ?? 4 * 1024 * 1024}`,
    'jetstream {',
    `  store_dir: ${JSON.stringify(opts.storeDir)}`,
    '  max_memory_store: 268435456',
    '}',
    ...(opts.cluster
      ? [
          'cluster {',
          `  name: ${JSON.stringify(opts.cluster.name)}`,
          `  listen: ${JSON.stringify(opts.cluster.listen)}`,
          `  routes: [${opts.cluster.routes.map((r) => JSON.stringify(r)).join(', ')}]`,
          '}',
        ]
      : []),
    'authorization {',
    '  users = [',
    users.join('\n'),
    '  ]',
    '}',
    '',
  ].join('\n');
}
