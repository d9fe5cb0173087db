// talon_users, talon_tokens, talon_pairings: who may use Talon and how they prove it.
export { USER_ID, USER_ID_RULE, isUserId, Users } from './users.ts';
export { Tokens, TokenError, tokenInfo, scopeName, type TokenInfo, type TokenScope, type StoredToken } from './tokens.ts';
export { Pairings, CODE, CODE_RULE, newPairingCode, normalizeCode, displayCode, type UserLookup } from './pairings.ts';
