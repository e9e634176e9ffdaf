/**
 * The match half of the DSL: `match.tcp.dport(22)`, `match.ip4.src('10.0.0.0/8')`,
 * `match.ip6.dst.in(set)`, `a.and(b)`, `match.not(m)`. Every builder returns a
 * `Match` wrapping a model MatchExpr. Values are range-checked in validation
 * (so the error can name the rule and its position), names (protocols, ICMP
 * types, TCP flags) are resolved here.
 */
import { canonicalMac, parseCidr } from '../addr.js';
import type { Ipv4Cidr, Ipv6Cidr, MacAddress } from '../addr.js';
import {
  NUM_FIELD_MAX,
  type AddrField,
  type CtState,
  type Layer,
  type MacField,
  type MatchExpr,
  type NumField,
  type NumRange,
  type PortField,
} from '../model.js';
import {
  ETHER_TYPES,
  ICMP_TYPES,
  ICMPV6_TYPES,
  IP_PROTOCOLS,
  TCP_FLAGS,
  type EtherTypeName,
  type IcmpTypeName,
  type Icmpv6TypeName,
  type ProtocolName,
  type TcpFlagName,
} from './names.js';
import { SetRef } from './refs.js';

/** A condition on a packet. Combine with `.and()`, `.or()`, `.not()` or `match.and/or/not`. */
export class Match {
  /** Problems found while building (unknown names); reported with the rule that uses this match. */
  readonly problems: readonly string[];

  constructor(
    readonly expr: MatchExpr,
    problems: readonly string[] = [],
  ) {
    this.problems = problems;
  }

  /** This and all of `others`. */
  and(...others: Match[]): Match {
    return and(this, ...others);
  }

  /** This or any of `others`. */
  or(...others: Match[]): Match {
    return or(this, ...others);
  }

  /** The opposite. Note: true when this match's field is absent from the packet. */
  not(): Match {
    return not(this);
  }
}

function join(kind: 'and' | 'or', ms: Match[]): Match {
  const args: MatchExpr[] = [];
  for (const m of ms) {
    if (m.expr.kind === kind) args.push(...m.expr.args);
    else if (kind === 'and' && m.expr.kind === 'all') continue;
    else args.push(m.expr);
  }
  const problems = ms.flatMap((m) => m.problems);
  if (kind === 'and' && args.length === 0) return new Match({ kind: 'all' }, problems);
  if (args.length === 1) return new Match(args[0]!, problems);
  return new Match({ kind, args }, problems);
}

/** True when every match holds. */
export function and(...ms: Match[]): Match {
  return join('and', ms);
}

/** True when any match holds. */
export function or(...ms: Match[]): Match {
  return join('or', ms);
}

/** Negation (true when the negated field is absent). */
export function not(m: Match): Match {
  if (m.expr.kind === 'not') return new Match(m.expr.arg, m.problems);
  return new Match({ kind: 'not', arg: m.expr }, m.problems);
}

// ---------------------------------------------------------------------------
// Numeric specs

/** An inclusive range of values; make one with `range(from, to)`. */
export interface Range {
  readonly from: number;
  readonly to: number;
}

/** `range(1024, 65535)`: every value from..to, both included. */
export function range(from: number, to: number): Range {
  return { from, to };
}

/** Comparison bounds; several combine (`{ ge: 100, lt: 200 }`). */
export interface Compare {
  lt?: number;
  le?: number;
  gt?: number;
  ge?: number;
}

/** A value, a range, a list of values and ranges, or comparison bounds. Named values where the field has names. */
export type NumSpec<N extends string = never> = number | N | Range | Compare | ReadonlyArray<number | N | Range>;

/** A port, range or list of them, or a named port set. */
export type PortSpec = NumSpec | SetRef<'port'>;

function isRange(x: unknown): x is Range {
  return typeof x === 'object' && x !== null && 'from' in x && 'to' in x;
}

/**
 * Turn a spec into model ranges: sorted and merged when every value is valid,
 * kept as written otherwise so validation can name the bad value.
 */
function toRanges(field: NumField, spec: NumSpec<string>, names: Record<string, number> | undefined, problems: string[]): NumRange[] {
  const max = NUM_FIELD_MAX[field];
  const resolve = (v: number | string): number => {
    if (typeof v === 'number') return v;
    const n = names?.[v];
    if (n === undefined) {
      const known = names ? `; known names: ${Object.keys(names).join(', ')}` : '';
      problems.push(`unknown name '${String(v)}' for ${field}${known}`);
      return 0;
    }
    return n;
  };
  let raw: NumRange[];
  if (Array.isArray(spec)) {
    raw = (spec as ReadonlyArray<number | string | Range>).map((v) => (isRange(v) ? [v.from, v.to] : [resolve(v), resolve(v)]) as NumRange);
    if (raw.length === 0) problems.push(`empty list of values for ${field}`);
  } else if (isRange(spec)) {
    raw = [[spec.from, spec.to]];
  } else if (typeof spec === 'object' && spec !== null) {
    const c = spec as Compare;
    let lo = 0;
    let hi = max;
    for (const [k, v] of Object.entries(c)) {
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        problems.push(`comparison ${k} needs an integer, got ${String(v)}`);
        continue;
      }
      if (k === 'lt') hi = Math.min(hi, v - 1);
      else if (k === 'le') hi = Math.min(hi, v);
      else if (k === 'gt') lo = Math.max(lo, v + 1);
      else if (k === 'ge') lo = Math.max(lo, v);
      else problems.push(`unknown comparison '${k}' (use lt, le, gt, ge)`);
    }
    // An impossible comparison matches nothing: an empty list.
    return lo <= hi ? [[lo, hi]] : [];
  } else {
    const v = resolve(spec as number | string);
    raw = [[v, v]];
  }
  const valid = raw.every(([a, b]) => Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b <= max && a <= b);
  return valid ? mergeRanges(raw) : raw;
}

/** Sort and merge overlapping or adjacent ranges. */
export function mergeRanges(rs: readonly NumRange[]): NumRange[] {
  const sorted = [...rs].sort((x, y) => x[0] - y[0]);
  const out: NumRange[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The values of [0, max] not in the (merged) ranges. */
export function complementRanges(rs: readonly NumRange[], max: number): NumRange[] {
  const out: NumRange[] = [];
  let next = 0;
  for (const [a, b] of mergeRanges(rs)) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= max) out.push([next, max]);
  return out;
}

// ---------------------------------------------------------------------------
// Field matchers

/** Matches on a numeric field: call with a spec, or use a comparison. */
export interface NumMatcher<N extends string = never> {
  (spec: NumSpec<N>): Match;
  /** field != value (false when the field is absent, unlike `.not()`). */
  ne(value: number | N): Match;
  lt(value: number): Match;
  le(value: number): Match;
  gt(value: number): Match;
  ge(value: number): Match;
  /** from <= field <= to. */
  between(from: number, to: number): Match;
}

/** Matches on a port: a port, range, list, or a port set (`.in(set)`). */
export interface PortMatcher {
  (spec: PortSpec): Match;
  /** The port is in a named port set. */
  in(set: SetRef<'port'>): Match;
  ne(value: number): Match;
  lt(value: number): Match;
  le(value: number): Match;
  gt(value: number): Match;
  ge(value: number): Match;
  between(from: number, to: number): Match;
}

/** Matches on an address: one or more addresses/CIDRs, or a named set (`.in(set)`). */
export interface AddrMatcher<C extends string, K extends 'ipv4' | 'ipv6'> {
  (cidrs: C | readonly C[]): Match;
  /** The address is inside any prefix of the named set. */
  in(set: SetRef<K>): Match;
}

export interface MacMatcher {
  (addrs: MacAddress | readonly MacAddress[]): Match;
}

type Scope = (m: Match) => Match;
const unscoped: Scope = (m) => m;
const within = (layer: Layer): Scope => (m) => and(has(layer), m);

function has(layer: Layer): Match {
  return new Match({ kind: 'has', layer });
}

function numMatcher<N extends string = never>(field: NumField, scope: Scope = unscoped, names?: Record<string, number>): NumMatcher<N> {
  const make = (spec: NumSpec<string>): Match => {
    const problems: string[] = [];
    const ranges = toRanges(field, spec, names, problems);
    return scope(new Match({ kind: 'num', field, ranges }, problems));
  };
  const fn = ((spec: NumSpec<N>) => make(spec)) as NumMatcher<N>;
  fn.ne = (value) => {
    const problems: string[] = [];
    const [r] = toRanges(field, value as number | string, names, problems);
    const ranges = problems.length === 0 && r ? complementRanges([r], NUM_FIELD_MAX[field]) : r ? [r] : [];
    return scope(new Match({ kind: 'num', field, ranges }, problems));
  };
  fn.lt = (v) => make({ lt: v });
  fn.le = (v) => make({ le: v });
  fn.gt = (v) => make({ gt: v });
  fn.ge = (v) => make({ ge: v });
  fn.between = (from, to) => make(range(from, to));
  return fn;
}

function portMatcher(field: PortField, scope: Scope): PortMatcher {
  const num = numMatcher(field, scope);
  // Set types are checked on the model (validate.ts), like everything a Definition can carry.
  const inSet = (set: SetRef<'port'>) => scope(new Match({ kind: 'numSet', field, set: set.name }));
  const fn = ((spec: PortSpec) => (spec instanceof SetRef ? inSet(spec) : num(spec))) as PortMatcher;
  fn.in = inSet;
  fn.ne = num.ne;
  fn.lt = num.lt;
  fn.le = num.le;
  fn.gt = num.gt;
  fn.ge = num.ge;
  fn.between = num.between;
  return fn;
}

function addrMatcher<C extends string, K extends 'ipv4' | 'ipv6'>(field: AddrField, family: K): AddrMatcher<C, K> {
  const fn = ((cidrs: C | readonly C[]) => {
    const list = (Array.isArray(cidrs) ? cidrs : [cidrs]) as string[];
    const problems = list.length === 0 ? [`empty list of addresses for ${field}`] : [];
    // Canonical text when it parses as the right family; as written otherwise (validation reports it).
    const texts = list.map((t) => {
      const c = parseCidr(t);
      return 'error' in c || `ipv${c.family}` !== family ? t : c.text;
    });
    return new Match({ kind: 'addr', field, cidrs: texts }, problems);
  }) as AddrMatcher<C, K>;
  fn.in = (set: SetRef<K>) => new Match({ kind: 'addrSet', field, set: set.name });
  return fn;
}

function macMatcher(field: MacField): MacMatcher {
  return (addrs) => {
    const list = (Array.isArray(addrs) ? addrs : [addrs]) as string[];
    const problems = list.length === 0 ? [`empty list of addresses for ${field}`] : [];
    return new Match({ kind: 'mac', field, addrs: list.map((a) => canonicalMac(a) ?? a) }, problems);
  };
}

// ---------------------------------------------------------------------------
// Layer namespaces: each is itself a Match (the layer is present).

export class EthMatch extends Match {
  /** The ethertype after VLAN tags ('ipv4', 'ipv6', 'arp', or a number). */
  readonly type = numMatcher<EtherTypeName>('eth.type', unscoped, ETHER_TYPES);
  readonly src = macMatcher('eth.src');
  readonly dst = macMatcher('eth.dst');
  constructor() {
    super({ kind: 'has', layer: 'eth' });
  }
}

export class VlanMatch extends Match {
  /** The outer tag's VLAN id (0..4095). */
  readonly id = numMatcher('vlan.id');
  constructor() {
    super({ kind: 'has', layer: 'vlan' });
  }
}

export class Ip4Match extends Match {
  readonly src = addrMatcher<Ipv4Cidr, 'ipv4'>('ip4.src', 'ipv4');
  readonly dst = addrMatcher<Ipv4Cidr, 'ipv4'>('ip4.dst', 'ipv4');
  /** IPv4 protocol field. */
  readonly proto = numMatcher<ProtocolName>('ip.proto', within('ip4'), IP_PROTOCOLS);
  readonly ttl = numMatcher('ip.ttl', within('ip4'));
  readonly dscp = numMatcher('ip.dscp', within('ip4'));
  constructor() {
    super({ kind: 'has', layer: 'ip4' });
  }
}

export class Ip6Match extends Match {
  readonly src = addrMatcher<Ipv6Cidr, 'ipv6'>('ip6.src', 'ipv6');
  readonly dst = addrMatcher<Ipv6Cidr, 'ipv6'>('ip6.dst', 'ipv6');
  /** The upper-layer protocol after extension headers. */
  readonly proto = numMatcher<ProtocolName>('ip.proto', within('ip6'), IP_PROTOCOLS);
  readonly hopLimit = numMatcher('ip.ttl', within('ip6'));
  readonly dscp = numMatcher('ip.dscp', within('ip6'));
  constructor() {
    super({ kind: 'has', layer: 'ip6' });
  }
}

export class IpMatch extends Match {
  /** IPv4 protocol or IPv6 upper-layer protocol. */
  readonly proto = numMatcher<ProtocolName>('ip.proto', unscoped, IP_PROTOCOLS);
  /** IPv4 TTL or IPv6 hop limit. */
  readonly ttl = numMatcher('ip.ttl');
  readonly dscp = numMatcher('ip.dscp');
  constructor() {
    super({ kind: 'or', args: [{ kind: 'has', layer: 'ip4' }, { kind: 'has', layer: 'ip6' }] });
  }
}

export class PortsMatch extends Match {
  readonly sport: PortMatcher;
  readonly dport: PortMatcher;
  constructor(layer: 'tcp' | 'udp' | 'sctp' | undefined) {
    super(
      layer
        ? { kind: 'has', layer }
        : { kind: 'or', args: [{ kind: 'has', layer: 'tcp' }, { kind: 'has', layer: 'udp' }, { kind: 'has', layer: 'sctp' }] },
    );
    const scope = layer ? within(layer) : unscoped;
    this.sport = portMatcher('l4.sport', scope);
    this.dport = portMatcher('l4.dport', scope);
  }
}

export type TcpFlagsSpec = TcpFlagName | readonly TcpFlagName[] | number;

export class TcpMatch extends PortsMatch {
  constructor() {
    super('tcp');
  }

  /**
   * (flags & mask) == value. `flags('syn')`: SYN set; `flags(['syn'], ['syn', 'ack'])`:
   * SYN set and ACK clear. The mask defaults to the value.
   */
  flags(value: TcpFlagsSpec, mask?: TcpFlagsSpec): Match {
    const problems: string[] = [];
    const bits = (s: TcpFlagsSpec): number => {
      if (typeof s === 'number') return s;
      let n = 0;
      for (const f of (typeof s === 'string' ? [s] : s) as string[]) {
        const b = (TCP_FLAGS as Record<string, number>)[f];
        if (b === undefined) problems.push(`unknown TCP flag '${f}' (known: ${Object.keys(TCP_FLAGS).join(', ')})`);
        else n |= b;
      }
      return n;
    };
    const v = bits(value);
    const m = mask === undefined ? v : bits(mask);
    return and(has('tcp'), new Match({ kind: 'bits', field: 'tcp.flags', mask: m, value: v }, problems));
  }
}

export class IcmpMatch extends Match {
  readonly type: NumMatcher<IcmpTypeName> = numMatcher<IcmpTypeName>('icmp.type', unscoped, ICMP_TYPES);
  readonly code = numMatcher('icmp.code');
  constructor() {
    super({ kind: 'has', layer: 'icmp' });
  }
}

export class Icmp6Match extends Match {
  readonly type: NumMatcher<Icmpv6TypeName> = numMatcher<Icmpv6TypeName>('icmp6.type', unscoped, ICMPV6_TYPES);
  readonly code = numMatcher('icmp6.code');
  constructor() {
    super({ kind: 'has', layer: 'icmp6' });
  }
}

export interface MarkMatcher extends NumMatcher {
  /** (mark & mask) == value. */
  bits(value: number, mask: number): Match;
}

function markMatcher(): MarkMatcher {
  const fn = numMatcher('meta.mark') as MarkMatcher;
  fn.bits = (value, mask) => new Match({ kind: 'bits', field: 'meta.mark', mask, value });
  return fn;
}

/** `match.ct.mark(5)`, `(range(1, 9))`, `({ value, mask })`, `.bits(value, mask)`. */
export interface CtMarkMatcher {
  (spec: NumSpec | { value: number; mask: number }): Match;
  bits(value: number, mask: number): Match;
  ne(value: number): Match;
}

function ctMarkMatcher(): CtMarkMatcher {
  const num = numMatcher('ct.mark');
  const bits = (value: number, mask: number) => new Match({ kind: 'bits', field: 'ct.mark', mask, value });
  const fn = ((spec: NumSpec | { value: number; mask: number }) =>
    typeof spec === 'object' && spec !== null && 'mask' in spec && 'value' in spec ? bits(spec.value, spec.mask) : num(spec as NumSpec)) as CtMarkMatcher;
  fn.bits = bits;
  fn.ne = num.ne;
  return fn;
}

/** `match.ct.state('established', 'related')` or `(['established', 'related'])`. */
function ctState(...states: Array<CtState | readonly CtState[]>): Match {
  // Unknown states and an empty list are reported by validation (validate.ts), like a hand-built model's.
  const list = states.flatMap((s) => (Array.isArray(s) ? [...(s as readonly CtState[])] : [s as CtState]));
  return new Match({ kind: 'ct', states: [...new Set(list)] });
}

/** The interface the program runs on, by name (resolved at load) or index. */
function iface(which: string | number | ReadonlyArray<string | number>): Match {
  const list = Array.isArray(which) ? (which as Array<string | number>) : [which as string | number];
  const names = list.filter((x): x is string => typeof x === 'string');
  const indexes = list.filter((x): x is number => typeof x === 'number');
  const parts: Match[] = [];
  if (names.length) parts.push(new Match({ kind: 'ifname', names }));
  if (indexes.length) parts.push(numMatcher('meta.ifindex')(indexes));
  if (parts.length === 0) return new Match({ kind: 'ifname', names: [] }, ['empty list of interfaces']);
  return or(...parts);
}

/**
 * Everything a rule can match on. Each namespace is itself a match for
 * "this layer is present" (`match.tcp` = any TCP packet).
 */
export const match = {
  /** Always true. */
  any: new Match({ kind: 'all' }),
  and,
  or,
  not,
  eth: new EthMatch(),
  vlan: new VlanMatch(),
  /** IPv4 or IPv6: protocol, TTL/hop limit, DSCP for either family. */
  ip: new IpMatch(),
  ip4: new Ip4Match(),
  ip6: new Ip6Match(),
  tcp: new TcpMatch(),
  udp: new PortsMatch('udp'),
  sctp: new PortsMatch('sctp'),
  /** Ports of TCP, UDP or SCTP, whichever the packet has. */
  l4: new PortsMatch(undefined),
  icmp: new IcmpMatch(),
  icmp6: new Icmp6Match(),
  /** The packet is an IPv4 or IPv6 fragment (first or later). */
  frag: new Match({ kind: 'has', layer: 'frag' }),
  /** Frame length in bytes (the whole frame, Ethernet header included). */
  len: numMatcher('pkt.len'),
  mark: markMatcher(),
  /** Interface index the program runs on. */
  ifindex: numMatcher('meta.ifindex'),
  /** Interface name the program runs on (resolved to an index at load time). */
  ifname: (names: string | readonly string[]) => new Match({ kind: 'ifname', names: typeof names === 'string' ? [names] : [...names] }),
  /** Interface by name or index, or a list of them. */
  iface,
  /**
   * Conntrack (tc hooks): the packet's state and its connection's mark. A
   * filter that uses these gets a conntrack table (docs/semantics.md).
   */
  ct: {
    state: ctState,
    mark: ctMarkMatcher(),
  },
};

export type MatchNamespace = typeof match;
