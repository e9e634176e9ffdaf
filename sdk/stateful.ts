/**
 * The reference of a services program (codegen/include/tsbpf/svc.h):
 * `evaluateServices(state, packet, { hook, ifindex, now })` runs one packet
 * through conntrack, load balancing and NAT exactly as the kernel does, and
 * returns the verdict, the rewritten packet and what conntrack made of it.
 * `ServicesState` is everything that outlives a packet: the conntrack table,
 * affinity entries, the services (a ServiceTable), NAT rules, counters and
 * events. Time is explicit (`now`, ns).
 *
 * Differences from the kernel that tests must respect: LRU eviction is not
 * modelled, and random selection uses `state.random` (the kernel's is its own).
 */
import {
  aliasEntry,
  CT_PRIMARY,
  CT_STATE,
  CTF,
  ctInit,
  ctUpdate,
  flowHash,
  HOOK_EGRESS,
  HOOK_INGRESS,
  ICMP_ECHO_REP,
  ICMP_ECHO_REQ,
  initialState,
  keyEq,
  keyOf,
  reverseTuple,
  tcpFlagsInvalid,
  timeoutsArray,
  tupleEq,
  tupleOfView,
  tupleRevEq,
  wordsEq,
  wordsOfBig,
  ConntrackTable,
  copyTuple,
  type CtEntry,
  type CtKey,
  type PacketCtState,
  type Tuple,
  type Words,
} from './ct.js';
import { TsbpfError } from './errors.js';
import { csumReplace, halves, natAddr, natMatch, natRewrite, natRuleRecord, pickAddr, type NatRuleRecord } from './nat.js';
import { parsePacket, TCP_ACK, TCP_RST, TCP_SYN, type PacketView } from './parse.js';
import { LB_MAGLEV, LBB_READY, ServiceTable, type BackendRecord, type ServiceRecord, type ServicesDefinition } from './services.js';

/** Names of the tsbpf_svc_stats slots, by index. */
export const SVC_STATS = [
  'packets',
  'untracked',
  'ctNew',
  'ctEstablished',
  'ctRelated',
  'ctInvalid',
  'lbNew',
  'dnatNew',
  'snatNew',
  'hairpin',
  'affinity',
  'translated',
  'icmpTranslated',
  'dropNoBackend',
  'dropNatExhausted',
  'dropClash',
  'dropError',
  'noIfaddr',
] as const;
export type SvcStat = (typeof SVC_STATS)[number];
export const SVC_STATS_SLOTS = 20;

export type ServiceEventKind = 'no-backend' | 'nat-exhausted' | 'clash';
export const SVC_EVENT_KIND: Record<number, ServiceEventKind> = { 1: 'no-backend', 2: 'nat-exhausted', 3: 'clash' };

export interface ServiceEvent {
  kind: ServiceEventKind;
  ifindex: number;
  svcId: number;
  /** NAT rule index, or undefined. */
  rule: number | undefined;
  tuple: Tuple;
}

export interface ServicesConfig {
  /** Seconds by state number. */
  timeouts: number[];
  seed: number;
  trackAll: boolean;
}

/** Everything a services program keeps between packets, in TS. */
export class ServicesState {
  readonly ct = new ConntrackTable();
  /** `${svcId}/${family}/${addr}` -> affinity entry */
  readonly affinity = new Map<string, { backendId: number; lastNs: bigint }>();
  readonly stats: Record<SvcStat, number> = Object.fromEntries(SVC_STATS.map((s) => [s, 0])) as Record<SvcStat, number>;
  readonly events: ServiceEvent[] = [];
  readonly lb: ServiceTable;
  readonly config: ServicesConfig;
  /** NAT rules with interfaces resolved (see resolveNat). */
  natRules: NatRuleRecord[];
  /** Masquerade addresses by ifindex. */
  readonly ifaddrs = new Map<number, { v4?: number; v6?: Words }>();
  /** u32 source for random selection. */
  random: () => number = () => Math.floor(Math.random() * 0x100000000);

  constructor(
    readonly definition: ServicesDefinition,
    options: { seed?: number; interfaces?: Record<string, number> } = {},
  ) {
    this.lb = new ServiceTable(definition.lb);
    for (const s of definition.services) this.lb.upsert(s);
    this.config = { timeouts: timeoutsArray(definition.conntrack.timeouts), seed: options.seed ?? definition.hashSeed ?? 0, trackAll: definition.conntrack.trackAll };
    this.natRules = resolveNat(definition, options.interfaces ?? {});
  }
}

/** NAT rule records with interface names looked up in `interfaces` (unknown names: index 0xffffffff, matching nothing). */
export function resolveNat(def: ServicesDefinition, interfaces: Record<string, number>): NatRuleRecord[] {
  return def.nat.map((r) => natRuleRecord(r, r.ifname === undefined ? 0 : (interfaces[r.ifname] ?? 0xffffffff)));
}

export interface ServicesEvalOptions {
  hook: 'tc-ingress' | 'tc-egress';
  /** Interface the program runs on (default 1, the device of a BPF test run). */
  ifindex?: number;
  now: bigint | number;
}

export interface ServicesResult {
  /** 'loop': a hairpin connection at the client's egress, sent back into the interface's ingress (Ethernet addresses swapped). */
  verdict: 'accept' | 'drop' | 'loop';
  /** The packet as it leaves (a copy; rewritten when translated). */
  data: Buffer;
  ctState: PacketCtState;
  /** Whether addresses or ports were rewritten. */
  translated: boolean;
  /** The connection's primary entry after the packet (when tracked). */
  entry?: CtEntry;
  direction?: 'original' | 'reply';
  events: ServiceEvent[];
}

interface Run {
  st: ServicesState;
  pkt: Buffer;
  v: PacketView;
  t: Tuple;
  hook: number;
  ifindex: number;
  now: bigint;
  events: ServiceEvent[];
}

/** Run one frame through the services program (twin of tsbpf_svc). */
export function evaluateServices(st: ServicesState, packet: Uint8Array, options: ServicesEvalOptions): ServicesResult {
  const pkt = Buffer.from(packet);
  const v = parsePacket(pkt);
  const hook = options.hook === 'tc-egress' ? HOOK_EGRESS : HOOK_INGRESS;
  const now = BigInt(options.now);
  const events: ServiceEvent[] = [];
  const done = (verdict: ServicesResult['verdict'], ctState: PacketCtState, extra: Partial<ServicesResult> = {}): ServicesResult => ({
    verdict,
    data: pkt,
    ctState,
    translated: !pkt.equals(Buffer.from(packet)),
    events,
    ...extra,
  });
  st.stats.packets++;
  const kind = packetKind(pkt, v);
  if (kind.kind === 'untracked' || (kind.kind === 'error' && hook !== HOOK_INGRESS)) {
    st.stats.untracked++;
    return done('accept', 'untracked');
  }
  const r: Run = { st, pkt, v, t: kind.kind === 'conn' ? kind.t : outerTuple(v)!, hook, ifindex: options.ifindex ?? 1, now, events };
  if (kind.kind === 'error') return icmpError(r, done);

  const t = r.t;
  const found = st.ct.primary(keyOf(t), now);
  if (found) {
    const e = found.entry;
    let dir = -1;
    let stage = 0;
    if (tupleEq(t, e.o)) {
      dir = 0;
      stage = tupleEq(t, e.x) ? 2 : 0;
    } else if (tupleEq(t, e.x)) {
      dir = 0;
      stage = 2;
    } else if (e.flags & CTF.DNAT && t.sport === e.o.sport && t.dport === e.x.dport && wordsEq(t.src, e.o.src) && wordsEq(t.dst, e.x.dst)) {
      dir = 0;
      stage = 1;
    } else if (tupleRevEq(t, e.x)) {
      dir = 1;
      stage = tupleRevEq(t, e.o) ? 2 : 0;
    } else if (tupleRevEq(t, e.o)) {
      dir = 1;
      stage = 2;
    }
    let live = dir >= 0;
    if (
      live &&
      dir === 0 &&
      stage === 0 &&
      v.tcp &&
      (v.tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN &&
      (e.state === CT_STATE['tcp-close'] || e.state === CT_STATE['tcp-time-wait'])
    )
      live = false;
    if (live) return existing(r, found.key, e, dir, stage, done);
  }
  return fresh(r, done);
}

type Done = (verdict: ServicesResult['verdict'], ctState: PacketCtState, extra?: Partial<ServicesResult>) => ServicesResult;

/** What the datapath sees in a frame: a connection packet, an ICMP error, or neither. */
function packetKind(pkt: Buffer, v: PacketView): { kind: 'conn'; t: Tuple } | { kind: 'error' } | { kind: 'untracked' } {
  if (!v.ipv4 && !v.ipv6) return { kind: 'untracked' };
  if (v.tcp || v.udp) return { kind: 'conn', t: tupleOfView(v)! };
  const ic = v.icmp ?? v.icmpv6;
  if (!ic) return { kind: 'untracked' };
  const v4 = !!v.icmp;
  const ty = ic.type;
  const req = v4 ? ty === 8 : ty === 128;
  const rep = v4 ? ty === 0 : ty === 129;
  if (req || rep) {
    if (v.l4Offset! + 8 > v.len) return { kind: 'untracked' };
    return { kind: 'conn', t: tupleOfView(v, pkt.readUInt16BE(v.l4Offset! + 4))! };
  }
  if (v4 ? ty === 3 || ty === 11 || ty === 12 : ty >= 1 && ty <= 4) return { kind: 'error' };
  return { kind: 'untracked' };
}

function outerTuple(v: PacketView): Tuple | undefined {
  if (v.ipv4) return { src: [v.ipv4.src >>> 0, 0, 0, 0], dst: [v.ipv4.dst >>> 0, 0, 0, 0], sport: 0, dport: 0, family: 4, proto: v.proto ?? 0, icmp: 0 };
  if (v.ipv6) return { src: wordsOfBig(v.ipv6.src), dst: wordsOfBig(v.ipv6.dst), sport: 0, dport: 0, family: 6, proto: v.proto ?? 0, icmp: 0 };
  return undefined;
}

function event(r: Run, kind: ServiceEvent['kind'], svcId: number, rule: number | undefined): void {
  const e: ServiceEvent = { kind, ifindex: r.ifindex, svcId, rule, tuple: copyTuple(r.t) };
  r.events.push(e);
  r.st.events.push(e);
}

/** The tuple a packet of the original direction leaves this hook with (twin of tsbpf_svc_forward). */
function forward(e: CtEntry, t: Tuple, hook: number): Tuple {
  const to = copyTuple(e.x);
  if (hook === HOOK_INGRESS && !(e.flags & CTF.HAIRPIN)) {
    to.src = [...t.src] as Words;
    to.sport = t.sport;
  }
  to.icmp = t.icmp;
  return to;
}

function apply(r: Run, to: Tuple): 'accept' | 'drop' {
  if (tupleEq(r.t, to)) return 'accept';
  natRewrite(r.pkt, r.v, r.t, to);
  r.st.stats.translated++;
  return 'accept';
}

/** A looped hairpin connection's packet at egress goes back in at ingress (twin of tsbpf_svc_loop). */
function loop(r: Run, e: CtEntry, to: Tuple): ServicesResult['verdict'] {
  const v = apply(r, to);
  if (v === 'drop' || r.hook !== HOOK_EGRESS || !(e.flags & CTF.LOOP)) return v;
  const mac = Buffer.from(r.pkt.subarray(0, 12));
  mac.copy(r.pkt, 0, 6, 12);
  mac.copy(r.pkt, 6, 0, 6);
  return 'loop';
}

/** Reserve a source port for x (x.src set) by inserting its alias (twin of tsbpf_nat_alloc); mutates x.sport. */
function natAlloc(ct: ConntrackTable, x: Tuple, pkey: CtKey, pmin: number, pmax: number, prefer: number, hash: number, now: bigint): boolean {
  const range = (pmax - pmin + 1) >>> 0;
  const start = prefer >= pmin && prefer <= pmax ? prefer - pmin : (hash >>> 0) % range;
  const tries = Math.min(range, NAT_PROBES);
  const alias = aliasEntry(pkey, x, now);
  for (let i = 0; i < tries; i++) {
    x.sport = (pmin + ((start + i) % (range || 1))) & 0xffff;
    const k = keyOf(x);
    if (ct.insert(k, cloneAlias(alias))) return true;
    if (ct.keyFree(k, now, pkey)) {
      ct.set(k, cloneAlias(alias));
      return true;
    }
  }
  return false;
}

function cloneAlias(a: CtEntry): CtEntry {
  return { ...a, primary: { ...a.primary, a: [...a.primary.a] as Words, b: [...a.primary.b] as Words } };
}

/** Ports tried before a range counts as exhausted (TSBPF_NAT_PROBES). */
export const NAT_PROBES = 32;

/** SNAT/masquerade (twin of tsbpf_svc_snat): 0 no rule, 1 translated (x updated), -1 exhausted. */
function snat(r: Run, x: Tuple, pkey: CtKey, hash: number): { result: number; rule: number } {
  const i = natMatch(r.st.natRules, x, r.ifindex, [1, 2]);
  if (i < 0) return { result: 0, rule: 0 };
  const rule = r.st.natRules[i]!;
  const to = copyTuple(x);
  if (rule.kind === 2) {
    const ia = r.st.ifaddrs.get(r.ifindex);
    if (!ia || (x.family === 4 ? ia.v4 === undefined : ia.v6 === undefined)) {
      r.st.stats.noIfaddr++;
      return { result: 0, rule: 0 };
    }
    to.src = x.family === 4 ? [ia.v4! >>> 0, 0, 0, 0] : ([...ia.v6!] as Words);
  } else {
    to.src = pickAddr(rule, hash);
  }
  let pmin = rule.port_min;
  let pmax = rule.port_max;
  if (pmin === 0 && pmax === 0) {
    pmin = x.icmp ? 0 : 1024;
    pmax = 65535;
  }
  if (!natAlloc(r.st.ct, to, pkey, pmin, pmax, x.sport, hash, r.now)) return { result: -1, rule: i };
  x.src = to.src;
  x.sport = to.sport;
  return { result: 1, rule: i };
}

/** Reserve alias key k (twin of tsbpf_svc_reserve). */
function reserve(ct: ConntrackTable, k: CtKey, alias: CtEntry, now: bigint): boolean {
  if (ct.insert(k, alias)) return true;
  if (ct.keyFree(k, now, alias.primary)) {
    ct.set(k, alias);
    return true;
  }
  return false;
}

function existing(r: Run, pkey: CtKey, e: CtEntry, dir: number, stage: number, done: Done): ServicesResult {
  const { st, v, t, hook, now } = r;
  if (hook === HOOK_EGRESS && dir === 0 && !(e.flags & CTF.SNAT_DONE)) {
    const x = copyTuple(e.x);
    const s = snat(r, x, pkey, flowHash(e.o, st.config.seed));
    if (s.result < 0) {
      st.stats.dropNatExhausted++;
      event(r, 'nat-exhausted', e.svcId, s.rule);
      return done('drop', 'new', { entry: e, direction: 'original' });
    }
    if (s.result > 0) {
      e.x.src = x.src;
      e.x.sport = x.sport;
      e.flags |= CTF.SNAT;
      e.natRule = s.rule + 1;
      st.stats.snatNew++;
    }
    e.flags |= CTF.SNAT_DONE;
    // Without DNAT the packet looked translated (o == x) until SNAT changed x.
    if (stage === 2 && !tupleEq(t, e.x)) stage = 0;
  }
  const invalid = !!v.tcp && tcpFlagsInvalid(v.tcp.flags);
  ctUpdate(e, v, st.config.timeouts, dir, hook, now);
  let ctState: PacketCtState;
  if (invalid) {
    st.stats.ctInvalid++;
    ctState = 'invalid';
  } else if (dir === 0 && !(e.flags & CTF.SEEN_REPLY)) {
    st.stats.ctNew++;
    ctState = 'new';
  } else {
    st.stats.ctEstablished++;
    ctState = 'established';
  }
  const extra = { entry: e, direction: dir === 0 ? ('original' as const) : ('reply' as const) };
  if (stage === 2) return done('accept', ctState, extra);
  let to: Tuple;
  if (dir === 0) {
    to = forward(e, t, hook);
    if (stage === 1 && hook === HOOK_INGRESS) return done('accept', ctState, extra);
  } else {
    to = reverseTuple(e.o);
    to.icmp = t.icmp;
  }
  return done(loop(r, e, to), ctState, extra);
}

function fresh(r: Run, done: Done): ServicesResult {
  const { st, v, t, hook, now } = r;
  const state = initialState(v);
  if (state === CT_STATE.none) {
    st.stats.ctInvalid++;
    return done('accept', 'invalid');
  }
  const hash = flowHash(t, st.config.seed);
  const ent = ctInit(t, v, st.config.timeouts, state, hook, now);
  const key = keyOf(t);
  let track = st.config.trackAll;

  const svc = st.lb.lookup({ addr: [...t.dst] as Words, port: t.dport, proto: t.proto, family: t.family });
  if (svc) {
    const sel = select(r, svc, hash);
    if (!sel) {
      st.stats.dropNoBackend++;
      event(r, 'no-backend', svc.id, undefined);
      return done('drop', 'new');
    }
    ent.x.dst = [...sel.b.addr] as Words;
    ent.x.dport = sel.b.port;
    ent.svcId = svc.id;
    ent.backendId = sel.id;
    ent.flags |= CTF.DNAT | (sel.affinity ? CTF.AFFINITY : 0);
    st.stats.lbNew++;
    if (sel.affinity) st.stats.affinity++;
    track = true;
    // Hairpin: the client is the backend. At egress (client-side placement) the connection is looped back in.
    if (wordsEq(sel.b.addr, t.src)) {
      const hx = copyTuple(ent.x);
      hx.src = [...t.dst] as Words;
      if (!natAlloc(st.ct, hx, key, 1024, 65535, t.sport, hash, now)) {
        st.stats.dropNatExhausted++;
        event(r, 'nat-exhausted', svc.id, undefined);
        return done('drop', 'new');
      }
      ent.x.src = hx.src;
      ent.x.sport = hx.sport;
      ent.flags |= CTF.SNAT | CTF.SNAT_DONE | CTF.HAIRPIN | (hook === HOOK_EGRESS ? CTF.LOOP : 0);
      st.stats.hairpin++;
    }
  } else if (hook === HOOK_INGRESS) {
    const i = natMatch(st.natRules, ent.x, r.ifindex, [3]);
    if (i >= 0) {
      const rule = st.natRules[i]!;
      ent.x.dst = pickAddr(rule, hash);
      if (rule.port_min || rule.port_max) {
        const span = (rule.port_max - rule.port_min + 1) >>> 0;
        ent.x.dport = (rule.port_min + ((hash >>> 0) % span)) & 0xffff;
      }
      ent.flags |= CTF.DNAT;
      ent.natRule = i + 1;
      st.stats.dnatNew++;
      track = true;
    }
  }

  if (hook === HOOK_EGRESS && !(ent.flags & CTF.SNAT_DONE)) {
    const x = copyTuple(ent.x);
    const s = snat(r, x, key, hash);
    if (s.result < 0) {
      st.stats.dropNatExhausted++;
      event(r, 'nat-exhausted', ent.svcId, s.rule);
      return done('drop', 'new');
    }
    if (s.result > 0) {
      ent.x.src = x.src;
      ent.x.sport = x.sport;
      ent.flags |= CTF.SNAT;
      ent.natRule = s.rule + 1;
      st.stats.snatNew++;
      track = true;
    }
    ent.flags |= CTF.SNAT_DONE;
  }
  if (!track) {
    st.stats.untracked++;
    return done('accept', 'untracked');
  }
  if (ent.flags & CTF.DNAT) {
    const pre = copyTuple(t);
    pre.dst = [...ent.x.dst] as Words;
    pre.dport = ent.x.dport;
    const k2 = keyOf(pre);
    if (!keyEq(k2, key) && !reserve(st.ct, k2, aliasEntry(key, t, now), now)) {
      st.stats.dropClash++;
      event(r, 'clash', ent.svcId, undefined);
      return done('drop', 'new');
    }
  }
  st.ct.set(key, ent);
  st.stats.ctNew++;
  const to = forward(ent, t, hook);
  return done(loop(r, ent, to), 'new', { entry: ent, direction: 'original' });
}

/** Backend selection (twin of tsbpf_lb_select). */
function select(r: Run, svc: ServiceRecord, hash: number): { b: BackendRecord; id: number; affinity: boolean } | undefined {
  const { st, t, now } = r;
  if (svc.count === 0) return undefined;
  const ready = (id: number) => {
    const b = st.lb.backend(id);
    return b && b.svc_id === svc.id && b.flags & LBB_READY ? b : undefined;
  };
  const akey = `${svc.id}/${t.family}/${t.src.join('.')}`;
  if (svc.affinity_s) {
    const a = st.affinity.get(akey);
    if (a && now - a.lastNs <= BigInt(svc.affinity_s) * 1_000_000_000n) {
      const b = ready(a.backendId);
      if (b) {
        a.lastNs = now;
        return { b, id: a.backendId, affinity: true };
      }
    }
  }
  const tab = st.lb.table(svc.table);
  if (!tab) return undefined;
  const idx = ((svc.mode === LB_MAGLEV ? hash : st.random()) >>> 0) % tab.length;
  const id = tab[idx]!;
  const b = ready(id);
  if (!b) return undefined;
  if (svc.affinity_s) st.affinity.set(akey, { backendId: id, lastNs: now });
  return { b, id, affinity: false };
}

// ---------------------------------------------------------------------------
// ICMP errors (twin of tsbpf_svc_icmp_error)

interface Quoted {
  it: Tuple;
  ioff: number;
  il4: number;
}

function quoted(pkt: Buffer, v: PacketView): Quoted | undefined {
  const off = v.l4Offset! + 8;
  const len = v.len;
  const it: Tuple = { src: [0, 0, 0, 0], dst: [0, 0, 0, 0], sport: 0, dport: 0, family: 4, proto: 0, icmp: 0 };
  let il4: number;
  if (v.ipv4) {
    if (off + 20 > len) return undefined;
    const ihl = pkt[off]! & 0xf;
    if (pkt[off]! >> 4 !== 4 || ihl < 5) return undefined;
    if (pkt.readUInt16BE(off + 6) & 0x1fff) return undefined;
    it.family = 4;
    it.proto = pkt[off + 9]!;
    it.src = [pkt.readUInt32BE(off + 12), 0, 0, 0];
    it.dst = [pkt.readUInt32BE(off + 16), 0, 0, 0];
    il4 = off + ihl * 4;
  } else {
    if (off + 40 > len) return undefined;
    if (pkt[off]! >> 4 !== 6) return undefined;
    it.family = 6;
    it.proto = pkt[off + 6]!;
    for (let i = 0; i < 4; i++) {
      it.src[i] = pkt.readUInt32BE(off + 8 + 4 * i);
      it.dst[i] = pkt.readUInt32BE(off + 24 + 4 * i);
    }
    il4 = off + 40;
  }
  if (il4 + 8 > len) return undefined;
  if (it.proto === 6 || it.proto === 17) {
    it.sport = pkt.readUInt16BE(il4);
    it.dport = pkt.readUInt16BE(il4 + 2);
    return { it, ioff: off, il4 };
  }
  if ((it.family === 4 && it.proto === 1) || (it.family === 6 && it.proto === 58)) {
    const ty = pkt[il4]!;
    const id = pkt.readUInt16BE(il4 + 4);
    if (ty === (it.family === 4 ? 8 : 128)) return { it: { ...it, icmp: ICMP_ECHO_REQ, sport: id }, ioff: off, il4 };
    if (ty === (it.family === 4 ? 0 : 129)) return { it: { ...it, icmp: ICMP_ECHO_REP, dport: id }, ioff: off, il4 };
  }
  return undefined;
}

function icmpError(r: Run, done: Done): ServicesResult {
  const { st, pkt, v, now } = r;
  const q = quoted(pkt, v);
  if (!q) {
    st.stats.ctInvalid++;
    return done('accept', 'invalid');
  }
  const { it, ioff, il4 } = q;
  const found = st.ct.primary(keyOf(it), now);
  if (!found) {
    st.stats.ctInvalid++;
    return done('accept', 'invalid');
  }
  const e = found.entry;
  st.stats.ctRelated++;
  let to: Tuple;
  if (tupleEq(it, e.x)) to = copyTuple(e.o);
  else if (tupleRevEq(it, e.o)) to = reverseTuple(e.x);
  else return done('accept', 'related', { entry: e });
  to.icmp = it.icmp;
  if (tupleEq(it, to)) return done('accept', 'related', { entry: e });

  const v4 = !!v.ipv4;
  const len = v.len;
  let icmpc = pkt.readUInt16BE(v.l4Offset! + 2);
  let ipc = v4 ? pkt.readUInt16BE(ioff + 10) : 0;
  let l4cAt = 0;
  let pseudo = false;
  let keepZero = false;
  if (it.proto === 6) {
    l4cAt = il4 + 16;
    pseudo = true;
  } else if (it.proto === 17) {
    l4cAt = il4 + 6;
    pseudo = true;
    keepZero = true;
  } else {
    l4cAt = il4 + 2;
    pseudo = it.family === 6;
  }
  let l4c = 0;
  if (l4cAt + 2 > len) {
    l4cAt = 0;
    pseudo = false;
  } else {
    l4c = pkt.readUInt16BE(l4cAt);
    if (keepZero && l4c === 0) pseudo = false;
  }
  const ipc0 = ipc;
  const l4c0 = l4c;
  const addr = (at: number, old: Words, neu: Words) => {
    const n = v4 ? 1 : 4;
    for (let i = 0; i < n; i++) {
      if (v4) ipc = csumReplace(ipc, halves([old[i]!]), halves([neu[i]!]));
      if (pseudo) l4c = csumReplace(l4c, halves([old[i]!]), halves([neu[i]!]));
      icmpc = csumReplace(icmpc, halves([old[i]!]), halves([neu[i]!]));
      pkt.writeUInt32BE(neu[i]! >>> 0, at + 4 * i);
    }
  };
  if (!wordsEq(it.src, to.src)) addr(ioff + (v4 ? 12 : 8), it.src, to.src);
  if (!wordsEq(it.dst, to.dst)) addr(ioff + (v4 ? 16 : 24), it.dst, to.dst);
  // Ports or the echo id; the L4 checksum follows when it is quoted (and, for UDP, not zero).
  const usePc = l4cAt !== 0 && !(keepZero && l4c0 === 0);
  const port = (at: number, old: number, neu: number) => {
    if (old === neu) return;
    if (usePc) l4c = csumReplace(l4c, [old], [neu]);
    icmpc = csumReplace(icmpc, [old], [neu]);
    pkt.writeUInt16BE(neu, at);
  };
  if (it.icmp) {
    const req = it.icmp === ICMP_ECHO_REQ;
    // The echo id is covered by the quoted ICMP checksum even without a pseudo-header.
    const oid = req ? it.sport : it.dport;
    const nid = req ? to.sport : to.dport;
    if (oid !== nid) {
      if (l4cAt) l4c = csumReplace(l4c, [oid], [nid]);
      icmpc = csumReplace(icmpc, [oid], [nid]);
      pkt.writeUInt16BE(nid, il4 + 4);
    }
  } else {
    port(il4, it.sport, to.sport);
    port(il4 + 2, it.dport, to.dport);
  }
  if (l4cAt && l4c !== l4c0) {
    if (keepZero && l4c === 0) l4c = 0xffff;
    icmpc = csumReplace(icmpc, [l4c0], [l4c]);
    pkt.writeUInt16BE(l4c, l4cAt);
  }
  if (v4 && ipc !== ipc0) {
    icmpc = csumReplace(icmpc, [ipc0], [ipc]);
    pkt.writeUInt16BE(ipc, ioff + 10);
  }
  pkt.writeUInt16BE(icmpc, v.l4Offset! + 2);
  // The outer addresses.
  const outer = r.t;
  const oto = copyTuple(outer);
  if (wordsEq(outer.dst, it.src)) oto.dst = [...to.src] as Words;
  if (wordsEq(outer.src, it.dst)) oto.src = [...to.dst] as Words;
  natAddr(pkt, v, false, outer.src, oto.src);
  natAddr(pkt, v, true, outer.dst, oto.dst);
  st.stats.icmpTranslated++;
  return done('accept', 'related', { entry: e });
}

/** The conntrack entries a GC pass would delete at `now`: expired primaries (all their keys) and orphaned aliases. */
export function expiredKeys(ct: ConntrackTable, now: bigint): CtKey[] {
  const out: CtKey[] = [];
  for (const { key, entry } of ct.entries.values()) {
    if (entry.role === CT_PRIMARY) {
      if (entry.expiresNs < now) out.push(key);
    } else if (ct.orphan(key, now)) out.push(key);
  }
  return out;
}

export function assertServicesDefinition(x: unknown): asserts x is ServicesDefinition {
  if (!x || typeof x !== 'object' || (x as { kind?: unknown }).kind !== 'services') {
    throw new TsbpfError('INVALID_ARGUMENT', 'expected a services definition (from services())');
  }
}
