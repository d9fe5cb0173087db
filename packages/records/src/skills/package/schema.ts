// The subset of JSON Schema a skill's input schema may use, and a validator for it.
// Install refuses keywords outside the subset, so every constraint a schema states
// is one the sandbox actually enforces (no silently ignored `oneOf`).
import { SkillPackageError } from './errors.ts';

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', 'default', 'examples', 'format', '$comment', 'deprecated']);
const KEYWORDS = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'const',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
]);
const TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);
const MAX_DEPTH = 16;

type Schema = Record<string, unknown>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws SkillPackageError('schema_unsupported') unless `schema` uses only the supported subset. */
export function checkSchemaSupported(schema: unknown, path = '#', depth = 0): void {
  const fail = (msg: string): never => {
    throw new SkillPackageError('schema_unsupported', `inputSchema at ${path}: ${msg}`);
  };
  if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
  if (!isObject(schema)) fail('must be a JSON object');
  const s = schema as Schema;
  if (depth === 0 && s.type !== 'object') fail('the top-level schema must have "type": "object" (tool inputs are objects)');
  for (const [k, v] of Object.entries(s)) {
    if (ANNOTATIONS.has(k)) continue;
    if (!KEYWORDS.has(k)) {
      fail(
        `keyword "${k}" is not supported; Talon enforces only ${[...KEYWORDS].join(', ')} (and ignores the annotations ${[...ANNOTATIONS].join(', ')})`,
      );
    }
    switch (k) {
      case 'type': {
        const list = Array.isArray(v) ? v : [v];
        if (list.length === 0 || !list.every((t) => typeof t === 'string' && TYPES.has(t)))
          fail(`"type" must be one of ${[...TYPES].join(', ')}`);
        break;
      }
      case 'properties':
        if (!isObject(v)) fail('"properties" must be an object');
        for (const [name, sub] of Object.entries(v as Schema)) checkSchemaSupported(sub, `${path}/properties/${name}`, depth + 1);
        break;
      case 'required':
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail('"required" must be a list of property names');
        break;
      case 'additionalProperties':
        if (typeof v !== 'boolean') checkSchemaSupported(v, `${path}/additionalProperties`, depth + 1);
        break;
      case 'items':
        checkSchemaSupported(v, `${path}/items`, depth + 1);
        break;
      case 'enum':
        if (!Array.isArray(v) || v.length === 0) fail('"enum" must be a non-empty list');
        break;
      case 'const':
        break;
      case 'pattern':
        if (typeof v !== 'string') fail('"pattern" must be a string');
        try {
          new RegExp(v as string, 'u');
        } catch (err) {
          fail(`"pattern" is not a valid regular expression (${(err as Error).message})`);
        }
        break;
      default:
        if (typeof v !== 'number' || !Number.isFinite(v)) fail(`"${k}" must be a number`);
    }
  }
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(expected: string, v: unknown): boolean {
  const actual = typeOf(v);
  return expected === actual || (expected === 'number' && actual === 'integer');
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return ka.length === kb.length && ka.every((k) => deepEqual((a as Schema)[k], (b as Schema)[k]));
}

/**
 * Validates `value` against a schema already accepted by checkSchemaSupported.
 * Returns up to `limit` problems as "path: message" strings; empty means valid.
 */
export function validateInput(schema: unknown, value: unknown, limit = 5): string[] {
  const problems: string[] = [];
  const walk = (s: Schema, v: unknown, path: string): void => {
    if (problems.length >= limit) return;
    const add = (m: string) => problems.push(`${path || '/'}: ${m}`);
    if (s.type !== undefined) {
      const types = (Array.isArray(s.type) ? s.type : [s.type]) as string[];
      if (!types.some((t) => typeMatches(t, v))) {
        add(`expected ${types.join(' or ')}, got ${typeOf(v)}`);
        return;
      }
    }
    if (s.const !== undefined && !deepEqual(s.const, v)) add(`must equal ${JSON.stringify(s.const)}`);
    if (Array.isArray(s.enum) && !s.enum.some((e) => deepEqual(e, v))) add(`must be one of ${JSON.stringify(s.enum).slice(0, 200)}`);
    if (typeof v === 'number') {
      if (typeof s.minimum === 'number' && v < s.minimum) add(`must be >= ${s.minimum}`);
      if (typeof s.maximum === 'number' && v > s.maximum) add(`must be <= ${s.maximum}`);
      if (typeof s.exclusiveMinimum === 'number' && v <= s.exclusiveMinimum) add(`must be > ${s.exclusiveMinimum}`);
      if (typeof s.exclusiveMaximum === 'number' && v >= s.exclusiveMaximum) add(`must be < ${s.exclusiveMaximum}`);
    }
    if (typeof v === 'string') {
      const len = [...v].length;
      if (typeof s.minLength === 'number' && len < s.minLength) add(`must be at least ${s.minLength} characters`);
      if (typeof s.maxLength === 'number' && len > s.maxLength) add(`must be at most ${s.maxLength} characters`);
      if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) add(`must match ${s.pattern}`);
    }
    if (Array.isArray(v)) {
      if (typeof s.minItems === 'number' && v.length < s.minItems) add(`must have at least ${s.minItems} items`);
      if (typeof s.maxItems === 'number' && v.length > s.maxItems) add(`must have at most ${s.maxItems} items`);
      if (isObject(s.items)) v.forEach((item, i) => walk(s.items as Schema, item, `${path}/${i}`));
    }
    if (isObject(v)) {
      const props = isObject(s.properties) ? (s.properties as Record<string, Schema>) : {};
      if (Array.isArray(s.required))
        for (const r of s.required as string[]) if (!Object.hasOwn(v, r)) add(`missing required property "${r}"`);
      for (const [k, item] of Object.entries(v)) {
        const p = `${path}/${k}`;
        if (Object.hasOwn(props, k)) walk(props[k]!, item, p);
        else if (s.additionalProperties === false) {
          if (problems.length < limit) problems.push(`${p}: property "${k}" is not allowed`);
        } else if (isObject(s.additionalProperties)) walk(s.additionalProperties as Schema, item, p);
      }
    }
  };
  walk(schema as Schema, value, '');
  return problems.slice(0, limit);
}
