/**
 * Connection tracking: the reference of codegen/include/tsbpf/ct.h. Tuples,
 * normalized keys, the flow hash, the TCP state machine, per-state timeouts
 * and the table of entries (primary entries keyed by the normalized tuple of
 * a connection's first packet, alias entries for its NAT-translated tuples).
 *
 * Addresses are four host-order 32-bit words (IPv4 in word 0), as in the C
 * structs, so the TS table and a dump of the kernel's map compare directly.
 * ICMP echo is a pseudo-connection: a request has sport = echo id, dport = 0;
 * a reply sport = 0, dport = id.
 */
import { TsbpfError } from './errors.js';
import { parseIpv4Bytes, parseIpv6Bytes } from './layout.js';
import { formatIpv4, formatIpv6, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type PacketView } from './parse.js';

export type Words = [number, number, number, number];

/** Connection states (entry.state), numbered as in ct.h. */
export const CT_STATE = {
  none: 0,
  'tcp-syn-sent': 1,
  'tcp-syn-recv': 2,
  'tcp-established': 3,
  'tcp-fin-wait': 4,
  'tcp-closing': 5,
  'tcp-time-wait': 6,
  'tcp-close': 7,
  udp: 8,
  'udp-replied': 9,
  icmp: 10,
  'icmp-replied': 11,
} as const;
export type CtStateName = keyof typeof CT_STATE;
export const CT_STATE_NAMES = Object.keys(CT_STATE) as CtStateName[];
const STATES = 12;

/** entry.flags */
export const CTF = {
  FIN_ORIG: 1 << 0,
  FIN_REPLY: 1 << 1,
  SEEN_REPLY: 1 << 2,
  DNAT: 1 << 3,
  SNAT: 1 << 4,
  SNAT_DONE: 1 << 5,
  HAIRPIN: 1 << 6,
  AFFINITY: 1 << 7,
  /** Hairpin at the client's own egress: looped back into its ingress. */
  LOOP: 1 << 8,
} as const;

export const CT_PRIMARY = 1;
export const CT_ALIAS = 2;
export const HOOK_INGRESS = 1;
export const HOOK_EGRESS = 2;
export const ICMP_ECHO_REQ = 1;
export const ICMP_ECHO_REP = 2;

/** What a packet is to conntrack: what a `ct.state` match sees. */
export type PacketCtState = 'untracked' | 'new' | 'established' | 'related' | 'invalid';

/** Timeouts in seconds by state name (tcp-established is the long one). */
export type CtTimeouts = Record<Exclude<CtStateName, 'none'>, number>;

export const DEFAULT_TIMEOUTS: Readonly<CtTimeouts> = {
  'tcp-syn-sent': 60,
  'tcp-syn-recv': 60,
  'tcp-established': 21600,
  'tcp-fin-wait': 120,
  'tcp-closing': 60,
  'tcp-time-wait': 120,
  'tcp-close': 10,
  udp: 30,
  'udp-replied': 180,
  icmp: 30,
  'icmp-replied': 30,
};

/** The timeouts as the C config holds them: seconds indexed by state number. */
export function timeoutsArray(t: Partial<CtTimeouts> = {}): number[] {
  const out = new Array<number>(STATES).fill(0);
  for (const name of CT_STATE_NAMES) {
    if (name === 'none') continue;
    const v = t[name] ?? DEFAULT_TIMEOUTS[name];
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TsbpfError('INVALID_ARGUMENT', `conntrack timeout '${name}' must be whole seconds (got ${String(v)})`);
    out[CT_STATE[name]] = v;
  }
  return out;
}

export interface Tuple {
  src: Words;
  dst: Words;
  sport: number;
  dport: number;
  family: 4 | 6;
  proto: number;
  /** ICMP_ECHO_REQ / ICMP_ECHO_REP: where the echo id lives; 0 otherwise. */
  icmp: number;
}

export interface CtKey {
  a: Words;
  b: Words;
  pa: number;
  pb: number;
  family: number;
  proto: number;
}

export interface CtEntry {
  createdNs: bigint;
  lastNs: bigint;
  expiresNs: bigint;
  /** [original direction, reply] */
  packets: [bigint, bigint];
  bytes: [bigint, bigint];
  mark: number;
  svcId: number;
  backendId: number;
  flags: number;
  role: number;
  state: number;
  family: number;
  proto: number;
  /** Which hook counts each direction: 0 none yet, 1 ingress, 2 egress. */
  dirHook: [number, number];
  natRule: number;
  /** The original direction as its first packet had it. */
  o: Tuple;
  /** The original direction after all NAT. */
  x: Tuple;
  /** Alias entries: the primary's key. */
  primary: CtKey;
}

// ---------------------------------------------------------------------------
// Addresses

/** Dotted-quad text -> u32, or undefined (a fast path: control planes parse many addresses). */
export function ipv4Number(text: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return undefined; // no leading zeros
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}

/** Address text -> four host-order words. */
export function addrWords(text: string): Words {
  const n = ipv4Number(text);
  if (n !== undefined) return [n, 0, 0, 0];
  const v4 = parseIpv4Bytes(text);
  if (v4) return [((v4[0]! << 24) | (v4[1]! << 16) | (v4[2]! << 8) | v4[3]!) >>> 0, 0, 0, 0];
  const v6 = parseIpv6Bytes(text);
  if (!v6) throw new TsbpfError('INVALID_ARGUMENT', `'${text}' is not an IPv4 or IPv6 address`);
  const w: number[] = [];
  for (let i = 0; i < 4; i++) w.push(((v6[4 * i]! << 24) | (v6[4 * i + 1]! << 16) | (v6[4 * i + 2]! << 8) | v6[4 * i + 3]!) >>> 0);
  return w as Words;
}

export function familyOf(text: string): 4 | 6 {
  return ipv4Number(text) !== undefined || parseIpv4Bytes(text) ? 4 : 6;
}

export function wordsText(w: readonly number[], family: number): string {
  if (family === 4) return formatIpv4(w[0]!);
  let x = 0n;
  for (let i = 0; i < 4; i++) x = (x << 32n) | BigInt(w[i]! >>> 0);
  return formatIpv6(x);
}

export function wordsOfBig(x: bigint): Words {
  return [Number((x >> 96n) & 0xffffffffn), Number((x >> 64n) & 0xffffffffn), Number((x >> 32n) & 0xffffffffn), Number(x & 0xffffffffn)];
}

export const ZERO: Words = [0, 0, 0, 0];

export function wordsEq(a: readonly number[], b: readonly number[]): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

// ---------------------------------------------------------------------------
// Tuples and keys

export function tupleEq(a: Tuple, b: Tuple): boolean {
  return a.sport === b.sport && a.dport === b.dport && wordsEq(a.src, b.src) && wordsEq(a.dst, b.dst);
}

/** a is b seen from the other end. */
export function tupleRevEq(a: Tuple, b: Tuple): boolean {
  return a.sport === b.dport && a.dport === b.sport && wordsEq(a.src, b.dst) && wordsEq(a.dst, b.src);
}

export function reverseTuple(t: Tuple): Tuple {
  return {
    src: [...t.dst] as Words,
    dst: [...t.src] as Words,
    sport: t.dport,
    dport: t.sport,
    family: t.family,
    proto: t.proto,
    icmp: t.icmp === ICMP_ECHO_REQ ? ICMP_ECHO_REP : t.icmp === ICMP_ECHO_REP ? ICMP_ECHO_REQ : 0,
  };
}

export function copyTuple(t: Tuple): Tuple {
  return { ...t, src: [...t.src] as Words, dst: [...t.dst] as Words };
}

function endLess(a: readonly number[], pa: number, b: readonly number[], pb: number): boolean {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return pa < pb;
}

/** The normalized key: the lower (address, port) end first. */
export function keyOf(t: Tuple): CtKey {
  const swap = endLess(t.dst, t.dport, t.src, t.sport);
  return {
    a: [...(swap ? t.dst : t.src)] as Words,
    b: [...(swap ? t.src : t.dst)] as Words,
    pa: swap ? t.dport : t.sport,
    pb: swap ? t.sport : t.dport,
    family: t.family,
    proto: t.proto,
  };
}

/** A string form of a key, for TS maps. */
export function keyId(k: CtKey): string {
  return `${k.family}/${k.proto}/${k.a.join('.')}:${k.pa}/${k.b.join('.')}:${k.pb}`;
}

export function keyEq(a: CtKey, b: CtKey): boolean {
  return a.pa === b.pa && a.pb === b.pb && a.family === b.family && a.proto === b.proto && wordsEq(a.a, b.a) && wordsEq(a.b, b.b);
}

/** The tuple of a packet (see sdk/stateful.ts for which packets have one). */
export function tupleOfView(v: PacketView, echoId?: number): Tuple | undefined {
  let family: 4 | 6;
  let src: Words;
  let dst: Words;
  if (v.ipv4) {
    family = 4;
    src = [v.ipv4.src >>> 0, 0, 0, 0];
    dst = [v.ipv4.dst >>> 0, 0, 0, 0];
  } else if (v.ipv6) {
    family = 6;
    src = wordsOfBig(v.ipv6.src);
    dst = wordsOfBig(v.ipv6.dst);
  } else return undefined;
  const proto = v.proto ?? 0;
  const p = v.tcp ?? v.udp;
  if (p) return { src, dst, sport: p.sport, dport: p.dport, family, proto, icmp: 0 };
  const ic = v.icmp ?? v.icmpv6;
  if (ic && echoId !== undefined) {
    const req = v.icmp ? ic.type === 8 : ic.type === 128;
    return { src, dst, sport: req ? echoId : 0, dport: req ? 0 : echoId, family, proto, icmp: req ? ICMP_ECHO_REQ : ICMP_ECHO_REP };
  }
  return undefined;
}

/**
 * What conntrack sees in a frame (twin of tsbpf_pkt_tuple): a connection
 * packet (TCP, UDP, ICMP echo) with its tuple, an ICMP error with its outer
 * addresses (ports zero), or undefined (untracked).
 */
export function packetTuple(pkt: Buffer, v: PacketView): { kind: 'conn' | 'error'; t: Tuple } | undefined {
  let t: Tuple;
  if (v.ipv4) t = { src: [v.ipv4.src >>> 0, 0, 0, 0], dst: [v.ipv4.dst >>> 0, 0, 0, 0], sport: 0, dport: 0, family: 4, proto: v.proto ?? 0, icmp: 0 };
  else if (v.ipv6) t = { src: wordsOfBig(v.ipv6.src), dst: wordsOfBig(v.ipv6.dst), sport: 0, dport: 0, family: 6, proto: v.proto ?? 0, icmp: 0 };
  else return undefined;
  if (v.tcp || v.udp) return { kind: 'conn', t: tupleOfView(v)! };
  const ic = v.icmp ?? v.icmpv6;
  if (!ic) return undefined;
  const v4 = !!v.icmp;
  const ty = ic.type;
  const req = v4 ? ty === 8 : ty === 128;
  const rep = v4 ? ty === 0 : ty === 129;
  if (req || rep) {
    if (v.l4Offset! + 8 > v.len) return undefined;
    return { kind: 'conn', t: tupleOfView(v, pkt.readUInt16BE(v.l4Offset! + 4))! };
  }
  if (v4 ? ty === 3 || ty === 11 || ty === 12 : ty >= 1 && ty <= 4) return { kind: 'error', t };
  return undefined;
}

/**
 * Where packet tuple t stands in connection e (twin of tsbpf_ct_direction):
 * dir 0 original, 1 reply; stage 0 untranslated, 1 between DNAT and SNAT,
 * 2 translated. Undefined: e's key is a leftover of another connection.
 */
export function connPosition(t: Tuple, e: CtEntry): { dir: number; stage: number } | undefined {
  if (tupleEq(t, e.o)) return { dir: 0, stage: tupleEq(t, e.x) ? 2 : 0 };
  if (tupleEq(t, e.x)) return { dir: 0, stage: 2 };
  if (e.flags & CTF.DNAT && t.sport === e.o.sport && t.dport === e.x.dport && wordsEq(t.src, e.o.src) && wordsEq(t.dst, e.x.dst)) return { dir: 0, stage: 1 };
  if (tupleRevEq(t, e.x)) return { dir: 1, stage: tupleRevEq(t, e.o) ? 2 : 0 };
  if (tupleRevEq(t, e.o)) return { dir: 1, stage: 2 };
  return undefined;
}

// ---------------------------------------------------------------------------
// Hash (twin of tsbpf_flow_hash)

function mix(h: number, w: number): number {
  w = Math.imul(w, 0xcc9e2d51);
  w = ((w << 15) | (w >>> 17)) >>> 0;
  w = Math.imul(w, 0x1b873593);
  h = (h ^ w) >>> 0;
  h = ((h << 13) | (h >>> 19)) >>> 0;
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

function fin(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The flow hash of a tuple (Maglev selection, SNAT address and port start). */
export function flowHash(t: Tuple, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < 4; i++) h = mix(h, t.src[i]! >>> 0);
  for (let i = 0; i < 4; i++) h = mix(h, t.dst[i]! >>> 0);
  h = mix(h, ((t.sport << 16) | t.dport) >>> 0);
  h = mix(h, ((t.family << 8) | t.proto) >>> 0);
  return fin((h ^ 40) >>> 0);
}

// ---------------------------------------------------------------------------
// TCP

export function tcpFlagsInvalid(f: number): boolean {
  if ((f & (TCP_SYN | TCP_FIN)) === (TCP_SYN | TCP_FIN)) return true;
  if ((f & (TCP_SYN | TCP_RST)) === (TCP_SYN | TCP_RST)) return true;
  return (f & (TCP_SYN | TCP_ACK | TCP_RST)) === 0;
}

/** The state a connection starts in from its first packet; 0: none (the packet is invalid). */
export function initialState(v: PacketView): number {
  if (v.tcp) {
    const f = v.tcp.flags;
    if (tcpFlagsInvalid(f) || f & TCP_RST) return CT_STATE.none;
    if ((f & (TCP_SYN | TCP_ACK)) === TCP_SYN) return CT_STATE['tcp-syn-sent'];
    if (f & TCP_SYN) return CT_STATE.none;
    return CT_STATE['tcp-established'];
  }
  if (v.udp) return CT_STATE.udp;
  return CT_STATE.icmp;
}

/** One TCP state machine step (dir 0 original, 1 reply). */
export function tcpStep(e: CtEntry, f: number, dir: number): void {
  let st = e.state;
  if (f & TCP_RST) {
    e.state = CT_STATE['tcp-close'];
    return;
  }
  if (f & TCP_SYN) {
    if (f & TCP_ACK && dir === 1 && st === CT_STATE['tcp-syn-sent']) e.state = CT_STATE['tcp-syn-recv'];
    return;
  }
  if (dir === 0 && st === CT_STATE['tcp-syn-recv'] && f & TCP_ACK) st = CT_STATE['tcp-established'];
  if (f & TCP_FIN) {
    if (st === CT_STATE['tcp-established'] || st === CT_STATE['tcp-syn-recv'] || st === CT_STATE['tcp-fin-wait']) {
      e.flags |= dir ? CTF.FIN_REPLY : CTF.FIN_ORIG;
      st = e.flags & CTF.FIN_ORIG && e.flags & CTF.FIN_REPLY ? CT_STATE['tcp-closing'] : CT_STATE['tcp-fin-wait'];
    }
  } else if (f & TCP_ACK && st === CT_STATE['tcp-closing']) {
    st = CT_STATE['tcp-time-wait'];
  }
  e.state = st;
}

export function timeoutNs(timeouts: readonly number[], state: number): bigint {
  return BigInt(state < STATES ? (timeouts[state] ?? 0) : 0) * 1_000_000_000n;
}

/** One packet of a tracked connection (twin of tsbpf_ct_update). */
export function ctUpdate(e: CtEntry, v: PacketView, timeouts: readonly number[], dir: number, hook: number, now: bigint): void {
  let h = e.dirHook[dir]!;
  if (h === 0) {
    e.dirHook[dir] = hook;
    h = hook;
  }
  if (h !== hook) return;
  e.packets[dir] += 1n;
  e.bytes[dir] += BigInt(v.len);
  if (dir) e.flags |= CTF.SEEN_REPLY;
  if (v.tcp) {
    if (!tcpFlagsInvalid(v.tcp.flags)) tcpStep(e, v.tcp.flags, dir);
  } else if (dir) {
    if (e.state === CT_STATE.udp) e.state = CT_STATE['udp-replied'];
    else if (e.state === CT_STATE.icmp) e.state = CT_STATE['icmp-replied'];
  }
  e.lastNs = now;
  e.expiresNs = now + timeoutNs(timeouts, e.state);
}

const ZERO_KEY: CtKey = { a: [0, 0, 0, 0], b: [0, 0, 0, 0], pa: 0, pb: 0, family: 0, proto: 0 };

/** A fresh primary entry for tuple t. */
export function ctInit(t: Tuple, v: PacketView, timeouts: readonly number[], state: number, hook: number, now: bigint): CtEntry {
  return {
    createdNs: now,
    lastNs: now,
    expiresNs: now + timeoutNs(timeouts, state),
    packets: [1n, 0n],
    bytes: [BigInt(v.len), 0n],
    mark: 0,
    svcId: 0,
    backendId: 0,
    flags: 0,
    role: CT_PRIMARY,
    state,
    family: t.family,
    proto: t.proto,
    dirHook: [hook, 0],
    natRule: 0,
    o: copyTuple(t),
    x: copyTuple(t),
    primary: { ...ZERO_KEY, a: [0, 0, 0, 0], b: [0, 0, 0, 0] },
  };
}

export function aliasEntry(primary: CtKey, t: Tuple, now: bigint): CtEntry {
  const zeroTuple: Tuple = { src: [0, 0, 0, 0], dst: [0, 0, 0, 0], sport: 0, dport: 0, family: 4, proto: 0, icmp: 0 };
  return {
    createdNs: now,
    lastNs: 0n,
    expiresNs: 0n,
    packets: [0n, 0n],
    bytes: [0n, 0n],
    mark: 0,
    svcId: 0,
    backendId: 0,
    flags: 0,
    role: CT_ALIAS,
    state: 0,
    family: t.family,
    proto: t.proto,
    dirHook: [0, 0],
    natRule: 0,
    o: { ...zeroTuple, family: 0 as 4 },
    x: { ...zeroTuple, family: 0 as 4, src: [0, 0, 0, 0], dst: [0, 0, 0, 0] },
    primary: { ...primary, a: [...primary.a] as Words, b: [...primary.b] as Words },
  };
}

/** The tuple between DNAT and SNAT: the client's end, the backend's end. */
export function preSnatTuple(e: CtEntry): Tuple {
  return { ...copyTuple(e.o), dst: [...e.x.dst] as Words, dport: e.x.dport };
}

/** Every key a primary entry owns: its own, the DNAT-to-SNAT one, the translated one (distinct). */
export function keysOfConnection(e: CtEntry): CtKey[] {
  const keys = [keyOf(e.o)];
  for (const k of [keyOf(preSnatTuple(e)), keyOf(e.x)]) if (!keys.some((x) => keyEq(x, k))) keys.push(k);
  return keys;
}

/** A connection a new one may replace: expired, or TCP that has closed (twin of tsbpf_ct_over). */
export function connectionOver(e: CtEntry, now: bigint): boolean {
  return e.expiresNs < now || e.state === CT_STATE['tcp-close'] || e.state === CT_STATE['tcp-time-wait'];
}

/** Whether alias key k belongs to primary pe (twin of tsbpf_ct_owns_key). */
export function ownsKey(pe: CtEntry, k: CtKey): boolean {
  return keyEq(keyOf(pe.x), k) || keyEq(keyOf(preSnatTuple(pe)), k);
}

// ---------------------------------------------------------------------------
// The table

/**
 * The conntrack map of the reference: key -> entry, with the lookups the C
 * code does. LRU eviction is the kernel's and is not modelled: keep fewer
 * entries than the map holds when comparing.
 */
export class ConntrackTable {
  readonly entries = new Map<string, { key: CtKey; entry: CtEntry }>();

  get(k: CtKey): CtEntry | undefined {
    return this.entries.get(keyId(k))?.entry;
  }

  /** BPF_ANY */
  set(k: CtKey, e: CtEntry): void {
    this.entries.set(keyId(k), { key: { ...k, a: [...k.a] as Words, b: [...k.b] as Words }, entry: e });
  }

  /** BPF_NOEXIST: false when the key is there. */
  insert(k: CtKey, e: CtEntry): boolean {
    if (this.entries.has(keyId(k))) return false;
    this.set(k, e);
    return true;
  }

  delete(k: CtKey): boolean {
    return this.entries.delete(keyId(k));
  }

  /** The live primary of key k (following an alias) and its key (twin of tsbpf_ct_primary). */
  primary(k: CtKey, now: bigint): { key: CtKey; entry: CtEntry } | undefined {
    let e = this.get(k);
    let key = k;
    if (!e) return undefined;
    if (e.role === CT_ALIAS) {
      key = e.primary;
      e = this.get(key);
      if (!e || e.role !== CT_PRIMARY) return undefined;
    }
    if (e.expiresNs < now) return undefined;
    return { key, entry: e };
  }

  /** Twin of tsbpf_ct_key_free: may a connection with primary key `mine` take key k? */
  keyFree(k: CtKey, now: bigint, mine?: CtKey): boolean {
    const e = this.get(k);
    if (!e) return true;
    if (e.role === CT_ALIAS) {
      if (mine && keyEq(e.primary, mine)) return true;
      const pe = this.get(e.primary);
      if (!pe || pe.role !== CT_PRIMARY || connectionOver(pe, now)) return true;
      return !ownsKey(pe, k);
    }
    return connectionOver(e, now);
  }

  /** Whether alias key k has no live connection any more: what garbage collection deletes. */
  orphan(k: CtKey, now: bigint): boolean {
    const e = this.get(k);
    if (!e || e.role !== CT_ALIAS) return false;
    const pe = this.get(e.primary);
    return !pe || pe.role !== CT_PRIMARY || pe.expiresNs < now || !ownsKey(pe, k);
  }

  /** Primary entries. */
  *connections(): IterableIterator<{ key: CtKey; entry: CtEntry }> {
    for (const v of this.entries.values()) if (v.entry.role === CT_PRIMARY) yield v;
  }
}

// ---------------------------------------------------------------------------
// Listing

const PROTO_NAME: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmp6' };

export interface CtEndpoints {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** A connection as a person (or `tsbpf ct list`) reads it. */
export interface CtConnection {
  /** The primary entry's key (what delete() takes). */
  key: CtKey;
  family: 4 | 6;
  proto: number;
  protocol: string;
  state: CtStateName;
  /** As the client sent it. */
  original: CtEndpoints;
  /** The original direction after NAT (equal to `original` without NAT). */
  translated: CtEndpoints;
  /** 'seen-reply', 'dnat', 'snat', 'hairpin', 'loop', 'affinity', 'fin-orig', 'fin-reply'. */
  flags: string[];
  svcId: number;
  backendId: number;
  /** Index of the NAT rule applied, if one was. */
  natRule: number | undefined;
  packets: { original: bigint; reply: bigint };
  bytes: { original: bigint; reply: bigint };
  createdNs: bigint;
  lastNs: bigint;
  expiresNs: bigint;
  expired: boolean;
  mark: number;
  entry: CtEntry;
}

const FLAG_NAMES: Array<[number, string]> = [
  [CTF.SEEN_REPLY, 'seen-reply'],
  [CTF.DNAT, 'dnat'],
  [CTF.SNAT, 'snat'],
  [CTF.HAIRPIN, 'hairpin'],
  [CTF.LOOP, 'loop'],
  [CTF.AFFINITY, 'affinity'],
  [CTF.FIN_ORIG, 'fin-orig'],
  [CTF.FIN_REPLY, 'fin-reply'],
];

function endpoints(t: Tuple): CtEndpoints {
  return { src: wordsText(t.src, t.family), sport: t.sport, dst: wordsText(t.dst, t.family), dport: t.dport };
}

export function describeConnection(key: CtKey, e: CtEntry, now: bigint): CtConnection {
  return {
    key,
    family: e.family as 4 | 6,
    proto: e.proto,
    protocol: PROTO_NAME[e.proto] ?? String(e.proto),
    state: CT_STATE_NAMES[e.state] ?? 'none',
    original: endpoints(e.o),
    translated: endpoints(e.x),
    flags: FLAG_NAMES.filter(([bit]) => e.flags & bit).map(([, n]) => n),
    svcId: e.svcId,
    backendId: e.backendId,
    natRule: e.natRule ? e.natRule - 1 : undefined,
    packets: { original: e.packets[0], reply: e.packets[1] },
    bytes: { original: e.bytes[0], reply: e.bytes[1] },
    createdNs: e.createdNs,
    lastNs: e.lastNs,
    expiresNs: e.expiresNs,
    expired: e.expiresNs < now,
    mark: e.mark,
    entry: e,
  };
}

/** Which connections list/delete pick: every given field must match (addresses and ports of the original direction). */
export interface CtFilter {
  family?: 4 | 6;
  protocol?: 'tcp' | 'udp' | 'icmp' | 'icmp6' | number;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  /** The translated destination (a backend). */
  xdst?: string;
  state?: CtStateName | CtStateName[];
  svcId?: number;
  /** Only NATed (true) or only un-NATed (false) connections. */
  nat?: boolean;
  /** Include expired entries not yet collected (default false). */
  expired?: boolean;
}

export function matchConnection(c: CtConnection, f: CtFilter = {}): boolean {
  if (!f.expired && c.expired) return false;
  if (f.family !== undefined && c.family !== f.family) return false;
  if (f.protocol !== undefined && (typeof f.protocol === 'number' ? c.proto !== f.protocol : c.protocol !== f.protocol)) return false;
  const same = (a: string, b: string) => wordsEq(addrWords(a), addrWords(b));
  if (f.src !== undefined && !same(c.original.src, f.src)) return false;
  if (f.dst !== undefined && !same(c.original.dst, f.dst)) return false;
  if (f.xdst !== undefined && !same(c.translated.dst, f.xdst)) return false;
  if (f.sport !== undefined && c.original.sport !== f.sport) return false;
  if (f.dport !== undefined && c.original.dport !== f.dport) return false;
  if (f.state !== undefined && !(Array.isArray(f.state) ? f.state : [f.state]).includes(c.state)) return false;
  if (f.svcId !== undefined && c.svcId !== f.svcId) return false;
  if (f.nat !== undefined && f.nat !== (c.flags.includes('dnat') || c.flags.includes('snat'))) return false;
  return true;
}
