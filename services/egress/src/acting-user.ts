// The end user a request is made for (x-talon-user, EGRESS_USER_HEADER): egress
// records it in the decision so an operator sees whose turn or skill call it was.
// Only workloads that act for users may say so — the orchestrator (a turn's LLM and
// embeddings calls), the sandbox (a skill's calls during an invocation) and the
// gateway (channel deliveries). It is attribution, not authority: it grants nothing,
// and egress never forwards it upstream. Pure.
import { EGRESS_USER_HEADER } from '@talon/kit/egress';
import { USER_ID, USER_ID_RULE } from '@talon/records/identity';

export { EGRESS_USER_HEADER };

/** Authenticated principals (before any x-talon-skill delegation) that may name a user. */
export const USER_DELEGATES: readonly string[] = ['orchestrator', 'sandbox', 'gateway'];

export type ActingUser = { user: string } | { refused: 'user_header_not_allowed' | 'bad_user_header'; message: string };

/**
 * The user named by the header value of a request from `principal` (its own
 * identity, before it acts for a skill): '' when none is named; a refusal when the
 * principal may not name one, or the value (repeated headers included) is not a user id.
 */
export function actingUser(
  principal: string,
  value: string | string[] | undefined,
  delegates: readonly string[] = USER_DELEGATES,
): ActingUser {
  if (value === undefined) return { user: '' };
  if (!delegates.includes(principal))
    return { refused: 'user_header_not_allowed', message: `${principal} may not name the user it acts for (${EGRESS_USER_HEADER})` };
  if (typeof value !== 'string' || !USER_ID.test(value))
    return { refused: 'bad_user_header', message: `${EGRESS_USER_HEADER} must be one Talon user id (${USER_ID_RULE})` };
  return { user: value };
}
