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
  copyTuple,
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
  type CtEntry,
  type CtKey,
  type Tuple,
  type Words,
} from './ct.js';
import type { ConntrackDef, CtState } from './model.js';
import { csumReplace, halves, natAddr, natRewrite, pickAddr, type NatRuleRecord } from './nat.js';
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

/** tsbpf_fct_tuple: a connection packet, an ICMP error, or untracked. */
function packetTuple(pkt: Buffer, v: PacketView): { kind: 'conn' | 'error'; t: Tuple } | undefined {
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
    const q = quoted(pkt, v);
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
// ICMP errors (tsbpf_fct_icmp_error)

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

function icmpError(r: CtRun, c: CtPacket): 'accept' {
  const { fc, pkt, v } = r;
  const q = quoted(pkt, v);
  if (!q) return 'accept';
  const { it, ioff, il4 } = q;
  const e = fc.ct.get(c.key!);
  if (!e || e.role !== CT_PRIMARY) return 'accept';
  let to: Tuple;
  if (tupleEq(it, e.x)) to = copyTuple(e.o);
  else if (tupleRevEq(it, e.o)) to = reverseTuple(e.x);
  else return 'accept';
  to.icmp = it.icmp;
  if (tupleEq(it, to)) return 'accept';

  const v4 = !!v.ipv4;
  const len = v.len;
  let icmpc = pkt.readUInt16BE(v.l4Offset! + 2);
  let ipc = v4 ? pkt.readUInt16BE(ioff + 10) : 0;
  let l4cAt: number;
  let pseudo: boolean;
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
  const usePc = l4cAt !== 0 && !(keepZero && l4c0 === 0);
  const port = (at: number, old: number, neu: number) => {
    if (old === neu) return;
    if (usePc) l4c = csumReplace(l4c, [old], [neu]);
    icmpc = csumReplace(icmpc, [old], [neu]);
    pkt.writeUInt16BE(neu, at);
  };
  if (it.icmp) {
    const req = it.icmp === ICMP_ECHO_REQ;
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
  const outer = c.t!;
  const oto = copyTuple(outer);
  if (wordsEq(outer.dst, it.src)) oto.dst = [...to.src] as Words;
  if (wordsEq(outer.src, it.dst)) oto.src = [...to.dst] as Words;
  natAddr(pkt, v, false, outer.src, oto.src);
  natAddr(pkt, v, true, outer.dst, oto.dst);
  fc.stats.icmpTranslated++;
  return 'accept';
}

