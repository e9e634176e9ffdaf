/**
 * The intermediate form between the model and C: per program (hook), the
 * chains it can reach, each a list of rules = (test, steps, final). Tests are
 * already lowered to what the C parser provides (presence bits, fields of
 * struct tsbpf_pkt, maps), so emit-c.ts is a straight printer.
 *
 * Chains are either `program` chains (their own BPF program, reached by tail
 * call through the hook's prog_array, with resume points after jumps) or
 * `inline` chains (a static inline function; they only reach other inline
 * chains, so they never tail-call and never need a resume point).
 */
import { parseCidr } from '../sdk/addr.js';
import { DslError } from '../sdk/errors.js';
import {
  NUM_FIELD_MAX,
  type ActionDef,
  type ChainDef,
  type ChainPolicy,
  type Definition,
  type FieldPredicate,
  type Hook,
  type Layer,
  type LimitAction,
  type MatchExpr,
  type NumField,
  type NumRange,
  type RuleDef,
  type SourcePosition,
  type CtState,
  type NatAction,
} from '../sdk/model.js';
import { describeAction } from './describe.js';
import type { ClsBlock, ClsPlan } from './classify/plan.js';
import { splitLongChains } from './classify/segments.js';
import { HAS, VERDICT_CODE } from './layouts.js';

/** The kernel runs at most 33 tail calls per packet. */
export const MAX_TAIL_CALLS = 33;
/** Chains with at most this many rules are inlined in 'auto' mode. */
export const INLINE_MAX_RULES = 8;
/** A CIDR list longer than this becomes an LPM trie (filled at load) instead of comparisons. */
export const INLINE_MAX_CIDRS = 8;
/** A port list of more ranges than this (and at most PORT_SET_MAX ports) becomes a hash set. */
export const INLINE_MAX_PORT_RANGES = 8;
export const PORT_SET_MAX = 4096;

export type InlineMode = 'auto' | 'all' | 'none';

// ---------------------------------------------------------------------------
// Tests

/** A value of struct tsbpf_pkt / tsbpf_state a test reads (C expression in emit-c.ts). */
export type CField =
  | 'len' | 'ifindex' | 'mark' | 'ethertype' | 'vlan_id' | 'proto' | 'ttl' | 'dscp'
  | 'sport' | 'dport' | 'tcp_flags' | 'icmp_type' | 'icmp_code'
  | 'ip4_src' | 'ip4_dst' | 'ip6_src' | 'ip6_dst' | 'eth_src' | 'eth_dst'
  | 'ct_mark';

export type Test =
  | { t: 'true' }
  | { t: 'false' }
  | { t: 'and'; args: Test[] }
  | { t: 'or'; args: Test[] }
  | { t: 'not'; arg: Test }
  /** Some bit of `mask` is set in pkt.present. */
  | { t: 'present'; mask: number; what: string }
  /** At least one VLAN tag. */
  | { t: 'vlan' }
  /** field lies in one of the inclusive ranges; `max` is the field's largest value. */
  | { t: 'ranges'; field: CField; ranges: NumRange[]; max: number }
  | { t: 'bits'; field: CField; mask: number; value: number }
  | { t: 'cidr4'; field: 'ip4_src' | 'ip4_dst'; net: number; len: number; text: string }
  | { t: 'cidr6'; field: 'ip6_src' | 'ip6_dst'; net: bigint; len: number; text: string }
  | { t: 'mac'; field: 'eth_src' | 'eth_dst'; value: number; text: string }
  | { t: 'lpm'; map: string; field: 'ip4_src' | 'ip4_dst' | 'ip6_src' | 'ip6_dst'; family: 4 | 6 }
  | { t: 'portset'; map: string; field: 'sport' | 'dport' }
  | { t: 'ifslot'; slot: number; name: string }
  /** The packet's conntrack state is one whose bit (1 << TSBPF_CTS_*) is in mask. */
  | { t: 'ct'; mask: number; what: string };

/** Bits of conntrack states in a `ct` test (1 << TSBPF_CTS_* of ct.h). */
export const CT_STATE_BIT: Record<CtState, number> = { untracked: 1, new: 2, established: 4, related: 8, invalid: 16 };

// ---------------------------------------------------------------------------
// Actions

export type Step =
  | { s: 'count' }
  | { s: 'log'; action: number; verdict: number; prefix?: string }
  | { s: 'mark'; value: number; mask: number }
  | { s: 'ctMark'; value: number; mask: number }
  | {
      s: 'limit';
      limitId: number;
      mode: 'under' | 'over';
      costNs: bigint;
      capacity: bigint;
      /** Unkeyed: slot in tsbpf_limits. Keyed: its own LRU map. */
      slot?: number;
      map?: string;
      key?: 'src' | 'dst';
    };

export type Final =
  | { f: 'none' }
  | { f: 'accept' }
  | { f: 'drop' }
  | { f: 'reject' }
  | { f: 'redirect'; ifindex?: number; slot?: number; ifname?: string }
  | { f: 'jump'; chain: string }
  | { f: 'goto'; chain: string }
  | { f: 'return' }
  /** Accept with translation: the NAT action's parameters (ct.h/nat.h encoding: words host order). */
  | { f: 'nat'; kind: 1 | 2 | 3; family: 0 | 4 | 6; lo: number[]; hi: number[]; pmin: number; pmax: number; text: string };

export interface IrRule {
  id: number;
  name: string;
  index: number;
  source?: SourcePosition;
  comment?: string;
  test: Test;
  steps: Step[];
  final: Final;
  /** The model rule, for comments and tables. */
  def: RuleDef;
  /** Counter / log slot when it differs from the id (live filters keep slots stable: codegen/classify). */
  slot?: number;
  /** Set when the rule lives in a classifier block (no code of its own; the block's first rule emits the lookup). */
  cls?: { block: ClsBlock; first: boolean };
}

export interface IrChain {
  name: string;
  /** C identifier part, unique within the definition. */
  ident: string;
  policy: ChainPolicy;
  kind: 'program' | 'inline';
  rules: IrRule[];
  source?: SourcePosition;
}

export interface IrProgramChain {
  chain: IrChain;
  /** prog_array slot (program chains only). */
  slot?: number;
  /** C function name: the BPF program (program chains) or the inline function. */
  fn: string;
  /** Rule indices a return can resume at (after jumps to program chains). */
  resumeAt: number[];
}

export interface IrProgram {
  name: string;
  /** C identifier of the entry (parse) program. */
  fn: string;
  hook: Hook;
  entry: string;
  /** Key of this program's per-CPU state. */
  stateKey: number;
  progArray: string;
  /** Chains reachable from the entry chain, entry first. */
  chains: IrProgramChain[];
  /** Slot of the act (reject) program, when a reachable rule or policy rejects. */
  actSlot?: number;
  actFn: string;
  /** Slot of the ct program (commit and translate), in filters with conntrack at tc. */
  ctSlot?: number;
  ctFn: string;
  /** prog_array size. */
  slots: number;
  /** Worst-case tail calls per packet. */
  tailCalls: number;
}

export interface IrSetMap {
  name: string;
  type: 'ipv4' | 'ipv6' | 'port';
  maxEntries: number;
  elements: Array<string | number>;
  /** A set codegen made from a rule's long CIDR or port list (not updatable by name). */
  ruleId?: number;
}

export interface IrLimit {
  limitId: number;
  ruleId: number;
  slot?: number;
  map?: string;
  maxKeys?: number;
}

export interface Ir {
  name: string;
  programs: IrProgram[];
  chains: Map<string, IrChain>;
  sets: IrSetMap[];
  limits: IrLimit[];
  /** Unkeyed limits: tsbpf_limits size. */
  limitSlots: number;
  /** Interface names resolved at load time into tsbpf_ifindex, by slot. */
  ifnames: string[];
  usesLog: boolean;
  ruleCount: number;
  inline: InlineMode;
  /** The classification plan, when some block uses tuple-space search (codegen/classify). */
  cls?: ClsPlan;
  /** Conntrack: table size, and whether some rule SNATs or masquerades (tc programs get the ct steps). */
  conntrack?: { maxEntries: number; snat: boolean };
}

export interface LowerOptions {
  inline?: InlineMode;
  /** An already lowered form of some rules (classified rules: codegen/classify), instead of lowering them here. */
  preLowered?: (r: RuleDef) => IrRule | undefined;
}

const HOOK_ARRAY: Record<Hook, string> = { xdp: 'tsbpf_jmp_xdp', 'tc-ingress': 'tsbpf_jmp_tc_in', 'tc-egress': 'tsbpf_jmp_tc_eg' };

/** C identifier from a name: [A-Za-z0-9_], not starting with a digit. */
export function cIdent(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(s) ? `_${s}` : s;
}

/** Lower a (validated) definition. Throws DslError for what the C side cannot express. */
export function lower(def: Definition, options: LowerOptions = {}): Ir {
  const ctx = new Lowering(def);
  const chains = new Map<string, IrChain>();
  const used = new Set<string>();
  for (const c of def.chains) {
    let ident = cIdent(c.name);
    for (let i = 2; used.has(ident); i++) ident = `${cIdent(c.name)}_${i}`;
    used.add(ident);
    chains.set(c.name, {
      name: c.name,
      ident,
      policy: c.policy,
      kind: 'program',
      rules: c.rules.map((r) => options.preLowered?.(r) ?? ctx.rule(r)),
      ...(c.source ? { source: c.source } : {}),
    });
  }
  // Chains too long for one program continue in tail-called continuations.
  splitLongChains(chains);
  const entries = new Set(def.programs.map((p) => p.entry));
  let mode = options.inline ?? 'auto';
  decideInline(chains, entries, mode);

  const ct = def.conntrack !== undefined;
  let programs = def.programs.map((p, i) => buildProgram(p.name, p.hook, p.entry, i, chains, ct));
  const worst = Math.max(0, ...programs.map((p) => p.tailCalls));
  if (worst > MAX_TAIL_CALLS) {
    if (mode === 'none') {
      const p = programs.find((q) => q.tailCalls === worst)!;
      throw new DslError(
        `program '${p.name}' may need ${worst} tail calls per packet, more than the kernel's ${MAX_TAIL_CALLS}`,
        { ...(def.source ? { source: def.source } : {}) },
        { hint: "allow inlining (compile option inline: 'auto'), or use fewer jumps to separate chains" },
      );
    }
    // Inline every non-entry chain: no tail calls but parse -> entry -> act.
    mode = 'all';
    decideInline(chains, entries, mode);
    programs = def.programs.map((p, i) => buildProgram(p.name, p.hook, p.entry, i, chains, ct));
  }

  return {
    name: def.name,
    programs,
    chains,
    sets: [...def.sets.map((s) => ({ name: s.name, type: s.type, maxEntries: s.maxEntries, elements: s.elements })), ...ctx.anonSets],
    limits: ctx.limits,
    limitSlots: ctx.limitSlots,
    ifnames: ctx.ifnames,
    usesLog: ctx.usesLog,
    ruleCount: def.chains.reduce((n, c) => n + c.rules.length, 0),
    inline: mode,
    ...(def.conntrack
      ? { conntrack: { maxEntries: def.conntrack.maxEntries, snat: def.chains.some((c) => c.rules.some((r) => r.actions.some((a) => a.kind === 'snat' || a.kind === 'masquerade'))) } }
      : {}),
  };
}

/** Mark chains inline or program. Entry chains are always programs. */
function decideInline(chains: Map<string, IrChain>, entries: Set<string>, mode: InlineMode): void {
  const targets = (c: IrChain) => c.rules.flatMap((r) => (r.final.f === 'jump' || r.final.f === 'goto' ? [r.final.chain] : []));
  const inline = new Set<string>();
  for (const c of chains.values()) {
    if (entries.has(c.name)) continue;
    if (mode === 'all' || (mode === 'auto' && c.rules.length <= INLINE_MAX_RULES)) inline.add(c.name);
  }
  // An inline chain may only reach inline chains (it cannot tail-call).
  for (let changed = true; changed; ) {
    changed = false;
    for (const name of [...inline]) {
      if (targets(chains.get(name)!).some((t) => !inline.has(t))) {
        inline.delete(name);
        changed = true;
      }
    }
  }
  for (const c of chains.values()) c.kind = inline.has(c.name) ? 'inline' : 'program';
}

function buildProgram(name: string, hook: Hook, entry: string, index: number, chains: Map<string, IrChain>, ct = false): IrProgram {
  const fn = cIdent(name);
  // Reachable chains in a stable order (depth-first from the entry, rule order).
  const order: IrChain[] = [];
  const seen = new Set<string>();
  const visit = (c: IrChain) => {
    if (seen.has(c.name)) return;
    seen.add(c.name);
    order.push(c);
    for (const r of c.rules) if (r.final.f === 'jump' || r.final.f === 'goto') visit(chains.get(r.final.chain)!);
  };
  visit(chains.get(entry)!);

  const rejects = order.some((c) => c.policy === 'reject' || c.rules.some((r) => r.final.f === 'reject'));
  let slot = 0;
  const actSlot = rejects ? slot++ : undefined;
  // The ct program commits accepted packets (tc only; it is another final tail call, like act).
  const ctSlot = ct && hook !== 'xdp' ? slot++ : undefined;
  const out: IrProgramChain[] = order.map((c) => {
    const resumeAt = c.kind === 'program'
      ? [...new Set(c.rules.filter((r) => r.final.f === 'jump' && chains.get(r.final.chain)!.kind === 'program').map((r) => r.index + 1))]
      : [];
    return {
      chain: c,
      ...(c.kind === 'program' ? { slot: slot++ } : {}),
      fn: c.kind === 'program' ? `${fn}__${c.ident}` : `${fn}__inline_${c.ident}`,
      resumeAt,
    };
  });

  // Worst-case tail calls: parse -> entry, then per program chain the jumps it
  // may take (call + the callee's own), its exit (return to the caller, or act).
  const memo = new Map<string, number>();
  const cost = (c: IrChain): number => {
    const known = memo.get(c.name);
    if (known !== undefined) return known;
    let jumps = 0;
    let exit = 1; // return to the caller, or the act program
    for (const r of c.rules) {
      if (r.final.f !== 'jump' && r.final.f !== 'goto') continue;
      const t = chains.get(r.final.chain)!;
      if (t.kind !== 'program') continue;
      if (r.final.f === 'jump') jumps += 1 + cost(t);
      else exit = Math.max(exit, 1 + cost(t));
    }
    const total = jumps + exit;
    memo.set(c.name, total);
    return total;
  };
  return {
    name,
    fn,
    hook,
    entry,
    stateKey: index,
    progArray: HOOK_ARRAY[hook],
    chains: out,
    ...(actSlot !== undefined ? { actSlot } : {}),
    actFn: `${fn}__act`,
    ...(ctSlot !== undefined ? { ctSlot } : {}),
    ctFn: `${fn}__ct`,
    slots: Math.max(1, slot),
    tailCalls: 1 + cost(chains.get(entry)!),
  };
}

// ---------------------------------------------------------------------------
// Rules

const VERDICT_OF: Record<string, number> = {
  accept: VERDICT_CODE.accept,
  drop: VERDICT_CODE.drop,
  reject: VERDICT_CODE.reject,
  redirect: VERDICT_CODE.redirect,
};

class Lowering {
  limits: IrLimit[] = [];
  limitSlots = 0;
  ifnames: string[] = [];
  usesLog = false;
  anonSets: IrSetMap[] = [];
  private sets: Map<string, Definition['sets'][number]>;

  constructor(private def: Definition) {
    this.sets = new Map(def.sets.map((s) => [s.name, s]));
  }

  rule(r: RuleDef): IrRule {
    const at = { rule: r.name, ...(r.source ? { source: r.source } : {}) };
    const test = this.match(r.match, r);
    const steps: Step[] = [];
    let final: Final = { f: 'none' };
    const last = r.actions[r.actions.length - 1];
    const verdict = last && VERDICT_OF[last.kind] !== undefined ? VERDICT_OF[last.kind]! : 0;
    r.actions.forEach((a, i) => {
      const isLast = i === r.actions.length - 1;
      const fin = this.final(a, r);
      if (fin) {
        if (!isLast) throw new DslError(`'${a.kind}' must be the rule's last action`, at);
        final = fin;
        return;
      }
      steps.push(this.step(a, i, verdict, r));
    });
    return {
      id: r.id,
      name: r.name,
      index: r.index,
      ...(r.source ? { source: r.source } : {}),
      ...(r.comment ? { comment: r.comment } : {}),
      test,
      steps,
      final,
      def: r,
    };
  }

  private final(a: ActionDef, r: RuleDef): Final | undefined {
    switch (a.kind) {
      case 'accept':
      case 'drop':
      case 'reject':
      case 'return':
        return { f: a.kind };
      case 'redirect': {
        if (a.ifindex !== undefined) {
          if (!Number.isInteger(a.ifindex) || a.ifindex < 1 || a.ifindex > 0xffffffff) {
            throw new DslError(`redirect to interface index ${a.ifindex}: not a valid index`, at(r));
          }
          return { f: 'redirect', ifindex: a.ifindex };
        }
        if (!a.ifname) throw new DslError('redirect needs an interface index or name', at(r));
        return { f: 'redirect', slot: this.ifslot(a.ifname), ifname: a.ifname };
      }
      case 'jump':
      case 'goto':
        if (!this.def.chains.some((c) => c.name === a.chain)) throw new DslError(`${a.kind} to unknown chain '${a.chain}'`, at(r));
        return { f: a.kind, chain: a.chain };
      case 'snat':
      case 'dnat':
      case 'masquerade':
        return natFinal(a, r);
      default:
        return undefined;
    }
  }

  private step(a: ActionDef, index: number, verdict: number, r: RuleDef): Step {
    switch (a.kind) {
      case 'count':
        return { s: 'count' };
      case 'log':
        this.usesLog = true;
        return { s: 'log', action: index, verdict, ...(a.prefix !== undefined ? { prefix: a.prefix } : {}) };
      case 'mark':
        return { s: 'mark', value: a.value >>> 0, mask: a.mask >>> 0 };
      case 'ctMark':
        return { s: 'ctMark', value: a.value >>> 0, mask: a.mask >>> 0 };
      case 'limit':
        return this.limit(a, r);
      default:
        throw new DslError(`unknown action '${(a as { kind: string }).kind}'`, at(r));
    }
  }

  private limit(a: LimitAction, r: RuleDef): Step {
    const cost = BigInt(a.costNs);
    const capacity = BigInt(a.burst) * cost;
    if (cost < 1n || capacity >= 1n << 62n) {
      throw new DslError(`limit: burst ${a.burst} at ${a.rate}/${a.interval} does not fit a 62-bit token bucket`, at(r), {
        hint: 'use a smaller burst or a shorter interval',
      });
    }
    const base = { s: 'limit' as const, limitId: a.limitId, mode: a.mode, costNs: cost, capacity };
    if (a.key) {
      const map = `tsbpf_lim_${a.limitId}`;
      this.limits.push({ limitId: a.limitId, ruleId: r.id, map, maxKeys: a.maxKeys ?? 65536 });
      return { ...base, map, key: a.key === 'ip.src' ? 'src' : 'dst' };
    }
    const slot = this.limitSlots++;
    this.limits.push({ limitId: a.limitId, ruleId: r.id, slot });
    return { ...base, slot };
  }

  private ifslot(name: string): number {
    let i = this.ifnames.indexOf(name);
    if (i < 0) {
      i = this.ifnames.length;
      this.ifnames.push(name);
    }
    return i;
  }

  match(m: MatchExpr, r: RuleDef): Test {
    switch (m.kind) {
      case 'all':
        return { t: 'true' };
      case 'and':
        return and(m.args.map((x) => this.match(x, r)));
      case 'or':
        return or(m.args.map((x) => this.match(x, r)));
      case 'not': {
        const inner = this.match(m.arg, r);
        if (inner.t === 'true') return { t: 'false' };
        if (inner.t === 'false') return { t: 'true' };
        return { t: 'not', arg: inner };
      }
      default:
        return this.predicate(m, r);
    }
  }

  private predicate(p: FieldPredicate, r: RuleDef): Test {
    switch (p.kind) {
      case 'has':
        return layerTest(p.layer, r);
      case 'num': {
        const f = NUM_FIELDS[p.field];
        if (!f) throw new DslError(`unknown field '${p.field}'`, at(r));
        const max = NUM_FIELD_MAX[p.field];
        for (const [lo, hi] of p.ranges) {
          if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > max || lo > hi) {
            throw new DslError(`${p.field}: ${lo === hi ? lo : `${lo}-${hi}`} is out of range (0-${max})`, at(r));
          }
        }
        if (p.ranges.length === 0) return { t: 'false' };
        const ports = p.ranges.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
        if ((f.field === 'sport' || f.field === 'dport') && p.ranges.length > INLINE_MAX_PORT_RANGES && ports <= PORT_SET_MAX) {
          const elements: number[] = [];
          for (const [lo, hi] of p.ranges) for (let x = lo; x <= hi; x++) elements.push(x);
          const map = this.anonSet(r, 'port', elements);
          return and([f.presence, { t: 'portset', map, field: f.field }]);
        }
        return and([f.presence, { t: 'ranges', field: f.field, ranges: p.ranges, max }]);
      }
      case 'bits': {
        const f = NUM_FIELDS[p.field];
        if (!f) throw new DslError(`unknown field '${p.field}'`, at(r));
        if ((p.value & ~p.mask) !== 0) throw new DslError(`${p.field}: value 0x${p.value.toString(16)} has bits outside mask 0x${p.mask.toString(16)}`, at(r));
        return and([f.presence, { t: 'bits', field: f.field, mask: p.mask >>> 0, value: p.value >>> 0 }]);
      }
      case 'numSet': {
        const s = this.set(p.set, r);
        if (s.type !== 'port') throw new DslError(`set '${p.set}' holds ${s.type} addresses, not ports`, at(r));
        const f = NUM_FIELDS[p.field]!;
        return and([f.presence, { t: 'portset', map: s.name, field: f.field as 'sport' | 'dport' }]);
      }
      case 'addr': {
        const v6 = p.field.startsWith('ip6');
        const field = p.field.replace('.', '_') as 'ip4_src' | 'ip4_dst' | 'ip6_src' | 'ip6_dst';
        const tests: Test[] = p.cidrs.map((text) => {
          const c = parseCidr(text);
          if ('error' in c) throw new DslError(`${p.field}: ${c.error}`, at(r));
          if ((c.family === 6) !== v6) {
            throw new DslError(`${p.field}: '${text}' is an IPv${c.family} address, the field is IPv${v6 ? 6 : 4}`, at(r));
          }
          return c.family === 4
            ? { t: 'cidr4', field: field as 'ip4_src', net: c.addr, len: c.len, text: c.text }
            : { t: 'cidr6', field: field as 'ip6_src', net: c.addr, len: c.len, text: c.text };
        });
        const present = presentOf(v6 ? HAS.IPV6 : HAS.IPV4, v6 ? 'ip6' : 'ip4');
        if (tests.length > INLINE_MAX_CIDRS && !tests.some((t) => t.t === 'true')) {
          const texts = tests.map((t) => (t as { text: string }).text);
          const map = this.anonSet(r, v6 ? 'ipv6' : 'ipv4', texts);
          return and([present, { t: 'lpm', map, field, family: v6 ? 6 : 4 }]);
        }
        return and([present, or(tests)]);
      }
      case 'addrSet': {
        const v6 = p.field.startsWith('ip6');
        const s = this.set(p.set, r);
        if (s.type !== (v6 ? 'ipv6' : 'ipv4')) {
          throw new DslError(`set '${p.set}' holds ${s.type === 'port' ? 'ports' : `${s.type} addresses`}, the field ${p.field} is IPv${v6 ? 6 : 4}`, at(r));
        }
        const field = p.field.replace('.', '_') as 'ip4_src';
        return and([presentOf(v6 ? HAS.IPV6 : HAS.IPV4, v6 ? 'ip6' : 'ip4'), { t: 'lpm', map: s.name, field, family: v6 ? 6 : 4 }]);
      }
      case 'mac': {
        const field = p.field === 'eth.src' ? 'eth_src' : 'eth_dst';
        const tests: Test[] = p.addrs.map((text) => {
          const hex = text.replace(/[:-]/g, '');
          if (!/^[0-9a-fA-F]{12}$/.test(hex)) throw new DslError(`${p.field}: '${text}' is not a MAC address`, at(r));
          return { t: 'mac', field, value: parseInt(hex, 16), text: text.toLowerCase() };
        });
        return and([presentOf(HAS.ETH, 'eth'), or(tests)]);
      }
      case 'ifname':
        return or(p.names.map((name) => ({ t: 'ifslot', slot: this.ifslot(name), name })));
      case 'ct': {
        const mask = p.states.reduce((m, st) => m | CT_STATE_BIT[st], 0);
        return { t: 'ct', mask, what: `ct state ${p.states.join(',')}` };
      }
      default:
        throw new DslError(`unknown match '${(p as { kind: string }).kind}'`, at(r));
    }
  }

  /** A set made from one rule's list: an LPM trie or port hash, filled at load like a named set. */
  private anonSet(r: RuleDef, type: IrSetMap['type'], elements: Array<string | number>): string {
    const name = `tsbpf_set_${this.anonSets.length}`;
    const unique = [...new Set(elements)];
    this.anonSets.push({ name, type, maxEntries: Math.max(1, unique.length), elements: unique, ruleId: r.id });
    return name;
  }

  private set(name: string, r: RuleDef): Definition['sets'][number] {
    const s = this.sets.get(name);
    if (!s) throw new DslError(`unknown set '${name}'`, at(r), { hint: 'declare it with set.ipv4/ipv6/port in the filter' });
    return s;
  }
}

function at(r: RuleDef): { rule: string; source?: SourcePosition } {
  return { rule: r.name, ...(r.source ? { source: r.source } : {}) };
}

function presentOf(mask: number, what: string): Test {
  return { t: 'present', mask, what };
}

function layerTest(layer: Layer, r: RuleDef): Test {
  switch (layer) {
    case 'eth': return presentOf(HAS.ETH, 'eth');
    case 'vlan': return { t: 'vlan' };
    case 'ip4': return presentOf(HAS.IPV4, 'ip4');
    case 'ip6': return presentOf(HAS.IPV6, 'ip6');
    case 'tcp': return presentOf(HAS.TCP, 'tcp');
    case 'udp': return presentOf(HAS.UDP, 'udp');
    case 'sctp': return presentOf(HAS.SCTP, 'sctp');
    case 'icmp': return presentOf(HAS.ICMP, 'icmp');
    case 'icmp6': return presentOf(HAS.ICMPV6, 'icmp6');
    case 'frag': return presentOf(HAS.FRAG, 'frag');
    default: throw new DslError(`unknown layer '${String(layer)}'`, at(r));
  }
}

/** Numeric model fields: the C field and when it is present. */
const NUM_FIELDS: Record<NumField, { field: CField; presence: Test }> = {
  'pkt.len': { field: 'len', presence: { t: 'true' } },
  'meta.ifindex': { field: 'ifindex', presence: { t: 'true' } },
  'meta.mark': { field: 'mark', presence: { t: 'true' } },
  'eth.type': { field: 'ethertype', presence: presentOf(HAS.L3, 'eth type') },
  'vlan.id': { field: 'vlan_id', presence: { t: 'vlan' } },
  'ip.proto': { field: 'proto', presence: presentOf(HAS.IPV4 | HAS.IPV6, 'ip') },
  'ip.ttl': { field: 'ttl', presence: presentOf(HAS.IPV4 | HAS.IPV6, 'ip') },
  'ip.dscp': { field: 'dscp', presence: presentOf(HAS.IPV4 | HAS.IPV6, 'ip') },
  'l4.sport': { field: 'sport', presence: presentOf(HAS.TCP | HAS.UDP | HAS.SCTP, 'ports') },
  'l4.dport': { field: 'dport', presence: presentOf(HAS.TCP | HAS.UDP | HAS.SCTP, 'ports') },
  'tcp.flags': { field: 'tcp_flags', presence: presentOf(HAS.TCP, 'tcp') },
  'icmp.type': { field: 'icmp_type', presence: presentOf(HAS.ICMP, 'icmp') },
  'icmp.code': { field: 'icmp_code', presence: presentOf(HAS.ICMP, 'icmp') },
  'icmp6.type': { field: 'icmp_type', presence: presentOf(HAS.ICMPV6, 'icmp6') },
  'icmp6.code': { field: 'icmp_code', presence: presentOf(HAS.ICMPV6, 'icmp6') },
  // A connection exists or is being opened: new, established or related.
  'ct.mark': { field: 'ct_mark', presence: { t: 'ct', mask: 2 | 4 | 8, what: 'tracked' } },
};

/** The words (host order, IPv4 in word 0) of an address. */
function addrWords(text: string): { family: 4 | 6; words: number[] } {
  const c = parseCidr(text);
  if ('error' in c) throw new DslError(c.error, {});
  if (c.family === 4) return { family: 4, words: [c.addr >>> 0, 0, 0, 0] };
  return { family: 6, words: [0, 1, 2, 3].map((i) => Number((c.addr >> BigInt(96 - 32 * i)) & 0xffffffffn)) };
}

const NAT_CODE = { snat: 1, masquerade: 2, dnat: 3 } as const;

function natFinal(a: NatAction, r: RuleDef): Final {
  const text = describeAction(a);
  if (a.kind === 'masquerade') {
    return { f: 'nat', kind: 2, family: 0, lo: [0, 0, 0, 0], hi: [0, 0, 0, 0], pmin: a.ports?.[0] ?? 0, pmax: a.ports?.[1] ?? 0, text };
  }
  try {
    const lo = addrWords(a.to[0]);
    const hi = addrWords(a.to[1]);
    const ports = a.kind === 'snat' ? a.ports : a.port;
    return { f: 'nat', kind: NAT_CODE[a.kind], family: lo.family, lo: lo.words, hi: hi.words, pmin: ports?.[0] ?? 0, pmax: ports?.[1] ?? 0, text };
  } catch (e) {
    throw new DslError(`${a.kind}: ${(e as Error).message}`, at(r));
  }
}

function and(args: Test[]): Test {
  const flat: Test[] = [];
  for (const a of args) {
    if (a.t === 'true') continue;
    if (a.t === 'false') return a;
    if (a.t === 'and') flat.push(...a.args);
    else flat.push(a);
  }
  // A presence test implied by a narrower one in the same conjunction is dropped
  // (tcp implies "tcp, udp or sctp"), so `match.tcp.dport(80)` tests TCP once.
  const kept = flat.filter((a, i) => {
    if (a.t !== 'present') return true;
    return !flat.some((b, j) => b.t === 'present' && j !== i && (b.mask & ~a.mask) === 0 && (b.mask !== a.mask || j < i));
  });
  if (kept.length === 0) return { t: 'true' };
  if (kept.length === 1) return kept[0]!;
  return { t: 'and', args: kept };
}

function or(args: Test[]): Test {
  const flat: Test[] = [];
  for (const a of args) {
    if (a.t === 'false') continue;
    if (a.t === 'true') return a;
    if (a.t === 'or') flat.push(...a.args);
    else flat.push(a);
  }
  if (flat.length === 0) return { t: 'false' };
  if (flat.length === 1) return flat[0]!;
  return { t: 'or', args: flat };
}

/** Every chain name a chain's rules jump or goto to. */
export function chainTargets(c: ChainDef): string[] {
  return c.rules.flatMap((r) => r.actions.flatMap((a) => (a.kind === 'jump' || a.kind === 'goto' ? [a.chain] : [])));
}
