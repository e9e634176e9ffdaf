/**
 * The typed packet a function program sees. A header is `undefined` when the
 * packet does not have it whole (the parsing rules are those of
 * sdk/parse.ts), so TypeScript makes you check before you read:
 *
 *   if (!pkt.ipv4 || !pkt.tcp) return XDP_PASS;
 *   if (pkt.tcp.dport === 22) ...
 *
 * Fields without `readonly` can be assigned; the checksums that cover them
 * are fixed up (IPv4 header, TCP/UDP with the pseudo-header, ICMP).
 * Addresses are numbers in host order (IPv4: a.b.c.d = a << 24 | b << 16 | ...;
 * write `ip4('10.0.0.1')` for a constant).
 */
import type { u8, u16, u32, u64 } from './int.js';

export interface EthHeader {
  /** Destination MAC as a 48-bit number (write `mac('aa:bb:...')` for a constant). */
  dst: number;
  src: number;
  /** The type field of the Ethernet header itself (0x8100 when the frame is tagged). */
  readonly type: u16;
}

export interface VlanTag {
  /** 12-bit VLAN id (written in the frame's outer tag; at TC in skb metadata when the kernel holds the tag there). */
  id: u16;
  /** Priority code point (3 bits). */
  pcp: u8;
  /** Drop eligible indicator (1 bit). */
  dei: u8;
  /** 0x8100 or 0x88a8. */
  readonly tpid: u16;
}

export interface Ipv4Header {
  readonly ihl: u8;
  dscp: u8;
  ecn: u8;
  readonly totalLength: u16;
  id: u16;
  readonly df: boolean;
  readonly mf: boolean;
  readonly fragOffset: u16;
  ttl: u8;
  readonly proto: u8;
  readonly checksum: u16;
  src: u32;
  dst: u32;
}

/** An IPv6 address as its high and low 64 bits. */
export interface Ipv6Address {
  readonly hi: u64;
  readonly lo: u64;
}

export interface Ipv6Header {
  dscp: u8;
  ecn: u8;
  /** 20 bits. */
  flowLabel: u32;
  readonly payloadLength: u16;
  /** Next header of the fixed header; `pkt.proto` is the one after the extension headers. */
  readonly nextHeader: u8;
  hopLimit: u8;
  readonly extHeaders: u8;
  /** Writing an address fixes the TCP, UDP or ICMPv6 checksum (the pseudo-header holds it). */
  src: Ipv6Address;
  dst: Ipv6Address;
}

export interface Fragment {
  /** Offset in 8-byte units; non-zero means a later fragment (it has no L4 header). */
  readonly offset: u16;
  readonly more: boolean;
  readonly id: u32;
}

export interface TcpHeader {
  sport: u16;
  dport: u16;
  seq: u32;
  ack: u32;
  readonly doff: u8;
  /** TCP_FIN | TCP_SYN | ... */
  flags: u8;
  window: u16;
  readonly checksum: u16;
  urgent: u16;
  readonly isSyn: boolean;
  readonly isAck: boolean;
  readonly isFin: boolean;
  readonly isRst: boolean;
}

export interface UdpHeader {
  sport: u16;
  dport: u16;
  readonly length: u16;
  /** 0 when the sender gave none; writes keep it 0 then. */
  readonly checksum: u16;
}

export interface SctpHeader {
  readonly sport: u16;
  readonly dport: u16;
  readonly vtag: u32;
  readonly checksum: u32;
}

export interface IcmpHeader {
  type: u8;
  code: u8;
  readonly checksum: u16;
}

/** What every hook sees. */
export interface Packet {
  /** Frame length in bytes. */
  readonly len: u32;
  /** The interface the program runs on. */
  readonly ifindex: u32;
  readonly eth: EthHeader | undefined;
  /** The outer VLAN tag. */
  readonly vlan: VlanTag | undefined;
  readonly vlanCount: u8;
  /** The type after the VLAN tags (0 when unknown). */
  readonly ethertype: u16;
  readonly ipv4: Ipv4Header | undefined;
  readonly ipv6: Ipv6Header | undefined;
  /** IPv4 protocol or IPv6 final next header (0 without IP). */
  readonly proto: u8;
  readonly fragment: Fragment | undefined;
  readonly tcp: TcpHeader | undefined;
  readonly udp: UdpHeader | undefined;
  readonly sctp: SctpHeader | undefined;
  readonly icmp: IcmpHeader | undefined;
  readonly icmpv6: IcmpHeader | undefined;
}

export type XdpPacket = Packet;

/** At TC the packet also has a mark (skb->mark). */
export interface TcPacket extends Packet {
  mark: u32;
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_SCTP = 132;
