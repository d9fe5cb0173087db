export * from './platform/platform.ts';
export * from './tokens.ts';
