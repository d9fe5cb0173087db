export * from './types.ts';
export * from './hashed-lexical.ts';
export * from './openai.ts';
export * from './config.ts';
