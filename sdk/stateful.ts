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
  initialState,
  keyEq,
  keyOf,
  packetTuple,
  reverseTuple,
  tcpFlagsInvalid,
  timeoutsArray,
  tupleEq,
  wordsEq,
  ConntrackTable,
  connPosition,
  copyTuple,
  type CtEntry,
  type CtKey,
  type PacketCtState,
  type Tuple,
  type Words,
} from './ct.js';
import { TsbpfError } from './errors.js';
import { icmpErrorRewrite, icmpErrorTarget, quotedPacket } from './icmperr.js';
import { natMatch, natRewrite, natRuleRecord, pickAddr, type NatRuleRecord } from './nat.js';
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
  const pt = packetTuple(pkt, v);
  if (!pt || (pt.kind === 'error' && hook !== HOOK_INGRESS)) {
    st.stats.untracked++;
    return done('accept', 'untracked');
  }
  const r: Run = { st, pkt, v, t: pt.t, hook, ifindex: options.ifindex ?? 1, now, events };
  if (pt.kind === 'error') return icmpError(r, done);

  const t = r.t;
  const found = st.ct.primary(keyOf(t), now);
  if (found) {
    const e = found.entry;
    const pos = connPosition(t, e);
    const dir = pos?.dir ?? -1;
    const stage = pos?.stage ?? 0;
    let live = pos !== undefined;
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
// ICMP errors (twin of tsbpf_svc_icmp_error; the rewrite is sdk/icmperr.ts)

function icmpError(r: Run, done: Done): ServicesResult {
  const { st, pkt, v, now } = r;
  const q = quotedPacket(pkt, v);
  if (!q) {
    st.stats.ctInvalid++;
    return done('accept', 'invalid');
  }
  const found = st.ct.primary(keyOf(q.it), now);
  if (!found) {
    st.stats.ctInvalid++;
    return done('accept', 'invalid');
  }
  const e = found.entry;
  st.stats.ctRelated++;
  const to = icmpErrorTarget(q.it, e);
  if (!to || tupleEq(q.it, to)) return done('accept', 'related', { entry: e });
  icmpErrorRewrite(pkt, v, r.t, q, to);
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
