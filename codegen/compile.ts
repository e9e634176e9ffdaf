/**
 * compile(definition) -> the generated C, the BPF object, the maps and
 * programs in it, and the tables that map programs and C lines back to rules.
 *
 *   model --validate--> lower (ir.ts) --> emit C (emit-c.ts) --> clang (cached)
 *
 * Everything that can be checked is checked before clang runs, so a bad
 * definition fails with a DslError naming the rule and its source position.
 */
import { DslError, type SourcePosition } from '../sdk/errors.js';
import { toDefinition, type DefinitionLike } from '../sdk/dsl/filter.js';
import { validateDefinition, throwProblems } from '../sdk/dsl/validate.js';
import type { Definition, Hook } from '../sdk/model.js';
import { compileC, type ClangOptions } from './clang.js';
import { describeRule } from './describe.js';
import { emitC, sectionOf, type FnLines, type RuleLines } from './emit-c.js';
import { lower, type InlineMode, type Ir } from './ir.js';
import { LOG_EVENT } from './layouts.js';
import { planMaps, RESERVED_PREFIX, type MapInfo } from './maps.js';
import { attachPlan, classifiedStub, lazyInitial } from './classify/lower.js';
import { planClassification, type ClassifyLayout, type ClassifyMode, type ClsPlan } from './classify/plan.js';

export interface CompileOptions extends ClangOptions {
  /**
   * Which chains become inline functions instead of tail-called programs:
   * 'auto' (small chains, default), 'all', 'none'. Verdicts are the same in
   * every mode; 'none' shows the tail-call structure, 'all' the fewest calls.
   */
  inline?: InlineMode;
  /** Stop after generating C (no clang): result.object is absent. */
  emitOnly?: boolean;
  /**
   * How runs of classifiable rules compile (docs/classification.md): 'auto'
   * (default: tuple-space search where it is cheaper than tests, and for large
   * rulesets), 'always' (every run is a classifier block: rules can then be
   * added live as map updates), 'never' (linear code only).
   */
  classify?: ClassifyMode;
  /** Stable rule slots and map capacities, kept by live filters across regenerations (runtime/rules.ts). */
  layout?: ClassifyLayout;
  /**
   * Emit each entry chain also as an inline function `<program>__call` (for
   * function programs calling the filter: codegen/fn). Implies inline 'all'.
   */
  callable?: boolean;
}

export type Stage = 'parse' | 'chain' | 'act' | 'ct';

export interface ProgramInfo {
  /** The BPF program (C function) name, as libbpf and the kernel know it (the kernel keeps 15 chars). */
  name: string;
  /** ELF section: 'xdp' or 'tc'. */
  section: string;
  hook: Hook;
  /** The model program this BPF program belongs to. */
  program: string;
  stage: Stage;
  /** For chain programs: the chain. */
  chain?: string;
  /** Slot in the program's prog_array; null for the attached (parse) program. */
  tailCallSlot: number | null;
  progArray: string;
  /** True for the program to attach at the hook. */
  entry: boolean;
  /** Ids of the rules whose code is in this program (inline chains included). */
  rules: number[];
}

export interface RuleInfo {
  id: number;
  name: string;
  chain: string;
  index: number;
  source?: SourcePosition;
  comment?: string;
  /** One-line text of match and actions. */
  text: string;
  /** Prefixes of log actions by action index (log events carry the index). */
  logPrefixes: Record<number, string>;
  /** Where the rule's code is, per BPF program that contains it. */
  code: Array<{ program: string; fn: string; lines: [number, number] }>;
}

export interface CompileResult {
  definition: Definition;
  /** The generated C translation unit. */
  c: string;
  /** The ELF object (absent with emitOnly). */
  object: { path: string; bytes: Buffer };
  /** sha256 cache key of the object; `cached` when clang did not run. */
  key: string;
  cached: boolean;
  maps: MapInfo[];
  programs: ProgramInfo[];
  /** The prog_array of the first program (the common single-hook case). */
  progArray: string;
  /** prog_array per model program name. */
  progArrays: Record<string, string>;
  ruleTable: RuleInfo[];
  /** Interface names to resolve into the tsbpf_ifindex map, by slot (empty when unused). */
  ifnames: string[];
  /** Layout of a record on the tsbpf_events ring buffer. */
  logEvent: typeof LOG_EVENT;
  /** C lines of every function, for mapping verifier logs. */
  functions: FnLines[];
  ruleLines: RuleLines[];
  /** Worst-case tail calls per packet, per model program. */
  tailCalls: Record<string, number>;
  /** The inline mode actually used (auto may fall back to all to stay within the tail-call limit). */
  inline: InlineMode;
  /** The classification plan: blocks, their plan (linear or tuple-space search), tuples, entries. */
  classification: ClsPlan;
  /** Counter / log slot of each rule by id, when a layout gave them (else a rule's slot is its id). */
  ruleSlots?: readonly number[];
}

/** Compile a filter (a DSL Filter or a plain model Definition) to a BPF object. */
export function compile(input: DefinitionLike, options: CompileOptions = {}): CompileResult {
  const def = toDefinition(input);
  checkDefinition(def);
  const plan = planClassification(def, {
    ...(options.classify ? { classify: options.classify } : {}),
    ...(options.layout ? { layout: options.layout } : {}),
  });
  const ir = lower(def, {
    ...(options.callable ? { inline: 'all' as const } : options.inline ? { inline: options.inline } : {}),
    ...(plan.tss.length ? { preLowered: (r) => classifiedStub(r, plan) } : {}),
  });
  if (plan.tss.length) {
    ir.cls = plan;
    ir.usesLog ||= plan.usesLog;
  }
  const slots = options.layout?.ruleSlots;
  if (slots) for (const c of ir.chains.values()) for (const r of c.rules) if (slots[r.id] !== undefined && slots[r.id] !== r.id) r.slot = slots[r.id];
  const maps = planMaps(def, ir);
  if (plan.tss.length || options.layout) attachPlan(ir, plan, maps);
  const emitted = emitC(def, ir, maps, { callable: options.callable === true });
  const infos: MapInfo[] = maps.specs.map(({ cType: _t, cKey: _k, cValue: _v, flags: _f, init: _i, ...info }) => info);
  lazyInitial(infos);
  const base = {
    definition: def,
    c: emitted.c,
    maps: infos,
    programs: programTable(ir),
    progArray: ir.programs[0]?.progArray ?? '',
    progArrays: Object.fromEntries(ir.programs.map((p) => [p.name, p.progArray])),
    ruleTable: ruleTable(def, emitted.rules),
    ifnames: ir.ifnames,
    logEvent: LOG_EVENT,
    functions: emitted.fns,
    ruleLines: emitted.rules,
    tailCalls: Object.fromEntries(ir.programs.map((p) => [p.name, p.tailCalls])),
    inline: ir.inline,
    classification: plan,
    ...(slots ? { ruleSlots: slots } : {}),
  };
  if (options.emitOnly) {
    return { ...base, object: { path: '', bytes: Buffer.alloc(0) }, key: '', cached: false };
  }
  const obj = compileC(emitted.c, options);
  return { ...base, object: { path: obj.path, bytes: obj.bytes }, key: obj.key, cached: obj.cached };
}

/** The model checks of sdk/dsl/validate.ts plus what only codegen cares about. */
function checkDefinition(def: Definition): void {
  throwProblems(validateDefinition(def));
  for (const n of [...def.sets.map((s) => ({ name: s.name, source: s.source, what: 'set' })), ...def.maps.map((m) => ({ name: m.name, source: m.source, what: 'map' }))]) {
    if (n.name.startsWith(RESERVED_PREFIX)) {
      throw new DslError(`${n.what} name '${n.name}' starts with '${RESERVED_PREFIX}', which tsbpf keeps for its own maps`, {
        ...(n.source ? { source: n.source } : {}),
      }, { hint: 'rename it' });
    }
  }
}

function programTable(ir: Ir): ProgramInfo[] {
  const out: ProgramInfo[] = [];
  for (const p of ir.programs) {
    const section = sectionOf(p.hook);
    const byName = new Map(p.chains.map((c) => [c.chain.name, c]));
    // Rules a program chain runs itself: its own and those of inline chains it reaches.
    const rulesOf = (name: string, seen = new Set<string>()): number[] => {
      if (seen.has(name)) return [];
      seen.add(name);
      const c = byName.get(name)!;
      const ids = c.chain.rules.map((r) => r.id).filter((id) => id >= 0); // -1: a segment's goto (codegen/classify/segments.ts)
      for (const r of c.chain.rules) {
        if ((r.final.f === 'jump' || r.final.f === 'goto') && byName.get(r.final.chain)!.slot === undefined) ids.push(...rulesOf(r.final.chain, seen));
      }
      return ids;
    };
    const common = { section, hook: p.hook, program: p.name, progArray: p.progArray };
    out.push({ ...common, name: p.fn, stage: 'parse', tailCallSlot: null, entry: true, rules: [] });
    for (const c of p.chains) {
      if (c.slot === undefined) continue;
      out.push({ ...common, name: c.fn, stage: 'chain', chain: c.chain.name, tailCallSlot: c.slot, entry: false, rules: rulesOf(c.chain.name).sort((a, b) => a - b) });
    }
    if (p.actSlot !== undefined) out.push({ ...common, name: p.actFn, stage: 'act', tailCallSlot: p.actSlot, entry: false, rules: [] });
    if (p.ctSlot !== undefined) out.push({ ...common, name: p.ctFn, stage: 'ct', tailCallSlot: p.ctSlot, entry: false, rules: [] });
  }
  return out;
}

function ruleTable(def: Definition, lines: RuleLines[]): RuleInfo[] {
  const out: RuleInfo[] = [];
  const byRule = new Map<number, RuleLines[]>();
  for (const l of lines) {
    const list = byRule.get(l.ruleId);
    if (list) list.push(l);
    else byRule.set(l.ruleId, [l]);
  }
  for (const c of def.chains) {
    for (const r of c.rules) {
      const logPrefixes: Record<number, string> = {};
      r.actions.forEach((a, i) => {
        if (a.kind === 'log') logPrefixes[i] = a.prefix ?? '';
      });
      out.push({
        id: r.id,
        name: r.name,
        chain: r.chain,
        index: r.index,
        ...(r.source ? { source: r.source } : {}),
        ...(r.comment ? { comment: r.comment } : {}),
        text: describeRule(r),
        logPrefixes,
        code: (byRule.get(r.id) ?? []).map((l) => ({ program: l.program, fn: l.fn, lines: [l.start, l.end] as [number, number] })),
      });
    }
  }
  return out;
}
