// SQL for conversations and history. Every query is scoped by user_id.
import type { Pool } from '@talon/kit';
import type { ConversationRef } from '@talon/proto';
import type { Role, Source } from './validate.ts';

export interface StoredTurn {
  id: string;
  role: string;
  content: string;
  source: string;
  createdAtMs: number;
}

export class MemoryStore {
  private readonly pool: Pool;
  constructor(pool: Pool) {
    this.pool = pool;
  }

  async appendTurns(
    conv: ConversationRef,
    turns: ReadonlyArray<{ id: string; role: Role; source: Source; content: string; createdAtMs?: number }>,
  ): Promise<{ conversationId: string; inserted: number }> {
    const client = await this.pool.connect();
    try {
      await client.query('begin');
      const { rows } = await client.query<{ id: string }>(
        `insert into memory.conversations (user_id, channel, thread_id) values ($1, $2, $3)
         on conflict (user_id, channel, thread_id) do update set user_id = excluded.user_id
         returning id`,
        [conv.userId, conv.channel, conv.threadId],
      );
      const conversationId = rows[0]!.id;
      let inserted = 0;
      for (const t of turns) {
        const r = await client.query(
          `insert into memory.conversation_history (conversation_id, user_id, turn_id, role, source, content, created_at)
           values ($1, $2, $3, $4, $5, $6, coalesce(to_timestamp($7::double precision / 1000), now()))
           on conflict (conversation_id, turn_id) do nothing`,
          [conversationId, conv.userId, t.id, t.role, t.source, t.content, t.createdAtMs ? t.createdAtMs : null],
        );
        inserted += r.rowCount ?? 0;
      }
      await client.query('commit');
      return { conversationId, inserted };
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async history(conv: ConversationRef, limit: number): Promise<StoredTurn[]> {
    const { rows } = await this.pool.query<{ turn_id: string; role: string; content: string; source: string; ms: string }>(
      `select h.turn_id, h.role, h.content, h.source, (extract(epoch from h.created_at) * 1000)::bigint as ms
         from memory.conversation_history h
         join memory.conversations c on c.id = h.conversation_id
        where c.user_id = $1 and c.channel = $2 and c.thread_id = $3 and h.user_id = $1
        order by h.id desc
        limit $4`,
      [conv.userId, conv.channel, conv.threadId, limit],
    );
    return rows.reverse().map((r) => ({ id: r.turn_id, role: r.role, content: r.content, source: r.source, createdAtMs: Number(r.ms) }));
  }
}
