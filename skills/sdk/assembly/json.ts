// Minimal JSON for skills: a parser into JSONValue and small builders. Enough for
// tool inputs and API responses; depth-limited so hostile input cannot blow the stack.

export const JSON_NULL: i32 = 0;
export const JSON_BOOL: i32 = 1;
export const JSON_NUMBER: i32 = 2;
export const JSON_STRING: i32 = 3;
export const JSON_ARRAY: i32 = 4;
export const JSON_OBJECT: i32 = 5;

const MAX_DEPTH: i32 = 64;

export class JSONValue {
  kind: i32 = JSON_NULL;
  b: bool = false;
  n: f64 = 0;
  s: string = '';
  items: Array<JSONValue> = new Array<JSONValue>();
  keys: Array<string> = new Array<string>();

  isNull(): bool {
    return this.kind == JSON_NULL;
  }

  /** Member of an object (null when absent or not an object). */
  get(key: string): JSONValue | null {
    if (this.kind != JSON_OBJECT) return null;
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.items[i];
    return null;
  }

  /** Element of an array (null when out of range or not an array). */
  at(i: i32): JSONValue | null {
    if (this.kind != JSON_ARRAY || i < 0 || i >= this.items.length) return null;
    return this.items[i];
  }

  get length(): i32 {
    return this.kind == JSON_ARRAY || this.kind == JSON_OBJECT ? this.items.length : 0;
  }

  getString(key: string, fallback: string = ''): string {
    const v = this.get(key);
    return v != null && v.kind == JSON_STRING ? v.s : fallback;
  }

  getNumber(key: string, fallback: f64 = 0): f64 {
    const v = this.get(key);
    return v != null && v.kind == JSON_NUMBER ? v.n : fallback;
  }

  getBool(key: string, fallback: bool = false): bool {
    const v = this.get(key);
    return v != null && v.kind == JSON_BOOL ? v.b : fallback;
  }

  has(key: string): bool {
    return this.get(key) != null;
  }

  /** Serialises back to JSON text. */
  toString(): string {
    switch (this.kind) {
      case JSON_BOOL:
        return this.b ? 'true' : 'false';
      case JSON_NUMBER:
        return numberToJson(this.n);
      case JSON_STRING:
        return quote(this.s);
      case JSON_ARRAY: {
        const parts = new Array<string>();
        for (let i = 0; i < this.items.length; i++) parts.push(this.items[i].toString());
        return '[' + parts.join(',') + ']';
      }
      case JSON_OBJECT: {
        const parts = new Array<string>();
        for (let i = 0; i < this.items.length; i++) parts.push(quote(this.keys[i]) + ':' + this.items[i].toString());
        return '{' + parts.join(',') + '}';
      }
      default:
        return 'null';
    }
  }
}

/** Thrown-free parse result: check `error` before using `value`. */
export class ParseResult {
  value: JSONValue = new JSONValue();
  error: string = '';
  get ok(): bool {
    return this.error.length == 0;
  }
}

class Parser {
  text: string;
  pos: i32 = 0;
  error: string = '';

  constructor(text: string) {
    this.text = text;
  }

  fail(msg: string): JSONValue {
    if (this.error.length == 0) this.error = msg + ' at offset ' + this.pos.toString();
    return new JSONValue();
  }

  ws(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  value(depth: i32): JSONValue {
    if (depth > MAX_DEPTH) return this.fail('JSON nested too deeply');
    this.ws();
    if (this.pos >= this.text.length) return this.fail('unexpected end of JSON');
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) {
      const v = new JSONValue();
      v.kind = JSON_STRING;
      v.s = this.string();
      return v;
    }
    if (c == 0x74 && this.text.substr(this.pos, 4) == 'true') {
      this.pos += 4;
      const v = new JSONValue();
      v.kind = JSON_BOOL;
      v.b = true;
      return v;
    }
    if (c == 0x66 && this.text.substr(this.pos, 5) == 'false') {
      this.pos += 5;
      const v = new JSONValue();
      v.kind = JSON_BOOL;
      return v;
    }
    if (c == 0x6e && this.text.substr(this.pos, 4) == 'null') {
      this.pos += 4;
      return new JSONValue();
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    return this.fail('unexpected character');
  }

  number(): JSONValue {
    const start = this.pos;
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if ((c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45) this.pos++;
      else break;
    }
    const v = new JSONValue();
    v.kind = JSON_NUMBER;
    v.n = parseFloat(this.text.substring(start, this.pos));
    if (isNaN(v.n)) return this.fail('invalid number');
    return v;
  }

  hex4(): i32 {
    if (this.pos + 4 > this.text.length) return -1;
    let n: i32 = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.text.charCodeAt(this.pos + i);
      let d: i32 = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      if (d < 0) return -1;
      n = (n << 4) | d;
    }
    this.pos += 4;
    return n;
  }

  string(): string {
    this.pos++; // opening quote
    const parts = new Array<string>();
    let runStart = this.pos;
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c == 0x22) {
        parts.push(this.text.substring(runStart, this.pos));
        this.pos++;
        return parts.join('');
      }
      if (c == 0x5c) {
        parts.push(this.text.substring(runStart, this.pos));
        this.pos++;
        if (this.pos >= this.text.length) break;
        const e = this.text.charCodeAt(this.pos);
        this.pos++;
        if (e == 0x6e) parts.push('\n');
        else if (e == 0x74) parts.push('\t');
        else if (e == 0x72) parts.push('\r');
        else if (e == 0x62) parts.push('\b');
        else if (e == 0x66) parts.push('\f');
        else if (e == 0x75) {
          const code = this.hex4();
          if (code < 0) {
            this.fail('invalid \\u escape');
            return '';
          }
          parts.push(String.fromCharCode(code));
        } else parts.push(String.fromCharCode(e));
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.fail('unterminated string');
    return '';
  }

  array(depth: i32): JSONValue {
    this.pos++;
    const v = new JSONValue();
    v.kind = JSON_ARRAY;
    this.ws();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x5d) {
      this.pos++;
      return v;
    }
    while (this.error.length == 0) {
      v.items.push(this.value(depth + 1));
      this.ws();
      if (this.pos >= this.text.length) return this.fail('unterminated array');
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x5d) return v;
      if (c != 0x2c) return this.fail('expected , or ] in array');
    }
    return v;
  }

  object(depth: i32): JSONValue {
    this.pos++;
    const v = new JSONValue();
    v.kind = JSON_OBJECT;
    this.ws();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x7d) {
      this.pos++;
      return v;
    }
    while (this.error.length == 0) {
      this.ws();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x22) return this.fail('expected a string key');
      const key = this.string();
      this.ws();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) return this.fail('expected : after key');
      this.pos++;
      v.keys.push(key);
      v.items.push(this.value(depth + 1));
      this.ws();
      if (this.pos >= this.text.length) return this.fail('unterminated object');
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x7d) return v;
      if (c != 0x2c) return this.fail('expected , or } in object');
    }
    return v;
  }
}

export function parse(text: string): ParseResult {
  const p = new Parser(text);
  const r = new ParseResult();
  r.value = p.value(0);
  p.ws();
  if (p.error.length == 0 && p.pos != text.length) p.fail('trailing characters after JSON');
  r.error = p.error;
  return r;
}

function hexDigit(n: i32): string {
  return String.fromCharCode(n < 10 ? 0x30 + n : 0x61 + n - 10);
}

/** A JSON string literal for `s`. */
export function quote(s: string): string {
  const parts = new Array<string>();
  parts.push('"');
  let runStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc = '';
    if (c == 0x22) esc = '\\"';
    else if (c == 0x5c) esc = '\\\\';
    else if (c == 0x0a) esc = '\\n';
    else if (c == 0x0d) esc = '\\r';
    else if (c == 0x09) esc = '\\t';
    else if (c < 0x20) esc = '\\u00' + hexDigit(c >> 4) + hexDigit(c & 15);
    else continue;
    parts.push(s.substring(runStart, i));
    parts.push(esc);
    runStart = i + 1;
  }
  parts.push(s.substring(runStart));
  parts.push('"');
  return parts.join('');
}

/** JSON text of a number (integers without a trailing ".0"; NaN/Infinity become null). */
export function numberToJson(n: f64): string {
  if (isNaN(n) || !isFinite(n)) return 'null';
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992) return (<i64>n).toString();
  return n.toString();
}

/** Builds a JSON object: new JSONObject().str("a", "x").num("b", 1).toString() */
export class JSONObject {
  private parts: Array<string> = new Array<string>();

  str(key: string, value: string): JSONObject {
    this.parts.push(quote(key) + ':' + quote(value));
    return this;
  }
  num(key: string, value: f64): JSONObject {
    this.parts.push(quote(key) + ':' + numberToJson(value));
    return this;
  }
  bool(key: string, value: bool): JSONObject {
    this.parts.push(quote(key) + ':' + (value ? 'true' : 'false'));
    return this;
  }
  /** Adds already-serialised JSON (e.g. a nested JSONObject.toString()). */
  raw(key: string, json: string): JSONObject {
    this.parts.push(quote(key) + ':' + json);
    return this;
  }
  toString(): string {
    return '{' + this.parts.join(',') + '}';
  }
}

/** Builds a JSON array of already-serialised values. */
export class JSONArray {
  private parts: Array<string> = new Array<string>();
  raw(json: string): JSONArray {
    this.parts.push(json);
    return this;
  }
  str(value: string): JSONArray {
    this.parts.push(quote(value));
    return this;
  }
  toString(): string {
    return '[' + this.parts.join(',') + ']';
  }
}
