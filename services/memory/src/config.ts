import { commonFields } from '@talon/kit/service';
import { databaseUrl, decimal, int, loadConfig, type ConfigOf } from '@talon/kit/config';
import { checkEmbeddingConfig, embeddingModelFields } from '@talon/embed';

export function memorySpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('memory', env),
    ...embeddingModelFields(),
    databaseUrl: databaseUrl('MEMORY_DATABASE_URL', {
      doc: "PostgreSQL URL for memory's own role and schema (talon up derives it from TALON_DATABASE_URL or the embedded database).",
    }),
    dbPoolMax: int('MEMORY_DB_POOL_MAX', {
      doc: 'Maximum PostgreSQL connections held by one memory replica.',
      default: 8,
      min: 1,
      max: 200,
    }),
    maxTurnBytes: int('MEMORY_MAX_TURN_BYTES', {
      doc: 'Largest single turn memory accepts; larger ones are refused with invalid_argument.',
      default: 256 * 1024,
      min: 1024,
    }),
    maxDocumentBytes: int('MEMORY_MAX_DOCUMENT_BYTES', {
      doc: 'Largest document UpsertDocument accepts (it is chunked); larger ones are refused with payload_too_large.',
      default: 1024 * 1024,
      min: 1024,
      max: 3 * 1024 * 1024,
    }),
    chunkChars: int('MEMORY_CHUNK_CHARS', {
      doc: 'Target size of one searchable chunk, in characters (documents and long turns are split at paragraph, sentence or word boundaries).',
      default: 1000,
      min: 100,
      max: 8000,
    }),
    chunkOverlapChars: int('MEMORY_CHUNK_OVERLAP_CHARS', {
      doc: 'Characters repeated at the start of the next chunk so a fact spanning a boundary stays findable.',
      default: 150,
      min: 0,
      max: 2000,
    }),
    searchMaxLimit: int('MEMORY_SEARCH_MAX_LIMIT', {
      doc: 'Most hits one Search returns (larger requested limits are capped).',
      default: 50,
      min: 1,
      max: 500,
    }),
    searchCandidates: int('MEMORY_SEARCH_CANDIDATES', {
      doc: 'Candidates taken from each half (full text, vector) before reciprocal rank fusion.',
      default: 40,
      min: 1,
      max: 1000,
    }),
    textMaxTermFreq: decimal('MEMORY_TEXT_MAX_TERM_FREQ', {
      doc: 'Query terms found in more than this fraction of all chunks (from ANALYZE statistics) are left out of the full-text half: they carry little signal and would make it rank most rows. 1 keeps every term.',
      default: 0.01,
      min: 0,
      max: 1,
    }),
    rrfK: int('MEMORY_RRF_K', {
      doc: 'Reciprocal rank fusion constant k in 1/(k + rank).',
      default: 60,
      min: 1,
      max: 1000,
    }),
    hnswM: int('MEMORY_HNSW_M', {
      doc: 'HNSW graph degree (m) of the vector index; changing it rebuilds the index in the background. 24 with ef_construction 128 reached recall@10 0.96 at 100k chunks (bench/memory.ts).',
      default: 24,
      min: 2,
      max: 100,
    }),
    hnswEfConstruction: int('MEMORY_HNSW_EF_CONSTRUCTION', {
      doc: 'HNSW ef_construction of the vector index; changing it rebuilds the index in the background.',
      default: 128,
      min: 4,
      max: 1000,
    }),
    hnswEfSearch: int('MEMORY_HNSW_EF_SEARCH', {
      doc: 'HNSW ef_search per query (recall/latency trade-off; at least MEMORY_SEARCH_CANDIDATES is sensible).',
      default: 100,
      min: 1,
      max: 1000,
    }),
    hnswBuildMemoryMb: int('MEMORY_HNSW_BUILD_MEMORY_MB', {
      doc: 'maintenance_work_mem for building the vector index (a graph that fits builds much faster).',
      default: 256,
      min: 16,
      max: 16384,
    }),
    reembedBatch: int('MEMORY_REEMBED_BATCH', {
      doc: 'Chunks embedded per transaction by the background re-embedding and history indexing.',
      default: 128,
      min: 1,
      max: 5000,
    }),
    reembedIdleMs: int('MEMORY_REEMBED_IDLE_MS', {
      doc: 'Pause between checks for chunks to (re-)embed once none are left.',
      default: 60_000,
      min: 100,
    }),
  };
}

export type MemoryConfig = ConfigOf<ReturnType<typeof memorySpec>>;

export function loadMemoryConfig(env: Record<string, string | undefined> = process.env): MemoryConfig {
  const cfg = loadConfig('memory', memorySpec(env), env);
  checkEmbeddingConfig('memory', cfg);
  return cfg;
}
