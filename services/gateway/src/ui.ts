// Static files of the web chat UI (services/gateway/public), read once at boot.
// The token is typed by the user and kept in sessionStorage for the tab only; it
// travels in the Authorization header of same-origin requests, never in a URL.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const PUBLIC = join(import.meta.dirname, '..', 'public');

export interface StaticAsset {
  body: Buffer;
  type: string;
}

export function loadUi(): ReadonlyMap<string, StaticAsset> {
  return new Map([
    ['/', { body: readFileSync(join(PUBLIC, 'index.html')), type: 'text/html; charset=utf-8' }],
    ['/app.js', { body: readFileSync(join(PUBLIC, 'app.js')), type: 'text/javascript; charset=utf-8' }],
  ]);
}

export const UI_CSP =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
