/**
 * compileFunctions(file): the function programs a TypeScript file exports
 * (`export const guard = xdp(...)`) -> one C translation unit -> a BPF object
 * (codegen/clang.ts, cached by content), with the maps' layouts.
 *
 * The file is read with ts-morph and its type checker; nothing of it runs.
 * Type errors in the file are reported too (typeCheck, on by default).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Node, ts, type Expression, type SourceFile } from 'ts-morph';
import { TsbpfError } from '../../sdk/errors.js';
import { isMapDecl, type MapDecl } from '../../sdk/fn/maps.js';
import type { AnyFnProgram, FnHook } from '../../sdk/fn/program.js';
import { isStructLayout, type Layout } from '../../sdk/layout.js';
import { compileC, type ClangOptions } from '../clang.js';
import { Diagnostics, diagnosticsError, displayPath, type FnDiagnostic } from './diagnostics.js';
import { emitUnit, mapTypes } from './emit.js';
import { Lowerer, type MapInfo } from './lower.js';
import { declarationOf, fnProject, tsbpfName, userSourceFile } from './project.js';
import { StaticEvaluator } from './static.js';

export interface CompileFunctionsOptions {
  /** Only these exports (default: every function program the file exports). */
  exports?: string[];
  /** Also report TypeScript's own errors in the file (default true). */
  typeCheck?: boolean;
  /** The file's text, instead of reading it from disk. */
  text?: string;
  /** Stop after generating C (no clang). */
  emitOnly?: boolean;
  clang?: ClangOptions;
}

export interface FnMapResult {
  name: string;
  kind: MapDecl['kind'];
  maxEntries: number;
  key?: Layout<unknown>;
  value?: Layout<unknown>;
}

export interface FnCompileResult {
  file: string;
  /** The generated C. */
  c: string;
  /** The BPF object (absent with emitOnly). */
  object?: { path: string; bytes: Buffer; key: string; cached: boolean };
  programs: Array<{ name: string; hook: FnHook; section: 'xdp' | 'tc' }>;
  maps: FnMapResult[];
  /** Per map, the layouts to give runtime load(): load(result.object, { layouts: result.layouts }). */
  layouts: Record<string, { key?: Layout<unknown>; value?: Layout<unknown> }>;
  /** Milliseconds spent in each step. */
  timings: { parseMs: number; typeCheckMs: number; lowerMs: number; clangMs: number; totalMs: number };
}

/** Names the generated C uses itself (keywords, the packet, the context). */
const RESERVED_NAMES = new Set(
  ('auto break case char const continue default do double else enum extern float for goto if inline int long register restrict return short ' +
    'signed sizeof static struct switch typedef union unsigned void volatile while _Bool p ctx LICENSE').split(' '),
);

const HOOK_OF: Record<string, FnHook> = { xdp: 'xdp', tcIngress: 'tc-ingress', tcEgress: 'tc-egress' };

/** Every function program exported by `file`, compiled into one object. */
export function compileFunctions(file: string, options: CompileFunctionsOptions = {}): FnCompileResult {
  const t0 = performance.now();
  const abs = path.resolve(file);
  const project = fnProject();
  let sf: SourceFile;
  try {
    sf = userSourceFile(project, abs, options.text);
  } catch (cause) {
    throw new TsbpfError('INVALID_ARGUMENT', `cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  const diags = new Diagnostics();
  // Binding and resolving the file's imports is part of reading it.
  sf.getExportedDeclarations();
  const t1 = performance.now();

  let typeCheckMs = 0;
  if (options.typeCheck !== false) {
    const tc0 = performance.now();
    for (const d of typeErrors(sf)) diags.add(d);
    typeCheckMs = performance.now() - tc0;
  }

  const tl0 = performance.now();
  const statics = new StaticEvaluator(diags);
  const found = findPrograms(sf, diags, options.exports);
  const maps = new Map<string, MapInfo>();
  const mapNodes = new Map<string, unknown>();
  const decls: Array<[string, Layout<unknown>]> = [];
  const programMaps = new Map<string, string[]>();
  for (const p of found) {
    let declared: Record<string, unknown> = {};
    if (p.options) {
      try {
        const opts = statics.eval(p.options, 'the program options') as Record<string, unknown>;
        if (!opts || typeof opts !== 'object') throw diags.error(p.options, 'the program options must be an object: { maps: { ... } }');
        for (const k of Object.keys(opts)) if (k !== 'maps') diags.error(p.options, `unknown program option '${k}'`, 'the options are { maps }');
        declared = (opts.maps ?? {}) as Record<string, unknown>;
      } catch {
        continue;
      }
    }
    const names: string[] = [];
    for (const [name, d] of Object.entries(declared)) {
      if (!isMapDecl(d)) {
        diags.error(p.options!, `maps.${name} is not a map declaration`, 'declare maps with hash(...), lruHash(...), array(...), perCpuArray(...), ringBuf(...), progArray(...)');
        continue;
      }
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /^(tsbpf_|fn_|bpf_|__)/.test(name) || RESERVED_NAMES.has(name)) {
        diags.error(p.options!, `'${name}' cannot be a map name: it is taken in the generated C`, 'use another name (not a C keyword, p, ctx, LICENSE, nor starting with tsbpf_, fn_, bpf_ or __)');
        continue;
      }
      const layoutProblem = checkLayouts(d);
      if (layoutProblem) {
        diags.error(p.options!, `map '${name}': ${layoutProblem}`, 'map keys and values are u8, u16, u32, u64, or struct({...}) of them');
        continue;
      }
      names.push(name);
      const prev = mapNodes.get(name);
      if (prev !== undefined && prev !== d && !sameDecl(prev as MapDecl, d)) {
        diags.error(p.options!, `two programs declare map '${name}' differently`, 'declare the maps once (const maps = {...}) and pass the same object to every program');
        continue;
      }
      if (prev === undefined) {
        mapNodes.set(name, d);
        const t = mapTypes(name, d.key, d.value);
        decls.push(...t.decls);
        maps.set(name, { name, decl: d, ...(t.keyC ? { keyC: t.keyC } : {}), ...(t.valueC ? { valueC: t.valueC } : {}) });
      }
    }
    programMaps.set(p.name, names);
  }
  for (const p of found) {
    if (maps.has(p.name)) diags.error(p.node, `the program '${p.name}' has the name of a map`, 'rename the export or the map');
  }
  const lowerer = new Lowerer(diags, statics, maps);
  for (const p of found) lowerer.globals.add(p.name);
  const programs: Array<{ name: string; hook: FnHook; text: string }> = [];
  for (const p of found) {
    if (!p.fn) continue;
    try {
      programs.push(lowerer.lowerProgram(p.name, p.hook, p.fn, programMaps.get(p.name) ?? []));
    } catch (e) {
      if (!(e instanceof Error) || e.message !== 'reported') throw e;
    }
  }
  if (found.length === 0 && diags.count === 0) {
    diags.add({
      source: { file: displayPath(abs), line: 1, column: 1 },
      message: options.exports?.length ? `no function program named ${options.exports.join(', ')} is exported here` : 'this file exports no function program',
      hint: 'export one: export const guard = xdp((pkt) => XDP_PASS)',
      kind: 'restricted',
    });
  }
  diags.throwIfAny(displayPath(abs));
  const c = emitUnit({
    file: displayPath(abs),
    programs,
    helpers: lowerer.helperOrder.map((h) => h.text),
    maps: [...maps.values()],
    decls: dedupeDecls(decls),
  });
  const lowerMs = performance.now() - tl0;

  let object: FnCompileResult['object'];
  let clangMs = 0;
  if (!options.emitOnly) {
    const tc0 = performance.now();
    // -fno-builtin: a map may be called `log` or `index` without clashing with C library builtins.
    const r = compileC(c, { ...options.clang, extraFlags: ['-fno-builtin', ...(options.clang?.extraFlags ?? [])] });
    clangMs = performance.now() - tc0;
    object = { path: r.path, bytes: r.bytes, key: r.key, cached: r.cached };
  }
  const mapResults: FnMapResult[] = [...maps.values()].map((m) => ({
    name: m.name,
    kind: m.decl.kind,
    maxEntries: m.decl.maxEntries,
    ...(m.decl.key && m.decl.kind !== 'ringbuf' ? { key: m.decl.key } : {}),
    ...(m.decl.value ? { value: m.decl.value } : {}),
  }));
  const layouts: FnCompileResult['layouts'] = {};
  for (const m of mapResults) {
    if (m.kind === 'ringbuf' || m.kind === 'prog_array') continue;
    layouts[m.name] = { ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}) };
  }
  return {
    file: abs,
    c,
    ...(object ? { object } : {}),
    programs: programs.map((p) => ({ name: p.name, hook: p.hook, section: p.hook === 'xdp' ? 'xdp' : 'tc' })),
    maps: mapResults,
    layouts,
    timings: { parseMs: t1 - t0, typeCheckMs, lowerMs, clangMs, totalMs: performance.now() - t0 },
  };
}

/**
 * Compiles the file a program value was declared in (found from where xdp()
 * was called), with that program and every other program in the file.
 */
export function compileProgram(program: AnyFnProgram, options: Omit<CompileFunctionsOptions, 'exports'> = {}): FnCompileResult {
  if (!program?.source) {
    throw new TsbpfError('INVALID_ARGUMENT', 'this program does not know the file it was declared in', {
      hint: 'compile the file instead: compileFunctions(file)',
    });
  }
  return compileFunctions(program.source.file, options);
}

interface FoundProgram {
  name: string;
  hook: FnHook;
  node: Node;
  options?: Expression;
  fn?: import('ts-morph').ArrowFunction | import('ts-morph').FunctionExpression | import('ts-morph').FunctionDeclaration;
}

function findPrograms(sf: SourceFile, diags: Diagnostics, only: string[] | undefined): FoundProgram[] {
  const out: FoundProgram[] = [];
  for (const [name, nodes] of sf.getExportedDeclarations()) {
    if (only && !only.includes(name)) continue;
    const decl = nodes[0];
    if (!decl || !Node.isVariableDeclaration(decl)) continue;
    const init = decl.getInitializer();
    if (!init || !Node.isCallExpression(init)) continue;
    const api = tsbpfName(init.getExpression());
    if (!api || api.module !== 'fn' || !HOOK_OF[api.name]) continue;
    const hook = HOOK_OF[api.name]!;
    // (a program may be called p or ctx: inside it those names are its own locals)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /^(tsbpf_|fn_|bpf_|__)/.test(name) || (RESERVED_NAMES.has(name) && name !== 'p' && name !== 'ctx')) {
      diags.error(decl, `'${name}' cannot name a BPF program: it is taken in the generated C`, 'export it under another name');
      continue;
    }
    const args = init.getArguments() as Expression[];
    const p: FoundProgram = { name, hook, node: decl };
    if (args.length === 2) p.options = args[0]!;
    else if (args.length !== 1) {
      diags.error(init, `${api.name}() takes the program function, or options and the function`, `${api.name}((pkt) => ...) or ${api.name}({ maps }, (pkt, maps) => ...)`);
      continue;
    }
    let fnNode: Node = args[args.length - 1]!;
    if (Node.isIdentifier(fnNode)) {
      const d = declarationOf(fnNode);
      if (d && Node.isFunctionDeclaration(d)) fnNode = d;
      else if (d && Node.isVariableDeclaration(d) && d.getInitializer()) fnNode = d.getInitializer()!;
    }
    if (Node.isArrowFunction(fnNode) || Node.isFunctionExpression(fnNode) || Node.isFunctionDeclaration(fnNode)) p.fn = fnNode;
    else diags.error(fnNode, 'the program must be a function written here', `${api.name}((pkt) => { ... })`);
    out.push(p);
  }
  if (only) {
    for (const n of only) {
      if (!out.some((p) => p.name === n)) {
        diags.add({ source: { file: displayPath(sf.getFilePath()), line: 1, column: 1 }, message: `no function program named '${n}' is exported here`, kind: 'restricted' });
      }
    }
  }
  return out;
}

function typeErrors(sf: SourceFile): FnDiagnostic[] {
  const out: FnDiagnostic[] = [];
  for (const d of sf.getPreEmitDiagnostics()) {
    if (d.getCategory() !== ts.DiagnosticCategory.Error) continue;
    const dsf = d.getSourceFile();
    if (dsf && dsf.getFilePath() !== sf.getFilePath()) continue;
    const start = d.getStart() ?? 0;
    const { line, column } = sf.getLineAndColumnAtPos(start);
    const text = ts.flattenDiagnosticMessageText(d.compilerObject.messageText, '\n');
    out.push({ source: { file: displayPath(sf.getFilePath()), line, column }, message: `TS${d.getCode()}: ${text}`, kind: 'type' });
  }
  return out;
}

function checkLayouts(d: MapDecl): string | undefined {
  const ok = (l: Layout<unknown> | undefined, depth = 0): boolean => {
    if (!l) return true;
    if (['u8', 'u16', 'u32', 'u64'].includes(l.kind)) return true;
    if (isStructLayout(l) && l.kind === 'struct' && depth < 2) return l.fields.every((f) => f.bitSize === undefined && ok(f.layout, depth + 1));
    return false;
  };
  if (!ok(d.key)) return `its key layout (${d.key!.kind}) is not supported in function programs`;
  if (!ok(d.value)) return `its value layout (${d.value!.kind}) is not supported in function programs`;
  return undefined;
}

function sameDecl(a: MapDecl, b: MapDecl): boolean {
  return a.kind === b.kind && a.maxEntries === b.maxEntries && a.key?.size === b.key?.size && a.value?.size === b.value?.size;
}

function dedupeDecls(decls: Array<[string, Layout<unknown>]>): Array<[string, Layout<unknown>]> {
  const seen = new Set<string>();
  return decls.filter(([n]) => (seen.has(n) ? false : (seen.add(n), true)));
}

export { diagnosticsError };
