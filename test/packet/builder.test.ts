/**
 * The packet builder: frames byte for byte against vectors computed by hand
 * and by an independent script (Python struct + RFC 1071), and every
 * checksum and length checked by test/packet/verify.ts, which shares no code
 * with sdk/checksum.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { PacketBuilder, packet, tcpFlagsValue, type Corruption } from '../../sdk/packet.js';
import { checkFrame, rfc1071 } from './verify.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const v4 = { src: '10.0.0.1', dst: '10.0.0.2' };
const v6 = { src: 'fd00::1', dst: 'fd00::2' };

function assertValid(frame: Buffer, layers?: string[]) {
  const c = checkFrame(frame);
  assert.equal(c.problems, [], `problems in ${frame.toString('hex')}`);
  if (layers) assert.equal(c.layers, layers);
}

function assertInvalid(fn: () => unknown, message: RegExp) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError);
    assert.is((e as TsbpfError).code, 'INVALID_ARGUMENT');
    assert.match((e as TsbpfError).message, message);
    return;
  }
  assert.unreachable('expected a TsbpfError');
}

// --- exact bytes -------------------------------------------------------------

test('UDP over IPv4: 10.0.0.1:1234 -> 10.0.0.2:53 "hi" (UDP checksum 7e67 by hand)', () => {
  // pseudo 0a00+0001+0a00+0002+0011+000a = 141e; + header 04d2+0035+000a = 192f;
  // + "hi" 6869 = 8198; ~8198 = 7e67
  const frame = packet().eth().ipv4(v4).udp({ sport: 1234, dport: 53 }).payload('hi').build();
  assert.is(
    frame.toString('hex'),
    '020000000002' + '020000000001' + '0800' +
      '4500001e00000000401166cd0a0000010a000002' +
      '04d20035000a7e67' + '6869',
  );
  assertValid(frame, ['eth', 'ipv4', 'udp']);
});

test('TCP SYN with an MSS option over IPv4', () => {
  const frame = packet().ipv4(v4).tcp({ sport: 40000, dport: 80, seq: 1, flags: 'S', options: [{ kind: 'mss', value: 1460 }] }).build();
  assert.is(
    frame.toString('hex'),
    '02000000000202000000000108004500002c00000000400666ca0a0000010a000002' +
      '9c40005000000001000000006002ffffe7920000020405b4',
  );
  assertValid(frame, ['eth', 'ipv4', 'tcp']);
});

test('UDP over IPv6: [fd00::1]:53 -> [fd00::2]:5353 "abc"', () => {
  const frame = packet().ipv6(v6).udp({ sport: 53, dport: 5353 }).payload('abc').build();
  assert.is(
    frame.toString('hex'),
    '02000000000202000000000186dd60000000000b1140' +
      'fd000000000000000000000000000001fd000000000000000000000000000002' +
      '003514e9000b2c53616263',
  );
  assertValid(frame, ['eth', 'ipv6', 'udp']);
});

test('ICMPv6 echo request (checksum over the IPv6 pseudo-header)', () => {
  const frame = packet().ipv6(v6).icmpv6({ type: 'echo-request', id: 1, seq: 1 }).build();
  assert.is(
    frame.toString('hex'),
    '02000000000202000000000186dd6000000000083a40' +
      'fd000000000000000000000000000001fd000000000000000000000000000002' +
      '800085b600010001',
  );
  assertValid(frame, ['eth', 'ipv6', 'icmpv6']);
});

test('ICMP echo request id 1 seq 1: 0800+0001+0001 = 0802, checksum f7fd', () => {
  const frame = packet().ipv4(v4).icmp({ type: 'echo-request', id: 1, seq: 1 }).build();
  assert.is(frame.subarray(34).toString('hex'), '0800f7fd00010001');
  assert.is(frame.subarray(14, 34).toString('hex'), '4500001c00000000400166df0a0000010a000002');
  assertValid(frame, ['eth', 'ipv4', 'icmp']);
});

test('SCTP with one chunk: CRC32c stored little-endian', () => {
  const frame = packet().ipv4(v4).sctp({ sport: 5000, dport: 80, chunks: [{ type: 'init', value: hex('01020304') }] }).build();
  assert.is(frame.subarray(34).toString('hex'), '1388005000000000' + '1d3fa67e' + '01000008' + '01020304');
  assertValid(frame, ['eth', 'ipv4', 'sctp']);
});

test('the well-known IPv4 header 4500 0073 ... b861 comes out of ipv4() exactly', () => {
  const frame = packet().ipv4({ src: '192.168.0.1', dst: '192.168.0.199', df: true, proto: 17 }).payload(0x73 - 20).build();
  assert.is(frame.subarray(14, 34).toString('hex'), '45000073000040004011b861c0a80001c0a800c7');
});

// --- defaults and fields -------------------------------------------------------

test('defaults: locally administered MACs, TTL 64, ethertype from the next layer, window 65535, SYN', () => {
  const f = packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).build();
  assert.is(f.subarray(0, 6).toString('hex'), '020000000002');
  assert.is(f.subarray(6, 12).toString('hex'), '020000000001');
  assert.is(f.readUInt16BE(12), 0x0800);
  assert.is(f[22], 64);
  assert.is(f[14 + 20 + 13], 0x02);
  assert.is(f.readUInt16BE(14 + 20 + 14), 65535);
  assert.is(packet().ipv6(v6).build().readUInt16BE(12), 0x86dd);
  assert.is(packet().ipv6(v6).build()[20], 59, 'no upper layer: next header 59');
  assert.is(packet().eth().payload(4).build().readUInt16BE(12), 0x88b5, 'non-IP: local experimental ethertype');
});

test('eth() takes MACs as text or bytes and an explicit type', () => {
  const f = packet().eth({ src: 'aa-bb-cc-dd-ee-ff', dst: Buffer.from([1, 2, 3, 4, 5, 6]), type: 0x0806 }).payload(28).build();
  assert.is(f.subarray(0, 14).toString('hex'), '010203040506aabbccddeeff0806');
});

test('vlan(): TCI from pcp/dei/id, TPIDs chain through the tags (QinQ)', () => {
  const f = packet().vlan({ id: 100, pcp: 5, dei: true, tpid: 0x88a8 }).vlan({ id: 10 }).ipv4(v4).udp({ sport: 1, dport: 2 }).build();
  assert.is(f.readUInt16BE(12), 0x88a8);
  assert.is(f.readUInt16BE(14), (5 << 13) | 0x1000 | 100);
  assert.is(f.readUInt16BE(16), 0x8100);
  assert.is(f.readUInt16BE(18), 10);
  assert.is(f.readUInt16BE(20), 0x0800);
  assertValid(f, ['eth', 'vlan', 'vlan', 'ipv4', 'udp']);
});

test('ipv4(): dscp/ecn, tos, id, flags, fragment offset, ttl', () => {
  const f = packet().ipv4({ ...v4, dscp: 46, ecn: 1, id: 0x1234, df: true, ttl: 1 }).udp({ sport: 1, dport: 2 }).build();
  assert.is(f[15], (46 << 2) | 1);
  assert.is(f.readUInt16BE(18), 0x1234);
  assert.is(f.readUInt16BE(20), 0x4000);
  assert.is(f[22], 1);
  assert.is(packet().ipv4({ ...v4, tos: 0xb8 }).build()[15], 0xb8);
  const frag = packet().ipv4({ ...v4, mf: true, fragOffset: 185 }).payload(8).build();
  assert.is(frag.readUInt16BE(20), 0x2000 | 185);
  assert.is(frag[23], 253, 'no upper layer: protocol 253');
  assert.is(packet().ipv4({ ...v4, flags: 4 }).build().readUInt16BE(20), 0x8000, 'the reserved (evil) bit');
  assertValid(frag);
});

test('ipv4() options are padded to 4 bytes and counted in ihl', () => {
  const f = packet().ipv4({ ...v4, options: hex('94040000 01') }).tcp({ sport: 1, dport: 2 }).build();
  assert.is(f[14] & 0x0f, 7);
  assert.is(f.subarray(34, 42).toString('hex'), '9404000001000000');
  assertValid(f, ['eth', 'ipv4', 'tcp']);
  assertInvalid(() => packet().ipv4({ ...v4, options: Buffer.alloc(41) }).build(), /room for 40/);
});

test('first fragment with L4 and a later fragment without it', () => {
  const first = packet().ipv4({ ...v4, id: 7, mf: true }).udp({ sport: 1, dport: 53 }).payload(16).build();
  assert.is(first.readUInt16BE(20), 0x2000);
  const later = packet().ipv4({ ...v4, id: 7, fragOffset: 3, proto: 17 }).payload(8).build();
  assert.is(later.readUInt16BE(20), 3);
  assert.is(later[23], 17);
});

test('tcp() flags as letters, names, lists and numbers', () => {
  assert.is(tcpFlagsValue('SA'), 0x12);
  assert.is(tcpFlagsValue('syn,ack'), 0x12);
  assert.is(tcpFlagsValue(['syn', 'ack']), 0x12);
  assert.is(tcpFlagsValue(0x12), 0x12);
  assert.is(tcpFlagsValue('FSRPAUEC'), 0xff);
  assert.is(tcpFlagsValue('.'), 0x10);
  assert.is(tcpFlagsValue('fin'), 0x01);
  assert.is(tcpFlagsValue(''), 0);
  assertInvalid(() => tcpFlagsValue('SX'), /unknown tcp flag letter 'X'/);
  assertInvalid(() => tcpFlagsValue(['syn', 'foo' as 'syn']), /unknown tcp flag 'foo'/);
  assertInvalid(() => tcpFlagsValue(256), /0\.\.255/);
});

test('tcp() options: a list is encoded in order and padded with end-of-list', () => {
  const f = packet().ipv4(v4).tcp({
    sport: 1,
    dport: 2,
    flags: 'S',
    options: [{ kind: 'mss', value: 1460 }, { kind: 'sack-permitted' }, { kind: 'timestamp', value: 1, echo: 0 }, { kind: 'wscale', value: 7 }],
  }).build();
  const tcp = f.subarray(34);
  assert.is(tcp[12]! >> 4, 10);
  assert.is(tcp.subarray(20).toString('hex'), '020405b4' + '0402' + '080a0000000100000000' + '030307' + '00');
  assertValid(f);
  const raw = packet().ipv4(v4).tcp({ sport: 1, dport: 2, options: hex('0101') }).build();
  assert.is(raw.subarray(54).toString('hex'), '01010000');
});

test('ipv6(): traffic class, flow label, hop limit', () => {
  const f = packet().ipv6({ ...v6, dscp: 46, ecn: 2, flowLabel: 0xabcde, hopLimit: 1 }).udp({ sport: 1, dport: 2 }).build();
  assert.is(f.readUInt32BE(14), ((6 << 28) | (((46 << 2) | 2) << 20) | 0xabcde) >>> 0);
  assert.is(f[21], 1);
});

test('ipv6() extension headers: next-header chain, lengths, padding', () => {
  const f = packet()
    .ipv6({
      ...v6,
      extensions: [
        { type: 'hop-by-hop', options: hex('05020000') }, // router alert: 2+4 bytes, padded with PadN to 8
        { type: 'routing', routingType: 2, segmentsLeft: 0, data: Buffer.alloc(20) },
        { type: 'dest-opts' },
        { type: 'ah', spi: 0x100, seq: 1 },
        { type: 'fragment', id: 99, mf: true },
      ],
    })
    .tcp({ sport: 1, dport: 80 })
    .build();
  const { layers } = packet().ipv6({ ...v6 }).buildWithLayout();
  assert.is(layers[1]!.length, 40);
  assert.is(f[20], 0, 'ipv6 next header: hop-by-hop');
  let o = 54;
  assert.is(f.subarray(o, o + 8).toString('hex'), '2b00' + '05020000' + '0100', 'hop-by-hop -> routing, PadN(0)');
  o += 8;
  assert.is(f[o], 60);
  assert.is(f[o + 1], 2, 'routing: 4 + 20 bytes padded to 24');
  assert.is(f[o + 2], 2);
  o += 24;
  assert.is(f.subarray(o, o + 8).toString('hex'), '3300' + '01040000' + '0000', 'dest-opts with only PadN(4)');
  o += 8;
  assert.is(f[o], 44);
  assert.is(f[o + 1], 4, 'AH: (12 + 12 ICV) / 4 - 2');
  assert.is(f.readUInt32BE(o + 4), 0x100);
  o += 24;
  assert.is(f.subarray(o, o + 8).toString('hex'), '0600' + '0001' + '00000063', 'fragment -> tcp, M set');
  o += 8;
  assert.is(f.readUInt16BE(o + 2), 80);
  assert.is(f.readUInt16BE(18), f.length - 54, 'payload length counts the extension headers');
  assertValid(f, ['eth', 'ipv6', 'hop-by-hop', 'routing', 'dest-opts', 'ah', 'fragment', 'tcp']);
});

test('ipv6() extension by number uses the generic (next, length) layout', () => {
  const f = packet().ipv6({ ...v6, extensions: [{ type: 135, data: hex('aabb') }] }).udp({ sport: 1, dport: 2 }).build();
  assert.is(f[20], 135);
  assert.is(f.subarray(54, 62).toString('hex'), '1100aabb00000000');
});

test('icmp(): names and numbers for types and codes, MTU, a quoted original packet as payload', () => {
  const inner = packet().ipv4({ src: '10.0.0.2', dst: '10.0.0.1' }).udp({ sport: 5353, dport: 53 }).build().subarray(14, 14 + 28);
  const f = packet().ipv4(v4).icmp({ type: 'dest-unreachable', code: 'port-unreachable' }).payload(inner).build();
  assert.is(f[34], 3);
  assert.is(f[35], 3);
  assert.equal(f.subarray(42), inner);
  assertValid(f, ['eth', 'ipv4', 'icmp']);
  const mtu = packet().ipv4(v4).icmp({ type: 3, code: 'fragmentation-needed', mtu: 1400 }).build();
  assert.is(mtu.readUInt32BE(38), 1400);
  const ptb = packet().ipv6(v6).icmpv6({ type: 'packet-too-big', mtu: 1280, payload: Buffer.alloc(8) }).build();
  assert.is(ptb.readUInt32BE(58), 1280);
  assertValid(ptb);
  assertInvalid(() => packet().ipv4(v4).icmp({ type: 'packet-too-big' as 'echo-request' }).build(), /unknown icmp type 'packet-too-big'[\s\S]*/);
  assertInvalid(() => packet().ipv4(v4).icmp({ type: 'echo-request', code: 'port-unreachable' }).build(), /unknown icmp code 'port-unreachable' for type 8/);
});

test('UDP: a computed checksum of 0 is sent as ffff; checksum: 0 means none', () => {
  const probe = packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(Buffer.alloc(2)).build();
  const c = probe.readUInt16BE(40);
  // A payload word equal to that checksum makes the sum ffff, i.e. a checksum of 0.
  const word = Buffer.alloc(2);
  word.writeUInt16BE(c);
  const f = packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(word).build();
  assert.is(f.readUInt16BE(40), 0xffff);
  assertValid(f);
  assert.is(packet().ipv4(v4).udp({ sport: 1, dport: 2, checksum: 0 }).build().readUInt16BE(40), 0);
});

test('payload(): bytes, UTF-8 text, a count of filler bytes; pad() to a minimum frame size', () => {
  assert.is(packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload('é').build().subarray(42).toString('hex'), 'c3a9');
  assert.is(packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(4).build().subarray(42).toString('hex'), '00010203');
  const padded = packet().ipv4(v4).udp({ sport: 1, dport: 2 }).pad(60).build();
  assert.is(padded.length, 60);
  assert.is(padded.readUInt16BE(16), 28, 'padding is after the IP packet, not in it');
});

test('truncate(n) cuts the finished frame; negative n drops bytes from the end', () => {
  const full = packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).payload(10).build();
  const cut = packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).payload(10).truncate(40).build();
  assert.equal(cut, full.subarray(0, 40));
  assert.is(packet().ipv4(v4).truncate(-1).build().length, 33);
  assert.is(packet().ipv4(v4).truncate(1000).build().length, 34);
  assert.is(packet().ipv4(v4).truncate(0).build().length, 0);
  const out = packet().ipv4(v4).udp({ sport: 1, dport: 2 }).truncate(20).buildWithLayout();
  assert.is(out.fullLength, 42);
  assert.equal(out.layers, [
    { kind: 'eth', offset: 0, length: 14 },
    { kind: 'ipv4', offset: 14, length: 20 },
    { kind: 'udp', offset: 34, length: 8 },
  ]);
});

// --- malformed packets ------------------------------------------------------------

const corruptions: Array<[Corruption, () => Buffer, string[]]> = [
  ['ipv4-checksum', () => packet().ipv4(v4).udp({ sport: 1, dport: 2 }).corrupt('ipv4-checksum').build(), ['ipv4 header checksum']],
  ['l4-checksum', () => packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).corrupt('l4-checksum').build(), ['tcp checksum']],
  ['l4-checksum', () => packet().ipv6(v6).icmpv6({ type: 'echo-request' }).corrupt('l4-checksum').build(), ['icmpv6 checksum']],
  ['l4-checksum', () => packet().ipv4(v4).sctp({ sport: 1, dport: 2 }).corrupt('l4-checksum').build(), ['sctp checksum']],
  ['l4-checksum', () => packet().ipv4(v4).icmp({ type: 'echo-reply' }).corrupt('l4-checksum').build(), ['icmp checksum']],
  ['ip-version', () => packet().ipv4(v4).udp({ sport: 1, dport: 2 }).corrupt('ip-version', 6).build(), ['ipv4 version']],
  ['ip-length', () => packet().ipv4(v4).udp({ sport: 1, dport: 2 }).corrupt('ip-length', 100).build(), ['ipv4 total length 128 != 28']],
  ['ip-length', () => packet().ipv6(v6).udp({ sport: 1, dport: 2 }).corrupt('ip-length', -1).build(), ['ipv6 payload length 7 != 8']],
  ['udp-length', () => packet().ipv4(v4).udp({ sport: 1, dport: 2 }).corrupt('udp-length').build(), ['udp length 16 != 8']],
];

for (const [kind, make, problems] of corruptions) {
  test(`corrupt('${kind}') breaks exactly that: ${problems.join(', ')}`, () => {
    assert.equal(checkFrame(make()).problems, problems);
  });
}

test("corrupt('ipv4-ihl') and corrupt('tcp-offset') write the value, keeping the header checksum right", () => {
  const f = packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).corrupt('ipv4-ihl').corrupt('tcp-offset', 15).build();
  assert.is(f[14]! & 0x0f, 4);
  assert.is(f[46]! >> 4, 15);
  assert.is(rfc1071(f.subarray(14, 34)), 0, 'the 20 header bytes still sum right');
});

test('corrupt() applies to the innermost layer of its kind, and needs one', () => {
  const f = packet().ipv4(v4).ipv4({ src: '10.1.0.1', dst: '10.1.0.2' }).udp({ sport: 1, dport: 2 }).corrupt('ipv4-checksum').build();
  assert.is(rfc1071(f.subarray(14, 34)), 0, 'outer IPv4 header intact');
  assert.is.not(rfc1071(f.subarray(34, 54)), 0, 'inner IPv4 header broken');
  assert.is(f[23], 4, 'IP in IP');
  assertInvalid(() => packet().ipv4(v4).corrupt('udp-length'), /needs a udp layer/);
  assertInvalid(() => packet().ipv4(v4).corrupt('bogus' as Corruption), /unknown corruption 'bogus'/);
});

test('explicit overrides win over computed values', () => {
  const f = packet().ipv4({ ...v4, checksum: 0x1234, totalLength: 9, version: 5, ihl: 6 }).tcp({ sport: 1, dport: 2, checksum: 0xbeef, dataOffset: 2 }).build();
  assert.is(f.readUInt16BE(24), 0x1234);
  assert.is(f.readUInt16BE(16), 9);
  assert.is(f[14], 0x56);
  assert.is(f.readUInt16BE(50), 0xbeef);
  assert.is(f[46]! >> 4, 2);
});

// --- API shape ---------------------------------------------------------------------

test('builders are immutable: a shared prefix makes independent packets', () => {
  const base = packet().vlan({ id: 5 }).ipv4(v4);
  const a = base.tcp({ sport: 1, dport: 80 }).build();
  const b = base.udp({ sport: 1, dport: 53 }).build();
  assert.is(a[27], 6);
  assert.is(b[27], 17);
  assert.is(base.build().length, 14 + 4 + 20);
});

test('out-of-range and malformed inputs are INVALID_ARGUMENT errors naming the field', () => {
  assertInvalid(() => packet().ipv4(v4).tcp({ sport: 70000, dport: 1 }).build(), /tcp sport must be an integer 0\.\.65535, got 70000/);
  assertInvalid(() => packet().ipv4({ ...v4, ttl: 256 }).build(), /ipv4 ttl/);
  assertInvalid(() => packet().vlan({ id: 4096 }).build(), /vlan id/);
  assertInvalid(() => packet().ipv4({ src: '10.0.0.256', dst: '10.0.0.1' }).build(), /invalid IPv4 address '10\.0\.0\.256'/);
  assertInvalid(() => packet().ipv6({ src: 'fd00::1::2', dst: '::1' }).build(), /invalid IPv6 address/);
  assertInvalid(() => packet().eth({ src: 'zz:00:00:00:00:00' }).build(), /invalid MAC address/);
  assertInvalid(() => new PacketBuilder().eth().tcp({ sport: 1, dport: 2 }).build(), /tcp needs an IPv4 or IPv6 layer before it/);
  assertInvalid(() => packet().truncate(1.5), /integer/);
});

test('packet() is typed by stage: wrong orders do not compile', () => {
  // Never run; tsc fails the build if an expected error goes away.
  const typeChecks = () => {
    // @ts-expect-error TCP needs an IP layer first
    packet().eth().tcp({ sport: 1, dport: 2 });
    // @ts-expect-error ICMP (v4) does not go over IPv6
    packet().ipv6(v6).icmp({ type: 'echo-request' });
    // @ts-expect-error ICMPv6 does not go over IPv4
    packet().ipv4(v4).icmpv6({ type: 'echo-request' });
    // @ts-expect-error nothing after an L4 header but payload
    packet().ipv4(v4).udp({ sport: 1, dport: 2 }).tcp({ sport: 1, dport: 2 });
    // @ts-expect-error an ICMPv6 type name is not an ICMP one
    packet().ipv4(v4).icmp({ type: 'packet-too-big' });
  };
  assert.type(typeChecks, 'function');
});

test.run();
