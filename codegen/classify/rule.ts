/**
 * Which rules a classifier can hold, and what they become: a rule's match as
 * a bounded disjunction of conjunctions of (mask, value) field constraints
 * (one hash entry each), and its actions as one record of the action table.
 *
 * A rule is classifiable when
 * - its match uses only and/or over: IPv4/IPv6 source/destination CIDRs,
 *   ip.proto, L4 ports (values, lists, ranges), TCP flags, ICMP/ICMPv6 type
 *   and code, ethertype, and the presence of ip4/ip6/tcp/udp/sctp/icmp/icmp6;
 *   ranges become prefix-aligned pieces, lists and `or`s become several
 *   entries, at most MAX_RULE_ENTRIES in all;
 * - its actions are at most one each of count, log and mark, then a verdict
 *   (accept, drop, reject, redirect to an interface index) or return.
 * Such a rule is terminal, so within a run of them the first that matches
 * decides: "the lowest-priority entry that matches" is exactly first-match.
 */
import { parseCidr } from '../../sdk/addr.js';
import type { ActionDef, FieldPredicate, MatchExpr, NumField, NumRange, RuleDef } from '../../sdk/model.js';
import { conjId, FIELDS, hasField, L4_CODE, newConj, PRES, tupleId, WORD, WORDS, wideAddr, type ClsField, type Conj } from './fields.js';

/** A rule whose match needs more entries than this stays linear code. */
export const MAX_RULE_ENTRIES = 64;

/** Verdict codes of the action table (TSBPF_V_* in filter.h, plus return). */
export const CLS_VERDICT = { accept: 1, drop: 2, reject: 3, redirect: 4, return: 5 } as const;
/** Flags of the action table (codegen/include/tsbpf/classify.h). */
export const CLS_FLAG = { COUNT: 1, LOG: 2, MARK: 4, MARK_FIRST: 8 } as const;

/** One record of the action table (struct tsbpf_cls_act). */
export interface ClsAction {
  verdict: number;
  flags: number;
  /** Index of the log action within the rule (log events carry it). */
  logAction: number;
  /** The rule's verdict code as log events report it (0 for return). */
  logVerdict: number;
  markValue: number;
  markMask: number;
  ifindex: number;
}

export type Classified =
  | { ok: true; conjs: Conj[]; action: ClsAction; fields: Set<ClsField>; v6: boolean }
  | { ok: false; why: string };

class Unclassifiable extends Error {}

function fail(why: string): never {
  throw new Unclassifiable(why);
}

const BITS: Partial<Record<ClsField, number>> = { pres: 8, l4: 8, proto: 8, tflags: 8, itype: 8, icode: 8, etype: 16, sport: 16, dport: 16 };

const W = (f: ClsField) => WORD[f];
const V = (f: ClsField) => WORDS + WORD[f];

/**
 * Drop constraints another one implies (fewer distinct tuples) and
 * conjunctions that no packet can meet. What implies what follows the
 * parser: a TCP/UDP/SCTP header means ports and IP; ICMP means IPv4, ICMPv6
 * IPv6; IPv4/IPv6 mean IP and their ethertype; an L4 header means its proto.
 * Changes c in place; false when it cannot hold.
 */
export function canonical(c: Conj): boolean {
  let pres = 0; // bits implied present
  let proto = -1;
  if (c[W('l4')] === 0xff && c[V('l4')] !== 0) {
    const code = c[V('l4')]!;
    if (code === L4_CODE.tcp || code === L4_CODE.udp || code === L4_CODE.sctp) pres |= PRES.PORTS | PRES.IP;
    else if (code === L4_CODE.icmp) pres |= PRES.IP4 | PRES.IP;
    else if (code === L4_CODE.icmp6) pres |= PRES.IP6 | PRES.IP;
    else return false; // no other L4 code exists
    proto = code;
  }
  const pm = c[W('pres')]!;
  const pv = c[V('pres')]!;
  const present = pv | pres;
  if (present & PRES.IP4 && present & PRES.IP6) return false;
  if (present & (PRES.IP4 | PRES.IP6)) pres |= PRES.IP;
  if ((present | pres) & PRES.IP) pres |= PRES.L3;
  // Address constraints beyond the first word need IPv6.
  if (present & PRES.IP4 && ((c[W('src')] !== 0 && wideAddr(c, 'src')) || (c[W('dst')] !== 0 && wideAddr(c, 'dst')))) return false;
  // Implied values: consistent constraints go, contradictions kill the conjunction.
  const implied = (f: ClsField, m: number, v: number): boolean => {
    const cm = c[W(f)]!;
    if (cm === 0) return true;
    if (((c[V(f)]! & m) ^ (v & cm)) !== 0) return false;
    c[W(f)] = (cm & ~m) >>> 0;
    c[V(f)] = (c[V(f)]! & ~m) >>> 0;
    return true;
  };
  if (proto >= 0 && !implied('proto', 0xff, proto)) return false;
  if (present & PRES.IP4 && !implied('etype', 0xffff, 0x0800)) return false;
  if (present & PRES.IP6 && !implied('etype', 0xffff, 0x86dd)) return false;
  // A required absence (bit in mask, not in value) contradicts an implied presence.
  if (pm & ~pv & pres) return false;
  c[W('pres')] = (pm & ~pres) >>> 0;
  c[V('pres')] = (pv & ~pres) >>> 0;
  return true;
}

/** Prefix-aligned pieces (mask, value) covering [lo, hi] over `bits` ≤ 16 bits (the classic range-to-prefix cover). */
export function rangePieces(lo: number, hi: number, bits: number): Array<[mask: number, value: number]> {
  const out: Array<[number, number]> = [];
  const all = bits === 16 ? 0xffff : (1 << bits) - 1;
  let a = lo;
  while (a <= hi) {
    let size = 1;
    while ((a & (size * 2 - 1)) === 0 && a + size * 2 - 1 <= hi && size * 2 <= all + 1) size *= 2;
    out.push([all & ~(size - 1), a]);
    a += size;
  }
  return out;
}

/**
 * One alternative of a predicate: flat (word, mask, value) triples to meet
 * into a conjunction (small, so the common one-alternative case allocates
 * almost nothing).
 */
type Alt = number[];

const NUM_KEY: Partial<Record<NumField, { field: ClsField; need: Alt }>> = {
  'ip.proto': { field: 'proto', need: [W('pres'), PRES.IP, PRES.IP] },
  'l4.sport': { field: 'sport', need: [W('pres'), PRES.PORTS, PRES.PORTS] },
  'l4.dport': { field: 'dport', need: [W('pres'), PRES.PORTS, PRES.PORTS] },
  'tcp.flags': { field: 'tflags', need: [W('l4'), 0xff, L4_CODE.tcp] },
  'icmp.type': { field: 'itype', need: [W('l4'), 0xff, L4_CODE.icmp] },
  'icmp.code': { field: 'icode', need: [W('l4'), 0xff, L4_CODE.icmp] },
  'icmp6.type': { field: 'itype', need: [W('l4'), 0xff, L4_CODE.icmp6] },
  'icmp6.code': { field: 'icode', need: [W('l4'), 0xff, L4_CODE.icmp6] },
  'eth.type': { field: 'etype', need: [W('pres'), PRES.L3, PRES.L3] },
};

/** Meet an alternative into c in place; false when no packet meets both. */
function applyAlt(c: Conj, alt: Alt): boolean {
  for (let i = 0; i < alt.length; i += 3) {
    const w = alt[i]!;
    const m = alt[i + 1]!;
    const v = alt[i + 2]!;
    const cm = c[w]!;
    const cv = c[WORDS + w]!;
    if (((cv & m) ^ (v & cm)) !== 0) return false;
    c[w] = (cm | m) >>> 0;
    c[WORDS + w] = (cv | v) >>> 0;
  }
  return true;
}

function rangesAlts(field: ClsField, ranges: readonly NumRange[], need: Alt): Alt[] {
  const bits = BITS[field]!;
  const out: Alt[] = [];
  for (const [lo, hi] of ranges) {
    for (const [m, v] of rangePieces(lo, hi, bits)) {
      out.push(m === 0 ? need : [...need, W(field), m, (v & m) >>> 0]);
      if (out.length > MAX_RULE_ENTRIES) fail(`${field} ranges need more than ${MAX_RULE_ENTRIES} entries`);
    }
  }
  return out;
}

/** Fast dotted-quad/len parse; undefined for anything else (the slow path handles it). */
function quickCidr4(text: string): { addr: number; len: number } | undefined {
  let addr = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  let i = 0;
  for (; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch >= 48 && ch <= 57) {
      octet = octet * 10 + ch - 48;
      if (++digits > 3 || octet > 255) return undefined;
    } else if (ch === 46 && digits) {
      addr = addr * 256 + octet;
      octet = 0;
      digits = 0;
      if (++dots > 3) return undefined;
    } else break;
  }
  if (dots !== 3 || !digits) return undefined;
  addr = (addr * 256 + octet) >>> 0;
  let len = 32;
  if (i < text.length) {
    if (text.charCodeAt(i) !== 47) return undefined;
    const l = Number(text.slice(i + 1));
    if (!Number.isInteger(l) || l < 0 || l > 32) return undefined;
    len = l;
  }
  return { addr, len };
}

function addrAlt(field: 'src' | 'dst', v6: boolean, text: string): Alt {
  const w = W(field);
  if (!v6) {
    let q = quickCidr4(text);
    if (!q) {
      const p = parseCidr(text);
      if ('error' in p || p.family !== 4) fail(`bad CIDR ${text}`);
      q = { addr: p.addr, len: p.len };
    }
    const m = q.len === 0 ? 0 : (0xffffffff << (32 - q.len)) >>> 0;
    return [W('pres'), PRES.IP4, PRES.IP4, w, m, (q.addr & m) >>> 0];
  }
  const p = parseCidr(text);
  if ('error' in p || p.family !== 6) fail(`bad CIDR ${text}`);
  const alt: Alt = [W('pres'), PRES.IP6, PRES.IP6];
  for (let i = 0; i < 4; i++) {
    const bitsHere = Math.max(0, Math.min(32, p.len - 32 * i));
    const m = bitsHere === 0 ? 0 : (0xffffffff << (32 - bitsHere)) >>> 0;
    alt.push(w + i, m, (Number((p.addr >> BigInt(96 - 32 * i)) & 0xffffffffn) & m) >>> 0);
  }
  return alt;
}

const L4_ALT: Partial<Record<string, Alt>> = {
  ip4: [W('pres'), PRES.IP4, PRES.IP4],
  ip6: [W('pres'), PRES.IP6, PRES.IP6],
  tcp: [W('l4'), 0xff, L4_CODE.tcp],
  udp: [W('l4'), 0xff, L4_CODE.udp],
  sctp: [W('l4'), 0xff, L4_CODE.sctp],
  icmp: [W('l4'), 0xff, L4_CODE.icmp],
  icmp6: [W('l4'), 0xff, L4_CODE.icmp6],
};

function predicateAlts(p: FieldPredicate): Alt[] {
  switch (p.kind) {
    case 'has': {
      const alt = L4_ALT[p.layer];
      return alt ? [alt] : fail(`presence of ${p.layer} is not a classifier field`);
    }
    case 'num': {
      const k = NUM_KEY[p.field];
      if (!k) return fail(`${p.field} is not a classifier field`);
      return rangesAlts(k.field, p.ranges, k.need);
    }
    case 'bits': {
      const k = NUM_KEY[p.field];
      if (!k) return fail(`${p.field} is not a classifier field`);
      const width = BITS[k.field] === 16 ? 0xffff : 0xff;
      // Bits above the field's width read as zeros.
      if (((p.value >>> 0) & ~width) !== 0) return [];
      const m = ((p.mask >>> 0) & width) >>> 0;
      return [m === 0 ? k.need : [...k.need, W(k.field), m, ((p.value >>> 0) & m) >>> 0]];
    }
    case 'addr': {
      const v6 = p.field.startsWith('ip6');
      const field = p.field.endsWith('src') ? 'src' : 'dst';
      if (p.cidrs.length > MAX_RULE_ENTRIES) fail(`the address list needs more than ${MAX_RULE_ENTRIES} entries`);
      return p.cidrs.map((text) => addrAlt(field, v6, text));
    }
    default:
      return fail(`${p.kind} matches are not classifier fields`);
  }
}

function isPredicate(e: MatchExpr): e is FieldPredicate {
  return e.kind !== 'all' && e.kind !== 'and' && e.kind !== 'or' && e.kind !== 'not';
}

/** Meet `alts` (a disjunction) into every conjunction of acc. */
function meetAlts(acc: Conj[], alts: Alt[]): Conj[] {
  if (alts.length === 1) {
    const alt = alts[0]!;
    let n = 0;
    for (const c of acc) if (applyAlt(c, alt)) acc[n++] = c;
    acc.length = n;
    return acc;
  }
  const out: Conj[] = [];
  for (const c of acc) {
    for (const alt of alts) {
      const d = c.slice();
      if (applyAlt(d, alt)) out.push(d);
      if (out.length > MAX_RULE_ENTRIES) fail(`the match expands to more than ${MAX_RULE_ENTRIES} entries`);
    }
  }
  return out;
}

/** The conjunctions of `e` met into each of acc (acc is consumed). */
function andInto(acc: Conj[], e: MatchExpr): Conj[] {
  if (acc.length === 0) return acc;
  if (e.kind === 'all') return acc;
  if (e.kind === 'and') {
    for (const a of e.args) {
      acc = andInto(acc, a);
      if (acc.length === 0) break;
    }
    return acc;
  }
  if (isPredicate(e)) return meetAlts(acc, predicateAlts(e));
  if (e.kind === 'not') return fail('negations stay linear');
  // or: every branch from a copy of acc.
  const out: Conj[] = [];
  for (const branch of e.args) {
    for (const c of andInto(acc.map((x) => x.slice()), branch)) out.push(c);
    if (out.length > MAX_RULE_ENTRIES) fail(`the match expands to more than ${MAX_RULE_ENTRIES} entries`);
  }
  return out;
}

function dnf(e: MatchExpr): Conj[] {
  return andInto([newConj()], e);
}

/** The action record of a rule, or why its actions do not fit one. */
export function actionOf(actions: readonly ActionDef[]): ClsAction {
  const a: ClsAction = { verdict: 0, flags: 0, logAction: 0, logVerdict: 0, markValue: 0, markMask: 0, ifindex: 0 };
  const last = actions[actions.length - 1];
  if (!last) fail('a rule without actions continues');
  switch (last.kind) {
    case 'accept':
    case 'drop':
    case 'reject':
      a.verdict = CLS_VERDICT[last.kind];
      a.logVerdict = a.verdict;
      break;
    case 'return':
      a.verdict = CLS_VERDICT.return;
      break;
    case 'redirect':
      if (last.ifindex === undefined) fail('redirect by interface name stays linear');
      a.verdict = CLS_VERDICT.redirect;
      a.logVerdict = a.verdict;
      a.ifindex = last.ifindex >>> 0;
      break;
    default:
      fail(last.kind === 'jump' || last.kind === 'goto' ? `${last.kind} stays linear` : 'a rule without a verdict continues');
  }
  for (let i = 0; i < actions.length - 1; i++) {
    const x = actions[i]!;
    if (x.kind === 'count') {
      if (a.flags & CLS_FLAG.COUNT) fail('two count actions');
      a.flags |= CLS_FLAG.COUNT;
    } else if (x.kind === 'log') {
      if (a.flags & CLS_FLAG.LOG) fail('two log actions');
      a.flags |= CLS_FLAG.LOG;
      a.logAction = i;
    } else if (x.kind === 'mark') {
      if (a.flags & CLS_FLAG.MARK) fail('two mark actions');
      a.flags |= CLS_FLAG.MARK;
      // A mark before the log shows in the log event.
      if (!(a.flags & CLS_FLAG.LOG)) a.flags |= CLS_FLAG.MARK_FIRST;
      a.markValue = x.value >>> 0;
      a.markMask = x.mask >>> 0;
    } else fail(`${x.kind} stays linear`);
  }
  return a;
}

/** Whether (and as what) a rule can live in a classifier. */
export function classifyRule(r: RuleDef): Classified {
  try {
    const action = actionOf(r.actions);
    const raw = dnf(r.match);
    let conjs: Conj[] = [];
    for (const c of raw) if (canonical(c)) conjs.push(c);
    if (conjs.length > 1) {
      const seen = new Set<string>();
      conjs = conjs.filter((c) => {
        const id = conjId(c);
        if (seen.has(id)) return false;
        seen.add(id);
        return true;
      });
    }
    const fields = new Set<ClsField>();
    let v6 = false;
    for (const c of conjs) {
      for (const f of FIELDS) if (hasField(c, f)) fields.add(f);
      if (wideAddr(c, 'src') || wideAddr(c, 'dst')) v6 = true;
    }
    return { ok: true, conjs, action, fields, v6 };
  } catch (e) {
    if (e instanceof Unclassifiable) return { ok: false, why: e.message };
    throw e;
  }
}

/**
 * A rule's match as a shape and its values: predicates whose values only
 * fill words of a conjunction (one port, one IPv4 CIDR of a given length),
 * with the rest (presence, and/has structure) making the shape. Rules of one
 * shape classify to the same conjunction but for those words. A shape is a
 * node of a trie walked token by token (no key strings to build).
 */
interface ShapeNode {
  next: Map<unknown, ShapeNode>;
  /** The shape's conjunction and where its values go; null: not a template (classify such rules in full). */
  template?: { k: Classified & { ok: true }; tupleIds: string[] } | null;
}

function step(node: ShapeNode, token: unknown): ShapeNode {
  let n = node.next.get(token);
  if (!n) node.next.set(token, (n = { next: new Map() }));
  return n;
}

const PORT_WORD: Partial<Record<NumField, number>> = { 'l4.sport': WORD.sport, 'l4.dport': WORD.dport };
const OPEN = Symbol('(');
const CLOSE = Symbol(')');
const HAS = Symbol('has');
const NUM = Symbol('num');
const ADDR = Symbol('addr');

/** The shape node of e from node, its values pushed to words as (word, masked value) pairs; undefined when e has no such shape. */
function shapeOf(e: MatchExpr, node: ShapeNode, words: number[]): ShapeNode | undefined {
  switch (e.kind) {
    case 'and': {
      let n: ShapeNode | undefined = step(node, OPEN);
      for (const a of e.args) if (!(n = shapeOf(a, n, words))) return undefined;
      return step(n, CLOSE);
    }
    case 'has':
      return step(step(node, HAS), e.layer);
    case 'num': {
      const w = PORT_WORD[e.field];
      const r = e.ranges[0];
      if (w === undefined || e.ranges.length !== 1 || r![0] !== r![1]) return undefined;
      const v = r![0];
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) return undefined;
      for (let i = 0; i < words.length; i += 2) if (words[i] === w) return undefined;
      words.push(w, v);
      return step(step(node, NUM), e.field);
    }
    case 'addr': {
      if (e.cidrs.length !== 1 || (e.field !== 'ip4.src' && e.field !== 'ip4.dst')) return undefined;
      const q = quickCidr4(e.cidrs[0]!);
      if (!q) return undefined;
      const w = e.field === 'ip4.src' ? WORD.src : WORD.dst;
      for (let i = 0; i < words.length; i += 2) if (words[i] === w) return undefined;
      const m = q.len === 0 ? 0 : (0xffffffff << (32 - q.len)) >>> 0;
      words.push(w, (q.addr & m) >>> 0);
      return step(step(step(node, ADDR), e.field), q.len);
    }
    default:
      return undefined;
  }
}

/** Actions without parameters share their record. */
const PLAIN_ACTIONS = new Set(['accept', 'drop', 'reject', 'return', 'count']);

/** 'accept,' or 'count,drop,' for a list of parameterless actions, else ''. */
function plainKey(actions: readonly ActionDef[]): string {
  let key = '';
  for (const a of actions) {
    if (!PLAIN_ACTIONS.has(a.kind)) return '';
    key += `${a.kind},`;
  }
  return key;
}

/**
 * classifyRule for many rules, classifying each shape once: rules that
 * differ only in the ports and IPv4 addresses they test (one value each, in
 * words no other predicate constrains) get the first one's conjunction with
 * their values written in. The result equals classifyRule's per rule;
 * `tupleIds` (the identity of each conjunction's tuple) comes along.
 */
export function classifyRules(rules: readonly RuleDef[]): Array<Classified & { tupleIds?: string[] }> {
  const root: ShapeNode = { next: new Map() };
  // Action lists seen (rules of a batch often share one list), by identity.
  const plainOf = new Map<readonly ActionDef[], string>();
  const out: Array<Classified & { tupleIds?: string[] }> = [];
  const words: number[] = [];
  for (const r of rules) {
    let plain = plainOf.get(r.actions);
    if (plain === undefined) plainOf.set(r.actions, (plain = plainKey(r.actions)));
    words.length = 0;
    const node = plain ? shapeOf(r.match, step(root, plain), words) : undefined;
    if (!node) {
      out.push(classifyRule(r));
      continue;
    }
    let t = node.template;
    if (t === undefined) {
      // The first rule of the shape, classified in full. The shape is a template when it gives one conjunction that keeps every value word whole.
      const k = classifyRule(r);
      t = null;
      if (k.ok && k.conjs.length === 1) {
        const c = k.conjs[0]!;
        let whole = true;
        for (let i = 0; i < words.length; i += 2) {
          const w = words[i]!;
          if (c[w] === 0 && w !== WORD.src && w !== WORD.dst) whole = false;
          if (c[WORDS + w] !== words[i + 1]) whole = false;
        }
        if (whole) t = { k, tupleIds: [tupleId(c)] };
      }
      node.template = t;
      out.push(t ? { ...k, tupleIds: t.tupleIds } : k);
      continue;
    }
    if (t === null) {
      out.push(classifyRule(r));
      continue;
    }
    const c = t.k.conjs[0]!.slice();
    for (let i = 0; i < words.length; i += 2) c[WORDS + words[i]!] = words[i + 1]!;
    out.push({ ok: true, conjs: [c], action: t.k.action, fields: t.k.fields, v6: t.k.v6, tupleIds: t.tupleIds });
  }
  return out;
}
