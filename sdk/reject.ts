/**
 * The reply a `reject` sends: the exact bytes, the same as the C code in
 * codegen/include/tsbpf/reject.h writes into the packet (test/codegen checks
 * that TS and kernel agree byte for byte).
 *
 * Rules (docs/codegen.md has the rationale):
 * - No reply (the packet is only dropped) when: there is no Ethernet or no
 *   valid IPv4/IPv6 header; the Ethernet destination is multicast/broadcast;
 *   the IP destination is multicast (224.0.0.0/4, ff00::/8) or 255.255.255.255;
 *   the packet is a non-first fragment; it is TCP with RST set; it is an ICMP
 *   error (ICMP types 3, 4, 5, 11, 12) or an ICMPv6 error (type < 128).
 * - TCP (header present): a RST (RFC 793 "Reset Generation"). If the segment
 *   had ACK: seq = its ack, flags RST. Otherwise seq = 0, ack = its seq + its
 *   length (payload + 1 for SYN + 1 for FIN), flags RST|ACK. Payload length is
 *   taken from the IP header's length field (so Ethernet padding does not
 *   count), clamped at 0. Window 0, data offset 5, no options.
 * - Anything else: ICMP destination unreachable / port unreachable (type 3
 *   code 3), or ICMPv6 destination unreachable / port unreachable (type 1
 *   code 4), quoting the original from its IP header on, at most 128 bytes.
 * - Layer 2 is the original's (VLAN tags included) with the MACs swapped.
 *   IPv4 header: 20 bytes, TOS 0, id 0, DF, TTL 64. IPv6 header: traffic
 *   class 0, flow label 0, hop limit 64. Addresses swapped; ports swapped.
 */
import { internetChecksum, ipv4PseudoHeaderSum, ipv6PseudoHeaderSum, onesSum } from './checksum.js';
import { parsePacket, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type PacketView } from './parse.js';

/** Bytes of the original (from its IP header on) an ICMP/ICMPv6 error quotes, at most. */
export const REJECT_QUOTE_MAX = 128;
export const REJECT_TTL = 64;

export type RejectKind = 'tcp-rst' | 'icmp-port-unreachable' | 'icmpv6-port-unreachable';

export interface RejectReply {
  kind: RejectKind;
  /** The whole reply frame. */
  data: Buffer;
}

/** Why no reply is sent, or undefined when one is. */
export function rejectSuppressed(v: PacketView): string | undefined {
  if (!v.eth) return 'no Ethernet header';
  if (!v.ipv4 && !v.ipv6) return 'no IPv4 or IPv6 header';
  if (Math.floor(v.eth.dst / 2 ** 40) & 1) return 'Ethernet destination is multicast or broadcast';
  if (v.ipv4 && (v.ipv4.dst >>> 28 === 0xe || v.ipv4.dst === 0xffffffff)) return 'IPv4 destination is multicast or broadcast';
  if (v.ipv6 && v.ipv6.dst >> 120n === 0xffn) return 'IPv6 destination is multicast';
  if (v.fragment && v.fragment.offset !== 0) return 'non-first fragment';
  if (v.tcp && v.tcp.flags & TCP_RST) return 'TCP segment with RST';
  if (v.icmp && [3, 4, 5, 11, 12].includes(v.icmp.type)) return 'ICMP error message';
  if (v.icmpv6 && v.icmpv6.type < 128) return 'ICMPv6 error message';
  return undefined;
}

/** The reply `reject` sends for `frame`, or undefined when it only drops. */
export function rejectReply(frame: Uint8Array, view: PacketView = parsePacket(frame)): RejectReply | undefined {
  const v = view;
  if (rejectSuppressed(v) !== undefined) return undefined;
  const l3 = v.l3Offset!;
  const l2 = Buffer.from(frame.subarray(0, l3));
  // Swap the MACs; VLAN tags and the type stay.
  Buffer.from(frame.subarray(6, 12)).copy(l2, 0);
  Buffer.from(frame.subarray(0, 6)).copy(l2, 6);
  const src = Buffer.from(frame.subarray(l3 + (v.ipv4 ? 12 : 8), l3 + (v.ipv4 ? 16 : 24)));
  const dst = Buffer.from(frame.subarray(l3 + (v.ipv4 ? 16 : 24), l3 + (v.ipv4 ? 20 : 40)));

  let l4: Buffer;
  let proto: number;
  let kind: RejectKind;
  if (v.tcp) {
    const t = v.tcp;
    l4 = Buffer.alloc(20);
    l4.writeUInt16BE(t.dport, 0);
    l4.writeUInt16BE(t.sport, 2);
    if (t.flags & TCP_ACK) {
      l4.writeUInt32BE(t.ack, 4);
      l4[13] = TCP_RST;
    } else {
      const hdrs = v.ipv4 ? v.ipv4.ihl * 4 : v.l4Offset! - l3 - 40;
      const ipLen = v.ipv4 ? v.ipv4.totalLength : v.ipv6!.payloadLength;
      const payload = Math.max(0, ipLen - hdrs - t.doff * 4);
      const segLen = payload + (t.flags & TCP_SYN ? 1 : 0) + (t.flags & TCP_FIN ? 1 : 0);
      l4.writeUInt32BE((t.seq + segLen) >>> 0, 8);
      l4[13] = TCP_RST | TCP_ACK;
    }
    l4[12] = 5 << 4;
    proto = 6;
    kind = 'tcp-rst';
  } else {
    const quote = frame.subarray(l3, l3 + Math.min(frame.length - l3, REJECT_QUOTE_MAX));
    l4 = Buffer.alloc(8 + quote.length);
    l4[0] = v.ipv4 ? 3 : 1;
    l4[1] = v.ipv4 ? 3 : 4;
    Buffer.from(quote).copy(l4, 8);
    proto = v.ipv4 ? 1 : 58;
    kind = v.ipv4 ? 'icmp-port-unreachable' : 'icmpv6-port-unreachable';
  }

  let l3hdr: Buffer;
  if (v.ipv4) {
    l3hdr = Buffer.alloc(20);
    l3hdr[0] = 0x45;
    l3hdr.writeUInt16BE(20 + l4.length, 2);
    l3hdr.writeUInt16BE(0x4000, 6);
    l3hdr[8] = REJECT_TTL;
    l3hdr[9] = proto;
    dst.copy(l3hdr, 12);
    src.copy(l3hdr, 16);
    l3hdr.writeUInt16BE(internetChecksum(l3hdr), 10);
  } else {
    l3hdr = Buffer.alloc(40);
    l3hdr[0] = 0x60;
    l3hdr.writeUInt16BE(l4.length, 4);
    l3hdr[6] = proto;
    l3hdr[7] = REJECT_TTL;
    dst.copy(l3hdr, 8);
    src.copy(l3hdr, 24);
  }
  // L4 checksum: TCP and ICMPv6 over a pseudo-header, ICMPv4 without one.
  const pseudo = v.ipv4
    ? proto === 1 ? 0 : ipv4PseudoHeaderSum(dst, src, proto, l4.length)
    : ipv6PseudoHeaderSum(dst, src, proto, l4.length);
  const csum = ~onesSum(l4, pseudo) & 0xffff;
  l4.writeUInt16BE(csum, proto === 6 ? 16 : 2);
  return { kind, data: Buffer.concat([l2, l3hdr, l4]) };
}
