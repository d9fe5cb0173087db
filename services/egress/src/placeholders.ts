// Secret placeholders `{{secret:NAME}}`: where they appear in a request (which
// decides the placement the vault policy must allow) and how a value is put in.
// Pure; no I/O.
import { PLACEHOLDER_PATTERN, PLACEHOLDER_START, schemePlaceholderPattern } from '@talon/kit/contracts';
import { Placement } from '@talon/proto';

// The placeholder grammar is a wire contract (packages/kit/src/contracts.ts).
export const PLACEHOLDER = PLACEHOLDER_PATTERN;
const ANY_PLACEHOLDER = PLACEHOLDER_START;
const BEARER_PLACEHOLDER = schemePlaceholderPattern('Bearer');
const BASIC_PLACEHOLDER = schemePlaceholderPattern('Basic');

export interface PlaceholderUse {
  name: string;
  placement: Placement;
  /** Header name (lower case) for HEADER, parameter name for QUERY. */
  field: string;
}

export class PlaceholderError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'PlaceholderError';
    this.reason = reason;
  }
}

export function hasPlaceholderSyntax(text: string): boolean {
  return ANY_PLACEHOLDER.test(text);
}

/** Bytes \s matches in a latin1 reading (tab, LF, VT, FF, CR, space, no-break space). */
const SPACE_BYTES = new Set([9, 10, 11, 12, 13, 32, 0xa0]);
const SECRET_COLON = Buffer.from('secret:', 'latin1');

/**
 * hasPlaceholderSyntax of the bytes read as latin1, without building the string: a large
 * body is searched for `{{` natively and only those spots are looked at (the string and the
 * regex over it cost about a tenth of egress's CPU for a 256 KiB body).
 */
export function bytesHavePlaceholderSyntax(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = buf.indexOf('{{'); i !== -1; i = buf.indexOf('{{', i + 1)) {
    let j = i + 2;
    while (j < buf.length && SPACE_BYTES.has(buf[j]!)) j++;
    if (j + SECRET_COLON.length > buf.length) continue;
    let same = true;
    for (let k = 0; k < SECRET_COLON.length && same; k++) {
      const b = buf[j + k]!;
      const e = SECRET_COLON[k]!;
      // Case-insensitive like PLACEHOLDER_START (/i): a lower-case ASCII letter also matches its capital.
      same = b === e || (e >= 0x61 && e <= 0x7a && b === e - 0x20);
    }
    if (same) return true;
  }
  return false;
}

function namesIn(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

/** A placeholder-looking string that is not a valid placeholder is refused rather than sent as-is. */
function assertWellFormed(text: string, where: string): void {
  const stripped = text.replace(PLACEHOLDER, '');
  if (hasPlaceholderSyntax(stripped)) {
    throw new PlaceholderError(
      'malformed_placeholder',
      `malformed secret placeholder in ${where}; use {{secret:name}} with name of a-z, 0-9, _`,
    );
  }
}

export interface RequestParts {
  url: URL;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

/** Finds every placeholder and the placement it occupies. */
export function findPlaceholders(req: RequestParts): PlaceholderUse[] {
  const uses: PlaceholderUse[] = [];
  // URL path: each segment may carry placeholders (e.g. Telegram's /bot{{secret:token}}/sendMessage).
  const rawPath = decodeURIComponentSafe(req.url.pathname);
  assertWellFormed(rawPath, 'the URL path');
  for (const name of namesIn(rawPath)) uses.push({ name, placement: Placement.PLACEMENT_PATH, field: '' });
  for (const [key, value] of req.url.searchParams) {
    assertWellFormed(key, 'a query parameter name');
    if (namesIn(key).length > 0)
      throw new PlaceholderError('placeholder_in_query_name', 'secret placeholders may appear in query values, not names');
    assertWellFormed(value, `query parameter ${key}`);
    for (const name of namesIn(value)) uses.push({ name, placement: Placement.PLACEMENT_QUERY, field: key });
  }
  if (req.url.hash && hasPlaceholderSyntax(decodeURIComponentSafe(req.url.hash))) {
    throw new PlaceholderError('placeholder_in_fragment', 'secret placeholders are not allowed in the URL fragment');
  }
  for (const [rawName, rawValue] of Object.entries(req.headers)) {
    if (rawValue === undefined) continue;
    const name = rawName.toLowerCase();
    for (const value of Array.isArray(rawValue) ? rawValue : [rawValue]) {
      assertWellFormed(value, `header ${name}`);
      const found = namesIn(value);
      if (found.length === 0) continue;
      if (name === 'authorization' || name === 'proxy-authorization') {
        if (name === 'proxy-authorization')
          throw new PlaceholderError('placeholder_in_proxy_auth', 'secret placeholders are not allowed in Proxy-Authorization');
        const bearer = BEARER_PLACEHOLDER.exec(value.trim());
        const basic = BASIC_PLACEHOLDER.exec(value.trim());
        if (bearer) uses.push({ name: bearer[1]!, placement: Placement.PLACEMENT_BEARER, field: '' });
        else if (basic) uses.push({ name: basic[1]!, placement: Placement.PLACEMENT_BASIC, field: '' });
        else for (const n of found) uses.push({ name: n, placement: Placement.PLACEMENT_HEADER, field: name });
      } else {
        for (const n of found) uses.push({ name: n, placement: Placement.PLACEMENT_HEADER, field: name });
      }
    }
  }
  // Bodies are scanned, never filled: a placeholder there would let content choose where a secret goes.
  if (req.body.length > 0 && bytesHavePlaceholderSyntax(req.body.subarray(0, 1 << 20))) {
    throw new PlaceholderError(
      'placeholder_in_body',
      'secret placeholders are only filled in headers, query values and the URL path, never in a body',
    );
  }
  return uses;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function hasControlChars(v: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return /[\u0000-\u001f\u007f]/.test(v);
}

/**
 * Returns a new URL and header set with each placeholder replaced by its value,
 * encoded for its placement. Values containing control characters are refused
 * for headers (header injection).
 */
export function applySecrets(
  req: { url: URL; headers: Record<string, string | string[]> },
  values: ReadonlyMap<string, Buffer>,
): { url: URL; headers: Record<string, string | string[]> } {
  const text = (name: string): string => {
    const v = values.get(name);
    if (!v) throw new PlaceholderError('secret_unresolved', `secret ${name} was not resolved`);
    return v.toString('utf8');
  };
  const url = new URL(req.url.toString());
  // Path: replace in the decoded path, then re-encode each segment.
  const decodedPath = decodeURIComponentSafe(url.pathname);
  if (namesIn(decodedPath).length > 0) {
    const segments = decodedPath.split('/').map((seg) => encodeURIComponent(seg.replace(PLACEHOLDER, (_m, n: string) => text(n))));
    url.pathname = segments.join('/');
  }
  const params = [...url.searchParams];
  if (params.some(([, v]) => hasPlaceholderSyntax(v))) {
    const next = new URLSearchParams();
    for (const [k, v] of params)
      next.append(
        k,
        v.replace(PLACEHOLDER, (_m, n: string) => text(n)),
      );
    url.search = next.toString();
  }
  const headers: Record<string, string | string[]> = {};
  for (const [k, raw] of Object.entries(req.headers)) {
    const fill = (value: string): string => {
      if (!hasPlaceholderSyntax(value)) return value;
      const basic = BASIC_PLACEHOLDER.exec(value.trim());
      if (k.toLowerCase() === 'authorization' && basic) return `Basic ${Buffer.from(text(basic[1]!), 'utf8').toString('base64')}`;
      const out = value.replace(PLACEHOLDER, (_m, n: string) => {
        const v = text(n);
        if (hasControlChars(v))
          throw new PlaceholderError('secret_not_header_safe', `secret ${n} contains control characters and cannot be sent in a header`);
        return v;
      });
      return out;
    };
    headers[k] = Array.isArray(raw) ? raw.map(fill) : fill(raw);
  }
  return { url, headers };
}

/**
 * The placeholders of a WebSocket text frame the caller sends (placement WEBSOCKET_FRAME).
 * A binary frame never carries one (refused, like a body): its encoding is not ours to know.
 */
export function findFramePlaceholders(frame: string | Uint8Array): PlaceholderUse[] {
  if (typeof frame !== 'string') {
    if (bytesHavePlaceholderSyntax(frame))
      throw new PlaceholderError('placeholder_in_binary_frame', 'secret placeholders are filled only in WebSocket text frames');
    return [];
  }
  if (!hasPlaceholderSyntax(frame)) return [];
  assertWellFormed(frame, 'the WebSocket frame');
  return [...new Set(namesIn(frame))].map((name) => ({ name, placement: Placement.PLACEMENT_WEBSOCKET_FRAME, field: '' }));
}

/**
 * The frame with each placeholder replaced by its value: JSON-string-escaped when the frame
 * is JSON (the placeholder stands inside a string literal there), as-is otherwise.
 */
export function applyFrameSecrets(frame: string, values: ReadonlyMap<string, Buffer>): string {
  let json = false;
  try {
    JSON.parse(frame);
    json = true;
  } catch {
    json = false;
  }
  return frame.replace(PLACEHOLDER, (_m, n: string) => {
    const v = values.get(n);
    if (!v) throw new PlaceholderError('secret_unresolved', `secret ${n} was not resolved`);
    const text = v.toString('utf8');
    return json ? JSON.stringify(text).slice(1, -1) : text;
  });
}
