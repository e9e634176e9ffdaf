/**
 * sdk/checksum.ts against published vectors: RFC 1071's worked sum, a real
 * IPv4 header, RFC 1624's incremental-update example (where equation 2 goes
 * wrong), and RFC 3720's CRC32c vectors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  addSums,
  crc32c,
  foldSum,
  internetChecksum,
  ipv4PseudoHeaderSum,
  ipv6PseudoHeaderSum,
  onesSum,
  sctpChecksum,
  updateChecksum16,
  updateChecksum32,
  updateChecksumBytes,
  verifyInternetChecksum,
} from '../../sdk/checksum.js';
import { crc32cBitwise, rfc1071 } from './verify.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('RFC 1071 section 3 example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2, checksum 220d', () => {
  const data = hex('0001 f203 f4f5 f6f7');
  assert.is(onesSum(data), 0xddf2);
  assert.is(internetChecksum(data), 0x220d);
});

test('a real IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) has checksum b861', () => {
  const header = hex('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7');
  assert.is(internetChecksum(header), 0xb861);
  header.writeUInt16BE(0xb861, 10);
  assert.ok(verifyInternetChecksum(header));
  header[8] = 63; // TTL changed without fixing the checksum
  assert.not.ok(verifyInternetChecksum(header));
});

test('odd lengths pad the last byte with zero', () => {
  assert.is(onesSum(hex('0102 03')), 0x0102 + 0x0300);
  assert.is(internetChecksum(hex('01')), ~0x0100 & 0xffff);
});

test('sums fold their carries and add in one\'s complement', () => {
  assert.is(foldSum(0x1ffff), 0x0001); // ffff + 1 = 1_0000 -> 0000 + 1
  assert.is(foldSum(0x2fffd), 0xffff);
  assert.is(addSums(0xffff, 0x0001), 0x0001);
  assert.is(internetChecksum(hex('0001 f203'), hex('f4f5 f6f7')), 0x220d);
});

test('RFC 1624 section 4: m 5555 -> 3285 in a header with checksum dd2f gives 0000 (not ffff)', () => {
  assert.is(updateChecksum16(0xdd2f, 0x5555, 0x3285), 0x0000);
});

test('incremental updates equal recomputing: a TTL decrement, an address rewrite, an IPv6 address', () => {
  const h = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
  const ttlProto = h.readUInt16BE(8);
  h[8] = 63;
  const c1 = updateChecksum16(0xb861, ttlProto, h.readUInt16BE(8));
  h.writeUInt16BE(0, 10);
  assert.is(c1, internetChecksum(h));
  h.writeUInt16BE(c1, 10);

  const oldDst = h.readUInt32BE(16);
  h.writeUInt32BE(0x0a000002, 16); // 10.0.0.2
  const c2 = updateChecksum32(c1, oldDst, 0x0a000002);
  h.writeUInt16BE(0, 10);
  assert.is(c2, internetChecksum(h));

  const body = Buffer.concat([hex('fd00 0000 0000 0000 0000 0000 0000 0001'), hex('1234 5678')]);
  const before = internetChecksum(body);
  const newAddr = hex('fd00 0000 0000 0000 0000 0000 0000 00ff');
  const after = updateChecksumBytes(before, body.subarray(0, 16), newAddr);
  newAddr.copy(body, 0);
  assert.is(after, internetChecksum(body));
});

test('pseudo-header sums match the byte layouts of RFC 793 and RFC 8200', () => {
  const s4 = hex('0a000001');
  const d4 = hex('0a000002');
  assert.is(ipv4PseudoHeaderSum(s4, d4, 17, 10), onesSum(Buffer.concat([s4, d4, hex('0011 000a')])));
  const s6 = hex('fd000000000000000000000000000001');
  const d6 = hex('fd000000000000000000000000000002');
  assert.is(
    ipv6PseudoHeaderSum(s6, d6, 58, 0x12345),
    onesSum(Buffer.concat([s6, d6, hex('0001 2345 0000 003a')])),
  );
  assert.throws(() => ipv4PseudoHeaderSum(s6, d4, 6, 0), /4-byte/);
});

test('CRC32c check value and RFC 3720 appendix B.4 vectors', () => {
  assert.is(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.is(crc32c(Buffer.alloc(32)), 0x8a9136aa);
  assert.is(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.is(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  assert.is(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
});

test('CRC32c continues across chunks and agrees with a bit-at-a-time implementation', () => {
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff));
  assert.is(crc32c(data.subarray(300), crc32c(data.subarray(0, 300))), crc32c(data));
  assert.is(crc32c(data), crc32cBitwise(data));
});

test('the SCTP checksum treats its own field as zero', () => {
  const pkt = hex('1388 0050 0000 0000 ffff ffff 0100 0008 0102 0304');
  const zeroed = Buffer.from(pkt);
  zeroed.fill(0, 8, 12);
  assert.is(sctpChecksum(pkt), crc32c(zeroed));
  assert.is(sctpChecksum(pkt), 0x7ea63f1d);
});

test('the independent RFC 1071 checker used by the builder tests agrees', () => {
  const h = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
  assert.is(rfc1071(h), 0);
});

test.run();
