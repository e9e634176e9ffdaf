/**
 * The packet parser that defines what every match sees. Its twin in C is
 * codegen/include/tsbpf/parse.h; the two must agree byte for byte on every
 * input, truncated and malformed ones included (test/codegen/parse.test.ts
 * runs both on the same crafted packets).
 *
 * Rules of the walk (docs/semantics.md repeats them):
 * - len is the whole frame length.
 * - Ethernet needs 14 bytes; without it nothing but `len` is present.
 * - Up to 2 VLAN tags (TPID 0x8100 or 0x88a8), each needing its 4 bytes;
 *   a truncated tag ends the walk (no L3). `ethertype` is the type after the tags.
 * - IPv4: ethertype 0x0800, >= 20 bytes, version 4, ihl >= 5, ihl*4 bytes present.
 * - IPv6: ethertype 0x86dd, 40 bytes, version 6; then at most 6 extension headers
 *   (0 hop-by-hop, 43 routing, 44 fragment, 60 destination options, 51 AH), each
 *   fully present. `proto` is the next-header value where the walk stopped: the
 *   upper-layer protocol, or an extension header that was truncated or the 7th.
 * - L4 only when fully present and not a non-first fragment: TCP 20 bytes, UDP 8,
 *   SCTP 12, ICMP 4 (IPv4 proto 1), ICMPv6 4 (IPv6 next header 58).
 * - Any absent layer makes matches on its fields false.
 */

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_AH = 51;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;
export const IPPROTO_SCTP = 132;

/** Bounds shared with parse.h. */
export const MAX_VLAN_TAGS = 2;
export const MAX_IPV6_EXT_HEADERS = 6;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export interface EthView {
  /** 48-bit MAC as a number (fits exactly in a double). */
  dst: number;
  src: number;
  /** The type field of the Ethernet header itself (0x8100 when tagged). */
  type: number;
}

export interface VlanView {
  /** The TPID that introduced this tag (0x8100 or 0x88a8). */
  tpid: number;
  pcp: number;
  dei: number;
  /** 12-bit VLAN id. */
  id: number;
}

export interface Ipv4View {
  /** ihl in 32-bit words (>= 5). */
  ihl: number;
  dscp: number;
  ecn: number;
  totalLength: number;
  id: number;
  df: boolean;
  mf: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset: number;
  ttl: number;
  proto: number;
  checksum: number;
  /** Address as an unsigned 32-bit number (a.b.c.d = a<<24 | ...). */
  src: number;
  dst: number;
}

export interface Ipv6View {
  dscp: number;
  ecn: number;
  flowLabel: number;
  payloadLength: number;
  /** Next header of the fixed header (before any extension header). */
  nextHeader: number;
  hopLimit: number;
  /** Address as an unsigned 128-bit bigint. */
  src: bigint;
  dst: bigint;
  /** Number of extension headers walked (0..6). */
  extHeaders: number;
}

export interface FragmentView {
  /** Offset in 8-byte units; != 0 means a non-first fragment (no L4). */
  offset: number;
  more: boolean;
  /** IPv4 id or IPv6 fragment identification. */
  id: number;
}

export interface TcpView {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  /** Data offset in 32-bit words (as in the header, not validated). */
  doff: number;
  /** The 8 flag bits (CWR ECE URG ACK PSH RST SYN FIN). */
  flags: number;
  window: number;
  checksum: number;
  urgent: number;
}

export interface UdpView {
  sport: number;
  dport: number;
  length: number;
  checksum: number;
}

export interface SctpView {
  sport: number;
  dport: number;
  vtag: number;
  checksum: number;
}

export interface IcmpView {
  type: number;
  code: number;
  checksum: number;
}

export interface PacketView {
  /** The whole frame length in bytes. */
  len: number;
  eth?: EthView;
  /** 0..2 tags, outer first. */
  vlan: VlanView[];
  /** The type after the VLAN tags (absent without Ethernet or with a truncated tag). */
  ethertype?: number;
  ipv4?: Ipv4View;
  ipv6?: Ipv6View;
  /** The upper-layer protocol: IPv4 proto, or the IPv6 next header where the walk stopped. */
  proto?: number;
  fragment?: FragmentView;
  tcp?: TcpView;
  udp?: UdpView;
  sctp?: SctpView;
  icmp?: IcmpView;
  icmpv6?: IcmpView;
  /** Byte offset of the L3 header (after Ethernet and VLAN tags), when ethertype is known. */
  l3Offset?: number;
  /** Byte offset of the L4 header, when an IP header is present. */
  l4Offset?: number;
}

/** Parse a frame. Never throws: whatever cannot be parsed is absent. */
export function parsePacket(data: Uint8Array): PacketView {
  const len = data.length;
  const v: PacketView = { len, vlan: [] };
  if (len < 14) return v;
  const u8 = (o: number) => data[o]!;
  const u16 = (o: number) => (data[o]! << 8) | data[o + 1]!;
  const u32 = (o: number) => ((data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!) >>> 0;
  const mac = (o: number) => u16(o) * 2 ** 32 + u32(o + 2);

  const ethType = u16(12);
  v.eth = { dst: mac(0), src: mac(6), type: ethType };
  let type = ethType;
  let off = 14;
  for (let i = 0; i < MAX_VLAN_TAGS; i++) {
    if (type !== ETH_P_8021Q && type !== ETH_P_8021AD) break;
    if (off + 4 > len) return v; // truncated tag: the walk ends here
    const tci = u16(off);
    v.vlan.push({ tpid: type, pcp: tci >> 13, dei: (tci >> 12) & 1, id: tci & 0xfff });
    type = u16(off + 2);
    off += 4;
  }
  v.ethertype = type;
  v.l3Offset = off;

  let proto: number;
  let nonFirstFragment = false;
  if (type === ETH_P_IP) {
    if (off + 20 > len) return v;
    const vihl = u8(off);
    const ihl = vihl & 0xf;
    if (vihl >> 4 !== 4 || ihl < 5 || off + ihl * 4 > len) return v;
    const tos = u8(off + 1);
    const fragField = u16(off + 6);
    const ip: Ipv4View = {
      ihl,
      dscp: tos >> 2,
      ecn: tos & 3,
      totalLength: u16(off + 2),
      id: u16(off + 4),
      df: (fragField & 0x4000) !== 0,
      mf: (fragField & 0x2000) !== 0,
      fragOffset: fragField & 0x1fff,
      ttl: u8(off + 8),
      proto: u8(off + 9),
      checksum: u16(off + 10),
      src: u32(off + 12),
      dst: u32(off + 16),
    };
    v.ipv4 = ip;
    proto = ip.proto;
    if (ip.mf || ip.fragOffset !== 0) v.fragment = { offset: ip.fragOffset, more: ip.mf, id: ip.id };
    nonFirstFragment = ip.fragOffset !== 0;
    off += ihl * 4;
  } else if (type === ETH_P_IPV6) {
    if (off + 40 > len) return v;
    const w0 = u32(off);
    if (w0 >>> 28 !== 6) return v;
    const tc = (w0 >>> 20) & 0xff;
    const ip: Ipv6View = {
      dscp: tc >> 2,
      ecn: tc & 3,
      flowLabel: w0 & 0xfffff,
      payloadLength: u16(off + 4),
      nextHeader: u8(off + 6),
      hopLimit: u8(off + 7),
      src: bigAt(data, off + 8),
      dst: bigAt(data, off + 24),
      extHeaders: 0,
    };
    v.ipv6 = ip;
    proto = ip.nextHeader;
    off += 40;
    let stopped = false; // true when the walk ended on an unusable extension header
    for (let i = 0; i <= MAX_IPV6_EXT_HEADERS; i++) {
      if (!isIpv6Ext(proto)) break;
      if (i === MAX_IPV6_EXT_HEADERS || off + 8 > len) { stopped = true; break; }
      // Every extension header is at least 8 bytes; its length depends on its kind.
      const extLen = proto === IPPROTO_FRAGMENT ? 8 : proto === IPPROTO_AH ? (u8(off + 1) + 2) * 4 : (u8(off + 1) + 1) * 8;
      if (off + extLen > len) { stopped = true; break; }
      if (proto === IPPROTO_FRAGMENT) {
        const fo = u16(off + 2);
        const frag: FragmentView = { offset: fo >> 3, more: (fo & 1) !== 0, id: u32(off + 4) };
        v.fragment = frag;
        if (frag.offset !== 0) nonFirstFragment = true;
      }
      proto = u8(off);
      off += extLen;
      ip.extHeaders++;
    }
    v.proto = proto;
    if (stopped) return v;
  } else {
    return v;
  }
  v.proto = proto;
  v.l4Offset = off;
  if (nonFirstFragment) return v;

  const rest = len - off;
  if (proto === IPPROTO_TCP) {
    if (rest >= 20) {
      v.tcp = {
        sport: u16(off),
        dport: u16(off + 2),
        seq: u32(off + 4),
        ack: u32(off + 8),
        doff: u8(off + 12) >> 4,
        flags: u8(off + 13),
        window: u16(off + 14),
        checksum: u16(off + 16),
        urgent: u16(off + 18),
      };
    }
  } else if (proto === IPPROTO_UDP) {
    if (rest >= 8) v.udp = { sport: u16(off), dport: u16(off + 2), length: u16(off + 4), checksum: u16(off + 6) };
  } else if (proto === IPPROTO_SCTP) {
    if (rest >= 12) v.sctp = { sport: u16(off), dport: u16(off + 2), vtag: u32(off + 4), checksum: u32(off + 8) };
  } else if (proto === IPPROTO_ICMP && v.ipv4) {
    if (rest >= 4) v.icmp = { type: u8(off), code: u8(off + 1), checksum: u16(off + 2) };
  } else if (proto === IPPROTO_ICMPV6 && v.ipv6) {
    if (rest >= 4) v.icmpv6 = { type: u8(off), code: u8(off + 1), checksum: u16(off + 2) };
  }
  return v;
}

export function isIpv6Ext(nh: number): boolean {
  return nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_FRAGMENT || nh === IPPROTO_DSTOPTS || nh === IPPROTO_AH;
}

/** The source and destination ports of the packet's L4 header, when it has ports. */
export function ports(v: PacketView): { sport: number; dport: number } | undefined {
  return v.tcp ?? v.udp ?? v.sctp;
}

function bigAt(data: Uint8Array, o: number): bigint {
  let x = 0n;
  for (let i = 0; i < 16; i++) x = (x << 8n) | BigInt(data[o + i]!);
  return x;
}

export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, '0');
  return hex.match(/../g)!.join(':');
}

export function formatIpv4(a: number): string {
  return [a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff].join('.');
}

/** RFC 5952 text form (longest run of zero groups compressed). */
export function formatIpv6(a: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((a >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
