/**
 * The packet fields a function program can read and write, described once
 * as data. The JS packet view (view.ts) and the C lowering (codegen/fn) both
 * read this table, so a field means the same bytes, the same presence rule
 * and the same checksum fix-ups in Node and in the kernel.
 *
 * Reads come from the parsed view (sdk/parse.ts in JS, struct tsbpf_pkt of
 * codegen/include/tsbpf/parse.h in C). A write replaces `width` bits at
 * `shift` of a big-endian region of `bytes` bytes at `region` from the
 * header's start, then fixes the checksums that cover the region, one
 * replace per region (RFC 1624 with the kernel's csum_replace rounding, see
 * csum.ts). Fields that decide how the packet parses (lengths, versions,
 * protocol numbers, ethertypes) are read-only: changing them would make the
 * parsed view stale.
 */

export type HeaderName = 'eth' | 'vlan' | 'ipv4' | 'ipv6' | 'fragment' | 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6';

/** Value kinds of fields: fixed-width numbers, booleans, a 48-bit MAC as a number, IPv6 addresses. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'bool' | 'mac' | 'ipv6';

/** Checksums a write can have to fix. */
export type ChecksumKind =
  /** The IPv4 header checksum (l3 + 10). */
  | 'ip4'
  /** The checksum of the L4 header the field lives in (TCP l4+16, UDP l4+6, ICMP/ICMPv6 l4+2). */
  | 'l4'
  /** The TCP or UDP checksum, for a field of the IPv4 pseudo-header (when TCP or UDP is present). */
  | 'l4pseudo'
  /** The TCP, UDP or ICMPv6 checksum, for a field of the IPv6 pseudo-header (the addresses). */
  | 'l4pseudo6';

export interface FieldWrite {
  /** Where the header starts: the frame, the L3 header or the L4 header. */
  base: 'eth' | 'l3' | 'l4';
  /** Byte offset of the region from the header's start (even). */
  region: number;
  /** 16: an IPv6 address, written as four 4-byte regions (one checksum update each). */
  bytes: 2 | 4 | 6 | 16;
  /** Bit position of the field's least significant bit within the region (big-endian). */
  shift: number;
  width: number;
  csum: readonly ChecksumKind[];
}

export interface FieldSpec {
  header: HeaderName;
  name: string;
  type: FieldType;
  /** Largest value (the smallest is 0); for 'bool' 1. */
  max: number;
  /** C expression reading it from `struct tsbpf_pkt p` (host order). */
  c: string;
  /** The name of the field in sdk/parse.ts's view of the header, when it differs or is derived. */
  parseName?: string;
  /** For derived booleans: the bit of `flags` (TCP) it stands for. */
  flagBit?: number;
  write?: FieldWrite;
  /** C lvalue in `p` updated after a write. */
  cStore?: string;
  doc: string;
}

const w = (base: FieldWrite['base'], region: number, bytes: FieldWrite['bytes'], shift: number, width: number, csum: readonly ChecksumKind[]): FieldWrite => ({
  base,
  region,
  bytes,
  shift,
  width,
  csum,
});

const F = (header: HeaderName, name: string, type: FieldType, c: string, doc: string, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  header,
  name,
  type,
  max: type === 'u8' ? 0xff : type === 'u16' ? 0xffff : type === 'u32' ? 0xffffffff : type === 'bool' ? 1 : type === 'mac' ? 2 ** 48 - 1 : 0,
  c,
  doc,
  ...extra,
});

export const FIELDS: readonly FieldSpec[] = [
  F('eth', 'dst', 'mac', 'p.eth_dst', 'destination MAC as a 48-bit number', { write: w('eth', 0, 6, 0, 48, []), cStore: 'p.eth_dst' }),
  F('eth', 'src', 'mac', 'p.eth_src', 'source MAC as a 48-bit number', { write: w('eth', 6, 6, 0, 48, []), cStore: 'p.eth_src' }),
  F('eth', 'type', 'u16', 'p.eth_type', 'the type field of the Ethernet header itself (0x8100 when tagged)'),

  // The outer tag's TCI: bytes 14..15 of the frame (at TC it may be in skb metadata instead: fn_vlan_write).
  F('vlan', 'id', 'u16', '(p.vlan_tci[0] & 0xfff)', 'the outer tag\'s 12-bit VLAN id', { max: 0xfff, write: w('eth', 14, 2, 0, 12, []) }),
  F('vlan', 'pcp', 'u8', '(p.vlan_tci[0] >> 13)', 'priority code point (3 bits)', { max: 7, write: w('eth', 14, 2, 13, 3, []) }),
  F('vlan', 'dei', 'u8', '((p.vlan_tci[0] >> 12) & 1)', 'drop eligible indicator (1 bit)', { max: 1, write: w('eth', 14, 2, 12, 1, []) }),
  F('vlan', 'tpid', 'u16', 'p.vlan_tpid[0]', 'the TPID that introduced the outer tag (0x8100 or 0x88a8)'),

  F('ipv4', 'ihl', 'u8', 'p.ip4_ihl', 'header length in 32-bit words', { max: 15 }),
  F('ipv4', 'dscp', 'u8', 'p.ip_dscp', 'DSCP (6 bits)', { max: 63, write: w('l3', 0, 2, 2, 6, ['ip4']), cStore: 'p.ip_dscp' }),
  F('ipv4', 'ecn', 'u8', 'p.ip_ecn', 'ECN (2 bits)', { max: 3, write: w('l3', 0, 2, 0, 2, ['ip4']), cStore: 'p.ip_ecn' }),
  F('ipv4', 'totalLength', 'u16', 'p.ip_len', 'total length from the header'),
  F('ipv4', 'id', 'u16', 'p.ip_id', 'identification', { write: w('l3', 4, 2, 0, 16, ['ip4']), cStore: 'p.ip_id' }),
  F('ipv4', 'df', 'bool', '((p.ip4_flags >> 1) & 1)', "don't fragment"),
  F('ipv4', 'mf', 'bool', '(p.ip4_flags & 1)', 'more fragments'),
  F('ipv4', 'fragOffset', 'u16', 'p.frag_off', 'fragment offset in 8-byte units', { max: 0x1fff }),
  F('ipv4', 'ttl', 'u8', 'p.ip_ttl', 'time to live', { write: w('l3', 8, 2, 8, 8, ['ip4']), cStore: 'p.ip_ttl' }),
  F('ipv4', 'proto', 'u8', 'p.proto', 'protocol'),
  F('ipv4', 'checksum', 'u16', 'p.ip4_csum', 'header checksum (kept right by writes)'),
  F('ipv4', 'src', 'u32', 'p.ip4_src', 'source address as a u32 (a.b.c.d = a << 24 | ...)', { write: w('l3', 12, 4, 0, 32, ['ip4', 'l4pseudo']), cStore: 'p.ip4_src' }),
  F('ipv4', 'dst', 'u32', 'p.ip4_dst', 'destination address as a u32', { write: w('l3', 16, 4, 0, 32, ['ip4', 'l4pseudo']), cStore: 'p.ip4_dst' }),

  F('ipv6', 'dscp', 'u8', 'p.ip_dscp', 'DSCP of the traffic class (6 bits)', { max: 63, write: w('l3', 0, 4, 22, 6, []), cStore: 'p.ip_dscp' }),
  F('ipv6', 'ecn', 'u8', 'p.ip_ecn', 'ECN of the traffic class (2 bits)', { max: 3, write: w('l3', 0, 4, 20, 2, []), cStore: 'p.ip_ecn' }),
  F('ipv6', 'flowLabel', 'u32', 'p.ip6_flow', 'flow label (20 bits)', { max: 0xfffff, write: w('l3', 0, 4, 0, 20, []), cStore: 'p.ip6_flow' }),
  F('ipv6', 'payloadLength', 'u16', 'p.ip_len', 'payload length from the header'),
  F('ipv6', 'nextHeader', 'u8', 'p.ip6_nexthdr', 'next header of the fixed header'),
  F('ipv6', 'hopLimit', 'u8', 'p.ip_ttl', 'hop limit', { write: w('l3', 6, 2, 0, 8, []), cStore: 'p.ip_ttl' }),
  F('ipv6', 'extHeaders', 'u8', 'p.ip6_ext', 'extension headers walked (0..6)', { max: 6 }),
  F('ipv6', 'src', 'ipv6', 'p.ip6_src', 'source address ({ hi, lo } as two u64)', { write: w('l3', 8, 16, 0, 128, ['l4pseudo6']), cStore: 'p.ip6_src' }),
  F('ipv6', 'dst', 'ipv6', 'p.ip6_dst', 'destination address ({ hi, lo } as two u64)', { write: w('l3', 24, 16, 0, 128, ['l4pseudo6']), cStore: 'p.ip6_dst' }),

  F('fragment', 'offset', 'u16', 'p.frag_off', 'fragment offset in 8-byte units (non-zero: no L4 header here)', { max: 0x1fff }),
  F('fragment', 'more', 'bool', 'p.frag_more', 'more fragments follow'),
  F('fragment', 'id', 'u32', 'p.frag_id', 'IPv4 identification or IPv6 fragment identification'),

  F('tcp', 'sport', 'u16', 'p.sport', 'source port', { write: w('l4', 0, 2, 0, 16, ['l4']), cStore: 'p.sport' }),
  F('tcp', 'dport', 'u16', 'p.dport', 'destination port', { write: w('l4', 2, 2, 0, 16, ['l4']), cStore: 'p.dport' }),
  F('tcp', 'seq', 'u32', 'p.tcp_seq', 'sequence number', { write: w('l4', 4, 4, 0, 32, ['l4']), cStore: 'p.tcp_seq' }),
  F('tcp', 'ack', 'u32', 'p.tcp_ack', 'acknowledgment number', { write: w('l4', 8, 4, 0, 32, ['l4']), cStore: 'p.tcp_ack' }),
  F('tcp', 'doff', 'u8', 'p.tcp_doff', 'data offset in 32-bit words', { max: 15 }),
  F('tcp', 'flags', 'u8', 'p.tcp_flags', 'the 8 flag bits (TCP_FIN .. TCP_CWR)', { write: w('l4', 12, 2, 0, 8, ['l4']), cStore: 'p.tcp_flags' }),
  F('tcp', 'window', 'u16', 'p.tcp_window', 'window', { write: w('l4', 14, 2, 0, 16, ['l4']), cStore: 'p.tcp_window' }),
  F('tcp', 'checksum', 'u16', 'p.l4_csum', 'checksum (kept right by writes)'),
  F('tcp', 'urgent', 'u16', 'p.tcp_urg', 'urgent pointer', { write: w('l4', 18, 2, 0, 16, ['l4']), cStore: 'p.tcp_urg' }),
  F('tcp', 'isSyn', 'bool', '((p.tcp_flags & 0x02) != 0)', 'SYN is set', { flagBit: 0x02 }),
  F('tcp', 'isAck', 'bool', '((p.tcp_flags & 0x10) != 0)', 'ACK is set', { flagBit: 0x10 }),
  F('tcp', 'isFin', 'bool', '((p.tcp_flags & 0x01) != 0)', 'FIN is set', { flagBit: 0x01 }),
  F('tcp', 'isRst', 'bool', '((p.tcp_flags & 0x04) != 0)', 'RST is set', { flagBit: 0x04 }),

  F('udp', 'sport', 'u16', 'p.sport', 'source port', { write: w('l4', 0, 2, 0, 16, ['l4']), cStore: 'p.sport' }),
  F('udp', 'dport', 'u16', 'p.dport', 'destination port', { write: w('l4', 2, 2, 0, 16, ['l4']), cStore: 'p.dport' }),
  F('udp', 'length', 'u16', 'p.udp_len', 'length from the header'),
  F('udp', 'checksum', 'u16', 'p.l4_csum', 'checksum, 0 when the sender gave none (kept right by writes)'),

  F('sctp', 'sport', 'u16', 'p.sport', 'source port'),
  F('sctp', 'dport', 'u16', 'p.dport', 'destination port'),
  F('sctp', 'vtag', 'u32', 'p.sctp_vtag', 'verification tag'),
  F('sctp', 'checksum', 'u32', 'p.sctp_csum', 'CRC32c checksum'),

  F('icmp', 'type', 'u8', 'p.icmp_type', 'ICMP type', { write: w('l4', 0, 2, 8, 8, ['l4']), cStore: 'p.icmp_type' }),
  F('icmp', 'code', 'u8', 'p.icmp_code', 'ICMP code', { write: w('l4', 0, 2, 0, 8, ['l4']), cStore: 'p.icmp_code' }),
  F('icmp', 'checksum', 'u16', 'p.l4_csum', 'checksum (kept right by writes)'),

  F('icmpv6', 'type', 'u8', 'p.icmp_type', 'ICMPv6 type', { write: w('l4', 0, 2, 8, 8, ['l4']), cStore: 'p.icmp_type' }),
  F('icmpv6', 'code', 'u8', 'p.icmp_code', 'ICMPv6 code', { write: w('l4', 0, 2, 0, 8, ['l4']), cStore: 'p.icmp_code' }),
  F('icmpv6', 'checksum', 'u16', 'p.l4_csum', 'checksum (kept right by writes)'),
];

/** How each header's presence is tested in C (a struct tsbpf_pkt `p`). */
export const HEADER_PRESENT_C: Readonly<Record<HeaderName, string>> = {
  eth: '(p.present & TSBPF_HAS_ETH)',
  vlan: '(p.nvlan > 0)',
  ipv4: '(p.present & TSBPF_HAS_IPV4)',
  ipv6: '(p.present & TSBPF_HAS_IPV6)',
  fragment: '(p.present & TSBPF_HAS_FRAG)',
  tcp: '(p.present & TSBPF_HAS_TCP)',
  udp: '(p.present & TSBPF_HAS_UDP)',
  sctp: '(p.present & TSBPF_HAS_SCTP)',
  icmp: '(p.present & TSBPF_HAS_ICMP)',
  icmpv6: '(p.present & TSBPF_HAS_ICMPV6)',
};

export const HEADER_NAMES: readonly HeaderName[] = ['eth', 'vlan', 'ipv4', 'ipv6', 'fragment', 'tcp', 'udp', 'sctp', 'icmp', 'icmpv6'];

/** Packet-level fields (not in a header). `mark` exists at TC only. */
export interface PacketFieldSpec {
  name: string;
  type: 'u8' | 'u16' | 'u32';
  max: number;
  c: string;
  writable: boolean;
  tcOnly: boolean;
  doc: string;
}

export const PACKET_FIELDS: readonly PacketFieldSpec[] = [
  { name: 'len', type: 'u32', max: 0xffffffff, c: 'p.len', writable: false, tcOnly: false, doc: 'frame length in bytes' },
  { name: 'ethertype', type: 'u16', max: 0xffff, c: 'p.ethertype', writable: false, tcOnly: false, doc: 'the type after the VLAN tags; 0 when unknown' },
  { name: 'proto', type: 'u8', max: 0xff, c: 'p.proto', writable: false, tcOnly: false, doc: 'IPv4 protocol or IPv6 final next header; 0 without IP' },
  { name: 'vlanCount', type: 'u8', max: 2, c: 'p.nvlan', writable: false, tcOnly: false, doc: 'VLAN tags (0..2)' },
  { name: 'ifindex', type: 'u32', max: 0xffffffff, c: 'FN_IFINDEX', writable: false, tcOnly: false, doc: 'the interface the program runs on' },
  { name: 'mark', type: 'u32', max: 0xffffffff, c: 'FN_SKB->mark', writable: true, tcOnly: true, doc: 'the packet mark (skb->mark)' },
];

export function fieldSpec(header: HeaderName, name: string): FieldSpec | undefined {
  return FIELDS.find((f) => f.header === header && f.name === name);
}

/** Where the checksum of an L4 header lives and whether 0 means "none" (UDP). */
export const L4_CSUM: Readonly<Partial<Record<HeaderName, { offset: number; mangledZero: boolean }>>> = {
  tcp: { offset: 16, mangledZero: false },
  udp: { offset: 6, mangledZero: true },
  icmp: { offset: 2, mangledZero: false },
  icmpv6: { offset: 2, mangledZero: false },
};
