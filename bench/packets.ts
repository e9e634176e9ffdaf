/**
 * Frames of the benchmark's test traffic exactly as they arrive at the
 * router's client-facing interface (rc0), for contenders that measure their
 * per-packet cost with BPF_PROG_TEST_RUN: a small UDP datagram (the UDP rate
 * test) and a TCP ACK (the bulk of the TCP test), client -> server.
 */
import type { BenchTopology } from './topology.js';

/** UDP payload bytes of the small-packet test (iperf3 -l). */
export const UDP_PAYLOAD = 18;

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

function ipv4Bytes(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

/** RFC 1071 ones' complement sum, folded. */
function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length % 2) sum += b[b.length - 1]! << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function frame(topo: BenchTopology, proto: 6 | 17, l4: Buffer): Buffer {
  const eth = Buffer.concat([macBytes(topo.router.toClient.mac), macBytes(topo.client.mac), Buffer.from([0x08, 0x00])]);
  const src = ipv4Bytes(topo.client.ipv4);
  const dst = ipv4Bytes(topo.server.ipv4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = proto;
  src.copy(ip, 12);
  dst.copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  const pseudo = Buffer.concat([src, dst, Buffer.from([0, proto, l4.length >> 8, l4.length & 255])]);
  const csumAt = proto === 6 ? 16 : 6;
  const c = checksum(pseudo, l4);
  l4.writeUInt16BE(proto === 17 && c === 0 ? 0xffff : c, csumAt);
  return Buffer.concat([eth, ip, l4]);
}

/** A UDP datagram client:40000 -> server:iperfPort with an 18-byte payload. */
export function udpTestFrame(topo: BenchTopology): Buffer {
  const udp = Buffer.alloc(8 + UDP_PAYLOAD);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(topo.iperfPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  return frame(topo, 17, udp);
}

/** A TCP ACK client:40000 -> server:iperfPort without payload. */
export function tcpTestFrame(topo: BenchTopology): Buffer {
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(topo.iperfPort, 2);
  tcp.writeUInt32BE(1, 4);
  tcp.writeUInt32BE(1, 8);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10; // ACK
  tcp.writeUInt16BE(65535, 14);
  return frame(topo, 6, tcp);
}
