// @talon/records/agents: talon_agents — agent profiles (prompt, models, tools, memory, routes).
export * from './rules.ts';
export * from './store.ts';
