// @talon/records/mcp: talon_mcp — remote MCP servers, their allowlists and approved tools.
export * from './rules.ts';
export * from './store.ts';
