/**
 * The reference semantics: `evaluate(definition, packet)` walks the rules the
 * way the generated program must, and says why. The kernel's verdict on the
 * same packet must equal this one (the differential tests check it); `tsbpf
 * explain` prints the trace. docs/semantics.md is the long form.
 *
 * State that outlives one packet (set contents, limit buckets, counters) lives
 * in an EvalState the caller passes in; time is explicit (`now`, in ns) so
 * tests are deterministic.
 */
import { inCidr4, inCidr6, parseCidr, type Cidr } from './addr.js';
import { toDefinition, type DefinitionLike } from './dsl/filter.js';
import { assertValidDefinition } from './dsl/validate.js';
import { TsbpfError } from './errors.js';
import {
  INTERVAL_NS,
  MAX_JUMP_DEPTH,
  type ActionDef,
  type ChainDef,
  type Definition,
  type FieldPredicate,
  type Hook,
  type LimitAction,
  type MatchExpr,
  type NumField,
  type RuleDef,
  type SetDecl,
  type Verdict,
  type CtState,
  isNatAction,
} from './model.js';
import { formatIpv4, formatIpv6, formatMac, parsePacket, ports, type PacketView } from './parse.js';
import { rejectReply, rejectSuppressed, type RejectKind } from './reject.js';
import { ctCommit, ctNeed, ctPre, FilterConntrack, type CtPacket, type CtRun } from './ct-filter.js';
import { CT_PRIMARY, HOOK_EGRESS, HOOK_INGRESS, keyOf, type CtEntry } from './ct.js';

// ---------------------------------------------------------------------------
// State

/** One token bucket (see LimitAction in model.ts for the refill rule). */
export interface Bucket {
  /** Credit in nanoseconds; a packet costs `costNs`. */
  credit: bigint;
  /** Time of the last refill, ns. */
  last: bigint;
}

interface SetContents {
  type: SetDecl['type'];
  /** Canonical text (CIDR) or port -> parsed form. */
  entries: Map<string | number, Cidr | number>;
}

/** State that outlives a packet: set contents, limit buckets, counters, the clock. */
export class EvalState {
  /** Current time in ns, used when evaluate() is not given `now`. */
  now = 0n;
  /** Limit buckets by `limitId` or `limitId/key`. */
  readonly buckets = new Map<string, Bucket>();
  /** Accumulated per-rule counters (the `count` action). */
  readonly counters = new Map<number, { packets: number; bytes: number }>();
  private readonly sets = new Map<string, SetContents>();
  /** The conntrack table, counters and masquerade addresses of a filter with conntrack. */
  conntrack: FilterConntrack | undefined;

  /** A state whose sets hold the definition's initial elements (and, with conntrack, an empty table hashed with `ctSeed`). */
  constructor(definition?: DefinitionLike, options: { ctSeed?: number } = {}) {
    if (definition) {
      const def = toDefinition(definition);
      for (const s of def.sets) this.declareSet(s);
      if (def.conntrack) this.conntrack = new FilterConntrack(def.conntrack, options.ctSeed ?? 0);
    }
  }

  /** @internal make sure the set exists (with its initial elements the first time). */
  declareSet(s: SetDecl): void {
    if (this.sets.has(s.name)) return;
    this.sets.set(s.name, { type: s.type, entries: new Map() });
    this.setAdd(s.name, ...s.elements);
  }

  /** Add elements (addresses/CIDRs, or ports) to a set. */
  setAdd(name: string, ...elements: Array<string | number>): void {
    const set = this.set(name);
    for (const e of elements) {
      if (set.type === 'port') {
        if (typeof e !== 'number' || !Number.isInteger(e) || e < 0 || e > 0xffff) throw badElement(name, e);
        set.entries.set(e, e);
      } else {
        const c = typeof e === 'string' ? parseCidr(e) : undefined;
        if (!c || 'error' in c || `ipv${c.family}` !== set.type) throw badElement(name, e);
        set.entries.set(c.text, c);
      }
    }
  }

  /** Remove elements (exactly as added: the same prefix). */
  setDelete(name: string, ...elements: Array<string | number>): void {
    const set = this.set(name);
    for (const e of elements) {
      if (typeof e === 'number') set.entries.delete(e);
      else {
        const c = parseCidr(e);
        if (!('error' in c)) set.entries.delete(c.text);
      }
    }
  }

  setClear(name: string): void {
    this.set(name).entries.clear();
  }

  /** The set's elements (canonical text or ports). */
  setElements(name: string): Array<string | number> {
    return [...this.set(name).entries.keys()];
  }

  /** @internal */
  setContents(name: string): SetContents | undefined {
    return this.sets.get(name);
  }

  private set(name: string): SetContents {
    const s = this.sets.get(name);
    if (!s) throw new TsbpfError('INVALID_ARGUMENT', `no set named '${name}' in this state`, { hint: 'create the state from the definition: new EvalState(filter)' });
    return s;
  }
}

function badElement(set: string, e: unknown): TsbpfError {
  return new TsbpfError('INVALID_ARGUMENT', `'${String(e)}' is not a valid element of set '${set}'`);
}

// ---------------------------------------------------------------------------
// Results

export interface EvalOptions {
  /** Which program to run (default: the definition's first). */
  hook?: Hook;
  /** Interface the program runs on (default 1, the loopback device a BPF test run uses). */
  ifindex?: number;
  /** Its name, for `ifname` matches. */
  ifname?: string;
  /** Name -> index table for `ifname` matches when `ifname` is not given. */
  interfaces?: Readonly<Record<string, number>>;
  /** The packet's mark on entry (TC; at XDP the mark always starts at 0). */
  mark?: number;
  /** Time in ns for limits (default: state.now). */
  now?: bigint | number;
  /** Sets, buckets and counters; a fresh one (from the definition) when absent. */
  state?: EvalState;
  /** Record the trace (default true); false skips it for speed (large differential runs). */
  trace?: boolean;
}

/** One predicate as evaluated. */
export interface Check {
  /** e.g. 'l4.dport 443 in 80,443' */
  text: string;
  result: boolean;
  /** The model predicate this check evaluated. */
  predicate: FieldPredicate;
}

/** One rule as the walk considered it. */
export interface TraceStep {
  ruleId: number;
  rule: string;
  chain: string;
  matched: boolean;
  /** The match expression, each evaluated predicate with its value and result. */
  why: string;
  checks: Check[];
  /** Actions run (in order) when matched. */
  actions: string[];
  /** True when a limit stopped the rule. */
  limited?: boolean;
}

export interface LogEvent {
  ruleId: number;
  rule: string;
  prefix?: string;
  /** The 5-tuple as far as the packet has one. */
  tuple: { family?: 4 | 6; src?: string; dst?: string; proto?: number; sport?: number; dport?: number };
}

export interface EvalResult {
  /** The packet's fate: a NAT action accepts (and conntrack may still drop: see ctDropped). */
  verdict: Verdict;
  /** The rule whose action decided; undefined when a chain policy did. */
  ruleId?: number;
  rule?: string;
  /** 'rule', the policy of `policyChain`, or 'conntrack' (a reply of an accepted connection, accepted before the rules). */
  decidedBy: 'rule' | 'policy' | 'conntrack';
  policyChain?: string;
  program: string;
  hook: Hook;
  /** The jump stack when the verdict fell: entry chain first. */
  chainPath: string[];
  trace: TraceStep[];
  /** `count` actions run for this packet. */
  counters: Array<{ ruleId: number; packets: number; bytes: number }>;
  logs: LogEvent[];
  /** The mark after the rules ran. */
  mark: number;
  redirect?: { ifindex?: number; ifname?: string };
  /** reject: the reply frame (undefined when the reply is suppressed; see rejectSuppressed). */
  data?: Buffer;
  rejectKind?: RejectKind;
  /** reject: why no reply is sent. */
  rejectSuppressed?: string;
  /** The parsed packet, as the rules saw it. */
  view: PacketView;
  /** Conntrack (filters with conntrack, tc hooks): what the packet was to it, and its connection after it. */
  ct?: {
    state: CtState;
    /** The connection's mark as the rules left it. */
    mark: number;
    direction?: 'original' | 'reply';
    /** The connection's primary entry after the packet. */
    entry?: CtEntry;
    /** The accepted packet was dropped by conntrack: no free SNAT port, a DNAT tuple clash, a failed rewrite. */
    dropped?: 'nat-exhausted' | 'clash' | 'error';
  };
  /** The frame as it leaves when accepted (translated by NAT; equal to the input otherwise). Filters with conntrack only. */
  packet?: Buffer;
}

// ---------------------------------------------------------------------------
// Evaluation

const validated = new WeakSet<Definition>();

/** Run the definition's program on one frame. */
export function evaluate(definition: DefinitionLike, packet: Uint8Array, options: EvalOptions = {}): EvalResult {
  const def = toDefinition(definition);
  if (!validated.has(def)) {
    assertValidDefinition(def);
    validated.add(def);
  }
  const program = options.hook ? def.programs.find((p) => p.hook === options.hook) : def.programs[0];
  if (!program) {
    throw new TsbpfError('INVALID_ARGUMENT', `filter '${def.name}' has no program for hook '${String(options.hook)}'`, {
      hint: `its hooks: ${def.programs.map((p) => p.hook).join(', ')}`,
    });
  }
  const state = options.state ?? new EvalState(def);
  for (const s of def.sets) state.declareSet(s);
  const now = options.now === undefined ? state.now : BigInt(options.now);
  if (options.now !== undefined) state.now = now;

  const chains = new Map(def.chains.map((c) => [c.name, c]));
  const view = parsePacket(packet);
  const ctx: Ctx = {
    view,
    state,
    ifindex: options.ifindex ?? 1,
    ifname: options.ifname,
    interfaces: options.interfaces,
    mark: program.hook === 'xdp' ? 0 : (options.mark ?? 0) >>> 0,
  };
  // Conntrack before the rules (sdk/ct-filter.ts): a reply of an accepted connection ends here.
  let ctRun: CtRun | undefined;
  if (def.conntrack && program.hook !== 'xdp') {
    state.conntrack ??= new FilterConntrack(def.conntrack);
    ctRun = { fc: state.conntrack, pkt: Buffer.from(packet), v: view, hook: program.hook === 'tc-egress' ? HOOK_EGRESS : HOOK_INGRESS, ifindex: ctx.ifindex, now };
    ctx.ct = ctPre(ctRun);
  }
  const snatInFilter = ctRun !== undefined && def.chains.some((c) => c.rules.some((r) => r.actions.some((a) => a.kind === 'snat' || a.kind === 'masquerade')));
  const ctInfo = (): EvalResult['ct'] => {
    const c = ctx.ct!;
    const info: NonNullable<EvalResult['ct']> = { state: c.state, mark: c.mark };
    if (c.kind === 'conn' && ctRun) {
      const entry = ctRun.fc.ct.get(c.key ?? keyOf(c.t!));
      if (entry && entry.role === CT_PRIMARY) {
        info.entry = entry;
        info.direction = c.dir === 1 ? 'reply' : 'original';
      }
    }
    return info;
  };

  const trace: TraceStep[] = [];
  const tracing = options.trace !== false;
  const counters: EvalResult['counters'] = [];
  const logs: LogEvent[] = [];
  const entry = chains.get(program.entry)!;
  const frames: Array<{ chain: ChainDef; next: number }> = [];
  let chain = entry;
  let i = 0;

  const finish = (verdict: Verdict, by: { rule: RuleDef } | { policy: ChainDef } | 'conntrack', extra: Partial<EvalResult> = {}): EvalResult => {
    let dropped: NonNullable<EvalResult['ct']>['dropped'];
    if (ctRun && ctx.ct && verdict === 'accept' && by !== 'conntrack' && ctNeed(ctx.ct, ctRun.hook, snatInFilter)) {
      const before = { ...ctRun.fc.stats };
      if (ctCommit(ctRun, ctx.ct) === 'drop') {
        verdict = 'drop';
        const st = ctRun.fc.stats;
        dropped = st.dropNatExhausted > before.dropNatExhausted ? 'nat-exhausted' : st.dropClash > before.dropClash ? 'clash' : 'error';
      }
    }
    const r: EvalResult = {
      verdict,
      decidedBy: by === 'conntrack' ? 'conntrack' : 'rule' in by ? 'rule' : 'policy',
      program: program.name,
      hook: program.hook,
      chainPath: [...frames.map((f) => f.chain.name), chain.name],
      trace,
      counters,
      logs,
      mark: ctx.mark,
      view,
      ...extra,
    };
    if (by === 'conntrack') {
      /* decided before the rules */
    } else if ('rule' in by) {
      r.ruleId = by.rule.id;
      r.rule = by.rule.name;
    } else r.policyChain = by.policy.name;
    if (ctRun && ctx.ct) {
      const info = ctInfo()!;
      if (dropped) info.dropped = dropped;
      r.ct = info;
      r.packet = ctRun.pkt;
    }
    if (verdict === 'reject') {
      const why = rejectSuppressed(view);
      if (why !== undefined) r.rejectSuppressed = why;
      else {
        const reply = rejectReply(packet, view);
        if (reply) {
          r.data = reply.data;
          r.rejectKind = reply.kind;
        }
      }
    }
    return r;
  };

  // Leave the current chain without a verdict: back to the caller, or the entry policy.
  const leave = (): EvalResult | undefined => {
    const f = frames.pop();
    if (f) {
      chain = f.chain;
      i = f.next;
      return undefined;
    }
    return finish(entry.policy as Verdict, { policy: entry });
  };

  if (ctx.ct?.done) return finish(ctx.ct.done, 'conntrack');

  for (;;) {
    if (i >= chain.rules.length) {
      if (chain.policy !== 'return') return finish(chain.policy, { policy: chain });
      const done = leave();
      if (done) return done;
      continue;
    }
    const rule = chain.rules[i]!;
    i++;
    const checks: Check[] | undefined = tracing ? [] : undefined;
    const matched = evalExpr(rule.match, ctx, checks);
    const step: TraceStep = { ruleId: rule.id, rule: rule.name, chain: chain.name, matched, why: checks ? describe(rule.match, checks) : '', checks: checks ?? [], actions: [] };
    if (tracing) trace.push(step);
    if (!matched) continue;

    let next: 'continue' | EvalResult | 'moved' = 'continue';
    for (const a of rule.actions) {
      step.actions.push(a.kind === 'jump' || a.kind === 'goto' ? `${a.kind} ${a.chain}` : a.kind);
      if (a.kind === 'count') {
        const c = state.counters.get(rule.id) ?? { packets: 0, bytes: 0 };
        c.packets++;
        c.bytes += view.len;
        state.counters.set(rule.id, c);
        counters.push({ ruleId: rule.id, packets: 1, bytes: view.len });
      } else if (a.kind === 'log') {
        const ev: LogEvent = { ruleId: rule.id, rule: rule.name, tuple: tupleOf(view) };
        if (a.prefix !== undefined) ev.prefix = a.prefix;
        logs.push(ev);
      } else if (a.kind === 'mark') {
        ctx.mark = ((ctx.mark & ~a.mask) | a.value) >>> 0;
      } else if (a.kind === 'ctMark') {
        if (ctx.ct) {
          ctx.ct.mark = ((ctx.ct.mark & ~a.mask) | a.value) >>> 0;
          ctx.ct.markSet = true;
        }
      } else if (isNatAction(a)) {
        if (ctx.ct) ctx.ct.nat = natChoice(a, rule.id);
        next = finish('accept', { rule });
      } else if (a.kind === 'limit') {
        if (!takeToken(state, a, view, now)) {
          step.limited = true;
          break;
        }
      } else if (a.kind === 'accept' || a.kind === 'drop' || a.kind === 'reject') {
        next = finish(a.kind, { rule });
      } else if (a.kind === 'redirect') {
        const target: { ifindex?: number; ifname?: string } = {};
        if (a.ifindex !== undefined) target.ifindex = a.ifindex;
        if (a.ifname !== undefined) target.ifname = a.ifname;
        next = finish('redirect', { rule }, { redirect: target });
      } else if (a.kind === 'jump') {
        if (frames.length >= MAX_JUMP_DEPTH) throw new TsbpfError('INTERNAL', `jump nesting deeper than ${MAX_JUMP_DEPTH} at rule '${rule.name}'`);
        frames.push({ chain, next: i });
        chain = chains.get(a.chain)!;
        i = 0;
        next = 'moved';
      } else if (a.kind === 'goto') {
        chain = chains.get(a.chain)!;
        i = 0;
        next = 'moved';
      } else if (a.kind === 'return') {
        const done = leave();
        next = done ?? 'moved';
      }
      if (next !== 'continue') break;
    }
    if (typeof next === 'object') return next;
  }
}

/** One packet of a sequence: the frame, the hook it meets, and optionally its time and interface. */
export interface SequencePacket {
  data: Uint8Array;
  hook?: Hook;
  now?: bigint | number;
  ifindex?: number;
  mark?: number;
}

/**
 * Run packets one after the other through one state (sets, buckets,
 * conntrack): what a filter with conntrack means for a sequence. Each result
 * carries the packet as it left (`packet`) and its connection (`ct`).
 */
export function evaluateSequence(definition: DefinitionLike, packets: Iterable<SequencePacket>, options: Omit<EvalOptions, 'hook' | 'now' | 'ifindex' | 'mark'> = {}): { state: EvalState; results: EvalResult[] } {
  const state = options.state ?? new EvalState(definition);
  const results: EvalResult[] = [];
  for (const p of packets) {
    results.push(
      evaluate(definition, p.data, {
        ...options,
        state,
        ...(p.hook ? { hook: p.hook } : {}),
        ...(p.now !== undefined ? { now: p.now } : {}),
        ...(p.ifindex !== undefined ? { ifindex: p.ifindex } : {}),
        ...(p.mark !== undefined ? { mark: p.mark } : {}),
      }),
    );
  }
  return { state, results };
}

interface Ctx {
  view: PacketView;
  state: EvalState;
  ifindex: number;
  ifname: string | undefined;
  interfaces: Readonly<Record<string, number>> | undefined;
  mark: number;
  /** Conntrack's view of the packet (filters with conntrack, tc hooks). */
  ct?: CtPacket;
}

function addrWordsOf(text: string): { family: 4 | 6; words: [number, number, number, number] } {
  const c = parseCidr(text);
  if ('error' in c) throw new TsbpfError('INVALID_ARGUMENT', c.error);
  if (c.family === 4) return { family: 4, words: [c.addr >>> 0, 0, 0, 0] };
  const w = [0, 1, 2, 3].map((i) => Number((c.addr >> BigInt(96 - 32 * i)) & 0xffffffffn)) as [number, number, number, number];
  return { family: 6, words: w };
}

/** The NAT action's parameters as the C code holds them (tsbpf_fct_set_nat). */
function natChoice(a: Extract<ActionDef, { kind: 'snat' | 'dnat' | 'masquerade' }>, ruleId: number): NonNullable<CtPacket['nat']> {
  if (a.kind === 'masquerade') return { kind: 2, family: 0, lo: [0, 0, 0, 0], hi: [0, 0, 0, 0], pmin: a.ports?.[0] ?? 0, pmax: a.ports?.[1] ?? 0, ruleId };
  const lo = addrWordsOf(a.to[0]);
  const hi = addrWordsOf(a.to[1]);
  const ports = a.kind === 'snat' ? a.ports : a.port;
  return { kind: a.kind === 'snat' ? 1 : 3, family: lo.family, lo: lo.words, hi: hi.words, pmin: ports?.[0] ?? 0, pmax: ports?.[1] ?? 0, ruleId };
}

/**
 * Take a token from the limit's bucket at time `now` (the exact rule codegen
 * mirrors; see LimitAction in model.ts).
 */
export function takeToken(state: EvalState, limit: LimitAction, view: PacketView, now: bigint): boolean {
  const key = limit.key ? `${limit.limitId}/${limitKey(view, limit.key)}` : String(limit.limitId);
  const cost = BigInt(limit.costNs);
  const capacity = cost * BigInt(limit.burst);
  let b = state.buckets.get(key);
  if (!b) {
    b = { credit: capacity, last: now };
    state.buckets.set(key, b);
  }
  // A clock that goes backwards adds nothing (the C code does the same with its u64 delta check).
  const elapsed = now > b.last ? now - b.last : 0n;
  b.credit = b.credit + elapsed > capacity ? capacity : b.credit + elapsed;
  b.last = now > b.last ? now : b.last;
  const took = b.credit >= cost;
  if (took) b.credit -= cost;
  return limit.mode === 'under' ? took : !took;
}

/** The per-address bucket key: family and address; '0' when the packet has no IP header. */
function limitKey(view: PacketView, key: 'ip.src' | 'ip.dst'): string {
  if (view.ipv4) return `4:${formatIpv4(key === 'ip.src' ? view.ipv4.src : view.ipv4.dst)}`;
  if (view.ipv6) return `6:${formatIpv6(key === 'ip.src' ? view.ipv6.src : view.ipv6.dst)}`;
  return '0';
}

function tupleOf(v: PacketView): LogEvent['tuple'] {
  const t: LogEvent['tuple'] = {};
  if (v.ipv4) {
    t.family = 4;
    t.src = formatIpv4(v.ipv4.src);
    t.dst = formatIpv4(v.ipv4.dst);
  } else if (v.ipv6) {
    t.family = 6;
    t.src = formatIpv6(v.ipv6.src);
    t.dst = formatIpv6(v.ipv6.dst);
  }
  if (v.proto !== undefined) t.proto = v.proto;
  const p = ports(v);
  if (p) {
    t.sport = p.sport;
    t.dport = p.dport;
  }
  return t;
}

// ---------------------------------------------------------------------------
// Matching

/** The value of a numeric field, or undefined when the packet does not have it. */
export function fieldValue(view: PacketView, field: NumField, meta: { ifindex: number; mark: number; ct?: { state: CtState; mark: number } | undefined }): number | undefined {
  switch (field) {
    case 'ct.mark': {
      const st = meta.ct?.state;
      return st === 'new' || st === 'established' || st === 'related' ? meta.ct!.mark : undefined;
    }
    case 'pkt.len':
      return view.len;
    case 'meta.ifindex':
      return meta.ifindex;
    case 'meta.mark':
      return meta.mark;
    case 'eth.type':
      return view.ethertype;
    case 'vlan.id':
      return view.vlan[0]?.id;
    case 'ip.proto':
      return view.ipv4 || view.ipv6 ? view.proto : undefined;
    case 'ip.ttl':
      return view.ipv4?.ttl ?? view.ipv6?.hopLimit;
    case 'ip.dscp':
      return view.ipv4?.dscp ?? view.ipv6?.dscp;
    case 'l4.sport':
      return ports(view)?.sport;
    case 'l4.dport':
      return ports(view)?.dport;
    case 'tcp.flags':
      return view.tcp?.flags;
    case 'icmp.type':
      return view.icmp?.type;
    case 'icmp.code':
      return view.icmp?.code;
    case 'icmp6.type':
      return view.icmpv6?.type;
    case 'icmp6.code':
      return view.icmpv6?.code;
  }
}

/** Whether a layer is present (model.ts Layer). */
export function layerPresent(view: PacketView, layer: string): boolean {
  switch (layer) {
    case 'eth':
      return !!view.eth;
    case 'vlan':
      return view.vlan.length > 0;
    case 'ip4':
      return !!view.ipv4;
    case 'ip6':
      return !!view.ipv6;
    case 'tcp':
      return !!view.tcp;
    case 'udp':
      return !!view.udp;
    case 'sctp':
      return !!view.sctp;
    case 'icmp':
      return !!view.icmp;
    case 'icmp6':
      return !!view.icmpv6;
    case 'frag':
      return !!view.fragment;
    default:
      return false;
  }
}

function evalExpr(e: MatchExpr, ctx: Ctx, checks: Check[] | undefined): boolean {
  switch (e.kind) {
    case 'all':
      return true;
    case 'and':
      for (const a of e.args) if (!evalExpr(a, ctx, checks)) return false;
      return true;
    case 'or':
      for (const a of e.args) if (evalExpr(a, ctx, checks)) return true;
      return false;
    case 'not':
      return !evalExpr(e.arg, ctx, checks);
    default: {
      if (!checks) return test(e, ctx);
      const c = evalPredicate(e, ctx);
      checks.push({ ...c, predicate: e });
      return c.result;
    }
  }
}

const parsedCidrs = new WeakMap<FieldPredicate, Cidr[]>();

/** The predicate's CIDRs, parsed once. */
function cidrsOf(p: Extract<FieldPredicate, { kind: 'addr' }>): Cidr[] {
  let cs = parsedCidrs.get(p);
  if (!cs) {
    cs = p.cidrs.map((t) => parseCidr(t)).filter((c): c is Cidr => !('error' in c));
    parsedCidrs.set(p, cs);
  }
  return cs;
}

/** The predicate's truth without building an explanation (the fast path). */
function test(p: FieldPredicate, ctx: Ctx): boolean {
  const v = ctx.view;
  switch (p.kind) {
    case 'has':
      return layerPresent(v, p.layer);
    case 'num': {
      const x = fieldValue(v, p.field, ctx);
      if (x === undefined) return false;
      for (const [a, b] of p.ranges) if (x >= a && x <= b) return true;
      return false;
    }
    case 'bits': {
      const x = fieldValue(v, p.field, ctx);
      return x !== undefined && ((x & p.mask) >>> 0) === p.value;
    }
    case 'addr': {
      const four = p.field.startsWith('ip4');
      const dst = p.field.endsWith('dst');
      if (four) {
        const a = dst ? v.ipv4?.dst : v.ipv4?.src;
        return a !== undefined && cidrsOf(p).some((c) => c.family === 4 && inCidr4(a, c));
      }
      const a = dst ? v.ipv6?.dst : v.ipv6?.src;
      return a !== undefined && cidrsOf(p).some((c) => c.family === 6 && inCidr6(a, c));
    }
    default:
      return evalPredicate(p, ctx).result;
  }
}

// Ethertypes and marks read better in hex.
const HEX_FIELDS = new Set<NumField>(['eth.type', 'meta.mark', 'tcp.flags', 'ct.mark']);
const num = (field: NumField, x: number) => (HEX_FIELDS.has(field) ? `0x${x.toString(16)}` : String(x));
const rangesText = (field: NumField, rs: ReadonlyArray<readonly [number, number]>) =>
  rs.length ? rs.map(([a, b]) => (a === b ? num(field, a) : `${num(field, a)}-${num(field, b)}`)).join(',') : '(nothing)';

function evalPredicate(p: FieldPredicate, ctx: Ctx): Omit<Check, 'predicate'> {
  const v = ctx.view;
  switch (p.kind) {
    case 'has': {
      const result = layerPresent(v, p.layer);
      return { text: `${p.layer} ${result ? 'present' : 'absent'}`, result };
    }
    case 'num': {
      const x = fieldValue(v, p.field, ctx);
      if (x === undefined) return { text: `${p.field} absent`, result: false };
      const result = p.ranges.some(([a, b]) => x >= a && x <= b);
      return { text: `${p.field} ${num(p.field, x)} in ${rangesText(p.field, p.ranges)}`, result };
    }
    case 'bits': {
      const x = fieldValue(v, p.field, ctx);
      if (x === undefined) return { text: `${p.field} absent`, result: false };
      const result = ((x & p.mask) >>> 0) === p.value;
      return { text: `${p.field} 0x${x.toString(16)} & 0x${p.mask.toString(16)} == 0x${p.value.toString(16)}`, result };
    }
    case 'numSet': {
      const x = fieldValue(v, p.field, ctx);
      if (x === undefined) return { text: `${p.field} absent`, result: false };
      const result = ctx.state.setContents(p.set)?.entries.has(x) ?? false;
      return { text: `${p.field} ${x} in set ${p.set}`, result };
    }
    case 'addr':
    case 'addrSet': {
      const four = p.field.startsWith('ip4');
      const dst = p.field.endsWith('dst');
      const a4 = four ? (dst ? v.ipv4?.dst : v.ipv4?.src) : undefined;
      const a6 = four ? undefined : dst ? v.ipv6?.dst : v.ipv6?.src;
      if (a4 === undefined && a6 === undefined) return { text: `${p.field} absent`, result: false };
      const shown = a4 !== undefined ? formatIpv4(a4) : formatIpv6(a6!);
      const contains = (c: Cidr) => (c.family === 4 ? a4 !== undefined && inCidr4(a4, c) : a6 !== undefined && inCidr6(a6, c));
      if (p.kind === 'addrSet') {
        const set = ctx.state.setContents(p.set);
        const result = set ? [...set.entries.values()].some((c) => typeof c !== 'number' && contains(c)) : false;
        return { text: `${p.field} ${shown} in set ${p.set}`, result };
      }
      const result = cidrsOf(p).some(contains);
      return { text: `${p.field} ${shown} in ${p.cidrs.join(',')}`, result };
    }
    case 'mac': {
      const m = v.eth ? (p.field === 'eth.src' ? v.eth.src : v.eth.dst) : undefined;
      if (m === undefined) return { text: `${p.field} absent`, result: false };
      const shown = formatMac(m);
      return { text: `${p.field} ${shown} in ${p.addrs.join(',')}`, result: p.addrs.includes(shown) };
    }
    case 'ifname': {
      const result = p.names.some((n) => (ctx.ifname !== undefined ? ctx.ifname === n : ctx.interfaces?.[n] === ctx.ifindex));
      return { text: `interface ${ctx.ifname ?? `#${ctx.ifindex}`} in ${p.names.join(',')}`, result };
    }
    case 'ct': {
      const st = ctx.ct?.state ?? 'untracked';
      return { text: `ct state ${st} in ${p.states.join(',')}`, result: p.states.includes(st) };
    }
  }
}

/** The match expression with each evaluated predicate's outcome. */
function describe(e: MatchExpr, checks: Check[]): string {
  let k = 0;
  const go = (x: MatchExpr, top: boolean): string => {
    switch (x.kind) {
      case 'all':
        return 'any packet';
      case 'and':
      case 'or': {
        const parts = x.args.map((a) => go(a, false));
        const s = parts.join(` ${x.kind} `);
        return top ? s : `(${s})`;
      }
      case 'not':
        return `not ${go(x.arg, false)}`;
      default: {
        const c = checks[k];
        if (c && c.predicate === x) {
          k++;
          return `${c.text}: ${c.result ? 'yes' : 'no'}`;
        }
        return `${predicateText(x)}: not evaluated`;
      }
    }
  };
  return go(e, true);
}

function predicateText(p: FieldPredicate): string {
  switch (p.kind) {
    case 'has':
      return `${p.layer} present`;
    case 'num':
      return `${p.field} in ${rangesText(p.field, p.ranges)}`;
    case 'bits':
      return `${p.field} & 0x${p.mask.toString(16)} == 0x${p.value.toString(16)}`;
    case 'numSet':
    case 'addrSet':
      return `${p.field} in set ${p.set}`;
    case 'addr':
      return `${p.field} in ${p.cidrs.join(',')}`;
    case 'mac':
      return `${p.field} in ${p.addrs.join(',')}`;
    case 'ifname':
      return `interface in ${p.names.join(',')}`;
    case 'ct':
      return `ct state ${p.states.join(',')}`;
  }
}

/** Reference interval lengths, re-exported for docs and tools. */
export { INTERVAL_NS };
