/**
 * Live rule updates: `handle.rules.add / remove / replace / update` on a
 * loaded filter.
 *
 * - A change that keeps the ruleset's shape (a classifiable rule added next
 *   to, removed from or replaced within a classifier block whose key, tuple
 *   budget and capacities it fits) is a map update: the rule's action record
 *   and counter slot, its hash entries and any new tuple, written into the
 *   inactive generation, then one write flips the active generation, then the
 *   other generation is brought level. A packet sees the old ruleset or the
 *   new one, never a mix, however many entries change (a batch, a replace, a
 *   renumbered block).
 * - Any other change regenerates the program: the new definition is
 *   validated and compiled, loaded reusing the maps whose state must survive
 *   (counters, sets, log events, error counters, user maps, and limit buckets
 *   when the limits are unchanged), filled, and swapped in at every hook the
 *   old one was attached to (an atomic replace), then the old one closes.
 *
 * - `addMany` adds a batch at one place: planned in memory with every check
 *   made first, written with batch map updates, one generation switch; or one
 *   reload sized for the batch when slots or hash entries run short.
 *
 * Rules keep their slot (counters, action record, log events) for life;
 * their ids follow definition order as the model says, so they move when
 * rules are inserted before them. `handle.definition` is the ruleset as it is
 * now, for evaluate(). docs/classification.md has the long form.
 */
import { compile, type CompileResult } from '../codegen/compile.js';
import { FIELDS, hasField, tupleId, wideAddr, writeKey, type Conj, type KeyLayout } from '../codegen/classify/fields.js';
import {
  actionValue,
  countSlot,
  entryId,
  PRIO_NONE,
  prioGap,
  T_MAX,
  tagOf,
  tupleSlot,
  tupleValue,
  u32Buf,
  writeAction,
  ACT_SIZE,
  VAL_SIZE,
  writeValue,
  type ClassifyLayout,
} from '../codegen/classify/plan.js';
import { classifyRule, classifyRules, CLS_FLAG, CLS_VERDICT, type ClsAction } from '../codegen/classify/rule.js';
import { RULE_DATA, type RuleData, type RuleLike } from '../sdk/dsl/rule.js';
import { isPlainValidRule, throwProblems, validateDefinition } from '../sdk/dsl/validate.js';
import { DslError, TsbpfError } from '../sdk/errors.js';
import type { ActionDef, ChainPolicy, Definition, RuleDef, SourcePosition } from '../sdk/model.js';
import { loadCompiled, type LoadedFilter } from './filter.js';
import type { BpfMap } from './map.js';
import { native } from './native.js';
import type { BpfObject } from './object.js';

/** Where a rule goes. */
export interface RulePlace {
  /** The chain (default: the entry chain of the filter's first program, or the chain of `before`/`after`). */
  chain?: string;
  /** Index to insert at (0 = first; default: the end), or before / after a rule given by name or id. */
  position?: number | { before: string | number } | { after: string | number };
}

export type RuleOp =
  | { op: 'add'; rule: RuleLike; place?: RulePlace }
  | { op: 'remove'; rule: string | number }
  | { op: 'replace'; rule: string | number; with: RuleLike };

export interface RuleUpdate {
  /** 'map': classifier maps only; 'reload': the program was regenerated and replaced at its hooks. */
  kind: 'map' | 'reload';
  /** Why the ruleset's shape changed (reload only). */
  why?: string;
  /** Names of the rules added or replaced, in order. */
  rules: string[];
  /** Wall time, ms. */
  ms: number;
}

interface LiveChain {
  name: string;
  policy: ChainPolicy;
  source?: SourcePosition;
  rules: LiveRule[];
}

interface LiveRule {
  /** The rule as given (id and index are set when the definition is materialized). */
  def: RuleDef;
  chain: LiveChain;
  slot: number;
  cls?: { block: LiveBlock; prio: number; conjs: Conj[]; tids: number[]; action: ClsAction };
  /** The materialized rule (current id and index). */
  now?: RuleDef;
}

interface LiveTuple {
  tid: number;
  id: string;
  mask: Conj;
  /** Lower bound of the priorities of its entries. */
  minPrio: number;
  /** Entries (rule conjunctions) in it. */
  count: number;
}

interface LiveEntry {
  tag: number;
  conj: Conj;
  /** Rules with this masked key, by priority: the first one is in the map. */
  list: Array<{ prio: number; slot: number }>;
}

interface LiveBlock {
  id: number;
  chain: LiveChain;
  tuples: Map<string, LiveTuple>;
  tids: Set<number>;
  entries: Map<string, LiveEntry>;
  rejectOk: boolean;
  /** The tuple list both generations hold now (tid:minPrio in lookup order): unchanged lists are not rewritten. */
  written: string;
}

/** Why the shape changes: thrown inside an update, caught to regenerate. */
class Reshape extends Error {}

function reshape(why: string): never {
  throw new Reshape(why);
}

/** Kernel writes of one update, made in one generation switch. */
interface Pending {
  /** Entries whose winner may change, with the winner before the update. */
  entries: Map<string, { entry: LiveEntry; block: LiveBlock; before: { prio: number; slot: number } | undefined }>;
  /** Blocks whose tuples changed. */
  blocks: Set<LiveBlock>;
  /** Writes that must land before the switch (action records, zeroed counters). */
  pre: Array<[map: string, key: Buffer, value: Buffer]>;
  /** Slots to free once the switch is done. */
  freed: number[];
  /** Undo steps for the in-memory state, newest last. */
  undo: Array<() => void>;
  names: string[];
  /** Entries new in this update (no winner before it): written without a touch record. */
  fresh?: LiveEntry[];
  /** Writes before the switch already laid out as batches (map, keys, values, count). */
  batches?: Array<[map: string, keys: Buffer, values: Buffer, count: number]>;
}

/** The least spacing addMany leaves between the priorities of its rules (room for later inserts among them). */
const MIN_BATCH_STEP = 64;

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** The rules of a loaded filter, changeable while it runs. Get it as `handle.rules`. */
export class LiveRules {
  #chains: LiveChain[] = [];
  #byName = new Map<string, LiveRule>();
  /** Rules by slot (a dense array: slots are small integers). */
  #bySlot: Array<LiveRule | undefined> = [];
  #blocks: LiveBlock[] = [];
  #key!: KeyLayout;
  #slotCapacity = 0;
  #entryCapacity = 0;
  #entryCount = 0;
  #nextSlot = 0;
  #free: number[] = [];
  #gen = 0;
  #hasEvents = false;
  #def: Definition | undefined;
  #byId: LiveRule[] = [];
  /** Where rules were last found in their chain: repeated inserts next to one rule find it at once. */
  #hint = new WeakMap<LiveRule, number>();

  /** @internal use handle.rules */
  constructor(private readonly host: LoadedFilter) {
    this.#build(host.compiled);
  }

  /** The ruleset as it is now (ids in definition order). */
  get definition(): Definition {
    if (!this.#def) this.#materialize();
    return this.#def!;
  }

  /** Number of rules. */
  get size(): number {
    return this.#byName.size;
  }

  /** Add a rule at a place (default: the end of the entry chain). */
  add(rule: RuleLike, place: RulePlace = {}): RuleUpdate {
    return this.update([{ op: 'add', rule, place }]);
  }

  /**
   * Many rules at one place, in the order given, atomically for packets. When
   * they are classifiable next to a classifier block this is planned in
   * memory first and written with batch map updates into the inactive
   * generation, then one write switches generations. When the rule slots or
   * the classifier hash are too small, the program is regenerated once, sized
   * with headroom for them.
   */
  addMany(rules: readonly RuleLike[], place: RulePlace = {}): RuleUpdate {
    const started = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    if (rules.length === 0) return { kind: 'map', rules: [], ms: ms() };
    const chain = this.#chainFor(place);
    const index = this.#indexFor(chain, place);
    // The new rules' names are taken in #byName from here (one lookup and one insert per rule); released on any failure of the plan.
    const lrs = this.#newRules(rules, chain, index);
    let p: Pending;
    try {
      p = this.#planMany(lrs, chain, index);
    } catch (e) {
      for (const lr of lrs) this.#byName.delete(lr.def.name);
      if (!(e instanceof Reshape)) throw e;
      // One regeneration with them all, at consecutive positions (the definition sizes slots and entries).
      const ops: RuleOp[] = rules.map((rule, i) => ({ op: 'add', rule, place: { chain: chain.name, position: index + i } }));
      const names = this.#regenerate(ops, e.message);
      return { kind: 'reload', why: e.message, rules: names, ms: ms() };
    }
    return this.#commit(p, ms);
  }

  /** Remove a rule, by name or current id. */
  remove(rule: string | number): RuleUpdate {
    return this.update([{ op: 'remove', rule }]);
  }

  /** Put `next` in the place of a rule (it keeps the old name unless it has its own). */
  replace(rule: string | number, next: RuleLike): RuleUpdate {
    return this.update([{ op: 'replace', rule, with: next }]);
  }

  /**
   * Several changes at once, atomically for packets: all become visible in one
   * generation switch (or one program replacement). Nothing changes when any
   * of them is invalid.
   */
  update(ops: readonly RuleOp[]): RuleUpdate {
    const started = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    const p: Pending = { entries: new Map(), blocks: new Set(), pre: [], freed: [], undo: [], names: [] };
    try {
      for (const op of ops) this.#apply(op, p);
    } catch (e) {
      // Back to the state before this update, then either regenerate or fail.
      for (const u of p.undo.reverse()) u();
      if (!(e instanceof Reshape)) throw e;
      const names = this.#regenerate(ops, e.message);
      return { kind: 'reload', why: e.message, rules: names, ms: ms() };
    }
    return this.#commit(p, ms);
  }

  /** Write a plan to the maps; when that fails the maps may be half written, so regenerate from the state we meant. */
  #commit(p: Pending, ms: () => number): RuleUpdate {
    this.#def = undefined;
    try {
      this.#flush(p);
    } catch (e) {
      const why = `map update failed: ${(e as Error).message}`;
      this.#regenerate([], why);
      return { kind: 'reload', why, rules: p.names, ms: ms() };
    }
    return { kind: 'map', rules: p.names, ms: ms() };
  }

  /** @internal the slot of a rule by current id. */
  slotOf(id: number): number {
    if (!this.#def) this.#materialize();
    return this.#byId[id]?.slot ?? id;
  }

  /** @internal the rule holding a slot, as it is now. */
  ruleOfSlot(slot: number): RuleDef | undefined {
    const r = this.#bySlot[slot];
    if (!r) return undefined;
    if (!this.#def) this.#materialize();
    return r.now;
  }

  // -------------------------------------------------------------------------
  // State

  #build(compiled: CompileResult): void {
    const def = compiled.definition;
    const plan = compiled.classification;
    const slots = compiled.ruleSlots;
    this.#chains = [];
    this.#byName = new Map();
    // Sized up front: slots are assigned out of order, and a holey array stays fast where a growing sparse one may not.
    this.#bySlot = new Array<LiveRule | undefined>(plan.slotCapacity);
    this.#blocks = [];
    let maxSlot = -1;
    const byId: LiveRule[] = [];
    for (const c of def.chains) {
      const chain: LiveChain = { name: c.name, policy: c.policy, ...(c.source ? { source: c.source } : {}), rules: [] };
      for (const r of c.rules) {
        const lr: LiveRule = { def: r, chain, slot: slots?.[r.id] ?? r.id, now: r };
        chain.rules.push(lr);
        this.#byName.set(r.name, lr);
        this.#bySlot[lr.slot] = lr;
        byId[r.id] = lr;
        maxSlot = Math.max(maxSlot, lr.slot);
      }
      this.#chains.push(chain);
    }
    const chainOf = new Map(this.#chains.map((c) => [c.name, c]));
    let entries = 0;
    for (const b of plan.tss) {
      const block: LiveBlock = { id: b.id!, chain: chainOf.get(b.chain)!, tuples: new Map(), tids: new Set(), entries: new Map(), rejectOk: b.rejectOk ?? false, written: '' };
      const byTid = new Map<number, LiveTuple>();
      for (const t of b.tuples) {
        const lt: LiveTuple = { tid: t.tid, id: t.id, mask: t.mask, minPrio: t.minPrio, count: 0 };
        block.tuples.set(t.id, lt);
        block.tids.add(t.tid);
        byTid.set(t.tid, lt);
      }
      for (const m of b.members) {
        const lr = byId[m.rule.id]!;
        lr.cls = { block, prio: m.prio, conjs: m.conjs, tids: m.tids, action: m.action };
        m.conjs.forEach((c, i) => {
          const tid = m.tids[i]!;
          byTid.get(tid)!.count++;
          const tag = tagOf(block.id, tid);
          const id = entryId(tag, c);
          let e = block.entries.get(id);
          if (!e) {
            e = { tag, conj: c, list: [] };
            block.entries.set(id, e);
            entries++;
          }
          // Members come in priority order, so the list stays sorted.
          e.list.push({ prio: m.prio, slot: m.slot });
        });
      }
      block.written = orderOf(block).sig;
      this.#blocks.push(block);
    }
    this.#key = plan.key;
    this.#slotCapacity = plan.slotCapacity;
    this.#entryCapacity = plan.entryCapacity;
    this.#entryCount = entries;
    this.#nextSlot = maxSlot + 1;
    // Slots no rule holds (freed by earlier updates) are handed out first.
    this.#free = [];
    for (let s = 0; s < maxSlot; s++) if (this.#bySlot[s] === undefined) this.#free.push(s);
    this.#hasEvents = compiled.maps.some((m) => m.name === 'tsbpf_events');
    const ctl = this.host.object.maps['tsbpf_cls_ctl'];
    this.#gen = ctl ? (ctl.raw.get(u32Buf(0))?.readUInt32LE(0) ?? 0) & 1 : 0;
    this.#def = def;
    this.#byId = byId;
  }

  #materialize(): void {
    const base = this.host.compiled.definition;
    let id = 0;
    let limitId = 0;
    const byId: LiveRule[] = [];
    const chains = this.#chains.map((c) => ({
      name: c.name,
      policy: c.policy,
      ...(c.source ? { source: c.source } : {}),
      rules: c.rules.map((lr, index) => {
        const actions = lr.def.actions.map((a) => (a.kind === 'limit' ? { ...a, limitId: limitId++ } : a));
        const now: RuleDef = { ...lr.def, id: id++, index, chain: c.name, actions };
        lr.now = now;
        byId.push(lr);
        return now;
      }),
    }));
    this.#def = { ...base, chains };
    this.#byId = byId;
  }

  // -------------------------------------------------------------------------
  // Fast path: one op on the in-memory state, kernel writes collected in p

  #apply(op: RuleOp, p: Pending): void {
    if (op.op === 'add') {
      const lr = this.#newRule(op.rule, this.#chainFor(op.place));
      const index = this.#indexFor(lr.chain, op.place);
      this.#insert(lr, index, p);
      this.#classifyInto(lr, index, p, undefined);
      p.names.push(lr.def.name);
      return;
    }
    const old = this.#resolve(op.rule);
    if (op.op === 'remove') {
      if (!old.cls) reshape(`rule '${old.def.name}' is not in a classifier block`);
      const index = this.#indexOf(old);
      this.#unclassify(old, p);
      this.#detach(old, index, p);
      return;
    }
    const lr = this.#newRule(op.with, old.chain, old.def.name);
    if (!old.cls) reshape(`rule '${old.def.name}' is not in a classifier block`);
    const index = this.#indexOf(old);
    const { block, prio } = old.cls;
    this.#unclassify(old, p);
    this.#detach(old, index, p);
    this.#insert(lr, index, p);
    this.#classifyInto(lr, index, p, { block, prio });
    p.names.push(lr.def.name);
  }

  #chainFor(place: RulePlace | undefined): LiveChain {
    const pos = place?.position;
    if (place?.chain !== undefined) {
      const c = this.#chains.find((x) => x.name === place.chain);
      if (!c) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.host.name}' has no chain '${place.chain}'`);
      return c;
    }
    if (pos && typeof pos === 'object') return this.#resolve('before' in pos ? pos.before : pos.after).chain;
    const entry = this.host.compiled.definition.programs[0]?.entry;
    return this.#chains.find((c) => c.name === entry) ?? this.#chains[0]!;
  }

  #indexFor(chain: LiveChain, place: RulePlace | undefined): number {
    const pos = place?.position;
    if (pos === undefined) return chain.rules.length;
    if (typeof pos === 'number') {
      if (!Number.isInteger(pos) || pos < 0 || pos > chain.rules.length) {
        throw new TsbpfError('INVALID_ARGUMENT', `position ${pos} is outside chain '${chain.name}' (0..${chain.rules.length})`);
      }
      return pos;
    }
    const ref = this.#resolve('before' in pos ? pos.before : pos.after);
    if (ref.chain !== chain) throw new TsbpfError('INVALID_ARGUMENT', `rule '${ref.def.name}' is in chain '${ref.chain.name}', not '${chain.name}'`);
    const i = this.#indexOf(ref);
    return 'before' in pos ? i : i + 1;
  }

  /** The index of a rule in its chain: near where it was last seen, else a scan. */
  #indexOf(r: LiveRule): number {
    const rules = r.chain.rules;
    const h = this.#hint.get(r);
    if (h !== undefined) {
      for (const i of [h, h + 1, h - 1]) {
        if (rules[i] === r) {
          this.#hint.set(r, i);
          return i;
        }
      }
    }
    const i = rules.indexOf(r);
    this.#hint.set(r, i);
    return i;
  }

  #resolve(ref: string | number): LiveRule {
    if (typeof ref === 'string') {
      const r = this.#byName.get(ref);
      if (!r) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.host.name}' has no rule '${ref}'`);
      return r;
    }
    if (!this.#def) this.#materialize();
    const r = Number.isInteger(ref) ? this.#byId[ref] : undefined;
    if (!r) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.host.name}' has no rule with id ${ref}`);
    return r;
  }

  /** A rule from the DSL, checked on its own against the filter's chains and sets. */
  #newRule(rule: RuleLike, chain: LiveChain, fallbackName?: string, names: Map<string, LiveRule> = this.#byName, length = chain.rules.length): LiveRule {
    const data = (rule as { [RULE_DATA]?: RuleData } | undefined)?.[RULE_DATA];
    if (!data) throw new TsbpfError('INVALID_ARGUMENT', 'rules.add/replace take a rule made with rule(...)');
    const name = data.name ?? fallbackName ?? freshName(chain.name, names, length);
    if (names.has(name) && name !== fallbackName) throw new DslError(`there is a rule named '${name}' already`, { rule: name, ...(data.source ? { source: data.source } : {}) });
    let limitId = 0;
    const actions = data.actions.map((a) => (a.kind === 'limit' ? { ...a, limitId: limitId++ } : { ...a })) as ActionDef[];
    const def: RuleDef = { id: 0, name, chain: chain.name, index: 0, match: data.match.expr, actions };
    if (data.comment !== undefined) def.comment = data.comment;
    if (data.source) def.source = data.source;
    const base = this.host.compiled.definition;
    const mini: Definition = {
      ...base,
      chains: this.#chains.map((c) => ({ name: c.name, policy: c.policy, rules: c === chain ? [def] : [] })),
    };
    throwProblems([
      ...data.match.problems.map((message) => ({ message, rule: name, ...(data.source ? { source: data.source } : {}) })),
      ...validateDefinition(mini),
    ]);
    return { def, chain, slot: -1 };
  }

  /**
   * Rules from the DSL for addMany: named, and validated together in one
   * pass. Their names are taken in #byName (the caller releases them when
   * the plan fails); on a bad rule they are released here, and it throws.
   */
  #newRules(rules: readonly RuleLike[], chain: LiveChain, index: number): LiveRule[] {
    const byName = this.#byName;
    const lrs: LiveRule[] = [];
    try {
      const defs: RuleDef[] = [];
      const problems: Array<{ message: string; rule: string; source?: SourcePosition }> = [];
      const shared = new Map<string, ActionDef[]>();
      rules.forEach((rule, i) => {
        const data = (rule as { [RULE_DATA]?: RuleData } | undefined)?.[RULE_DATA];
        if (!data) throw new TsbpfError('INVALID_ARGUMENT', 'rules.addMany takes rules made with rule(...)');
        let name = data.name;
        if (name === undefined) for (let k = chain.rules.length + i; ; k++) if (!byName.has((name = `${chain.name}#${k}`))) break;
        if (byName.has(name!)) throw new DslError(`there is a rule named '${name}' already`, { rule: name!, ...(data.source ? { source: data.source } : {}) });
        let actions = sharedActions(data.actions, shared);
        if (!actions) {
          let limitId = 0;
          actions = data.actions.map((a) => (a.kind === 'limit' ? { ...a, limitId: limitId++ } : { ...a })) as ActionDef[];
        }
        const def: RuleDef = { id: i, name: name!, chain: chain.name, index: i, match: data.match.expr, actions };
        if (data.comment !== undefined) def.comment = data.comment;
        if (data.source) def.source = data.source;
        for (const message of data.match.problems) problems.push({ message, rule: name!, ...(data.source ? { source: data.source } : {}) });
        defs.push(def);
        // Made with every field it gets later: one object shape, no property added in the hot loop.
        const lr = { def, chain, slot: -1, cls: undefined, now: undefined } as unknown as LiveRule;
        byName.set(name!, lr);
        lrs.push(lr);
      });
      const base = this.host.compiled.definition;
      // Rules that are plainly valid on their own need no more than the names checked above: the definition is checked without them.
      const plain = problems.length === 0 && defs.every(isPlainValidRule);
      const mini: Definition = { ...base, chains: this.#chains.map((c) => ({ name: c.name, policy: c.policy, rules: c === chain && !plain ? defs : [] })) };
      throwProblems([...problems, ...validateDefinition(mini)]);
      return lrs;
    } catch (e) {
      for (const lr of lrs) byName.delete(lr.def.name);
      throw e;
    }
  }

  /**
   * The plan of addMany: every check first (nothing changes when one fails,
   * a Reshape says the shape must change), then the in-memory state and the
   * kernel writes. New rules get evenly spaced priorities between their
   * neighbours; when there is no room, the whole block is renumbered (the
   * order of its members stays, so their entry lists are remapped in place).
   */
  #planMany(lrs: LiveRule[], chain: LiveChain, index: number): Pending {
    const p: Pending = { entries: new Map(), blocks: new Set(), pre: [], freed: [], undo: [], names: [], fresh: [] };
    const prev = chain.rules[index - 1];
    const next = chain.rules[index];
    const candidates = [prev?.cls?.block, next?.cls?.block].filter((b): b is LiveBlock => b !== undefined);
    if (candidates.length === 0) reshape(`no classifier block next to where the rules go`);
    // Classified by shape: rules that differ only in their port and address values are classified once.
    const ks = classifyRules(lrs.map((lr) => lr.def)).map((k, i) => {
      if (!k.ok) reshape(`rule '${lrs[i]!.def.name}' is not classifiable (${k.why})`);
      return k;
    });
    // Tuple ids of every conjunction, once; the block whose tuple budget they fit.
    const tupleIdsOf = ks.map((k) => k.tupleIds ?? k.conjs.map((c) => tupleId(c)));
    const distinct = new Map<string, Conj>();
    ks.forEach((k, i) => k.conjs.forEach((c, j) => distinct.has(tupleIdsOf[i]![j]!) || distinct.set(tupleIdsOf[i]![j]!, c)));
    const added = (b: LiveBlock) => {
      let n = 0;
      for (const id of distinct.keys()) if (!b.tuples.has(id)) n++;
      return n;
    };
    const block = candidates.find((b) => b.tuples.size + added(b) <= T_MAX);
    if (!block) reshape(`block ${candidates[0]!.id} would need more than ${T_MAX} tuples`);
    // The key must have the fields the rules test: checked once per distinct tuple (a mask holds the fields).
    const keyHas = new Set(this.#key.fields.map((x) => x.field));
    for (const c of distinct.values()) {
      for (const f of FIELDS) if (!keyHas.has(f) && hasField(c, f)) reshape(`the rules test ${f}, which the classifier key lacks`);
      if (!this.#key.v6 && (wideAddr(c, 'src') || wideAddr(c, 'dst'))) reshape(`the rules need IPv6 addresses in the classifier key`);
    }
    ks.forEach((k, i) => {
      const name = lrs[i]!.def.name;
      if (k.action.flags & CLS_FLAG.LOG && !this.#hasEvents) reshape(`rule '${name}' logs, and the filter has no log ring buffer yet`);
      if (k.action.verdict === CLS_VERDICT.reject && !block.rejectOk) reshape(`rule '${name}' rejects, and the program has no reject stage yet`);
    });
    // Capacity, up front: slots, then hash entries (new masked keys only).
    const n = lrs.length;
    const slotsLeft = this.#free.length + (this.#slotCapacity - this.#nextSlot);
    if (n > slotsLeft) reshape(`${n} new rules need more rule slots than the ${slotsLeft} left of ${this.#slotCapacity}`);
    const tidOf = new Map<string, number>();
    for (const t of block.tuples.values()) tidOf.set(t.id, t.tid);
    const fresh: Array<[string, number, Conj]> = [];
    let nextTid = 0;
    for (const [id, c] of distinct) {
      if (tidOf.has(id)) continue;
      while (block.tids.has(nextTid)) nextTid++;
      if (nextTid >= 256) reshape(`block ${block.id} has no tuple id left`);
      tidOf.set(id, nextTid);
      fresh.push([id, nextTid++, c]);
    }
    // Rules of one shape share their tuple ids' array, and so their tids.
    const tidsOf = new Map<string[], number[]>();
    const tids = tupleIdsOf.map((ids) => {
      let t = tidsOf.get(ids);
      if (!t) tidsOf.set(ids, (t = ids.map((id) => tidOf.get(id)!)));
      return t;
    });
    // Every conjunction's entry id and the entry it has now (looked up once; undefined: new), flat in rule order.
    const ids: string[] = [];
    const found: Array<LiveEntry | undefined> = [];
    let maybeNew = 0;
    ks.forEach((k, i) => {
      const t = tids[i]!;
      for (let j = 0; j < k.conjs.length; j++) {
        const id = entryId(tagOf(block.id, t[j]!), k.conjs[j]!);
        const e = block.entries.get(id);
        ids.push(id);
        found.push(e);
        if (!e) maybeNew++;
      }
    });
    // New masked keys, counted exactly (rules of the batch may share one) only when the bound says it matters.
    if (this.#entryCount + maybeNew > this.#entryCapacity) {
      const fresh = new Set<string>();
      ids.forEach((id, k) => found[k] || fresh.add(id));
      if (this.#entryCount + fresh.size > this.#entryCapacity) reshape(`the classifier hash is full (${this.#entryCapacity} entries)`);
    }

    // Priorities between the neighbours in the block, or the block renumbered.
    const lo = prev?.cls?.block === block ? prev.cls.prio : 0;
    const hi = next?.cls?.block === block ? next.cls.prio : Math.min(PRIO_NONE - 1, lo + (n + 1) * prioGap(1));
    const step = Math.floor((hi - lo) / (n + 1));
    let prioOfNew = (i: number) => lo + (i + 1) * step;

    // From here on nothing fails: change the state.
    const rules = (chain.rules = chain.rules.slice(0, index).concat(lrs, chain.rules.slice(index)));
    for (const [id, tid, mask] of fresh) {
      block.tuples.set(id, { tid, id, mask, minPrio: PRIO_NONE, count: 0 });
      block.tids.add(tid);
    }
    p.blocks.add(block);
    if (step < MIN_BATCH_STEP) {
      // No room between the neighbours. The block is a contiguous run of its chain, a..b with the batch at index.
      let a = index;
      while (a > 0 && rules[a - 1]!.cls?.block === block) a--;
      let b = index + n;
      while (b < rules.length && rules[b]!.cls?.block === block) b++;
      // The smallest window of members around the batch (doubling) whose outer neighbours leave room for all of it:
      // only the members in the window move, and with them only their entries (an order-maintenance list).
      let wa = a;
      let wb = b;
      let wlo = 0;
      let wstep = 0;
      for (let w = 1; ; w *= 2) {
        const x = Math.max(a, index - w);
        const y = Math.min(b, index + n + w);
        if (x === a && y === b) break;
        const l = x > a ? rules[x - 1]!.cls!.prio : 0;
        const h = y < b ? rules[y]!.cls!.prio : PRIO_NONE - 1;
        const st = Math.floor((h - l) / (y - x + 1));
        if (st >= MIN_BATCH_STEP) {
          wa = x;
          wb = y;
          wlo = l;
          wstep = st;
          break;
        }
      }
      const whole = wa === a && wb === b;
      // The whole block renumbered: members keep their order, spaced evenly.
      const gap = whole ? prioGap(b - a) : wstep;
      const base = whole ? 0 : wlo;
      const first = index - wa + 1;
      prioOfNew = (i) => base + (first + i) * gap;
      const prioOf = new Map<number, number>();
      for (let i = wa; i < wb; i++) {
        const r = rules[i]!;
        if (r.cls) {
          r.cls.prio = base + (i - wa + 1) * gap;
          prioOf.set(r.slot, r.cls.prio);
        }
      }
      const byTid = new Map([...block.tuples.values()].map((t) => [t.tid, t]));
      // Order is kept, so every list stays sorted with its priorities remapped.
      const remap = (id: string, e: LiveEntry) => {
        this.#touch(block, id, e, p);
        e.list = e.list.map((x) => ({ prio: prioOf.get(x.slot) ?? x.prio, slot: x.slot }));
      };
      if (whole) {
        for (const t of block.tuples.values()) t.minPrio = PRIO_NONE;
        for (const [id, e] of block.entries) {
          remap(id, e);
          const t = byTid.get(e.tag & 255);
          if (t && e.list[0] && e.list[0].prio < t.minPrio) t.minPrio = e.list[0].prio;
        }
      } else {
        // The entries of the moved members; a tuple's bound is lowered where a member moved below it.
        const done = new Set<string>();
        for (let i = wa; i < wb; i++) {
          const cls = rules[i]!.cls;
          if (!cls) continue;
          cls.conjs.forEach((c, k) => {
            const tid = cls.tids[k]!;
            const id = entryId(tagOf(block.id, tid), c);
            const e = block.entries.get(id);
            if (e && !done.has(id)) {
              done.add(id);
              remap(id, e);
            }
            const t = byTid.get(tid);
            if (t && cls.prio < t.minPrio) t.minPrio = cls.prio;
          });
        }
      }
    }
    // Slots, action records and zeroed counters (contiguous buffers, one batch each).
    const counters = this.host.object.maps['tsbpf_counters'];
    const actKeys = Buffer.alloc(4 * n);
    const actVals = Buffer.alloc(ACT_SIZE * n);
    const byTid = new Map([...block.tuples.values()].map((t) => [t.tid, t]));
    let at = 0;
    lrs.forEach((lr, i) => {
      const k = ks[i]!;
      // No #hint for them: a WeakMap entry each costs more than the scan #indexOf makes when one is looked up. (#newRules named them.)
      const slot = this.#free.length ? this.#free.shift()! : this.#nextSlot++;
      lr.slot = slot;
      this.#bySlot[slot] = lr;
      actKeys.writeUInt32LE(slot, 4 * i);
      writeAction(actVals, ACT_SIZE * i, k.action, slot);
      lr.cls = { block, prio: prioOfNew(i), conjs: k.conjs, tids: tids[i]!, action: k.action };
      p.names.push(lr.def.name);
      this.#placeEntries(lr, ids, found, at, block, byTid, p);
      at += k.conjs.length;
    });
    p.batches = [['tsbpf_cls_act', actKeys, actVals, n]];
    if (counters) p.batches.push(['tsbpf_counters', actKeys, Buffer.alloc(counters.valueBytes * n), n]);
    return p;
  }

  /**
   * A classified rule's entries into its block's lists (and tuple counts and
   * bounds), for addMany: ids and found (the entry before the batch) from `at`.
   */
  #placeEntries(lr: LiveRule, ids: string[], found: Array<LiveEntry | undefined>, at: number, block: LiveBlock, byTid: Map<number, LiveTuple>, p: Pending): void {
    const cls = lr.cls!;
    const item = { prio: cls.prio, slot: lr.slot };
    const conjs = cls.conjs;
    for (let i = 0; i < conjs.length; i++) {
      const tid = cls.tids[i]!;
      const t = byTid.get(tid)!;
      t.count++;
      if (cls.prio < t.minPrio) t.minPrio = cls.prio;
      const id = ids[at + i]!;
      let e = found[at + i];
      if (e) this.#touch(block, id, e, p); // it had a winner before: remember it
      else {
        e = block.entries.get(id);
        if (!e) {
          // New: nothing to remember of it before the update, and it has no other rule yet.
          const made: LiveEntry = { tag: tagOf(block.id, tid), conj: conjs[i]!, list: [item] };
          block.entries.set(id, made);
          this.#entryCount++;
          p.fresh!.push(made);
          continue;
        }
        // New in this batch, made by an earlier rule of it with the same masked key: stays fresh.
      }
      const list = e.list;
      if (list.length === 0 || list[list.length - 1]!.prio < item.prio) list.push(item);
      else {
        const k = list.findIndex((x) => x.prio > item.prio);
        list.splice(k < 0 ? list.length : k, 0, item);
      }
    }
  }

  #insert(lr: LiveRule, index: number, p: Pending): void {
    lr.chain.rules.splice(index, 0, lr);
    this.#hint.set(lr, index);
    this.#byName.set(lr.def.name, lr);
    p.undo.push(() => {
      lr.chain.rules.splice(lr.chain.rules.indexOf(lr), 1);
      this.#byName.delete(lr.def.name);
    });
  }

  #detach(lr: LiveRule, index: number, p: Pending): void {
    lr.chain.rules.splice(index, 1);
    this.#byName.delete(lr.def.name);
    this.#bySlot[lr.slot] = undefined;
    p.freed.push(lr.slot);
    p.undo.push(() => {
      lr.chain.rules.splice(index, 0, lr);
      this.#byName.set(lr.def.name, lr);
      this.#bySlot[lr.slot] = lr;
      p.freed.pop();
    });
  }

  /** Put lr (already in its chain at index) into a block: at `into` (a replace) or next to its neighbours. */
  #classifyInto(lr: LiveRule, index: number, p: Pending, into: { block: LiveBlock; prio: number } | undefined): void {
    const k = classifyRule(lr.def);
    if (!k.ok) reshape(`rule '${lr.def.name}' is not classifiable (${k.why})`);
    const rules = lr.chain.rules;
    const prev = rules[index - 1];
    const next = rules[index + 1];
    let block = into?.block;
    if (!block) {
      const candidates = [prev?.cls?.block, next?.cls?.block].filter((b): b is LiveBlock => b !== undefined);
      block = candidates.find((b) => this.#fits(b, k.conjs)) ?? candidates[0];
      if (!block) reshape(`no classifier block next to where rule '${lr.def.name}' goes`);
    }
    // The key must have the fields the rule tests.
    for (const c of k.conjs) {
      for (const f of FIELDS) if (hasField(c, f) && !this.#key.fields.some((x) => x.field === f)) reshape(`rule '${lr.def.name}' tests ${f}, which the classifier key lacks`);
      if (!this.#key.v6 && (wideAddr(c, 'src') || wideAddr(c, 'dst'))) reshape(`rule '${lr.def.name}' needs IPv6 addresses in the classifier key`);
    }
    if (!this.#fits(block, k.conjs)) reshape(`block ${block.id} would need more than ${T_MAX} tuples`);
    if (k.action.flags & CLS_FLAG.LOG && !this.#hasEvents) reshape(`rule '${lr.def.name}' logs, and the filter has no log ring buffer yet`);
    if (k.action.verdict === CLS_VERDICT.reject && !block.rejectOk) reshape(`rule '${lr.def.name}' rejects, and the program has no reject stage yet`);
    if (this.#entryCount + k.conjs.length > this.#entryCapacity) reshape(`the classifier hash is full (${this.#entryCapacity} entries)`);

    // Priority: between its neighbours in the block; a block without room is renumbered.
    let prio = into?.prio;
    if (prio === undefined) {
      const lo = prev?.cls?.block === block ? prev.cls.prio : 0;
      const hi = next?.cls?.block === block ? next.cls.prio : Math.min(PRIO_NONE - 1, lo + 2 * prioGap(1));
      if (hi - lo >= 2) prio = lo + Math.floor((hi - lo) / 2);
    }
    const slot = this.#allocSlot(p);
    lr.slot = slot;
    this.#bySlot[slot] = lr;
    p.undo.push(() => (this.#bySlot[slot] = undefined));
    p.pre.push(['tsbpf_cls_act', u32Buf(slot), actionValue(k.action, slot)]);
    const counters = this.host.object.maps['tsbpf_counters'];
    if (counters) p.pre.push(['tsbpf_counters', u32Buf(slot), Buffer.alloc(counters.valueBytes)]);
    lr.cls = { block, prio: prio ?? 0, conjs: k.conjs, tids: [], action: k.action };
    p.undo.push(() => delete lr.cls);
    if (prio === undefined) this.#respace(block, lr, p);
    this.#addEntries(lr, p);
  }

  #fits(block: LiveBlock, conjs: readonly Conj[]): boolean {
    let added = 0;
    const seen = new Set<string>();
    for (const c of conjs) {
      const id = tupleId(c);
      if (!block.tuples.has(id) && !seen.has(id)) added++;
      seen.add(id);
    }
    return block.tuples.size + added <= T_MAX;
  }

  #allocSlot(p: Pending): number {
    if (this.#free.length) {
      const s = this.#free.shift()!;
      p.undo.push(() => this.#free.unshift(s));
      return s;
    }
    if (this.#nextSlot >= this.#slotCapacity) reshape(`all ${this.#slotCapacity} rule slots are taken`);
    const s = this.#nextSlot++;
    p.undo.push(() => this.#nextSlot--);
    return s;
  }

  #touch(block: LiveBlock, id: string, e: LiveEntry, p: Pending): void {
    // Entry ids start with the tag, which holds the block: unique across blocks.
    if (!p.entries.has(id)) p.entries.set(id, { entry: e, block, before: e.list[0] ? { ...e.list[0] } : undefined });
  }

  #addEntries(lr: LiveRule, p: Pending): void {
    const cls = lr.cls!;
    const block = cls.block;
    cls.tids = cls.conjs.map((c) => {
      const tid = tupleId(c);
      let t = block.tuples.get(tid);
      if (!t) {
        let n = 0;
        while (block.tids.has(n)) n++;
        if (n >= 256) reshape(`block ${block.id} has no tuple id left`);
        const nt: LiveTuple = { tid: n, id: tid, mask: c, minPrio: cls.prio, count: 0 };
        block.tuples.set(tid, nt);
        block.tids.add(n);
        p.undo.push(() => {
          block.tuples.delete(tid);
          block.tids.delete(n);
        });
        t = nt;
      }
      const tt = t;
      const oldMin = tt.minPrio;
      tt.count++;
      tt.minPrio = Math.min(tt.minPrio, cls.prio);
      p.undo.push(() => {
        tt.count--;
        tt.minPrio = oldMin;
      });
      p.blocks.add(block);
      return tt.tid;
    });
    cls.conjs.forEach((c, i) => {
      const tag = tagOf(block.id, cls.tids[i]!);
      const id = entryId(tag, c);
      let e = block.entries.get(id);
      if (!e) {
        const ne: LiveEntry = { tag, conj: c, list: [] };
        block.entries.set(id, ne);
        this.#entryCount++;
        p.undo.push(() => {
          block.entries.delete(id);
          this.#entryCount--;
        });
        e = ne;
      }
      this.#touch(block, id, e, p);
      const list = e.list;
      const item = { prio: cls.prio, slot: lr.slot };
      let at = list.findIndex((x) => x.prio > item.prio);
      if (at < 0) at = list.length;
      list.splice(at, 0, item);
      p.undo.push(() => list.splice(list.indexOf(item), 1));
    });
  }

  #unclassify(lr: LiveRule, p: Pending): void {
    const cls = lr.cls!;
    const block = cls.block;
    cls.conjs.forEach((c, i) => {
      const tid = cls.tids[i]!;
      const tag = tagOf(block.id, tid);
      const id = entryId(tag, c);
      const e = block.entries.get(id);
      if (e) {
        this.#touch(block, id, e, p);
        const at = e.list.findIndex((x) => x.slot === lr.slot && x.prio === cls.prio);
        if (at >= 0) {
          const [item] = e.list.splice(at, 1);
          p.undo.push(() => e.list.splice(at, 0, item!));
        }
      }
      for (const t of block.tuples.values()) {
        if (t.tid !== tid) continue;
        t.count--;
        p.undo.push(() => t.count++);
        p.blocks.add(block);
      }
    });
    p.undo.push(() => (lr.cls = cls));
    delete lr.cls;
  }

  /**
   * No room between two priorities: spread the rules around lr evenly over a
   * window wide enough (doubling it until it is), like an order-maintenance
   * list. Only the rules in the window get new priorities (their entries are
   * rewritten), so repeated inserts at one place cost O(log n) on average.
   */
  #respace(block: LiveBlock, lr: LiveRule, p: Pending): void {
    // Block members around lr, walking out from it (a block is a contiguous run of its chain).
    const rules = block.chain.rules;
    const idx = rules.indexOf(lr);
    const left: LiveRule[] = [];
    const right: LiveRule[] = [];
    let li = idx - 1;
    let ri = idx + 1;
    const grow = (w: number) => {
      while (left.length < w + 1 && li >= 0 && rules[li]!.cls?.block === block) left.push(rules[li--]!);
      while (right.length < w + 1 && ri < rules.length && rules[ri]!.cls?.block === block) right.push(rules[ri++]!);
    };
    let members: LiveRule[] = [];
    let at = 0;
    let a = 0;
    let b = 0;
    let lo = 0;
    let hi = PRIO_NONE - 1;
    for (let w = 1; ; w *= 2) {
      grow(w);
      // members = left reversed, lr, right; a..b the window, with one neighbour outside each end when there is one.
      members = [...left.slice().reverse(), lr, ...right];
      at = left.length;
      const n = members.length;
      a = Math.max(0, at - w);
      b = Math.min(n - 1, at + w);
      const leftEnd = a === 0 && left.length < w + 1;
      const rightEnd = b === n - 1 && right.length < w + 1;
      lo = a > 0 ? members[a - 1]!.cls!.prio : leftEnd ? 0 : members[a]!.cls!.prio;
      hi = b < n - 1 ? members[b + 1]!.cls!.prio : rightEnd ? PRIO_NONE - 1 : members[b]!.cls!.prio;
      if (hi - lo >= 2 * (b - a + 2) || (leftEnd && rightEnd)) break;
    }
    const step = Math.floor((hi - lo) / (b - a + 2));
    if (step < 1) reshape(`block ${block.id} has no priorities left`);
    const moved = new Map<number, number>();
    const olds: Array<[LiveRule, number]> = [];
    for (let i = a; i <= b; i++) {
      const r = members[i]!;
      olds.push([r, r.cls!.prio]);
      r.cls!.prio = lo + (i - a + 1) * step;
      if (r !== lr) moved.set(r.slot, r.cls!.prio);
    }
    // Entries of the moved rules: new priorities, lists re-sorted; tuple bounds lowered where needed.
    const lists: Array<[LiveEntry, Array<{ prio: number; slot: number }>]> = [];
    const bounds: Array<[LiveTuple, number]> = [];
    for (let i = a; i <= b; i++) {
      const r = members[i]!;
      if (r === lr) continue;
      const cls = r.cls!;
      cls.conjs.forEach((c, k) => {
        const tid = cls.tids[k]!;
        const id = entryId(tagOf(block.id, tid), c);
        const e = block.entries.get(id);
        if (e) {
          this.#touch(block, id, e, p);
          lists.push([e, e.list]);
          e.list = e.list.map((x) => (moved.has(x.slot) ? { prio: moved.get(x.slot)!, slot: x.slot } : x)).sort((x, y) => x.prio - y.prio);
        }
        for (const t of block.tuples.values()) {
          if (t.tid === tid && cls.prio < t.minPrio) {
            bounds.push([t, t.minPrio]);
            t.minPrio = cls.prio;
          }
        }
      });
    }
    p.blocks.add(block);
    p.undo.push(() => {
      for (const [r, prio] of olds) r.cls!.prio = prio;
      for (const [e, l] of lists.reverse()) e.list = l;
      for (const [t, m] of bounds.reverse()) t.minPrio = m;
    });
  }

  // -------------------------------------------------------------------------
  // The generation switch

  #flush(p: Pending): void {
    const maps = this.host.object.maps;
    const hash = maps['tsbpf_cls'];
    const tup = maps['tsbpf_cls_tup'];
    const ctl = maps['tsbpf_cls_ctl'];
    if (!hash || !tup || !ctl) throw new TsbpfError('INTERNAL', 'the filter has no classifier maps');
    const n = native();
    // Action records and zeroed counters, a batch per map (a later write of a key wins).
    const pre = new Map<string, { keys: Buffer[]; values: Buffer[] }>();
    for (const [name, key, value] of p.pre) {
      let w = pre.get(name);
      if (!w) pre.set(name, (w = { keys: [], values: [] }));
      w.keys.push(key);
      w.values.push(value);
    }
    for (const [name, w] of pre) writeMany(maps[name]!, w.keys, w.values);
    for (const [name, keys, values, count] of p.batches ?? []) n.mapUpdateBatch(maps[name]!.fd, keys, values, count, 0);

    const g = this.#gen;
    const h = 1 - g;
    // Keys and values laid out contiguously: one batch for generation h. Entries whose winner changes:
    // touched ones (with their winner before) and new ones (no winner before).
    const ks = this.#key.size;
    const fresh = p.fresh ?? [];
    const most = p.entries.size + fresh.length;
    const keyBuf = Buffer.alloc(ks * most);
    const valBuf = Buffer.alloc(VAL_SIZE * most);
    const winP = new Float64Array(most);
    const winS = new Float64Array(most);
    // Entries no rule holds any more: index, id, block.
    const gone: Array<[number, string, LiveBlock]> = [];
    let count = 0;
    const put = (entry: LiveEntry, bp: number, bs: number, ap: number, as: number) => {
      writeKey(this.#key, keyBuf, count * ks, entry.tag, entry.conj);
      if (g === 0) writeValue(valBuf, count * VAL_SIZE, bp, bs, ap, as);
      else writeValue(valBuf, count * VAL_SIZE, ap, as, bp, bs);
      winP[count] = ap;
      winS[count] = as;
      count++;
    };
    for (const [id, { entry, block, before }] of p.entries) {
      const after = entry.list[0];
      if (before?.prio === after?.prio && before?.slot === after?.slot) continue;
      if (!after) gone.push([count, id, block]);
      put(entry, before?.prio ?? PRIO_NONE, before?.slot ?? 0, after?.prio ?? PRIO_NONE, after?.slot ?? 0);
    }
    for (const entry of fresh) {
      const after = entry.list[0]!;
      put(entry, PRIO_NONE, 0, after.prio, after.slot);
    }
    const keyAt = (j: number) => keyBuf.subarray(j * ks, (j + 1) * ks);
    if (count >= 4) n.mapUpdateBatch(hash.fd, keyBuf.subarray(0, ks * count), valBuf.subarray(0, VAL_SIZE * count), count, 0);
    else for (let j = 0; j < count; j++) n.mapUpdate(hash.fd, keyAt(j), valBuf.subarray(j * VAL_SIZE, (j + 1) * VAL_SIZE), 0);
    const orders = new Map<LiveBlock, LiveTuple[]>();
    for (const b of p.blocks) {
      const { order, sig } = orderOf(b);
      if (sig === b.written) continue;
      orders.set(b, order);
      b.written = sig;
      this.#writeTuples(b, h, order, tup, ctl);
    }
    // The switch: packets from now on read generation h.
    n.mapUpdate(ctl.fd, u32Buf(0), u32Buf(h), 0);
    this.#gen = h;
    // Bring generation g level with h: the winners in both; entries no rule holds go.
    let keys = keyBuf;
    let m = count;
    if (gone.length) {
      for (const [j, id, block] of gone) {
        n.mapDelete(hash.fd, keyAt(j));
        block.entries.delete(id);
        this.#entryCount--;
      }
      keys = Buffer.alloc(ks * count);
      m = 0;
      let d = 0;
      for (let j = 0; j < count; j++) {
        if (d < gone.length && gone[d]![0] === j) {
          d++;
          continue;
        }
        keyBuf.copy(keys, m * ks, j * ks, (j + 1) * ks);
        winP[m] = winP[j]!;
        winS[m] = winS[j]!;
        m++;
      }
    }
    for (let j = 0; j < m; j++) writeValue(valBuf, j * VAL_SIZE, winP[j]!, winS[j]!, winP[j]!, winS[j]!);
    if (m >= 4) n.mapUpdateBatch(hash.fd, keys.subarray(0, ks * m), valBuf.subarray(0, VAL_SIZE * m), m, 0);
    else for (let j = 0; j < m; j++) n.mapUpdate(hash.fd, keys.subarray(j * ks, (j + 1) * ks), valBuf.subarray(j * VAL_SIZE, (j + 1) * VAL_SIZE), 0);
    for (const [b, order] of orders) this.#writeTuples(b, g, order, tup, ctl);
    for (const b of p.blocks) {
      for (const t of [...b.tuples.values()]) {
        if (t.count > 0) continue;
        b.tuples.delete(t.id);
        b.tids.delete(t.tid);
      }
    }
    for (const s of p.freed) this.#free.push(s);
  }

  #writeTuples(b: LiveBlock, gen: number, order: LiveTuple[], tup: BpfMap<unknown, unknown>, ctl: BpfMap<unknown, unknown>): void {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    order.forEach((t, i) => {
      keys.push(u32Buf(tupleSlot(b.id, gen, i)));
      values.push(tupleValue(this.#key, b.id, { tid: t.tid, id: t.id, mask: t.mask, text: '', minPrio: t.minPrio }));
    });
    writeMany(tup, keys, values);
    native().mapUpdate(ctl.fd, u32Buf(countSlot(b.id, gen)), u32Buf(order.length), 0);
  }

  // -------------------------------------------------------------------------
  // Slow path: regenerate and swap the program

  #regenerate(ops: readonly RuleOp[], _why: string): string[] {
    // The rules as they will be, on copies: nothing changes if anything fails.
    const chains = this.#chains.map((c) => ({ ...c, rules: c.rules.slice() }));
    const byName = new Map(this.#byName);
    const names: string[] = [];
    const byChain = new Map(chains.map((c) => [c.name, c]));
    const find = (ref: string | number) => {
      if (typeof ref === 'string') {
        const r = byName.get(ref);
        if (!r) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.host.name}' has no rule '${ref}'`);
        return r;
      }
      const all = chains.flatMap((c) => c.rules);
      const r = all[ref];
      if (!r) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.host.name}' has no rule with id ${ref}`);
      return r;
    };
    const chainOf = (r: LiveRule) => byChain.get(r.chain.name)!;
    // Removed rules leave their chain in one pass at the end (positions stay relative to the others).
    const removed = new Set<LiveRule>();
    const indexIn = (c: { rules: LiveRule[] }, r: LiveRule) => {
      const h = this.#hint.get(r);
      return h !== undefined && c.rules[h] === r ? h : c.rules.indexOf(r);
    };
    for (const op of ops) {
      if (op.op === 'add') {
        const live = this.#chainFor(op.place);
        const chain = byChain.get(live.name)!;
        const lr = this.#newRule(op.rule, live, undefined, byName, chain.rules.length);
        let index = chain.rules.length;
        const pos = op.place?.position;
        if (typeof pos === 'number') index = Math.min(pos, chain.rules.length);
        else if (pos && typeof pos === 'object') {
          const ref = find('before' in pos ? pos.before : pos.after);
          index = indexIn(chain, ref) + ('before' in pos ? 0 : 1);
          this.#hint.set(ref, index + ('before' in pos ? 1 : -1));
        }
        if (byName.has(lr.def.name)) throw new DslError(`there is a rule named '${lr.def.name}' already`, { rule: lr.def.name });
        chain.rules.splice(index, 0, lr);
        byName.set(lr.def.name, lr);
        names.push(lr.def.name);
      } else if (op.op === 'remove') {
        const r = find(op.rule);
        removed.add(r);
        byName.delete(r.def.name);
      } else {
        const r = find(op.rule);
        const c = chainOf(r);
        const lr = this.#newRule(op.with, r.chain, r.def.name, byName, c.rules.length);
        c.rules[indexIn(c, r)] = lr;
        byName.set(lr.def.name, lr);
        names.push(lr.def.name);
      }
    }

    if (removed.size) for (const c of chains) c.rules = c.rules.filter((r) => !removed.has(r));
    // The definition, with stable slots: old rules keep theirs, new ones get free ones.
    const base = this.host.compiled.definition;
    const held = new Set<number>();
    for (const c of chains) for (const r of c.rules) if (r.slot >= 0) held.add(r.slot);
    const free = this.#free.filter((x) => !held.has(x));
    let next = this.#nextSlot;
    const fresh: number[] = [];
    let id = 0;
    let limitId = 0;
    const ruleSlots: number[] = [];
    const defChains = chains.map((c) => ({
      name: c.name,
      policy: c.policy,
      ...(c.source ? { source: c.source } : {}),
      rules: c.rules.map((lr, index) => {
        let slot = lr.slot;
        if (slot < 0) {
          slot = free.shift() ?? next++;
          fresh.push(slot);
        }
        ruleSlots.push(slot);
        const actions = lr.def.actions.map((a) => (a.kind === 'limit' ? { ...a, limitId: limitId++ } : a));
        return { ...lr.def, id: id++, index, chain: c.name, actions };
      }),
    }));
    const def: Definition = { ...base, chains: defChains };
    throwProblems(validateDefinition(def));

    let maxSlot = -1;
    for (const s of ruleSlots) if (s > maxSlot) maxSlot = s;
    const layout: ClassifyLayout = {
      ruleSlots,
      slotCapacity: maxSlot < this.#slotCapacity ? this.#slotCapacity : nextPow2(2 * (maxSlot + 1)),
      entryCapacity: this.#entryCapacity,
      keyFields: this.#key.fields.map((f) => f.field),
      keyV6: this.#key.v6,
    };
    const opts = this.host.loadOptions;
    // A filter that changes live is classified wherever it can be: later changes are then map updates.
    const compiled = compile(def, { ...opts, classify: opts.classify === 'never' ? 'never' : 'always', layout });

    // Maps whose state carries over: counters, sets, events, errors, user maps, and limits when unchanged.
    const old = this.host.object;
    const oldCompiled = this.host.compiled;
    const sameLimits = limitShape(oldCompiled) === limitShape(compiled);
    const reuse: Record<string, number> = {};
    for (const m of compiled.maps) {
      const have = old.maps[m.name];
      const was = oldCompiled.maps.find((x) => x.name === m.name);
      if (!have || !was || was.role !== m.role) continue;
      // Conntrack carries over too (connections, their NAT, the seed, masquerade addresses); not the per-packet scratch.
      const carries =
        ['counters', 'set', 'events', 'errors', 'user'].includes(m.role) ||
        ((m.role === 'limits' || m.role === 'limit-keyed') && sameLimits) ||
        (m.role === 'conntrack' && m.name !== 'tsbpf_fct');
      if (!carries || m.role === 'set' && m.name.startsWith('tsbpf_set_')) continue;
      if (have.maxEntries !== m.maxEntries || (m.key && have.keySize !== m.key.size) || (m.value && have.valueSize !== m.value.size)) continue;
      reuse[m.name] = have.fd;
    }
    const object = loadCompiled(compiled, opts, reuse);
    try {
      if (!reuse['tsbpf_counters']) copyCounters(old, object);
      // Slots new rules took may have counted for a rule removed earlier.
      const counters = object.maps['tsbpf_counters'];
      if (counters) for (const slot of fresh) native().mapUpdate(counters.fd, u32Buf(slot), Buffer.alloc(counters.valueBytes), 0);
      this.#moveAttachments(old, object, compiled);
    } catch (e) {
      object.close();
      throw e;
    }
    this.host.swap(object, compiled);
    // The new definition's conntrack timeouts, with the seed in force.
    this.host.writeConntrackConfig(this.host.conntrackSeed || undefined);
    this.#build(compiled);
    return names;
  }

  /** Every hook the old object is attached at now runs the new one (an atomic replace per hook). */
  #moveAttachments(old: BpfObject, object: BpfObject, compiled: CompileResult): void {
    const attachments = old.attachments;
    const netns = new Set(attachments.map((a) => a.netns));
    if (netns.size === 0) netns.add(undefined);
    this.host.writeKnownInterfaces(object, compiled);
    for (const ns of netns) this.host.resolveInterfaces(ns, object, compiled);
    for (const a of attachments) {
      const entry = compiled.programs.find((p) => p.hook === a.hook && p.entry);
      const prog = entry && object.programs[entry.name];
      if (!prog) throw new TsbpfError('PROGRAM_NOT_FOUND', `the regenerated filter has no program for ${a.hook}`);
      a.replace(prog);
    }
  }
}

const PLAIN_KINDS = new Set(['accept', 'drop', 'reject', 'return', 'count']);

/**
 * One frozen copy of an action list without parameters (`count`, then a
 * verdict) for all the rules of a batch that have it: nothing changes a
 * rule's actions in place (materializing copies them).
 */
function sharedActions(actions: readonly { kind: string }[], shared: Map<string, ActionDef[]>): ActionDef[] | undefined {
  let key = '';
  for (const a of actions) {
    if (!PLAIN_KINDS.has(a.kind)) return undefined;
    for (const k in a) if (k !== 'kind') return undefined;
    key += `${a.kind},`;
  }
  let list = shared.get(key);
  if (!list) shared.set(key, (list = Object.freeze(actions.map((a) => Object.freeze({ kind: a.kind }))) as unknown as ActionDef[]));
  return list;
}

/** `<chain>#<n>` for the first n from the chain's length that no rule has. */
function freshName(chain: string, names: Map<string, unknown>, from: number): string {
  for (let i = from; ; i++) if (!names.has(`${chain}#${i}`)) return `${chain}#${i}`;
}

/** A block's tuples in lookup order (empty ones left out), and a signature of that list. */
function orderOf(b: LiveBlock): { order: LiveTuple[]; sig: string } {
  const order = [...b.tuples.values()].filter((t) => t.count > 0).sort((x, y) => x.minPrio - y.minPrio || x.tid - y.tid);
  return { order, sig: order.map((t) => `${t.tid}:${t.minPrio}`).join(',') };
}

/** The limits of a compiled filter, by rule slot and action: equal when bucket maps can carry over. */
function limitShape(c: CompileResult): string {
  const out: string[] = [];
  for (const ch of c.definition.chains) {
    for (const r of ch.rules) {
      r.actions.forEach((a, i) => {
        if (a.kind === 'limit') out.push(`${c.ruleSlots?.[r.id] ?? r.id}:${i}:${a.key ?? ''}:${a.maxKeys ?? ''}`);
      });
    }
  }
  return out.join(',');
}

/** Counters by slot into a new (larger) counters map. */
function copyCounters(from: BpfObject, to: BpfObject): void {
  const a = from.maps['tsbpf_counters'];
  const b = to.maps['tsbpf_counters'];
  if (!a || !b) return;
  const entries = a.raw.lookupBatch().filter(([k]) => k.readUInt32LE(0) < b.maxEntries && k.length === 4);
  if (entries.length) b.raw.updateBatch(entries);
}

/** Updates as one batch where there are several. */
function writeMany(map: BpfMap<unknown, unknown>, keys: Buffer[], values: Buffer[]): void {
  if (keys.length === 0) return;
  if (keys.length < 4) {
    for (let i = 0; i < keys.length; i++) native().mapUpdate(map.fd, keys[i]!, values[i]!, 0);
    return;
  }
  native().mapUpdateBatch(map.fd, Buffer.concat(keys), Buffer.concat(values), keys.length, 0);
}

