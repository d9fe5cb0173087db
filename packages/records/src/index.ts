// @talon/records: the one owner of every NATS KV record more than one process
// reads or writes. Each module holds a record's rules (pure) and a typed repository
// over its bucket; the CLI, the gateway's operator API and the services all use it,
// and a service that re-checks a record (defence in depth) re-checks with this code.
//
//   ./skills     talon_skills, talon_skill_binaries   (src/skills/)
//   ./identity   talon_users, talon_tokens, talon_pairings (src/identity/)
//   ./approvals  talon_approvals                       (src/approvals.ts)
//   ./routines   talon_routines, talon_routine_runs    (src/routines/)
//   ./mcp        talon_mcp                             (src/mcp/)
//   ./agents     talon_agents                          (src/agents/)
//   kv.ts        liveEntry and consumer-free bucket access, for every bucket
export * from './kv.ts';
export * from './approvals.ts';
export * from './identity/index.ts';
export {
  statusName,
  compareVersions,
  approvalWithinRequest,
  approvalStanding,
  skillStanding,
  publisherTrusts,
  recordPublisherKeyId,
  type SkillStanding,
} from './skills/rules.ts';
