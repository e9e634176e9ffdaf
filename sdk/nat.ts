/**
 * NAT: the rule model (snat, masquerade, dnat), and packet rewriting exactly
 * as codegen/include/tsbpf/nat.h does it, checksums included.
 *
 * Checksum arithmetic is the kernel helpers' (bpf_l3_csum_replace,
 * bpf_l4_csum_replace on an skb without checksum offload, as in a test run):
 * the new checksum is the v in [0, 0xfffe] with v = ~(~C + ~old + new) in
 * one's complement. UDP (BPF_F_MARK_MANGLED_0): a zero checksum (none) is
 * left alone, a computed zero is written as 0xffff.
 *
 * Fragments: only packets with an L4 header (first fragments and whole
 * packets) are translated; non-first fragments pass unchanged (docs/stateful.md).
 */
import { parseCidr } from './addr.js';
import { ICMP_ECHO_REP, ICMP_ECHO_REQ, wordsEq, wordsOfBig, type Tuple, type Words } from './ct.js';
import { TsbpfError } from './errors.js';
import type { PacketView } from './parse.js';

export type NatKind = 'snat' | 'masquerade' | 'dnat';
export const NAT_KIND_CODE: Record<NatKind, number> = { snat: 1, masquerade: 2, dnat: 3 };

/**
 * A NAT rule of a services program. Rules are tried in order; the first that
 * matches a new connection applies (SNAT and masquerade at egress, DNAT at
 * ingress), once per connection.
 */
export interface NatRuleDef {
  kind: NatKind;
  /** Optional name for messages and listings. */
  name?: string;
  family: 4 | 6;
  /** IP protocol number (6, 17, 1, 58); undefined: any. */
  proto?: number;
  /** SNAT/masquerade: the egress interface; DNAT: the ingress interface (resolved at attach); undefined: any. */
  ifname?: string;
  /** Source CIDR the connection must come from (canonical text; default: any). */
  src?: string;
  /** Destination CIDR (the address before DNAT, after it for SNAT). */
  dst?: string;
  /** Destination ports [min, max] the connection must have (default: any). */
  dport?: [number, number];
  /** Translated address range [first, last] (only the last 32-bit word may differ); absent for masquerade. */
  to?: [string, string];
  /** Translated port range [min, max]: SNAT source ports (default: keep the port when free, else 1024-65535), DNAT destination port. */
  toPort?: [number, number];
}

// ---------------------------------------------------------------------------
// Checksums (kernel-exact)

/** ~(~c + sum(~old) + sum(new)) in one's complement, in [0, 0xfffe]. */
export function csumReplace(c: number, oldWords: readonly number[], newWords: readonly number[]): number {
  let s = 0xffff + (~c & 0xffff);
  for (const o of oldWords) s += ~o & 0xffff;
  for (const n of newWords) s += n & 0xffff;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** 16-bit halves of 32-bit words, most significant first. */
export function halves(words: readonly number[]): number[] {
  const out: number[] = [];
  for (const w of words) out.push((w >>> 16) & 0xffff, w & 0xffff);
  return out;
}

/** bpf_l4_csum_replace semantics (mangled: UDP's zero rule). */
function l4Replace(pkt: Buffer, at: number, oldWords: number[], newWords: number[], mangled: boolean): void {
  const c = pkt.readUInt16BE(at);
  if (mangled && c === 0) return;
  let r = csumReplace(c, oldWords, newWords);
  if (mangled && r === 0) r = 0xffff;
  pkt.writeUInt16BE(r, at);
}

function csumField(v: PacketView): number {
  if (v.tcp) return 16;
  if (v.udp) return 6;
  if (v.icmp || v.icmpv6) return 2;
  return 0;
}

function writeWords(pkt: Buffer, at: number, w: readonly number[], n: number): void {
  for (let i = 0; i < n; i++) pkt.writeUInt32BE(w[i]! >>> 0, at + 4 * i);
}

/** Twin of tsbpf_nat_addr: rewrite the source (dst false) or destination address. */
export function natAddr(pkt: Buffer, v: PacketView, dst: boolean, old: Words, neu: Words): void {
  if (wordsEq(old, neu)) return;
  const l3 = v.l3Offset!;
  const l4 = v.l4Offset!;
  const cf = csumField(v);
  const mangled = !!v.udp;
  if (v.ipv4) {
    if (cf && !v.icmp) l4Replace(pkt, l4 + cf, halves([old[0]]), halves([neu[0]]), mangled);
    pkt.writeUInt16BE(csumReplace(pkt.readUInt16BE(l3 + 10), halves([old[0]]), halves([neu[0]])), l3 + 10);
    writeWords(pkt, l3 + (dst ? 16 : 12), neu, 1);
    return;
  }
  if (cf) l4Replace(pkt, l4 + cf, halves(old), halves(neu), mangled);
  writeWords(pkt, l3 + (dst ? 24 : 8), neu, 4);
}

/** Twin of tsbpf_nat_port: a port, or the ICMP echo id. */
export function natPort(pkt: Buffer, v: PacketView, dst: boolean, icmpId: boolean, old: number, neu: number): void {
  if (old === neu) return;
  const l4 = v.l4Offset!;
  const cf = csumField(v);
  if (!cf) throw new TsbpfError('INTERNAL', 'port rewrite of a packet without an L4 checksum');
  l4Replace(pkt, l4 + cf, [old], [neu], !!v.udp);
  pkt.writeUInt16BE(neu, l4 + (icmpId ? 4 : dst ? 2 : 0));
}

/** Turn the packet whose tuple is `from` into `to` (twin of tsbpf_nat_rewrite). */
export function natRewrite(pkt: Buffer, v: PacketView, from: Tuple, to: Tuple): void {
  natAddr(pkt, v, false, from.src, to.src);
  natAddr(pkt, v, true, from.dst, to.dst);
  if (from.icmp === ICMP_ECHO_REQ) return natPort(pkt, v, false, true, from.sport, to.sport);
  if (from.icmp === ICMP_ECHO_REP) return natPort(pkt, v, true, true, from.dport, to.dport);
  natPort(pkt, v, false, false, from.sport, to.sport);
  natPort(pkt, v, true, false, from.dport, to.dport);
}

// ---------------------------------------------------------------------------
// Rules as the datapath holds them

/** struct tsbpf_nat_rule, as numbers. */
export interface NatRuleRecord {
  kind: number;
  family: number;
  proto: number;
  ifindex: number;
  src_net: Words;
  src_mask: Words;
  dst_net: Words;
  dst_mask: Words;
  dport_min: number;
  dport_max: number;
  port_min: number;
  port_max: number;
  to_min: Words;
  to_max: Words;
}

function netMask(cidr: string | undefined, family: 4 | 6, what: string): { net: Words; mask: Words } {
  if (cidr === undefined) return { net: [0, 0, 0, 0], mask: [0, 0, 0, 0] };
  const c = parseCidr(cidr);
  if ('error' in c) throw new TsbpfError('INVALID_ARGUMENT', `${what}: ${c.error}`);
  if (c.family !== family) throw new TsbpfError('INVALID_ARGUMENT', `${what}: '${cidr}' is not an IPv${family} CIDR`);
  if (c.family === 4) {
    const mask = c.len === 0 ? 0 : (0xffffffff << (32 - c.len)) >>> 0;
    return { net: [c.addr >>> 0, 0, 0, 0], mask: [mask, 0, 0, 0] };
  }
  const m = c.len === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - c.len)) - 1n);
  return { net: wordsOfBig(c.addr), mask: wordsOfBig(m) };
}

function addrOf(text: string, family: 4 | 6, what: string): Words {
  const c = parseCidr(text);
  if ('error' in c || c.len !== (family === 4 ? 32 : 128) || c.family !== family) throw new TsbpfError('INVALID_ARGUMENT', `${what}: '${text}' is not an IPv${family} address`);
  return c.family === 4 ? [c.addr >>> 0, 0, 0, 0] : wordsOfBig(c.addr);
}

/** The record of a rule, with its interface resolved to `ifindex` (0: any). */
export function natRuleRecord(r: NatRuleDef, ifindex = 0): NatRuleRecord {
  const what = `${r.kind} rule${r.name ? ` '${r.name}'` : ''}`;
  const src = netMask(r.src, r.family, what);
  const dst = netMask(r.dst, r.family, what);
  let toMin: Words = [0, 0, 0, 0];
  let toMax: Words = [0, 0, 0, 0];
  if (r.to) {
    toMin = addrOf(r.to[0], r.family, what);
    toMax = addrOf(r.to[1], r.family, what);
    const w = r.family === 4 ? 0 : 3;
    const differs = [0, 1, 2, 3].some((i) => i !== w && toMin[i] !== toMax[i]);
    if (differs || toMax[w]! < toMin[w]!) {
      throw new TsbpfError('INVALID_ARGUMENT', `${what}: address range ${r.to[0]}-${r.to[1]} must be ascending and differ only in the last 32 bits`);
    }
  } else if (r.kind !== 'masquerade') {
    throw new TsbpfError('INVALID_ARGUMENT', `${what}: needs a translated address ('to')`);
  }
  const ports = (p: [number, number] | undefined, name: string): [number, number] => {
    if (!p) return [0, 0];
    if (!Number.isInteger(p[0]) || !Number.isInteger(p[1]) || p[0] < 1 || p[1] > 65535 || p[0] > p[1]) {
      throw new TsbpfError('INVALID_ARGUMENT', `${what}: ${name} ${p[0]}-${p[1]} is not a port range within 1-65535`);
    }
    return p;
  };
  const dport = ports(r.dport, 'dport');
  const toPort = ports(r.toPort, 'toPort');
  return {
    kind: NAT_KIND_CODE[r.kind],
    family: r.family,
    proto: r.proto ?? 0,
    ifindex,
    src_net: src.net,
    src_mask: src.mask,
    dst_net: dst.net,
    dst_mask: dst.mask,
    dport_min: dport[0],
    dport_max: dport[1],
    port_min: toPort[0],
    port_max: toPort[1],
    to_min: toMin,
    to_max: toMax,
  };
}

function inNet(a: readonly number[], net: readonly number[], mask: readonly number[]): boolean {
  for (let i = 0; i < 4; i++) if (((a[i]! & mask[i]!) >>> 0) !== net[i]) return false;
  return true;
}

/** Index of the first rule of one of `kinds` matching tuple x on ifindex (twin of tsbpf_nat_match), or -1. */
export function natMatch(rules: readonly NatRuleRecord[], x: Tuple, ifindex: number, kinds: readonly number[]): number {
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (!kinds.includes(r.kind)) continue;
    if (r.family !== x.family || (r.proto && r.proto !== x.proto) || (r.ifindex && r.ifindex !== ifindex)) continue;
    if (!inNet(x.src, r.src_net, r.src_mask) || !inNet(x.dst, r.dst_net, r.dst_mask)) continue;
    if ((r.dport_min || r.dport_max) && (x.dport < r.dport_min || x.dport > r.dport_max)) continue;
    return i;
  }
  return -1;
}

/** Twin of tsbpf_nat_pick_addr: the range spans the last word (word 0 of IPv4, word 3 of IPv6). */
export function pickAddr(r: NatRuleRecord, hash: number): Words {
  const w = r.family === 4 ? 0 : 3;
  const out: Words = [r.to_min[0], r.to_min[1], r.to_min[2], r.to_min[3]];
  const span = (r.to_max[w]! - r.to_min[w]! + 1) >>> 0;
  if (span) out[w] = (r.to_min[w]! + ((hash >>> 0) % span)) >>> 0;
  return out;
}
