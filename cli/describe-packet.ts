/** One line that says what a packet is, from the parser the evaluator uses. */
import { formatIpv4, formatIpv6, parsePacket } from '../sdk/parse.js';

export function describePacket(data: Buffer): string {
  const v = parsePacket(data);
  const parts: string[] = [`${v.len} bytes`];
  if (!v.eth) return `${parts[0]}, too short for Ethernet`;
  if (v.vlan.length) parts.push(`vlan ${v.vlan.map((t) => t.id).join('/')}`);
  const src = v.ipv4 ? formatIpv4(v.ipv4.src) : v.ipv6 ? formatIpv6(v.ipv6.src) : undefined;
  const dst = v.ipv4 ? formatIpv4(v.ipv4.dst) : v.ipv6 ? formatIpv6(v.ipv6.dst) : undefined;
  if (!src) {
    parts.push(`ethertype 0x${(v.ethertype ?? v.eth.type).toString(16).padStart(4, '0')}`);
    return parts.join(', ');
  }
  const l4 = v.tcp ?? v.udp ?? v.sctp;
  const name = v.tcp ? 'tcp' : v.udp ? 'udp' : v.sctp ? 'sctp' : v.icmp ? 'icmp' : v.icmpv6 ? 'icmp6' : `proto ${v.proto}`;
  parts.push(l4 ? `${name} ${src}:${l4.sport} -> ${dst}:${l4.dport}` : `${name} ${src} -> ${dst}`);
  if (v.icmp ?? v.icmpv6) parts.push(`type ${(v.icmp ?? v.icmpv6)!.type} code ${(v.icmp ?? v.icmpv6)!.code}`);
  if (v.fragment) parts.push(`fragment offset ${v.fragment.offset}${v.fragment.more ? ' (more)' : ''}`);
  return parts.join(', ');
}
