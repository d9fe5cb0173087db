// Package boundaries, checked on the source: which service may import what.
// Only egress holds an HTTP client that reaches the outside; the sandbox never
// imports vault code; services never import each other; memory and vault have no NATS,
// neither in their own files nor in anything they load from packages/.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { REPO_ROOT } from '@talon/cli/platform';
import { SERVICES } from '@talon/kit/service';

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

/**
 * What a module loads when it runs: static imports and re-exports, import('x'),
 * import.meta.resolve('x'), and new URL('./file.ts', import.meta.url) (a worker or a
 * forked child). Type-only imports are erased before the code runs and are left out;
 * `import { type A } from 'x'` is not erased (the module still loads) and is kept.
 */
export function runtimeImports(text: string): string[] {
  const sf = ts.createSourceFile('module.ts', text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const isImportMeta = (n: ts.Node) => ts.isMetaProperty(n) && n.keywordToken === ts.SyntaxKind.ImportKeyword && n.name.text === 'meta';
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.importClause?.isTypeOnly) out.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.isTypeOnly) out.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      const callee = node.expression;
      const dynamic = callee.kind === ts.SyntaxKind.ImportKeyword;
      const metaResolve = ts.isPropertyAccessExpression(callee) && callee.name.text === 'resolve' && isImportMeta(callee.expression);
      if (dynamic || metaResolve) out.push(node.arguments[0].text);
    } else if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'URL') {
      const [what, base] = node.arguments ?? [];
      if (what && base && ts.isStringLiteralLike(what) && /^\.\.?\/.*\.[cm]?[jt]s$/.test(what.text)) {
        if (ts.isPropertyAccessExpression(base) && base.name.text === 'url' && isImportMeta(base.expression)) out.push(what.text);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Every workspace package (packages/*, services/*) by name, with its directory. */
function workspacePackages(root: string): Map<string, { dir: string; exports: unknown }> {
  const found = new Map<string, { dir: string; exports: unknown }>();
  for (const group of ['packages', 'services']) {
    for (const n of readdirSync(join(root, group))) {
      const manifest = join(root, group, n, 'package.json');
      if (!existsSync(manifest)) continue;
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; exports?: unknown };
      found.set(pkg.name, { dir: join(root, group, n), exports: pkg.exports });
    }
  }
  return found;
}

/** The file a workspace specifier (`@talon/kit/db`) names, through the package's "exports" map. */
function resolveWorkspace(spec: string, packages: Map<string, { dir: string; exports: unknown }>): string {
  const [scope, name, ...rest] = spec.split('/');
  const pkg = packages.get(`${scope}/${name}`);
  assert.ok(pkg, `${spec}: no workspace package ${scope}/${name}`);
  const key = rest.length === 0 ? '.' : `./${rest.join('/')}`;
  const map = (typeof pkg.exports === 'string' ? { '.': pkg.exports } : (pkg.exports ?? {})) as Record<string, unknown>;
  const pick = (target: unknown): string | undefined => {
    if (typeof target === 'string') return target;
    if (target && typeof target === 'object') {
      const conditions = target as Record<string, unknown>;
      for (const c of ['node', 'import', 'default']) if (c in conditions) return pick(conditions[c]);
    }
    return undefined;
  };
  let target = pick(map[key]);
  if (target === undefined) {
    for (const [pattern, value] of Object.entries(map)) {
      const star = pattern.indexOf('*');
      if (star < 0) continue;
      const [pre, post] = [pattern.slice(0, star), pattern.slice(star + 1)];
      if (key.startsWith(pre) && key.endsWith(post) && key.length >= pattern.length - 1) {
        target = pick(value)?.replace('*', key.slice(pre.length, key.length - post.length));
        break;
      }
    }
  }
  assert.ok(target, `${spec}: ${scope}/${name} does not export ${key}`);
  const file = resolve(pkg.dir, target);
  assert.ok(existsSync(file), `${spec} resolves to ${file}, which does not exist`);
  return file;
}

/** Package name of a bare specifier: `@scope/name` or `name`. */
function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

export interface ImportGraph {
  /** Every source file reached, relative to the repository root. */
  files: Set<string>;
  /** Every bare third-party specifier reached (node builtins left out). */
  thirdParty: Set<string>;
  /** Where each file and specifier was first reached from, for messages. */
  via: Map<string, string>;
}

/** Walks what `entry` loads: relative and @talon/* imports are followed, anything else is collected. */
export function importGraph(root: string, entry: string): ImportGraph {
  const packages = workspacePackages(root);
  const graph: ImportGraph = { files: new Set(), thirdParty: new Set(), via: new Map() };
  const queue = [resolve(root, entry)];
  graph.via.set(relative(root, queue[0]!), '(entry)');
  while (queue.length > 0) {
    const file = queue.pop()!;
    const rel = relative(root, file);
    if (graph.files.has(rel)) continue;
    graph.files.add(rel);
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      let next: string;
      if (spec.startsWith('./') || spec.startsWith('../')) {
        next = resolve(dirname(file), spec);
        assert.ok(existsSync(next), `${rel} imports ${spec}, which does not exist`);
      } else if (spec.startsWith('@talon/')) {
        next = resolveWorkspace(spec, packages);
      } else {
        if (isBuiltin(spec)) continue;
        if (!graph.thirdParty.has(spec)) graph.via.set(spec, rel);
        graph.thirdParty.add(spec);
        continue;
      }
      const nextRel = relative(root, next);
      if (!graph.via.has(nextRel)) graph.via.set(nextRel, rel);
      queue.push(next);
    }
  }
  return graph;
}

/** The chain of files from the entry to `node`, for a failure message. */
function chain(graph: ImportGraph, node: string): string {
  const steps = [node];
  for (let at = graph.via.get(node); at && at !== '(entry)' && steps.length < 50; at = graph.via.get(at)) steps.unshift(at);
  return steps.join(' -> ');
}

describe('what each service loads (import graph from services/<name>/src/main.ts)', () => {
  const graphs = Object.fromEntries(SERVICES.map((s) => [s, importGraph(REPO_ROOT, join('services', s, 'src', 'main.ts'))]));
  const nats = (g: ImportGraph) => [...g.thirdParty].filter((spec) => packageName(spec).startsWith('@nats-io/'));
  const NATS_CLIENT = 'packages/kit/src/nats.ts';

  it('the walker sees runtime imports and skips type-only ones', () => {
    const source = [
      "import type { A } from 'erased-a';",
      "import { type B } from 'kept-b';",
      "import { c, type C } from 'kept-c';",
      "export type { D } from 'erased-d';",
      "export * from 'kept-e';",
      "import 'kept-f';",
      "type G = import('erased-g').G;",
      "const h = await import('kept-h');",
      "new Worker(new URL('./kept-i.ts', import.meta.url));",
      "const j = import.meta.resolve('kept-j');",
      "// import { k } from 'erased-k';",
      "const l = `import { l } from 'erased-l'`;",
    ].join('\n');
    assert.deepEqual(runtimeImports(source), ['kept-b', 'kept-c', 'kept-e', 'kept-f', 'kept-h', './kept-i.ts', 'kept-j']);
  });

  it('the walker follows @talon/* subpaths through "exports" and finds NATS where it is (positive control)', () => {
    for (const s of ['gateway', 'orchestrator', 'sandbox', 'egress'] as const) {
      assert.ok(graphs[s]!.files.has(NATS_CLIENT), `${s} reaches ${NATS_CLIENT}`);
      assert.ok(graphs[s]!.thirdParty.has('@nats-io/transport-node'), `${s} reaches @nats-io/transport-node`);
    }
    // The barrel still loads the NATS client: importing it is what memory and vault must not do.
    const barrel = importGraph(REPO_ROOT, 'packages/kit/src/index.ts');
    assert.ok(barrel.files.has(NATS_CLIENT) && nats(barrel).length > 0, 'the @talon/kit barrel reaches the NATS client');
  });

  for (const s of SERVICES) {
    it(`${s} loads only its own files and packages/`, () => {
      const g = graphs[s]!;
      assert.ok(g.files.has(`services/${s}/src/main.ts`) && g.files.size > 1, `${s}'s graph was walked`);
      for (const f of g.files) assert.ok(f.startsWith(`services/${s}/`) || f.startsWith('packages/'), `${s} loads ${f}: ${chain(g, f)}`);
    });
  }

  for (const s of ['memory', 'vault'] as const) {
    it(`${s} loads no NATS client, directly or through packages/`, () => {
      const g = graphs[s]!;
      assert.deepEqual(
        nats(g).map((spec) => chain(g, spec)),
        [],
        `${s} reaches @nats-io/*`,
      );
      assert.ok(!g.files.has(NATS_CLIENT), `${s} loads ${chain(g, NATS_CLIENT)}`);
      assert.ok(!g.files.has('packages/kit/src/index.ts'), `${s} loads the @talon/kit barrel: ${chain(g, 'packages/kit/src/index.ts')}`);
    });
  }
});
