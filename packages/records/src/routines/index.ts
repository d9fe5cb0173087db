// talon_routines, talon_routine_runs: turns that start on a schedule, and their firings.
export * from './rules.ts';
export * from './events.ts';
export { Routines, RoutineRuns } from './store.ts';
