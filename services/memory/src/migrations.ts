// Forward-only migrations of the `memory` schema. Never edit a released step; add one.
import type { Migration } from '@talon/kit/db';

export const MEMORY_SCHEMA = 'memory';

/** Text search configuration of the generated tsvector column (queries must use the same). */
export const TEXT_SEARCH_CONFIG = 'english';

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
  {
    version: 2,
    name: 'agents config, documents and searchable chunks with embeddings',
    // Skills are deliberately absent: skill records live in NATS KV (owned by the sandbox).
    // vector_embeddings holds one row per searchable chunk (of a history turn or a
    // document): its text, the generated tsvector and the embedding with the model
    // and dimension that made it, so both halves of a hybrid query read one table
    // under one user_id filter. The embedding column has no fixed dimension; the
    // service builds a partial HNSW index on (embedding::vector(D)) for the
    // configured D, so changing the model or dimension needs no migration.
    // History turns written before this step are indexed by the service in the
    // background (indexed_at is null until then).
    sql: `
      create table memory.agents_config (
        agent_id text primary key check (agent_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
        display_name text not null default '',
        system_prompt text,
        model text,
        memory_enabled boolean not null default true,
        settings jsonb not null default '{}'::jsonb,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );

      alter table memory.conversation_history add column indexed_at timestamptz;
      create index conversation_history_unindexed on memory.conversation_history (id)
        where indexed_at is null and role in ('user', 'assistant');

      create table memory.documents (
        id uuid primary key default gen_random_uuid(),
        user_id text not null,
        doc_key text not null,
        title text not null default '',
        source text not null check (source in ('system', 'user', 'assistant', 'tool', 'web')),
        origin_conversation_id uuid references memory.conversations(id) on delete set null,
        content_sha256 text not null,
        content_chars integer not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        unique (user_id, doc_key)
      );
      create index documents_origin on memory.documents (origin_conversation_id) where origin_conversation_id is not null;

      create table memory.vector_embeddings (
        id bigint generated always as identity primary key,
        user_id text not null,
        document_id uuid references memory.documents(id) on delete cascade,
        history_id bigint references memory.conversation_history(id) on delete cascade,
        conversation_id uuid references memory.conversations(id) on delete cascade,
        source text not null check (source in ('system', 'user', 'assistant', 'tool', 'web')),
        seq integer not null default 0,
        content text not null,
        tsv tsvector generated always as (to_tsvector('${TEXT_SEARCH_CONFIG}'::regconfig, content)) stored,
        embedding vector,
        embedding_model text,
        embedding_dim integer,
        embedded_at timestamptz,
        embed_lease_until timestamptz,
        created_at timestamptz not null default now(),
        check ((document_id is null) <> (history_id is null)),
        check ((embedding is null and embedding_dim is null and embedding_model is null)
            or (embedding is not null and embedding_model is not null and vector_dims(embedding) = embedding_dim))
      );
      create index vector_embeddings_user on memory.vector_embeddings (user_id, id);
      -- A small pending list: searches scan it linearly, so a large one (4 MB default) adds milliseconds.
      create index vector_embeddings_tsv on memory.vector_embeddings using gin (tsv) with (gin_pending_list_limit = 256);
      create index vector_embeddings_document on memory.vector_embeddings (document_id) where document_id is not null;
      create index vector_embeddings_history on memory.vector_embeddings (history_id) where history_id is not null;
      create index vector_embeddings_conversation on memory.vector_embeddings (conversation_id) where conversation_id is not null;
    `,
  },
  {
    version: 3,
    name: 'conversation activity for listing, and erasures',
    // last_turn_at orders a user's conversations newest first (with id as the
    // tie-break of the page cursor) without aggregating their history per request.
    // An erasure remembers, for a while, that a user deleted a conversation
    // (channel and thread_id set) or all of their memory (both ''): a turn created
    // before it that arrives late (an answer still being recorded, a redelivered
    // message) is not stored again. Upkeep prunes erasures after a day.
    sql: `
      alter table memory.conversations add column last_turn_at timestamptz;
      update memory.conversations c
         set last_turn_at = coalesce((select max(h.created_at) from memory.conversation_history h where h.conversation_id = c.id), c.created_at);
      alter table memory.conversations alter column last_turn_at set default now(), alter column last_turn_at set not null;
      create index conversations_user_recent on memory.conversations (user_id, last_turn_at desc, id desc);

      create table memory.erasures (
        user_id text not null,
        channel text not null,
        thread_id text not null,
        erased_at timestamptz not null default now(),
        primary key (user_id, channel, thread_id)
      );
      create index erasures_age on memory.erasures (erased_at);
    `,
  },
];
