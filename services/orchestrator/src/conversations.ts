// Answers requests about a user's conversations and memory on
// talon.conversations.<op> (queue group: any one orchestrator replica answers)
// by calling memory, which only the orchestrator may call. The gateway sends them
// for its authenticated caller and the admin CLI for an operator; either way the
// request names the user, and memory scopes every query to that user. Every
// answer is a ConversationsReply: the result, or a typed error (code + message)
// the asker turns into an HTTP status or a CLI message. Never logs contents.
import { CONVERSATION_OPS, ORCHESTRATOR_QUEUE, SUBJECTS, type ConversationOp } from '@talon/kit/subjects';
import { InFlight } from '@talon/kit/lifecycle';
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import {
  ConversationsReply,
  DeleteConversationRequest,
  DeleteUserMemoryRequest,
  GetConversationMessagesRequest,
  ListConversationsRequest,
  UpsertDocumentRequest,
} from '@talon/proto';
import type { MemoryApi } from './memory.ts';

export type ConversationMemory = Pick<
  MemoryApi,
  'listConversations' | 'conversationMessages' | 'deleteConversation' | 'deleteUserMemory' | 'upsertDocument'
>;

const PREFIX = SUBJECTS.conversations('list').slice(0, -'list'.length);

/** The operation a request subject names; undefined for anything else. Pure. */
export function conversationOp(subject: string): ConversationOp | undefined {
  if (!subject.startsWith(PREFIX)) return undefined;
  const op = subject.slice(PREFIX.length);
  return (CONVERSATION_OPS as readonly string[]).includes(op) ? (op as ConversationOp) : undefined;
}

type Request =
  | { op: 'list'; req: ListConversationsRequest }
  | { op: 'messages'; req: GetConversationMessagesRequest }
  | { op: 'delete'; req: DeleteConversationRequest }
  | { op: 'forget'; req: DeleteUserMemoryRequest }
  | { op: 'document'; req: UpsertDocumentRequest };

function requireUser(userId: string | undefined): void {
  // The asker fills this from its authenticated principal; a request without one is a bug, never "everyone".
  if (!userId) throw new InvalidArgument('the request names no user');
}

/** Decodes and checks the request of `op`. Pure; throws InvalidArgument. */
export function decodeConversationRequest(op: ConversationOp, data: Uint8Array): Request {
  let r: Request;
  try {
    switch (op) {
      case 'list':
        r = { op, req: ListConversationsRequest.decode(data) };
        break;
      case 'messages':
        r = { op, req: GetConversationMessagesRequest.decode(data) };
        break;
      case 'delete':
        r = { op, req: DeleteConversationRequest.decode(data) };
        break;
      case 'forget':
        r = { op, req: DeleteUserMemoryRequest.decode(data) };
        break;
      case 'document':
        r = { op, req: UpsertDocumentRequest.decode(data) };
        break;
    }
  } catch {
    throw new InvalidArgument(`the ${op} request is not a valid protobuf message`);
  }
  requireUser(r.op === 'list' || r.op === 'forget' || r.op === 'document' ? r.req.userId : r.req.conversation?.userId);
  return r;
}

async function perform(memory: ConversationMemory, r: Request): Promise<ConversationsReply> {
  switch (r.op) {
    case 'list':
      return { list: await memory.listConversations(r.req) };
    case 'messages':
      return { messages: await memory.conversationMessages(r.req) };
    case 'delete':
      return { deleted: await memory.deleteConversation(r.req) };
    case 'forget':
      return { forgotten: await memory.deleteUserMemory(r.req) };
    case 'document':
      // An operator's import: never tied to a conversation (memory checks an origin belongs to the user anyway).
      return { document: await memory.upsertDocument({ ...r.req, origin: undefined }) };
  }
}

/** The reply to one request: never throws; failures become `error` with a stable code. */
export async function answerConversationRequest(
  memory: ConversationMemory,
  subject: string,
  data: Uint8Array,
): Promise<{ reply: ConversationsReply; op: ConversationOp | undefined; err?: unknown }> {
  const op = conversationOp(subject);
  try {
    if (!op) throw new InvalidArgument(`no conversation operation ${subject.slice(PREFIX.length, PREFIX.length + 32)}`);
    return { op, reply: await perform(memory, decodeConversationRequest(op, data)) };
  } catch (err) {
    // Memory's errors arrive as TalonErrors (not_found, invalid_argument, unavailable, timeout).
    const te = err instanceof TalonError ? err : new TalonError('internal', 'the request failed inside the orchestrator');
    return { op, reply: { error: { code: te.code, message: te.message } }, err };
  }
}

export interface ResponderOptions {
  nc: NatsConnection;
  memory: ConversationMemory;
  log: Logger;
  /** A document op stored a new or changed document (routines with --on document); awaited before the answer. */
  onDocument?: (userId: string, key: string, title: string) => Promise<void>;
}

export class ConversationResponder {
  private readonly log: ResponderOptions['log'];
  private readonly memory: ResponderOptions['memory'];
  private readonly nc: ResponderOptions['nc'];
  private readonly onDocument: ResponderOptions['onDocument'];
  private readonly inFlight = new InFlight();
  private sub: ReturnType<NatsConnection['subscribe']> | undefined;

  constructor(opts: ResponderOptions) {
    this.log = opts.log;
    this.memory = opts.memory;
    this.nc = opts.nc;
    this.onDocument = opts.onDocument;
  }

  start(): void {
    if (this.sub) return;
    this.sub = this.nc.subscribe(`${PREFIX}>`, {
      queue: ORCHESTRATOR_QUEUE,
      callback: (_err, m) => {
        if (!m.reply) return;
        void this.inFlight.track(async () => {
          const started = Date.now();
          const { reply, op, err } = await answerConversationRequest(this.memory, m.subject, m.data);
          if (op === 'document' && reply.document?.changed && this.onDocument) {
            const d = UpsertDocumentRequest.decode(m.data);
            await this.onDocument(d.userId, d.key, d.title).catch((e: Error) =>
              this.log.warn({ op, err: e.message }, 'could not announce a stored document to routines'),
            );
          }
          try {
            m.respond(ConversationsReply.encode(reply).finish());
          } catch (e) {
            this.log.warn({ op, err: (e as Error).message }, 'could not answer a conversation request');
          }
          const fields = {
            op,
            outcome: reply.error?.code ?? 'ok',
            ms: Date.now() - started,
            ...(reply.deleted ?? reply.forgotten ?? {}),
          };
          if (reply.error?.code === 'internal')
            this.log.error({ ...fields, err: (err as Error | undefined)?.message }, 'conversation request failed');
          else this.log.info(fields, 'conversation request');
        });
      },
    });
  }

  /** Stops taking requests and waits for the ones being answered. */
  async stop(): Promise<void> {
    await this.sub?.drain().catch(() => undefined);
    await this.inFlight.idle();
  }
}
