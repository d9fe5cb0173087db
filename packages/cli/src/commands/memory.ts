// `talon memory list|forget`: an operator's view of what Talon remembers for a
// user — their conversations and messages — and erasing it (one conversation, or
// everything: conversations and memory documents). The CLI asks an orchestrator
// over NATS with the admin identity, as the gateway does for a user's own API calls;
// memory itself answers only the orchestrator.
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { askConversations, type ConversationRequests, type ConversationResults } from '@talon/kit/conversations';
import { TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import type { ConversationOp } from '@talon/kit/subjects';
import type { ConversationSummary, Turn } from '@talon/proto';
import { CliError, withAdminNats } from '../context.ts';
import { USER_ID } from '../tokens.ts';

const THREAD_ID = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,199}$/;
const CHANNEL = /^[a-z][a-z0-9_-]{0,31}$/;

interface Target {
  user: string;
  channel: string;
  conversation?: string | undefined;
}

function target(o: { user?: string; channel?: string; conversation?: string }): Target {
  if (!o.user || !USER_ID.test(o.user)) throw new CliError('--user must name a Talon user (1-64 of a-z, 0-9, . _ -; see talon users list)');
  const channel = o.channel ?? 'api';
  if (!CHANNEL.test(channel)) throw new CliError('--channel must be a channel name such as api, web or telegram');
  if (o.conversation !== undefined && !THREAD_ID.test(o.conversation))
    throw new CliError('--conversation must be a conversation id as `talon memory list` shows it');
  return { user: o.user, channel, conversation: o.conversation };
}

async function ask<K extends ConversationOp>(
  nc: NatsConnection,
  op: K,
  req: ConversationRequests[K],
  t: Target,
): Promise<ConversationResults[K]> {
  try {
    return await askConversations(nc, op, req);
  } catch (err) {
    if (err instanceof TalonError && err.code === 'not_found')
      throw new CliError(`user ${t.user} has no conversation ${t.channel}/${t.conversation} (see talon memory list --user ${t.user})`);
    if (err instanceof TalonError) throw new CliError(`${err.message} (${err.code})`);
    throw err;
  }
}

const when = (ms: number) => (ms > 0 ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '-');

/** Conversations as a table (newest activity first). Pure. */
export function conversationTable(rows: readonly ConversationSummary[]): string {
  const head = ['CHANNEL', 'CONVERSATION', 'LAST ACTIVITY (UTC)', 'MESSAGES', 'TITLE'];
  const body = rows.map((c) => [c.channel, c.threadId, when(c.lastActivityMs), String(c.turns), c.title]);
  const widths = head.slice(0, -1).map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  return [head, ...body].map((r) => r.map((cell, i) => (i < widths.length ? cell.padEnd(widths[i]!) : cell)).join('  ')).join('\n');
}

/** Messages oldest first, continuation lines indented under their first. Pure. */
export function messageLines(messages: readonly Turn[]): string {
  return messages
    .map((m) => {
      const prefix = `${when(m.createdAtMs)}  ${m.role.padEnd(9)}  `;
      return prefix + m.content.replace(/\r?\n/g, `\n${' '.repeat(prefix.length)}`);
    })
    .join('\n');
}

async function confirm(question: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) throw new CliError('nothing deleted: confirm with --yes when not running in a terminal');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new CliError('nothing deleted');
  } finally {
    rl.close();
  }
}

export function registerMemory(program: Command): void {
  const memory = program
    .command('memory')
    .description('what Talon remembers for a user: list their conversations and messages, or forget them')
    .addHelpText(
      'after',
      `
A conversation is addressed by its channel and id, as \`talon memory list\` shows them.
OpenAI-compatible API conversations (x-talon-conversation) are on channel "api" (the
default); web UI, Telegram, Slack… conversations need --channel.

Examples:
  talon memory list --user alice
  talon memory list --user alice --conversation trip-planning
  talon memory forget --user alice --conversation chat:42 --channel telegram
  talon memory forget --user alice --all --yes`,
    );

  memory
    .command('list')
    .description("a user's conversations, newest activity first; with --conversation, its messages")
    .requiredOption('--user <id>', 'the Talon user')
    .option('--conversation <id>', 'show the messages of this conversation')
    .option('--channel <name>', 'channel of --conversation (api, web, telegram…); filters the list otherwise')
    .option('--limit <n>', 'most conversations or messages to show', '100')
    .option('--json', 'print JSON')
    .action(async (o: { user: string; conversation?: string; channel?: string; limit: string; json?: boolean }) => {
      const t = target(o);
      if (!/^\d{1,6}$/.test(o.limit) || Number(o.limit) < 1) throw new CliError('--limit must be a positive integer');
      const want = Number(o.limit);
      await withAdminNats(async (nc) => {
        if (t.conversation === undefined) {
          const rows: ConversationSummary[] = [];
          let before = '';
          do {
            const page = await ask(
              nc,
              'list',
              { userId: t.user, limit: Math.min(200, want - rows.length), before, channel: o.channel ?? '' },
              t,
            );
            rows.push(...page.conversations);
            before = page.nextBefore;
          } while (before !== '' && rows.length < want);
          if (o.json) console.log(JSON.stringify(rows, null, 2));
          else if (rows.length === 0) console.log(`Talon remembers no conversations of ${t.user}${o.channel ? ` on ${o.channel}` : ''}.`);
          else console.log(conversationTable(rows) + (before !== '' ? `\n(more: raise --limit)` : ''));
          return;
        }
        const pages: Turn[][] = [];
        let n = 0;
        let before = '';
        do {
          const page = await ask(
            nc,
            'messages',
            { conversation: { userId: t.user, channel: t.channel, threadId: t.conversation }, limit: Math.min(500, want - n), before },
            t,
          );
          pages.unshift(page.messages);
          n += page.messages.length;
          before = page.nextBefore;
        } while (before !== '' && n < want);
        const messages = pages.flat();
        if (o.json) console.log(JSON.stringify(messages, null, 2));
        else if (messages.length === 0) console.log(`Conversation ${t.channel}/${t.conversation} of ${t.user} has no messages.`);
        else console.log(messageLines(messages) + (before !== '' ? `\n(older messages not shown: raise --limit)` : ''));
      });
    });

  memory
    .command('forget')
    .description("delete one of a user's conversations (--conversation), or all their conversations and memory documents (--all)")
    .requiredOption('--user <id>', 'the Talon user')
    .option('--conversation <id>', 'the conversation to delete, with its tool records and the notes saved from it')
    .option('--channel <name>', 'channel of --conversation (default api)')
    .option('--all', 'every conversation and memory document of the user')
    .option('-y, --yes', 'do not ask for confirmation (required when not in a terminal)')
    .action(async (o: { user: string; conversation?: string; channel?: string; all?: boolean; yes?: boolean }) => {
      const t = target(o);
      if ((t.conversation === undefined) === !o.all) throw new CliError('name what to forget: --conversation <id> or --all');
      if (o.all) {
        await confirm(`Forget ALL conversations and memory documents of user ${t.user}? This cannot be undone.`, o.yes);
        const r = await withAdminNats((nc) => ask(nc, 'forget', { userId: t.user }, t));
        console.log(
          `Forgot everything Talon remembered of ${t.user}: ${r.conversations} conversation(s), ${r.turns} turn(s), ${r.documents} memory document(s), ${r.chunks} searchable chunk(s).`,
        );
        return;
      }
      await confirm(`Forget conversation ${t.channel}/${t.conversation} of user ${t.user}? This cannot be undone.`, o.yes);
      const r = await withAdminNats((nc) =>
        ask(nc, 'delete', { conversation: { userId: t.user, channel: t.channel, threadId: t.conversation! } }, t),
      );
      console.log(
        `Deleted conversation ${t.channel}/${t.conversation} of ${t.user}: ${r.turns} turn(s), ${r.documents} memory document(s), ${r.chunks} searchable chunk(s).`,
      );
    });
}
