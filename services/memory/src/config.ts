import { commonFields, int, loadConfig, str, type ConfigOf } from '@talon/kit';

export function memorySpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('memory', env),
    databaseUrl: str('MEMORY_DATABASE_URL', {
      doc: "PostgreSQL URL for memory's own role and schema (talon up derives it from TALON_DATABASE_URL or the embedded database).",
      secret: true,
      pattern: /^postgres(ql)?:\/\//,
      expect: 'a postgres:// URL',
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
  };
}

export type MemoryConfig = ConfigOf<ReturnType<typeof memorySpec>>;

export function loadMemoryConfig(env: Record<string, string | undefined> = process.env): MemoryConfig {
  return loadConfig('memory', memorySpec(env), env);
}
