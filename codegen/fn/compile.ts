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
import { dslMapDecl, isMapDecl, type MapDecl } from '../../sdk/fn/maps.js';
import { isFilter, type Filter } from '../../sdk/dsl/filter.js';
import { isMapRef, isSetRef, type MapRef, type SetRef } from '../../sdk/dsl/refs.js';
import { LPM4_KEY, LPM6_KEY, SET_VALUE } from '../layouts.js';
import { setKey } from '../maps.js';
import { u16 as u16Layout, encode } from '../../sdk/layout.js';
import { embedFilter, type EmbeddedFilter } from './filters.js';
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
  /**
   * The file's exports (`await import(file)`): the filters (DSL) it declares,
   * which runChain(fw, pkt) runs and whose sets and maps (fw.sets.x,
   * fw.maps.x) programs use. A filter() call is not evaluated from the syntax
   * tree: the filter of that name is taken from here.
   */
  module?: Record<string, unknown>;
  /** Filters to take from, besides the module's exports. */
  filters?: Filter[];
}

export interface FnMapResult {
  name: string;
  /** The kernel map type; DSL address sets are LPM tries. */
  kind: MapDecl['kind'] | 'lpm_trie';
  maxEntries: number;
  key?: Layout<unknown>;
  value?: Layout<unknown>;
  /** For maps declared with the filter DSL: 'set' or 'map', and whether the embedded filter declares it too (one map). */
  dsl?: { kind: 'set' | 'map'; shared: boolean };
  /** Entries to write right after load (a DSL set's declared elements); loadFunctions does it. */
  initial?: Array<{ key: Buffer; value: Buffer }>;
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
  /** The filter compiled into the object for runChain, with its programs and maps (one per build at most). */
  filter?: { name: string; programs: string[]; maps: string[] };
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
  const filters = new Map<string, Filter>();
  for (const v of [...Object.values(options.module ?? {}), ...(options.filters ?? [])]) if (isFilter(v)) filters.set(v.name, v);
  const statics = new StaticEvaluator(diags, filters);
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
    for (const [name, d0] of Object.entries(declared)) {
      if (!isMapDecl(d0) && !(isSetRef(d0)) && !(isMapRef(d0))) {
        diags.error(p.options!, `maps.${name} is not a map declaration`, 'declare maps with hash(...), lruHash(...), array(...), perCpuArray(...), ringBuf(...), progArray(...), or take a filter\'s: fw.sets.blocked, fw.maps.seen');
        continue;
      }
      if ((isSetRef(d0) || isMapRef(d0)) && d0.name !== name) {
        diags.error(p.options!, `maps.${name} is the filter's map '${d0.name}': it keeps its name`, `write { ${d0.name}: ... } and take it as ${d0.name}`);
        continue;
      }
      let d: MapDecl;
      if (isSetRef(d0)) d = setDecl(d0);
      else if (isMapRef(d0)) {
        const m = dslMapDecl(d0);
        if (typeof m === 'string') {
          diags.error(p.options!, m, 'functions use hash, lru_hash, percpu_hash, array, percpu_array and ringbuf maps of the DSL');
          continue;
        }
        d = m;
      } else d = d0;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /^(tsbpf_|fn_|bpf_|__)/.test(name) || RESERVED_NAMES.has(name)) {
        diags.error(p.options!, `'${name}' cannot be a map name: it is taken in the generated C`, 'use another name (not a C keyword, p, ctx, LICENSE, nor starting with tsbpf_, fn_, bpf_ or __)');
        continue;
      }
      const layoutProblem = isSetRef(d0) ? undefined : checkLayouts(d);
      if (layoutProblem) {
        diags.error(p.options!, `map '${name}': ${layoutProblem}`, 'map keys and values are u8, u16, u32, u64, or struct({...}) of them');
        continue;
      }
      names.push(name);
      const prev = mapNodes.get(name);
      const same = prev === d0 || (prev !== undefined && !(isSetRef(prev)) && !(isMapRef(prev)) && !(isSetRef(d0)) && !(isMapRef(d0)) && sameDecl(prev as MapDecl, d));
      if (prev !== undefined && !same) {
        diags.error(p.options!, `two programs declare map '${name}' differently`, 'declare the maps once (const maps = {...}) and pass the same object to every program');
        continue;
      }
      if (prev === undefined) {
        mapNodes.set(name, d0);
        const info: MapInfo = { name, decl: d };
        if (isSetRef(d0)) {
          info.set = d0.type;
          info.keyC = d0.type === 'ipv4' ? 'struct tsbpf_lpm4_key' : d0.type === 'ipv6' ? 'struct tsbpf_lpm6_key' : '__u16';
          info.valueC = '__u8';
        } else {
          const t = mapTypes(name, d.key, d.value);
          decls.push(...t.decls);
          if (t.keyC) info.keyC = t.keyC;
          if (t.valueC) info.valueC = t.valueC;
        }
        if (isSetRef(d0) || isMapRef(d0)) info.dsl = d0;
        maps.set(name, info);
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
  // The filter runChain runs is compiled into this object: its chains inline, its maps shared.
  let embedded: EmbeddedFilter | undefined;
  if (lowerer.chainCalls.size > 0 && diags.count === 0) {
    embedded = embedFilter(lowerer.chainCalls, maps, programs.map((p) => p.name), diags);
  }
  diags.throwIfAny(displayPath(abs));
  const c = emitUnit({
    file: displayPath(abs),
    programs,
    helpers: lowerer.helperOrder.map((h) => h.text),
    maps: [...maps.values()].filter((m) => !embedded?.maps.has(m.name)),
    decls: dedupeDecls(decls.filter(([n]) => !embedded?.typeNames.has(n))),
    ...(embedded ? { filterC: embedded.c, runners: embedded.runners } : {}),
    dslSets: [...maps.values()].some((m) => m.set !== undefined),
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
  const mapResults: FnMapResult[] = [...maps.values()].map((m) => {
    const r: FnMapResult = {
      name: m.name,
      kind: m.set === 'ipv4' || m.set === 'ipv6' ? 'lpm_trie' : m.decl.kind,
      maxEntries: m.decl.maxEntries,
      ...(m.decl.key && m.decl.kind !== 'ringbuf' ? { key: m.decl.key } : {}),
      ...(m.decl.value ? { value: m.decl.value } : {}),
    };
    if (m.dsl) {
      const shared = embedded?.maps.has(m.name) ?? false;
      r.dsl = { kind: m.set ? 'set' : 'map', shared };
      // The embedded filter's own entry carries the set's elements (below).
      if (isSetRef(m.dsl) && !shared) r.initial = m.dsl.elements.map((e) => ({ key: setKey(m.name, m.set!, e), value: encode(SET_VALUE, 1) }));
    }
    return r;
  });
  const layouts: FnCompileResult['layouts'] = {};
  for (const m of mapResults) {
    if (m.kind === 'ringbuf' || m.kind === 'prog_array') continue;
    layouts[m.name] = { ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}) };
  }
  if (embedded) {
    // The filter's maps, typed as its compile result types them; its sets start with their elements.
    for (const m of embedded.compiled.maps) {
      if (m.kind === 'ringbuf' || m.kind === 'prog_array') continue;
      layouts[m.name] = { ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}) };
      if (m.initial?.length) {
        const mine = mapResults.find((r) => r.name === m.name);
        if (mine) mine.initial = m.initial;
        else mapResults.push({ name: m.name, kind: m.kind === 'lpm_trie' ? 'lpm_trie' : 'hash', maxEntries: m.maxEntries, ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}), dsl: { kind: 'set', shared: true }, initial: m.initial });
      }
    }
  }
  return {
    file: abs,
    c,
    ...(object ? { object } : {}),
    programs: programs.map((p) => ({ name: p.name, hook: p.hook, section: p.hook === 'xdp' ? 'xdp' : 'tc' })),
    maps: mapResults,
    layouts,
    ...(embedded ? { filter: { name: embedded.compiled.definition.name, programs: embedded.compiled.programs.map((p) => p.name), maps: embedded.compiled.maps.map((m) => m.name) } } : {}),
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

/** The shape of a DSL set's kernel map (codegen/maps.ts makes the same). */
function setDecl(s: SetRef): MapDecl {
  const key = s.type === 'ipv4' ? LPM4_KEY : s.type === 'ipv6' ? LPM6_KEY : u16Layout;
  return Object.freeze({ kind: 'hash' as const, key: key as Layout<unknown>, value: SET_VALUE as Layout<unknown>, maxEntries: s.maxEntries });
}

function sameDecl(a: MapDecl, b: MapDecl): boolean {
  return a.kind === b.kind && a.maxEntries === b.maxEntries && a.key?.size === b.key?.size && a.value?.size === b.value?.size;
}

function dedupeDecls(decls: Array<[string, Layout<unknown>]>): Array<[string, Layout<unknown>]> {
  const seen = new Set<string>();
  return decls.filter(([n]) => (seen.has(n) ? false : (seen.add(n), true)));
}

export { diagnosticsError };
