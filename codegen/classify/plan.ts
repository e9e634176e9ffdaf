/**
 * The classification plan of a definition: every chain cut into blocks
 * (maximal runs of classifiable rules, split so that no block has more than
 * T_MAX tuples) and the plan of each block: linear code, or tuple-space
 * search over the shared classifier maps.
 *
 * Tuple-space search (TSS): the entries of a block are grouped by tuple (the
 * masks of their fields); one hash map holds every entry of every block,
 * keyed by {block << 8 | tuple id, masked fields} -> {priority, slot} for
 * each of two generations. A packet's key is masked by each tuple of the
 * block in turn (tuples sorted by the lowest priority they hold, so the walk
 * stops as soon as no later tuple can beat what was found); the lowest
 * priority found is the first matching rule of the block, and its slot
 * indexes the action table. docs/classification.md has the long form.
 */
import { DslError } from '../../sdk/errors.js';
import type { Definition, RuleDef } from '../../sdk/model.js';
import { FIELDS, hasField, keyLayout, maskedId, u32le, tupleId, tupleText, wideAddr, WORDS, writeKey, type ClsField, type Conj, type KeyLayout } from './fields.js';
import { classifyRule, CLS_FLAG, type ClsAction } from './rule.js';

/** Tuples a block may have (the bound of the lookup loop). */
export const T_MAX = 128;
/** Priority 'none' in a generation of an entry. */
export const PRIO_NONE = 0xffffffff;
/** Bytes of struct tsbpf_cls_val / tsbpf_cls_act (codegen/include/tsbpf/classify.h). */
export const VAL_SIZE = 16;
export const ACT_SIZE = 24;
/** In 'auto', a run of classifiable rules becomes a classifier when it has this many rules per lookup. */
export const AUTO_MIN_RULES_PER_TUPLE = 10;
/** In 'auto', runs longer than this are never linear code (C size, compile time). */
export const AUTO_MAX_LINEAR_RUN = 256;
/** In 'auto', at most this many classifiable rules are emitted as linear code in all. */
export const AUTO_LINEAR_BUDGET = 300;

export type ClassifyMode = 'auto' | 'always' | 'never';

/** Key fields every classifier has (others join when a rule tests them: TCP flags, ICMP, ethertype). */
export const BASE_KEY: readonly ClsField[] = ['pres', 'l4', 'proto', 'sport', 'dport', 'src', 'dst'];

/**
 * Stable numbering kept across regenerations of a live filter (runtime/rules.ts):
 * slots index counters, the action table and log events.
 */
export interface ClassifyLayout {
  /** Slot of each rule, by rule id (default: the id). */
  ruleSlots?: readonly number[];
  /** Entries of slot-indexed maps (counters, actions). */
  slotCapacity?: number;
  /** Entries of the classifier hash (both generations share an entry). */
  entryCapacity?: number;
  /** Key fields to include even when no rule uses them yet (keeps the shape for later rules). */
  keyFields?: readonly ClsField[];
  keyV6?: boolean;
}

export interface ClassifyOptions {
  classify?: ClassifyMode;
  layout?: ClassifyLayout;
}

export interface ClsTuple {
  /** Tuple id within its block (the low 8 bits of the tag, so T_MAX <= 256). */
  tid: number;
  /** Identity of the tuple: its masks. */
  id: string;
  /** A conjunction whose masks are the tuple's. */
  mask: Conj;
  text: string;
  /** Lowest priority of an entry in it (a lower bound after removals). */
  minPrio: number;
}

export interface ClsMember {
  rule: RuleDef;
  prio: number;
  slot: number;
  conjs: Conj[];
  /** Tuple id of each conj. */
  tids: number[];
  action: ClsAction;
}

export interface ClsBlock {
  /** Index among all blocks of the plan (explain). */
  index: number;
  chain: string;
  /** Ids of its rules, in order. */
  ruleIds: number[];
  plan: 'tss' | 'linear';
  /** Why this plan. */
  why: string;
  /** TSS only: the block id in the classifier maps. */
  id?: number;
  tuples: ClsTuple[];
  members: ClsMember[];
  entries: number;
  /** TSS: every program running this chain has the act program, so reject rules may join live. */
  rejectOk?: boolean;
}

export interface LinearRule {
  id: number;
  chain: string;
  why: string;
}

/** Map contents packed for one BPF_MAP_UPDATE_BATCH. */
export interface PackedEntries {
  keys: Buffer;
  values: Buffer;
  count: number;
}

export interface ClsMapSpec {
  name: string;
  kind: 'hash' | 'array';
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: string;
  cKey: string;
  cValue: string;
  description: string;
  batch: PackedEntries;
}

export interface ClsPlan {
  mode: ClassifyMode;
  blocks: ClsBlock[];
  /** TSS blocks by block id. */
  tss: ClsBlock[];
  /** Rules that are not classifiable, and why. */
  linear: LinearRule[];
  key: KeyLayout;
  /** Rule id -> its TSS block and place. */
  byRule: Map<number, { block: ClsBlock; member: ClsMember }>;
  /** Some classified rule logs (the object needs the events ring buffer). */
  usesLog: boolean;
  slotCapacity: number;
  entryCapacity: number;
  maps: ClsMapSpec[];
}

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Gap between priorities of consecutive rules, so a live insert finds room between two. */
export function prioGap(n: number): number {
  return Math.max(1, Math.min(4096, Math.floor((PRIO_NONE - 1) / (n + 2))));
}

interface Item {
  rule: RuleDef;
  conjs: Conj[];
  action: ClsAction;
  /** Tuple identity of each conj. */
  ids: string[];
}

interface Run {
  chain: string;
  items: Item[];
  tuples: Set<string>;
  tss: boolean;
  why: string;
}

/** Plan the classification of a definition. */
export function planClassification(def: Definition, options: ClassifyOptions = {}): ClsPlan {
  const mode = options.classify ?? 'auto';
  const layout = options.layout ?? {};
  const slots = layout.ruleSlots;
  const blocks: ClsBlock[] = [];
  const linear: LinearRule[] = [];
  const runs: Run[] = [];
  let maxSlot = -1;

  for (const c of def.chains) {
    let run: Run | undefined;
    for (const r of c.rules) {
      maxSlot = Math.max(maxSlot, slots?.[r.id] ?? r.id);
      const k = mode === 'never' ? ({ ok: false, why: 'classification is off' } as const) : classifyRule(r);
      if (!k.ok) {
        linear.push({ id: r.id, chain: c.name, why: k.why });
        run = undefined;
        continue;
      }
      const ids = k.conjs.map(tupleId);
      const distinct = ids.length > 1 ? new Set(ids) : ids;
      const count = distinct instanceof Set ? distinct.size : distinct.length;
      if (count > T_MAX) {
        linear.push({ id: r.id, chain: c.name, why: `its match needs ${count} tuples (at most ${T_MAX})` });
        run = undefined;
        continue;
      }
      let added = 0;
      if (run) for (const id of distinct) if (!run.tuples.has(id)) added++;
      if (!run || run.tuples.size + added > T_MAX) {
        run = { chain: c.name, items: [], tuples: new Set(), tss: false, why: '' };
        runs.push(run);
      }
      for (const id of distinct) run.tuples.add(id);
      run.items.push({ rule: r, conjs: k.conjs, action: k.action, ids });
    }
  }

  // Each run's plan.
  for (const run of runs) {
    const t = run.tuples.size;
    const n = run.items.length;
    const ts = `${t} tuple${t === 1 ? '' : 's'}`;
    if (mode === 'always') [run.tss, run.why] = [true, `classification forced (always); ${ts}`];
    else if (n > AUTO_MAX_LINEAR_RUN) [run.tss, run.why] = [true, `${n} rules over ${ts}: more than ${AUTO_MAX_LINEAR_RUN} rules`];
    else if (n >= AUTO_MIN_RULES_PER_TUPLE * (t + 1)) [run.tss, run.why] = [true, `${n} rules over ${ts}: ${t} lookup${t === 1 ? '' : 's'} beat${t === 1 ? 's' : ''} ${n} tests`];
    else [run.tss, run.why] = [false, `${n} rule${n === 1 ? '' : 's'} over ${ts}: cheaper as tests`];
  }
  if (mode === 'auto') {
    let linearRules = linear.length;
    for (const run of runs) if (!run.tss) linearRules += run.items.length;
    if (linearRules > AUTO_LINEAR_BUDGET) {
      for (const run of runs.filter((x) => !x.tss).sort((a, b) => b.items.length - a.items.length)) {
        if (linearRules <= AUTO_LINEAR_BUDGET) break;
        run.tss = true;
        run.why += `; classified anyway to keep linear code under ${AUTO_LINEAR_BUDGET} rules`;
        linearRules -= run.items.length;
      }
    }
  }

  const used = new Set<ClsField>(layout.keyFields ?? []);
  let v6 = layout.keyV6 ?? false;
  const tss: ClsBlock[] = [];
  const byRule = new Map<number, { block: ClsBlock; member: ClsMember }>();
  let usesLog = false;
  let entries = 0;
  for (const run of runs) {
    const block: ClsBlock = {
      index: blocks.length,
      chain: run.chain,
      ruleIds: run.items.map((i) => i.rule.id),
      plan: run.tss ? 'tss' : 'linear',
      why: run.why,
      tuples: [],
      members: [],
      entries: 0,
    };
    blocks.push(block);
    if (!run.tss) continue;
    block.id = tss.length;
    tss.push(block);
    const gap = prioGap(run.items.length);
    const tupleIndex = new Map<string, ClsTuple>();
    let prio = 0;
    for (const item of run.items) {
      prio += gap;
      const tids: number[] = new Array(item.conjs.length);
      for (let i = 0; i < item.conjs.length; i++) {
        const id = item.ids[i]!;
        let t = tupleIndex.get(id);
        if (!t) {
          const c = item.conjs[i]!;
          t = { tid: tupleIndex.size, id, mask: c, text: tupleText(c), minPrio: prio };
          tupleIndex.set(id, t);
          block.tuples.push(t);
          for (const f of FIELDS) if (hasField(c, f)) used.add(f);
          if (wideAddr(c, 'src') || wideAddr(c, 'dst')) v6 = true;
        }
        tids[i] = t.tid;
      }
      const member: ClsMember = { rule: item.rule, prio, slot: slots?.[item.rule.id] ?? item.rule.id, conjs: item.conjs, tids, action: item.action };
      block.members.push(member);
      byRule.set(item.rule.id, { block, member });
      block.entries += item.conjs.length;
      if (item.action.flags & CLS_FLAG.LOG) usesLog = true;
    }
    entries += block.entries;
  }
  if (tss.length >= 1 << 24) throw new DslError(`${tss.length} classifier blocks: at most ${1 << 24}`, {});

  // The 5-tuple is always in the key: the rules people add most are then map updates from the start.
  if (tss.length) for (const f of BASE_KEY) used.add(f);
  const key = keyLayout(used, v6);
  const slotCapacity = Math.max(layout.slotCapacity ?? 0, tss.length ? Math.max(1024, nextPow2(Math.ceil((maxSlot + 1) * 1.25))) : 0, maxSlot + 1, 1);
  const entryCapacity = Math.max(layout.entryCapacity ?? 0, Math.max(65536, nextPow2(entries * 2)));
  const plan: ClsPlan = { mode, blocks, tss, linear, key, byRule, usesLog, slotCapacity, entryCapacity, maps: [] };
  if (tss.length) plan.maps = classifierMaps(plan, entries);
  return plan;
}

// ---------------------------------------------------------------------------
// Map contents

/** The tag of an entry key: block and tuple id. */
export function tagOf(block: number, tid: number): number {
  return ((block << 8) | tid) >>> 0;
}

/** Identity of an entry within the hash: its tag and masked values. */
export function entryId(tag: number, c: Conj): string {
  return maskedId(tag, c);
}

export function writeValue(b: Buffer, at: number, p0: number, s0: number, p1: number, s1: number): void {
  u32le(b, at, p0);
  u32le(b, at + 4, p1);
  u32le(b, at + 8, s0);
  u32le(b, at + 12, s1);
}

/** struct tsbpf_cls_tuple: the masks (tag = the tag of its entries) and the lowest priority it holds. */
export function tupleValue(key: KeyLayout, block: number, t: ClsTuple): Buffer {
  const b = Buffer.alloc(key.size + 4);
  writeKey(key, b, 0, tagOf(block, t.tid), t.mask, true);
  b.writeUInt32LE(t.minPrio >>> 0, key.size);
  return b;
}

/** Index in tsbpf_cls_tup of position `i` of block `block`, generation `gen`. */
export function tupleSlot(block: number, gen: number, i: number): number {
  return (block * 2 + gen) * T_MAX + i;
}

/** Index in tsbpf_cls_ctl of a block's tuple count in a generation (slot 0 is the active generation). */
export function countSlot(block: number, gen: number): number {
  return 1 + block * 2 + gen;
}

export function writeAction(b: Buffer, at: number, a: ClsAction, slot: number): void {
  b.fill(0, at, at + ACT_SIZE);
  b.writeUInt8(a.verdict, at);
  b.writeUInt8(a.flags, at + 1);
  b.writeUInt8(a.logVerdict, at + 2);
  b.writeUInt16LE(a.logAction, at + 4);
  b.writeUInt32LE(a.markValue >>> 0, at + 8);
  b.writeUInt32LE(a.markMask >>> 0, at + 12);
  b.writeUInt32LE(a.ifindex >>> 0, at + 16);
  b.writeUInt32LE(slot >>> 0, at + 20);
}

export function actionValue(a: ClsAction, slot: number): Buffer {
  const b = Buffer.alloc(ACT_SIZE);
  writeAction(b, 0, a, slot);
  return b;
}

export function u32Buf(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** Tuples in lookup order: by the lowest priority they hold. */
export function tupleOrder(tuples: readonly ClsTuple[]): ClsTuple[] {
  return [...tuples].sort((a, b) => a.minPrio - b.minPrio || a.tid - b.tid);
}

function packed(keySize: number, valueSize: number, count: number): PackedEntries {
  return { keys: Buffer.alloc(keySize * count), values: Buffer.alloc(valueSize * count), count: 0 };
}

function classifierMaps(plan: ClsPlan, entries: number): ClsMapSpec[] {
  const { key, tss } = plan;
  const hash = packed(key.size, VAL_SIZE, entries);
  const tup = packed(4, key.size + 4, tss.length * 2 * T_MAX);
  const ctl = packed(4, 4, 1 + 2 * tss.length);
  const act = packed(4, ACT_SIZE, plan.byRule.size);
  ctl.keys.writeUInt32LE(0, 0);
  ctl.values.writeUInt32LE(0, 0);
  ctl.count = 1;
  for (const b of tss) {
    // Members come in priority order: the first rule with a key is the one that counts.
    const seen = new Set<string>();
    for (const m of b.members) {
      for (let i = 0; i < m.conjs.length; i++) {
        const tag = tagOf(b.id!, m.tids[i]!);
        const c = m.conjs[i]!;
        const id = entryId(tag, c);
        if (seen.has(id)) continue;
        seen.add(id);
        writeKey(key, hash.keys, hash.count * key.size, tag, c);
        writeValue(hash.values, hash.count * VAL_SIZE, m.prio, m.slot, m.prio, m.slot);
        hash.count++;
      }
      act.keys.writeUInt32LE(m.slot >>> 0, act.count * 4);
      writeAction(act.values, act.count * ACT_SIZE, m.action, m.slot);
      act.count++;
    }
    const order = tupleOrder(b.tuples);
    for (let gen = 0; gen < 2; gen++) {
      order.forEach((t, i) => {
        tup.keys.writeUInt32LE(tupleSlot(b.id!, gen, i), tup.count * 4);
        tupleValue(key, b.id!, t).copy(tup.values, tup.count * (key.size + 4));
        tup.count++;
      });
      ctl.keys.writeUInt32LE(countSlot(b.id!, gen), ctl.count * 4);
      ctl.values.writeUInt32LE(order.length, ctl.count * 4);
      ctl.count++;
    }
  }
  trim(hash, key.size, VAL_SIZE);
  trim(tup, 4, key.size + 4);
  return [
    {
      name: 'tsbpf_cls', kind: 'hash', keySize: key.size, valueSize: VAL_SIZE, maxEntries: plan.entryCapacity, flags: 'BPF_F_NO_PREALLOC',
      cKey: 'struct tsbpf_cls_key', cValue: 'struct tsbpf_cls_val',
      description: `classifier entries of ${tss.length} block${tss.length === 1 ? '' : 's'}: {block, tuple, masked fields} -> priority and slot per generation`,
      batch: hash,
    },
    {
      name: 'tsbpf_cls_tup', kind: 'array', keySize: 4, valueSize: key.size + 4, maxEntries: tss.length * 2 * T_MAX,
      cKey: '__u32', cValue: 'struct tsbpf_cls_tuple',
      description: `tuples of each block and generation (${T_MAX} each), in lookup order`,
      batch: tup,
    },
    {
      name: 'tsbpf_cls_ctl', kind: 'array', keySize: 4, valueSize: 4, maxEntries: 1 + 2 * tss.length,
      cKey: '__u32', cValue: '__u32',
      description: 'classifier control: [0] the active generation, [1 + 2 * block + gen] tuple counts',
      batch: ctl,
    },
    {
      name: 'tsbpf_cls_act', kind: 'array', keySize: 4, valueSize: ACT_SIZE, maxEntries: plan.slotCapacity,
      cKey: '__u32', cValue: 'struct tsbpf_cls_act',
      description: 'actions of classified rules, by rule slot: verdict, count/log/mark',
      batch: act,
    },
  ];
}

/** Cut the buffers to what was written. */
function trim(p: PackedEntries, keySize: number, valueSize: number): void {
  p.keys = p.keys.subarray(0, p.count * keySize);
  p.values = p.values.subarray(0, p.count * valueSize);
}

/** Unpack batch contents into {key, value} pairs. */
export function unpack(p: PackedEntries): Array<{ key: Buffer; value: Buffer }> {
  const out: Array<{ key: Buffer; value: Buffer }> = [];
  if (p.count === 0) return out;
  const kSize = p.keys.length / p.count;
  const vSize = p.values.length / p.count;
  for (let i = 0; i < p.count; i++) {
    out.push({ key: Buffer.from(p.keys.subarray(i * kSize, (i + 1) * kSize)), value: Buffer.from(p.values.subarray(i * vSize, (i + 1) * vSize)) });
  }
  return out;
}
