// Static files of the web UI (services/gateway/public), read once at boot.
// The page talks only to its own origin (CSP connect-src 'self'); it never reads
// a connection target or a token from its URL. The token is typed by the user and
// kept in sessionStorage for the tab only; it travels in the Authorization header
// (HTTP) or the first WebSocket message, never in a URL.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const PUBLIC = join(import.meta.dirname, '..', 'public');

export interface StaticAsset {
  body: Buffer;
  type: string;
}

const FILES: ReadonlyArray<[string, string, string]> = [
  ['/', 'index.html', 'text/html; charset=utf-8'],
  // ES modules: app.js imports markdown.js (script-src 'self' covers both).
  ['/app.js', 'app.js', 'text/javascript; charset=utf-8'],
  ['/markdown.js', 'markdown.js', 'text/javascript; charset=utf-8'],
  ['/app.css', 'app.css', 'text/css; charset=utf-8'],
];

export function loadUi(): ReadonlyMap<string, StaticAsset> {
  return new Map(FILES.map(([path, file, type]) => [path, { body: readFileSync(join(PUBLIC, file)), type }]));
}

export const UI_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** Headers of every UI response: no framing, no cross-origin embedding, nothing beyond our own origin. */
export const uiHeaders: Record<string, string> = {
  'content-security-policy': UI_CSP,
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};
