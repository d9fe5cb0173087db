export * from './fake-llm.ts';
export * from './harness.ts';
export * from './ports.ts';
export * from './database.ts';
export * from './egress-client.ts';
export * from './fake-dns.ts';
export * from './mitmdump.ts';
export * from './fake-otlp.ts';
