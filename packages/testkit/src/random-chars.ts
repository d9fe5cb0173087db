// Random identifiers in a fake's own alphabet (Mattermost ids, Matrix tokens): not for
// secrets (each byte modulo the alphabet's length is slightly biased), only for shapes.
import { randomBytes } from 'node:crypto';

/** `n` characters drawn from `alphabet`. */
export function randomChars(n: number, alphabet: string): string {
  return Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]!).join('');
}
