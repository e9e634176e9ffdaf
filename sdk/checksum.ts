/**
 * Checksums used by the packet formats tsbpf builds and rewrites:
 * - the Internet checksum (RFC 1071) of IPv4, TCP, UDP, ICMP and ICMPv6,
 *   with the IPv4 and IPv6 pseudo-headers (RFC 793/768, RFC 8200 section 8.1);
 * - incremental update after a field changes (RFC 1624, equation 3);
 * - CRC32c (Castagnoli), the SCTP checksum (RFC 9260 appendix A).
 *
 * Sums are kept as plain numbers; `onesSum` returns the folded 16-bit
 * one's-complement sum (not complemented) so sums of several parts can be
 * added with `addSums` before the final complement.
 */

/** One's-complement sum of 16-bit big-endian words, folded to 16 bits, not complemented. An odd last byte is padded with zero. */
export function onesSum(data: Uint8Array, initial = 0): number {
  let sum = initial;
  const n = data.length;
  const even = n & ~1;
  for (let i = 0; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (n & 1) sum += data[n - 1]! << 8;
  return foldSum(sum);
}

/** Folds carries out of the low 16 bits until none are left. */
export function foldSum(sum: number): number {
  // Folding a (< 2^53) sum twice is not always enough for huge values, so loop.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** One's-complement addition of already folded sums. */
export function addSums(...sums: number[]): number {
  let s = 0;
  for (const x of sums) s += x;
  return foldSum(s);
}

/**
 * The Internet checksum of the concatenation of `parts` (RFC 1071): the
 * complement of the one's-complement sum. Parts after the first must start
 * on an even offset of the whole, which holds for every header tsbpf sums.
 */
export function internetChecksum(...parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) sum = onesSum(p, sum);
  return ~sum & 0xffff;
}

/** True when data (checksum field included) sums to 0xffff, i.e. its Internet checksum verifies. */
export function verifyInternetChecksum(data: Uint8Array, initial = 0): boolean {
  return onesSum(data, initial) === 0xffff;
}

/** Sum of the IPv4 pseudo-header: source, destination, zero, protocol, upper-layer length. */
export function ipv4PseudoHeaderSum(src: Uint8Array, dst: Uint8Array, proto: number, length: number): number {
  if (src.length !== 4 || dst.length !== 4) throw new RangeError('IPv4 pseudo-header needs 4-byte addresses');
  let s = onesSum(src);
  s = onesSum(dst, s);
  return foldSum(s + (proto & 0xff) + (length & 0xffff));
}

/** Sum of the IPv6 pseudo-header: source, destination, 32-bit upper-layer length, next header. */
export function ipv6PseudoHeaderSum(src: Uint8Array, dst: Uint8Array, nextHeader: number, length: number): number {
  if (src.length !== 16 || dst.length !== 16) throw new RangeError('IPv6 pseudo-header needs 16-byte addresses');
  let s = onesSum(src);
  s = onesSum(dst, s);
  // The length is 32 bits wide here (jumbograms); add both halves.
  return foldSum(s + Math.floor(length / 0x10000) + (length & 0xffff) + (nextHeader & 0xff));
}

/**
 * RFC 1624 equation 3: the new checksum after one 16-bit word of the covered
 * data changes from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 * Unlike equation 2 it never yields 0xffff for a sum that should be 0x0000.
 */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  const s = foldSum((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
  return ~s & 0xffff;
}

/** As `updateChecksum16` for a 32-bit field (an IPv4 address, a TCP sequence number). */
export function updateChecksum32(checksum: number, oldValue: number, newValue: number): number {
  const c = updateChecksum16(checksum, (oldValue >>> 16) & 0xffff, (newValue >>> 16) & 0xffff);
  return updateChecksum16(c, oldValue & 0xffff, newValue & 0xffff);
}

/** As `updateChecksum16` for a changed byte range (e.g. an IPv6 address); both ranges must have the same even alignment and length. */
export function updateChecksumBytes(checksum: number, oldBytes: Uint8Array, newBytes: Uint8Array): number {
  if (oldBytes.length !== newBytes.length) throw new RangeError('old and new bytes differ in length');
  // ~HC + ~sum(old) + sum(new), complemented.
  const s = foldSum((~checksum & 0xffff) + (~onesSum(oldBytes) & 0xffff) + onesSum(newBytes));
  return ~s & 0xffff;
}

const CRC32C_POLY_REFLECTED = 0x82f63b78;
let crcTable: Uint32Array | undefined;

function crc32cTable(): Uint32Array {
  if (crcTable) return crcTable;
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY_REFLECTED : c >>> 1;
    t[i] = c >>> 0;
  }
  crcTable = t;
  return t;
}

/**
 * CRC32c (Castagnoli; reflected, init and final xor 0xffffffff). Pass the
 * previous result as `crc` to continue over a further chunk.
 * crc32c('123456789') === 0xe3069283.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const t = crc32cTable();
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The SCTP checksum of a whole SCTP packet (common header + chunks), with
 * its checksum field (bytes 8..11) taken as zero. SCTP stores the value
 * little-endian in the header (RFC 9260 appendix A), so write it with
 * `writeUInt32LE`.
 */
export function sctpChecksum(sctp: Uint8Array): number {
  if (sctp.length < 12) throw new RangeError('an SCTP packet needs its 12-byte common header');
  let c = crc32c(sctp.subarray(0, 8));
  c = crc32c(new Uint8Array(4), c);
  return crc32c(sctp.subarray(12), c);
}
