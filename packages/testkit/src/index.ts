export * from './fake-llm.ts';
export * from './harness.ts';
export * from './ports.ts';
export * from './database.ts';
