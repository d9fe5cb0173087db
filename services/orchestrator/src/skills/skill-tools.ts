// An offered skill as a tool: the model calls skill_<name> with arguments that
// passed the skill's input schema; the call goes to the sandbox pinned to the
// offered version, for the conversation's user (never a user id from the model).
import { ToolError, type Tool } from '../tools/registry.ts';
import type { CatalogSkill } from './catalog.ts';
import { describeSkillError, type SkillInvoker } from './invoke.ts';

export function skillTool(s: CatalogSkill, invoker: Pick<SkillInvoker, 'invoke'>): Tool {
  return {
    name: s.toolName,
    description: s.description,
    parameters: s.parameters,
    meta: { skill: s.name, version: s.version, requiresApproval: s.requiresApproval },
    async handler(args, ctx) {
      const res = await invoker.invoke({
        invocationId: `${ctx.inboundId}:${ctx.callIndex}`,
        skill: s.name,
        version: s.version,
        inputJson: JSON.stringify(args),
        userId: ctx.conversation.userId,
        userApproved: ctx.userApproved === true,
        timeoutMs: s.timeoutMs,
        deadline: ctx.deadline,
        signal: ctx.signal,
      });
      if (res.error) throw new ToolError(describeSkillError(s.name, s.version, res.error.code, res.error.message), res.error.code);
      return res.output;
    },
  };
}
