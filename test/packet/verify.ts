/**
 * An independent checker for built frames, written from the RFCs and kept
 * apart from sdk/checksum.ts on purpose (different arithmetic, pseudo-headers
 * laid out as bytes, a bit-at-a-time CRC32c), so a shared mistake cannot make
 * the builder and its test agree on a wrong checksum.
 *
 * checkFrame() walks Ethernet, VLAN tags, IPv4/IPv6 (+ extension headers) and
 * the L4 header, and lists every length or checksum that does not hold.
 */

/** RFC 1071: 16-bit one's-complement sum, then complemented; 0 when data verifies. */
export function rfc1071(data: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < data.length; i += 2) {
    const hi = data[i]!;
    const lo = i + 1 < data.length ? data[i + 1]! : 0;
    sum += hi * 256 + lo;
  }
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return 0xffff - sum;
}

/** CRC32c one bit at a time (RFC 3720 appendix B.4 parameters). */
export function crc32cBitwise(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pseudo4(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  // RFC 793 section 3.1: src(4) dst(4) zero(1) proto(1) length(2)
  return Uint8Array.from([...src, ...dst, 0, proto, len >> 8, len & 0xff]);
}

function pseudo6(src: Uint8Array, dst: Uint8Array, next: number, len: number): Uint8Array {
  // RFC 8200 section 8.1: src(16) dst(16) length(4) zero(3) next header(1)
  return Uint8Array.from([...src, ...dst, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff, 0, 0, 0, next]);
}

export interface FrameCheck {
  problems: string[];
  /** Headers found, outermost first. */
  layers: string[];
}

export function checkFrame(frame: Uint8Array): FrameCheck {
  const problems: string[] = [];
  const layers: string[] = [];
  const u16 = (o: number) => frame[o]! * 256 + frame[o + 1]!;
  if (frame.length < 14) return { problems: ['shorter than Ethernet'], layers };
  layers.push('eth');
  let off = 12;
  let type = u16(off);
  off += 2;
  while (type === 0x8100 || type === 0x88a8) {
    layers.push('vlan');
    type = u16(off + 2);
    off += 4;
  }
  let proto: number;
  let l4Len: number;
  let pseudo: (p: number, len: number) => Uint8Array;
  if (type === 0x0800) {
    layers.push('ipv4');
    const ihl = (frame[off]! & 0x0f) * 4;
    if (frame[off]! >> 4 !== 4) problems.push('ipv4 version');
    if (rfc1071(frame.subarray(off, off + ihl)) !== 0) problems.push('ipv4 header checksum');
    const total = u16(off + 2);
    if (total !== frame.length - off) problems.push(`ipv4 total length ${total} != ${frame.length - off}`);
    proto = frame[off + 9]!;
    const src = frame.slice(off + 12, off + 16);
    const dst = frame.slice(off + 16, off + 20);
    const fragOffset = u16(off + 6) & 0x1fff;
    off += ihl;
    l4Len = frame.length - off;
    pseudo = (p, len) => pseudo4(src, dst, p, len);
    if (fragOffset !== 0) return { problems, layers };
  } else if (type === 0x86dd) {
    layers.push('ipv6');
    if (frame[off]! >> 4 !== 6) problems.push('ipv6 version');
    const plen = u16(off + 4);
    if (plen !== frame.length - off - 40) problems.push(`ipv6 payload length ${plen} != ${frame.length - off - 40}`);
    const src = frame.slice(off + 8, off + 24);
    const dst = frame.slice(off + 24, off + 40);
    let next = frame[off + 6]!;
    off += 40;
    for (;;) {
      if (next === 0 || next === 43 || next === 60) {
        layers.push(next === 0 ? 'hop-by-hop' : next === 43 ? 'routing' : 'dest-opts');
        const len = (frame[off + 1]! + 1) * 8;
        next = frame[off]!;
        off += len;
      } else if (next === 44) {
        layers.push('fragment');
        const fo = u16(off + 2) >> 3;
        next = frame[off]!;
        off += 8;
        if (fo !== 0) return { problems, layers };
      } else if (next === 51) {
        layers.push('ah');
        const len = (frame[off + 1]! + 2) * 4;
        next = frame[off]!;
        off += len;
      } else break;
    }
    proto = next;
    l4Len = frame.length - off;
    pseudo = (p, len) => pseudo6(src, dst, p, len);
  } else {
    return { problems, layers };
  }
  const seg = frame.subarray(off);
  const withPseudo = (p: number) => Uint8Array.from([...pseudo(p, l4Len), ...seg]);
  switch (proto) {
    case 6:
      layers.push('tcp');
      if (rfc1071(withPseudo(6)) !== 0) problems.push('tcp checksum');
      break;
    case 17: {
      layers.push('udp');
      if (u16(off + 4) !== l4Len) problems.push(`udp length ${u16(off + 4)} != ${l4Len}`);
      if (u16(off + 6) !== 0 && rfc1071(withPseudo(17)) !== 0) problems.push('udp checksum');
      break;
    }
    case 1:
      layers.push('icmp');
      if (rfc1071(seg) !== 0) problems.push('icmp checksum');
      break;
    case 58:
      layers.push('icmpv6');
      if (rfc1071(withPseudo(58)) !== 0) problems.push('icmpv6 checksum');
      break;
    case 132: {
      layers.push('sctp');
      const copy = Uint8Array.from(seg);
      const stored = copy[8]! | (copy[9]! << 8) | (copy[10]! << 16) | (copy[11]! * 0x1000000);
      copy.fill(0, 8, 12);
      if (crc32cBitwise(copy) !== stored >>> 0) problems.push('sctp checksum');
      break;
    }
  }
  return { problems, layers };
}
