/**
 * Conntrack and NAT of rule filters: the TS twin of
 * codegen/include/tsbpf/ctfilter.h, used by evaluate() for filters whose
 * definition has `conntrack`. The connection table, states, keys, timeouts
 * and rewrites are those of the services program (sdk/ct.ts, sdk/nat.ts).
 *
 *   ctPre()    before the rules: the packet's ct state; a reply of a tracked
 *              connection is translated back and accepted right here.
 *   ctNeed()   after an accept: whether the ct program runs.
 *   ctCommit() the ct program: a new connection's entry (with the deciding
 *              rule's NAT), the mark, the SNAT decision at the first egress,
 *              and the packet's translation.
 */
import {
  aliasEntry,
  CT_PRIMARY,
  CT_STATE,
  CTF,
  ConntrackTable,
  connPosition,
  copyTuple,
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
  type CtEntry,
  type CtKey,
  type Tuple,
  type Words,
} from './ct.js';
import type { ConntrackDef, CtState } from './model.js';
import { icmpErrorRewrite, icmpErrorTarget, quotedPacket } from './icmperr.js';
import { natRewrite, pickAddr, type NatRuleRecord } from './nat.js';
import { TCP_ACK, TCP_RST, TCP_SYN, type PacketView } from './parse.js';

/** Names of the tsbpf_fct_stats slots, by index (TSBPF_FCT_ST_*). */
export const FCT_STATS = ['new', 'reply', 'translated', 'icmpTranslated', 'dropNatExhausted', 'dropClash', 'dropError', 'noIfaddr'] as const;
export type FctStat = (typeof FCT_STATS)[number];

/** A `nat-exhausted` event (tsbpf_fct_events). */
export interface FctEvent {
  kind: 'nat-exhausted';
  ifindex: number;
  /** Id of the rule whose SNAT/masquerade ran out of ports. */
  ruleId: number;
  tuple: Tuple;
}

/** Ports tried before a range counts as exhausted (TSBPF_NAT_PROBES). */
const NAT_PROBES = 32;

/** A filter's conntrack state in TS: the table, counters, events, masquerade addresses. */
export class FilterConntrack {
  readonly ct = new ConntrackTable();
  readonly stats: Record<FctStat, number> = Object.fromEntries(FCT_STATS.map((s) => [s, 0])) as Record<FctStat, number>;
  readonly events: FctEvent[] = [];
  /** Masquerade addresses by ifindex (the runtime writes tsbpf_nat_ifaddr at attach). */
  readonly ifaddrs = new Map<number, { v4?: number; v6?: Words }>();
  readonly timeouts: number[];
  /** A TCP connection may start with a non-SYN packet (ConntrackDef.tcpLoose). */
  readonly tcpLoose: boolean;

  constructor(
    def: ConntrackDef,
    /** Hash seed (the loaded filter's `conntrackSeed`). */
    public seed = 0,
  ) {
    this.timeouts = timeoutsArray(def.timeouts ?? {});
    this.tcpLoose = def.tcpLoose === true;
  }
}

/** tsbpf_fct_initial_state: strict unless tcpLoose (only a SYN opens a TCP connection). */
function openingState(fc: FilterConntrack, v: PacketView): number {
  const st = initialState(v);
  return st === CT_STATE['tcp-established'] && !fc.tcpLoose ? CT_STATE.none : st;
}

/** The NAT action of the rule that accepted (tsbpf_fct.nr). */
export interface NatChoice {
  kind: 1 | 2 | 3;
  family: 0 | 4 | 6;
  lo: Words;
  hi: Words;
  pmin: number;
  pmax: number;
  ruleId: number;
}

/** What the ct step before the rules found (struct tsbpf_fct). */
export interface CtPacket {
  kind: 'untracked' | 'conn' | 'error';
  state: CtState;
  /** The packet's tuple (an ICMP error: its outer addresses). */
  t?: Tuple;
  found: boolean;
  /** The connection's primary key (found). */
  key?: CtKey;
  dir: number;
  stage: number;
  mark: number;
  markSet: boolean;
  flags: number;
  nat?: NatChoice;
  /** Set when the packet was decided before the rules (a reply): the verdict. */
  done?: 'accept' | 'drop';
}

export interface CtRun {
  fc: FilterConntrack;
  pkt: Buffer;
  v: PacketView;
  /** HOOK_INGRESS or HOOK_EGRESS. */
  hook: number;
  ifindex: number;
  now: bigint;
}

function apply(r: CtRun, from: Tuple, to: Tuple): 'accept' {
  if (tupleEq(from, to)) return 'accept';
  natRewrite(r.pkt, r.v, from, to);
  r.fc.stats.translated++;
  return 'accept';
}

/** Before the rules (tsbpf_fct_pre). */
export function ctPre(r: CtRun): CtPacket {
  const { fc, pkt, v, hook, now } = r;
  const out: CtPacket = { kind: 'untracked', state: 'untracked', found: false, dir: 0, stage: 0, mark: 0, markSet: false, flags: 0 };
  const pt = packetTuple(pkt, v);
  if (!pt) return out;
  const t = pt.t;
  out.t = t;
  if (pt.kind === 'error') {
    out.kind = 'error';
    out.state = 'invalid';
    const q = quotedPacket(pkt, v);
    if (!q) return out;
    const found = fc.ct.primary(keyOf(q.it), now);
    if (!found) return out;
    out.state = 'related';
    out.found = true;
    out.key = found.key;
    out.mark = found.entry.mark;
    out.flags = found.entry.flags;
    return out;
  }
  out.kind = 'conn';
  const found = fc.ct.primary(keyOf(t), now);
  if (found) {
    const e = found.entry;
    const pos = connPosition(t, e);
    const dir = pos?.dir ?? -1;
    const stage = pos?.stage ?? 0;
    let live = pos !== undefined;
    if (live && dir === 0 && v.tcp && (v.tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && (e.state === CT_STATE['tcp-close'] || e.state === CT_STATE['tcp-time-wait'])) {
      live = false;
    }
    if (live) {
      const invalid = !!v.tcp && tcpFlagsInvalid(v.tcp.flags);
      ctUpdate(e, v, fc.timeouts, dir, hook, now);
      out.found = true;
      out.key = found.key;
      out.dir = dir;
      out.stage = stage;
      out.mark = e.mark;
      out.flags = e.flags;
      if (invalid) {
        out.state = 'invalid';
        return out;
      }
      if (dir === 0) {
        out.state = e.flags & CTF.SEEN_REPLY ? 'established' : 'new';
        return out;
      }
      out.state = 'established';
      fc.stats.reply++;
      if (stage !== 2) {
        const to = reverseTuple(e.o);
        to.icmp = t.icmp;
        apply(r, t, to);
      }
      out.done = 'accept';
      return out;
    }
  }
  out.state = openingState(fc, v) === CT_STATE.none ? 'invalid' : 'new';
  return out;
}

/** Whether an accepted packet goes to the ct program (tsbpf_fct_need); `snat`: some rule of the filter SNATs. */
export function ctNeed(c: CtPacket, hook: number, snat: boolean): boolean {
  if (c.state === 'invalid' || c.state === 'untracked') return false;
  if (c.kind === 'error') return hook === HOOK_INGRESS && (c.flags & (CTF.DNAT | CTF.SNAT)) !== 0;
  if (!c.found || c.markSet || c.nat || c.flags & (CTF.DNAT | CTF.SNAT)) return true;
  return snat && hook === HOOK_EGRESS && !(c.flags & CTF.SNAT_DONE);
}

/** Reserve a source port for x (x.src set) by inserting its alias (tsbpf_nat_alloc); mutates x.sport. */
function natAlloc(ct: ConntrackTable, x: Tuple, pkey: CtKey, pmin: number, pmax: number, prefer: number, hash: number, now: bigint): boolean {
  const range = (pmax - pmin + 1) >>> 0;
  const start = prefer >= pmin && prefer <= pmax ? prefer - pmin : (hash >>> 0) % range;
  const tries = Math.min(range, NAT_PROBES);
  for (let i = 0; i < tries; i++) {
    x.sport = (pmin + ((start + i) % (range || 1))) & 0xffff;
    const k = keyOf(x);
    if (ct.insert(k, aliasEntry(pkey, x, now))) return true;
    if (ct.keyFree(k, now, pkey)) {
      ct.set(k, aliasEntry(pkey, x, now));
      return true;
    }
  }
  return false;
}

function natRecord(n: NatChoice): NatRuleRecord {
  return { to_min: n.lo, to_max: n.hi, family: n.family } as unknown as NatRuleRecord;
}

/** tsbpf_fct_snat: 0 nothing to do, 1 x translated, -1 no free port. */
function snat(r: CtRun, c: CtPacket, x: Tuple, pkey: CtKey, hash: number): number {
  const n = c.nat;
  if (!n || (n.kind !== 1 && n.kind !== 2)) return 0;
  const to = copyTuple(x);
  if (n.kind === 2) {
    const ia = r.fc.ifaddrs.get(r.ifindex);
    if (!ia || (x.family === 4 ? ia.v4 === undefined : ia.v6 === undefined)) {
      r.fc.stats.noIfaddr++;
      return 0;
    }
    to.src = x.family === 4 ? [ia.v4! >>> 0, 0, 0, 0] : ([...ia.v6!] as Words);
  } else {
    if (n.family !== x.family) return 0;
    to.src = pickAddr(natRecord(n), hash);
  }
  let pmin = n.pmin;
  let pmax = n.pmax;
  if (pmin === 0 && pmax === 0) {
    pmin = x.icmp ? 0 : 1024;
    pmax = 65535;
  }
  if (!natAlloc(r.fc.ct, to, pkey, pmin, pmax, x.sport, hash, r.now)) return -1;
  x.src = to.src;
  x.sport = to.sport;
  return 1;
}

function exhausted(r: CtRun, c: CtPacket): 'drop' {
  r.fc.stats.dropNatExhausted++;
  r.fc.events.push({ kind: 'nat-exhausted', ifindex: r.ifindex, ruleId: c.nat!.ruleId, tuple: copyTuple(c.t!) });
  return 'drop';
}

/** tsbpf_fct_forward: the original direction at this hook (DNAT at ingress, all NAT at egress). */
function forward(e: CtEntry, t: Tuple, hook: number): Tuple {
  const to = copyTuple(e.x);
  if (hook === HOOK_INGRESS) {
    to.src = [...t.src] as Words;
    to.sport = t.sport;
  }
  to.icmp = t.icmp;
  return to;
}

function fresh(r: CtRun, c: CtPacket): 'accept' | 'drop' {
  const { fc, v, hook, now } = r;
  const t = c.t!;
  const state = openingState(fc, v);
  if (state === CT_STATE.none) return 'accept';
  const hash = flowHash(t, fc.seed);
  const ent = ctInit(t, v, fc.timeouts, state, hook, now);
  ent.mark = c.mark;
  const key = keyOf(t);
  const n = c.nat;
  if (n && n.kind === 3 && n.family === t.family) {
    ent.x.dst = pickAddr(natRecord(n), hash);
    if (n.pmin || n.pmax) ent.x.dport = (n.pmin + (hash >>> 0) % (n.pmax - n.pmin + 1)) & 0xffff;
    if (!tupleEq(ent.x, t)) {
      ent.flags |= CTF.DNAT;
      ent.natRule = n.ruleId + 1;
    }
  }
  if (hook === HOOK_EGRESS) {
    const res = snat(r, c, ent.x, key, hash);
    if (res < 0) return exhausted(r, c);
    if (res > 0) {
      ent.flags |= CTF.SNAT;
      ent.natRule = n!.ruleId + 1;
    }
    ent.flags |= CTF.SNAT_DONE;
  }
  if (ent.flags & CTF.DNAT) {
    const pre: Tuple = { ...copyTuple(t), dst: [...ent.x.dst] as Words, dport: ent.x.dport };
    const k2 = keyOf(pre);
    if (!keyEq(k2, key)) {
      const alias = aliasEntry(key, t, now);
      if (!fc.ct.insert(k2, alias)) {
        if (fc.ct.keyFree(k2, now, key)) fc.ct.set(k2, alias);
        else {
          fc.stats.dropClash++;
          return 'drop';
        }
      }
    }
  }
  fc.ct.set(key, ent);
  fc.stats.new++;
  return apply(r, t, forward(ent, t, hook));
}

/** After the rules accepted and ctNeed() said so (tsbpf_fct_commit). Returns the verdict. */
export function ctCommit(r: CtRun, c: CtPacket): 'accept' | 'drop' {
  const { fc, hook } = r;
  if (c.kind === 'error') return hook === HOOK_INGRESS ? icmpError(r, c) : 'accept';
  if (c.kind !== 'conn') return 'accept';
  if (!c.found) return fresh(r, c);
  const e = fc.ct.get(c.key!);
  if (!e || e.role !== CT_PRIMARY) return 'accept';
  if (c.markSet) e.mark = c.mark;
  let stage = c.stage;
  const t = c.t!;
  if (hook === HOOK_EGRESS && c.dir === 0 && !(e.flags & CTF.SNAT_DONE)) {
    const x = copyTuple(e.x);
    const res = snat(r, c, x, c.key!, flowHash(e.o, fc.seed));
    if (res < 0) return exhausted(r, c);
    if (res > 0) {
      e.x.src = x.src;
      e.x.sport = x.sport;
      e.flags |= CTF.SNAT;
      e.natRule = c.nat!.ruleId + 1;
    }
    e.flags |= CTF.SNAT_DONE;
    if (stage === 2 && !tupleEq(t, e.x)) stage = 0;
  }
  if (c.dir !== 0 || stage === 2) return 'accept';
  if (stage === 1 && hook === HOOK_INGRESS) return 'accept';
  return apply(r, t, forward(e, t, hook));
}

// ---------------------------------------------------------------------------
// ICMP errors (tsbpf_fct_icmp_error; the rewrite is sdk/icmperr.ts)

function icmpError(r: CtRun, c: CtPacket): 'accept' {
  const { fc, pkt, v } = r;
  const q = quotedPacket(pkt, v);
  if (!q) return 'accept';
  const e = fc.ct.get(c.key!);
  if (!e || e.role !== CT_PRIMARY) return 'accept';
  const to = icmpErrorTarget(q.it, e);
  if (!to || tupleEq(q.it, to)) return 'accept';
  icmpErrorRewrite(pkt, v, c.t!, q, to);
  fc.stats.icmpTranslated++;
  return 'accept';
}

