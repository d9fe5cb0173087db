// A strict parser of the Prometheus text exposition format (0.0.4), for tests that
// scrape a service's /metrics: a malformed line, a bad escape, a sample before its
// family's TYPE or a TYPE given twice throws, so a serialisation bug fails the test.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** Family name → declared type (`counter`, `gauge`, `histogram`, ...). */
  types: Map<string, string>;
  help: Map<string, string>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(raw: string, line: string): number {
  if (raw === '+Inf' || raw === 'Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  if (raw === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) throw new Error(`bad sample value in: ${line}`);
  return Number(raw);
}

/** The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count` belong to it). */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const t = types.get(base);
    if (t === 'histogram' || t === 'summary') return base;
  }
  return undefined;
}

function parseLabels(s: string, line: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1; // after '{'
  for (;;) {
    while (s[i] === ' ') i++;
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    const m = LABEL_NAME.exec(s.slice(i));
    if (!m) throw new Error(`bad label name in: ${line}`);
    const key = m[0];
    i += key.length;
    if (s[i] !== '=' || s[i + 1] !== '"') throw new Error(`expected ="..." after ${key} in: ${line}`);
    i += 2;
    let value = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '"') break;
      if (c === '\\') {
        const n = s[i + 1];
        if (n === '\\') value += '\\';
        else if (n === '"') value += '"';
        else if (n === 'n') value += '\n';
        else throw new Error(`bad escape \\${n ?? ''} in: ${line}`);
        i += 2;
        continue;
      }
      if (c === '\n') throw new Error(`raw newline in a label value: ${line}`);
      value += c;
      i++;
    }
    i++;
    if (key in labels) throw new Error(`label ${key} given twice in: ${line}`);
    labels[key] = value;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') throw new Error(`expected , or } in: ${line}`);
  }
}

/** Parses an exposition; throws on anything malformed. */
export function parsePrometheus(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  /** Families (or bare names) that have samples already. */
  const sampled = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) continue; // a comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name!) || METRIC_NAME.exec(name!)![0] !== name) throw new Error(`bad metric name in: ${line}`);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest.trim())) throw new Error(`bad type in: ${line}`);
        if (types.has(name!)) throw new Error(`TYPE of ${name} given twice`);
        if (sampled.has(name!)) throw new Error(`TYPE of ${name} after its samples`);
        types.set(name!, rest.trim());
      } else {
        help.set(name!, rest);
      }
      continue;
    }
    const nm = METRIC_NAME.exec(line);
    if (!nm) throw new Error(`bad sample line: ${line}`);
    const name = nm[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line));
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new Error(`bad sample line: ${line}`);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`bad timestamp in: ${line}`);
    samples.push({ name, labels, value: parseValue(parts[0]!, line) });
    sampled.add(familyOf(name, types) ?? name);
    for (const suffix of ['_bucket', '_sum', '_count']) if (name.endsWith(suffix)) sampled.add(name.slice(0, -suffix.length));
  }
  return { samples, types, help };
}

/** Sum of the samples named `name` whose labels include `match` (0 when there is none). */
export function sampleSum(exp: Exposition, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of exp.samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** GETs a /metrics URL and parses it (throws on a non-200 answer or a malformed exposition). */
export async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parsePrometheus(text);
}
