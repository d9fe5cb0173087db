// Package boundaries, checked on the source: which service may import what.
// Only egress holds an HTTP client that reaches the outside; the sandbox never
// imports vault code; services never import each other; memory and vault have no NATS.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '@talon/cli/platform';
import { SERVICES } from '@talon/kit';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === 'node_modules' ? [] : sources(p);
    return n.endsWith('.ts') && !n.endsWith('.test.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  return importsOf(readFileSync(file, 'utf8'));
}

function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(
    /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g,
  )) {
    out.push((m[1] ?? m[2] ?? m[3])!);
  }
  return out;
}

/** Outbound calls in code (comments stripped): global fetch, or http/https/net/tls request/get/connect. */
export function outboundCalls(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const found: string[] = [];
  if (/(?<![\w.])fetch\s*\(/.test(code)) found.push('fetch');
  const m = /\b(?:http|https|net|tls)\.(?:request|get|connect)\s*\(/.exec(code);
  if (m) found.push(m[0]);
  return found;
}

const OUTBOUND_CLIENTS = ['undici', 'node:https', 'https', 'axios', 'node-fetch', 'got', 'http-proxy', 'node:dgram', 'dgram'];

describe('package boundaries', () => {
  const files = Object.fromEntries(SERVICES.map((s) => [s, sources(join(REPO_ROOT, 'services', s, 'src'))]));

  it('the detectors catch what they look for', () => {
    assert.deepEqual(outboundCalls('await fetch(url)'), ['fetch']);
    assert.deepEqual(outboundCalls('const r = https.request({ host })'), ['https.request(']);
    assert.deepEqual(outboundCalls('// a cross-site fetch (Sec-Fetch-Site)\nconst x = 1;'), []);
    assert.deepEqual(outboundCalls('const u = "https://x"; readBody(req)'), []);
    assert.deepEqual(importsOf("import { Pool } from 'undici';\nconst m = await import('node:https');"), ['undici', 'node:https']);
  });

  it('finds the sources it checks', () => {
    for (const s of SERVICES) assert.ok(files[s]!.length > 0, `${s} has sources`);
  });

  for (const s of SERVICES.filter((x) => x !== 'egress')) {
    it(`${s} has no HTTP client that reaches the outside (only egress does)`, () => {
      for (const f of files[s]!) {
        const rel = relative(REPO_ROOT, f);
        for (const spec of imports(f)) assert.ok(!OUTBOUND_CLIENTS.includes(spec), `${rel} imports ${spec}`);
        assert.deepEqual(outboundCalls(readFileSync(f, 'utf8')), [], `${rel} makes outbound calls`);
      }
    });
  }

  for (const s of SERVICES) {
    it(`${s} imports no other service's code`, () => {
      for (const f of files[s]!) {
        for (const spec of imports(f)) {
          for (const other of SERVICES.filter((o) => o !== s)) {
            assert.ok(spec !== `@talon/${other}` && !spec.startsWith(`@talon/${other}/`), `${relative(REPO_ROOT, f)} imports ${spec}`);
            assert.ok(!spec.includes(`services/${other}/`) && !spec.includes(`../${other}/`), `${relative(REPO_ROOT, f)} imports ${spec}`);
          }
        }
      }
    });
  }

  it('the sandbox never mentions vault code', () => {
    for (const f of files.sandbox!)
      for (const spec of imports(f)) assert.doesNotMatch(spec, /vault/i, `${relative(REPO_ROOT, f)} imports ${spec}`);
  });

  it('only egress/src/record.ts builds what a decision records of a request (host, path, query, headers)', () => {
    // Everything recorded about a request must come from the redacted copy record.ts makes.
    const fields = /\b(?:requestHeaders|path|query|host)\s*:/;
    const decisions = /\bdecision\(\{([^}]*)\}/gs;
    let checked = 0;
    for (const f of files.egress!) {
      const rel = relative(REPO_ROOT, f);
      const text = readFileSync(f, 'utf8');
      if (rel === 'services/egress/src/record.ts') continue;
      for (const m of text.matchAll(decisions)) {
        checked++;
        assert.doesNotMatch(m[1]!, fields, `${rel} puts request fields into a decision itself: decision({${m[1]}})`);
      }
      assert.doesNotMatch(text, /\b(?:base|decision)\.(?:requestHeaders|path|query|host)\s*=/, `${rel} assigns a recorded request field`);
      assert.doesNotMatch(text, /Object\.assign\(\s*base\s*,\s*\{[^}]*\b(?:path|query|host)\b/, `${rel} assigns a recorded request field`);
    }
    assert.ok(checked >= 2, 'the decision calls were found');
  });

  for (const s of ['memory', 'vault'] as const) {
    it(`${s} holds no NATS client (it talks only to PostgreSQL and gRPC callers)`, () => {
      for (const f of files[s]!)
        for (const spec of imports(f)) assert.ok(!spec.startsWith('@nats-io/'), `${relative(REPO_ROOT, f)} imports ${spec}`);
    });
  }
});
