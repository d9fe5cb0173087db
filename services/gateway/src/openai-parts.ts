// The OpenAI Chat Completions request fields beyond plain text: the client's function
// tools and tool_choice, assistant `tool_calls` and tool `tool_call_id` in the history,
// and image parts. Pure. Every refusal is OpenAI's 400 shape: `param` names the public
// field (`tools[0].function.name`), `code` says what is wrong with it. Talon never runs
// a client tool: the calls the model asks for go back to the client.
import { TalonError, type ErrorCode } from '@talon/kit/errors';
import type { ClientTool, ClientToolCall, ClientTools, ImagePart } from '@talon/proto';

/** OpenAI's rule for a function name. */
export const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
export const MAX_TOOLS = 128;
export const MAX_TOOL_DESCRIPTION_CHARS = 8192;
/** One tool's parameters schema, as JSON. */
export const MAX_TOOL_SCHEMA_BYTES = 64 * 1024;
/** Calls in one assistant message of the history. */
export const MAX_TOOL_CALLS = 128;
const MAX_CALL_ID_CHARS = 256;
/** Default cap of one decoded data: image (GATEWAY_API_MAX_IMAGE_BYTES). */
export const DEFAULT_MAX_IMAGE_BYTES = 2 * 1024 * 1024;
const MAX_IMAGE_URL_CHARS = 2048;
const IMAGE_DETAILS = ['auto', 'low', 'high'];

/** Leading bytes of each accepted image type: a data: URL must hold what it says it holds. */
const IMAGE_MAGIC: Readonly<Record<string, (b: Buffer) => boolean>> = {
  'image/png': (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  'image/jpeg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  'image/gif': (b) => ['GIF87a', 'GIF89a'].includes(b.subarray(0, 6).toString('latin1')),
  'image/webp': (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
};
const DATA_URL = /^data:(image\/[a-z]+);base64,([A-Za-z0-9+/]*={0,2})$/;

/** A 400 naming the field at fault, OpenAI style. */
export function invalidField(param: string, message: string, code: ErrorCode = 'invalid_value'): TalonError {
  return new TalonError(code, `Invalid '${param}': ${message}`, { param });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function functionName(v: unknown, param: string): string {
  if (typeof v !== 'string' || !TOOL_NAME.test(v))
    throw invalidField(param, 'a function name must be 1-64 characters of a-z, A-Z, 0-9, _ and -');
  return v;
}

function parseTool(raw: unknown, i: number): ClientTool {
  const at = `tools[${i}]`;
  if (!isObject(raw)) throw invalidField(at, 'must be an object {"type":"function","function":{…}}', 'invalid_argument');
  if (raw.type !== 'function') throw invalidField(`${at}.type`, 'only "function" tools are supported');
  const f = raw.function;
  if (!isObject(f)) throw invalidField(`${at}.function`, 'must be an object {"name","description","parameters"}', 'invalid_argument');
  const name = functionName(f.name, `${at}.function.name`);
  if (f.description !== undefined && f.description !== null && typeof f.description !== 'string')
    throw invalidField(`${at}.function.description`, 'must be a string');
  const description = typeof f.description === 'string' ? f.description : '';
  if (description.length > MAX_TOOL_DESCRIPTION_CHARS)
    throw invalidField(`${at}.function.description`, `at most ${MAX_TOOL_DESCRIPTION_CHARS} characters`);
  let schema: Record<string, unknown> = { type: 'object', properties: {} };
  if (f.parameters !== undefined && f.parameters !== null) {
    if (!isObject(f.parameters) || f.parameters.type !== 'object')
      throw invalidField(`${at}.function.parameters`, 'must be a JSON Schema object schema ({"type":"object",…})');
    schema = f.parameters;
  }
  const parametersJson = JSON.stringify(schema);
  if (Buffer.byteLength(parametersJson) > MAX_TOOL_SCHEMA_BYTES)
    throw invalidField(`${at}.function.parameters`, `the schema is larger than ${MAX_TOOL_SCHEMA_BYTES} bytes`);
  return { name, description, parametersJson };
}

function parseChoice(raw: unknown, names: ReadonlySet<string>): string {
  if (raw === undefined || raw === null) return '';
  if (raw === 'auto' || raw === 'none' || raw === 'required') return raw;
  if (isObject(raw) && raw.type === 'function' && isObject(raw.function)) {
    const name = functionName(raw.function.name, 'tool_choice.function.name');
    if (!names.has(name)) throw invalidField('tool_choice.function.name', `no tool named ${name} is in tools`);
    return `function:${name}`;
  }
  throw invalidField('tool_choice', 'must be "auto", "none", "required" or {"type":"function","function":{"name":…}}');
}

/** `tools` and `tool_choice` of a request; undefined when it offers no tools. */
export function parseClientTools(tools: unknown, toolChoice: unknown): ClientTools | undefined {
  if (tools === undefined || tools === null) {
    if (toolChoice !== undefined && toolChoice !== null && toolChoice !== 'none' && toolChoice !== 'auto')
      throw invalidField('tool_choice', 'is only allowed when tools are given');
    return undefined;
  }
  if (!Array.isArray(tools)) throw invalidField('tools', 'must be an array of function tools', 'invalid_argument');
  if (tools.length === 0) throw invalidField('tools', 'must not be empty (leave it out to offer no tools)');
  if (tools.length > MAX_TOOLS) throw invalidField('tools', `at most ${MAX_TOOLS} tools per request`);
  const parsed = tools.map(parseTool);
  const names = new Set<string>();
  for (const [i, t] of parsed.entries()) {
    if (names.has(t.name)) throw invalidField(`tools[${i}].function.name`, `${t.name} is the name of an earlier tool`);
    names.add(t.name);
  }
  return { tools: parsed, choice: parseChoice(toolChoice, names) };
}

/** An assistant message's `tool_calls` from the history; arguments stay the model's raw text. */
export function parseToolCalls(raw: unknown, i: number): ClientToolCall[] {
  const at = `messages[${i}].tool_calls`;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalidField(at, 'must be an array', 'invalid_argument');
  if (raw.length > MAX_TOOL_CALLS) throw invalidField(at, `at most ${MAX_TOOL_CALLS} calls`);
  return raw.map((c: unknown, j): ClientToolCall => {
    if (!isObject(c) || !isObject(c.function)) throw invalidField(`${at}[${j}]`, 'must be {"id","type":"function","function":{…}}');
    if (c.type !== undefined && c.type !== 'function') throw invalidField(`${at}[${j}].type`, 'only "function" calls are supported');
    if (typeof c.id !== 'string' || c.id === '' || c.id.length > MAX_CALL_ID_CHARS)
      throw invalidField(`${at}[${j}].id`, `must be a string of 1-${MAX_CALL_ID_CHARS} characters`);
    const name = functionName(c.function.name, `${at}[${j}].function.name`);
    const args = c.function.arguments;
    if (args !== undefined && typeof args !== 'string') throw invalidField(`${at}[${j}].function.arguments`, 'must be a string');
    return { id: c.id, name, arguments: args ?? '' };
  });
}

/** A tool message's `tool_call_id`; '' when absent (the older form: wrapped as untrusted user text). */
export function parseToolCallId(raw: unknown, i: number): string {
  if (raw === undefined || raw === null) return '';
  if (typeof raw !== 'string' || raw === '' || raw.length > MAX_CALL_ID_CHARS)
    throw invalidField(`messages[${i}].tool_call_id`, `must be a string of 1-${MAX_CALL_ID_CHARS} characters`);
  return raw;
}

/**
 * One `image_url` part: a base64 data: URL of a PNG, JPEG, GIF or WebP image (at most
 * maxBytes decoded, its bytes matching its type), or an https: URL the provider fetches.
 */
export function parseImagePart(raw: unknown, param: string, maxBytes: number): ImagePart {
  if (!isObject(raw)) throw invalidField(param, 'must be an object {"url","detail"?}', 'invalid_argument');
  const url = raw.url;
  const at = `${param}.url`;
  if (typeof url !== 'string') throw invalidField(at, 'must be a string');
  if (raw.detail !== undefined && (typeof raw.detail !== 'string' || !IMAGE_DETAILS.includes(raw.detail)))
    throw invalidField(`${param}.detail`, 'must be auto, low or high');
  const detail = typeof raw.detail === 'string' ? raw.detail : '';
  if (url.startsWith('data:')) {
    // Size before decoding: a huge value is refused without a copy of it.
    const comma = url.indexOf(',');
    const approx = comma < 0 ? 0 : Math.floor(((url.length - comma - 1) * 3) / 4);
    if (approx > maxBytes + 2) throw invalidField(at, `the image is larger than ${maxBytes} bytes`, 'image_too_large');
    const m = DATA_URL.exec(url);
    const check = m ? IMAGE_MAGIC[m[1]!] : undefined;
    if (!m || !check) throw invalidField(at, 'a data: URL must be base64 of an image/png, image/jpeg, image/gif or image/webp');
    const bytes = Buffer.from(m[2]!, 'base64');
    if (bytes.length > maxBytes) throw invalidField(at, `the image is larger than ${maxBytes} bytes`, 'image_too_large');
    if (!check(bytes)) throw invalidField(at, `the data is not a ${m[1]} image`);
    return { url, detail };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalidField(at, 'must be a data: URL or an https:// URL');
  }
  if (u.protocol !== 'https:') throw invalidField(at, 'must be a data: URL or an https:// URL');
  if (u.username || u.password) throw invalidField(at, 'must not carry credentials');
  if (url.length > MAX_IMAGE_URL_CHARS) throw invalidField(at, `at most ${MAX_IMAGE_URL_CHARS} characters`);
  return { url, detail };
}
