// Forward-only migrations of the `memory` schema. Never edit a released step; add one.
import type { Migration } from '@talon/kit';

export const MEMORY_SCHEMA = 'memory';

export const memoryMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'conversations and history',
    sql: `
      create extension if not exists vector;
      create table memory.conversations (
        id uuid primary key default gen_random_uuid(),
        user_id text not null,
        channel text not null,
        thread_id text not null,
        created_at timestamptz not null default now(),
        unique (user_id, channel, thread_id)
      );
      create table memory.conversation_history (
        id bigint generated always as identity primary key,
        conversation_id uuid not null references memory.conversations(id) on delete cascade,
        user_id text not null,
        turn_id text not null,
        role text not null check (role in ('system', 'user', 'assistant', 'tool')),
        source text not null check (source in ('system', 'user', 'assistant', 'tool', 'web')),
        content text not null,
        created_at timestamptz not null default now(),
        unique (conversation_id, turn_id)
      );
      create index conversation_history_recent on memory.conversation_history (conversation_id, id desc);
      create index conversation_history_user on memory.conversation_history (user_id, created_at desc);
    `,
  },
];
