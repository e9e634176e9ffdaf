/**
 * Function programs in Node: the packet view, the integer conversions, the
 * in-memory maps and runInNode. This is the reference the kernel is held to
 * (test/fn/kernel.test.ts and differential.test.ts), so its own behaviour is
 * pinned here.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { packet } from '../../sdk/packet.js';
import {
  array,
  createMemoryMaps,
  csumReplace,
  hash,
  ip4,
  ip6,
  ktimeNs,
  lruHash,
  mac,
  MemoryMap,
  PacketBufferView,
  perCpuArray,
  progArray,
  randomU32,
  redirect,
  ringBuf,
  runInNode,
  sameIpv6,
  struct,
  tailCall,
  tcIngress,
  u8,
  u16,
  u32,
  u64,
  xdp,
  TC_ACT_OK,
  TC_ACT_SHOT,
  XDP_DROP,
  XDP_PASS,
  XDP_TX,
} from '../../sdk/fn/index.js';
import { TsbpfError } from '../../sdk/errors.js';
import { checkFrame } from '../packet/verify.js';

const tcpPacket = () =>
  packet().eth({ src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2', ttl: 64 }).tcp({ sport: 1234, dport: 80, flags: 'syn', seq: 1000 }).payload(20).build();
const udpPacket = (checksum?: number) =>
  packet().eth().ipv4({ src: '10.0.0.1', dst: '10.0.0.53' }).udp({ sport: 5353, dport: 53, ...(checksum !== undefined ? { checksum } : {}) }).payload(12).build();

test('the packet view reads the parsed headers; absent headers are undefined', () => {
  const v = new PacketBufferView(tcpPacket(), { hook: 'xdp' });
  assert.is(v.len, 74);
  assert.is(v.ethertype, 0x0800);
  assert.is(v.proto, 6);
  assert.is(v.eth?.src, 0x020000000001);
  assert.is(v.ipv4?.ttl, 64);
  assert.is(v.ipv4?.src, ip4('10.0.0.1'));
  assert.is(v.tcp?.dport, 80);
  assert.is(v.tcp?.isSyn, true);
  assert.is(v.tcp?.isAck, false);
  assert.is(v.udp, undefined);
  assert.is(v.ipv6, undefined);
  assert.is(v.vlan, undefined);
  assert.is(v.fragment, undefined);
});

test('a runt frame has a length and nothing else', () => {
  const v = new PacketBufferView(Buffer.alloc(10), { hook: 'xdp' });
  assert.is(v.len, 10);
  assert.is(v.eth, undefined);
  assert.is(v.ethertype, 0);
  assert.is(v.proto, 0);
});

test('writes change the bytes and keep every checksum right', () => {
  const v = new PacketBufferView(tcpPacket(), { hook: 'xdp' });
  v.ipv4!.ttl = 63;
  v.ipv4!.dscp = 46;
  v.ipv4!.src = ip4('192.168.1.1');
  v.tcp!.dport = 8080;
  v.tcp!.seq = 0xfffffff0;
  v.tcp!.flags = 0x12;
  v.eth!.dst = mac('0a:0b:0c:0d:0e:0f');
  assert.equal(checkFrame(v.data).problems, []);
  assert.is(v.data.readUInt16BE(14 + 20 + 2), 8080);
  assert.is(v.data[14 + 8], 63);
  assert.is(v.data.subarray(0, 6).toString('hex'), '0a0b0c0d0e0f');
  // the view reads what was written
  assert.is(v.tcp!.dport, 8080);
  assert.is(v.tcp!.isAck, true);
  assert.is(v.ipv4!.dscp, 46);
});

test('a UDP datagram without a checksum keeps none; with one it stays right', () => {
  const none = new PacketBufferView(udpPacket(0), { hook: 'xdp' });
  none.udp!.dport = 5300;
  assert.is(none.udp!.checksum, 0);
  assert.is(none.data.readUInt16BE(14 + 20 + 6), 0);
  const some = new PacketBufferView(udpPacket(), { hook: 'xdp' });
  some.udp!.dport = 5300;
  some.ipv4!.dst = ip4('10.9.9.9');
  assert.equal(checkFrame(some.data).problems, []);
});

test('IPv6 fields: addresses as hi/lo, writable traffic class and flow label', () => {
  const d = packet().eth().ipv6({ src: 'fd00::1', dst: 'fd00::2', hopLimit: 9 }).icmpv6({ type: 'echo-request' }).build();
  const v = new PacketBufferView(d, { hook: 'tc-ingress' });
  assert.ok(sameIpv6(v.ipv6!.src, ip6('fd00::1')));
  assert.is(v.ipv6!.src.lo, 1n);
  v.ipv6!.flowLabel = 0xabcde;
  v.ipv6!.hopLimit = 8;
  v.icmpv6!.type = 129;
  assert.equal(checkFrame(v.data).problems, []);
  assert.is(v.ipv6!.flowLabel, 0xabcde);
});

test('IPv6 address writes fix the TCP, UDP and ICMPv6 checksums (pseudo-header), and keep a UDP checksum of 0', () => {
  const frames = [
    packet().eth().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).tcp({ sport: 1, dport: 2, flags: 'syn' }).payload(7).build(),
    packet().eth().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).udp({ sport: 1, dport: 2 }).payload(9).build(),
    packet().eth().vlan({ id: 3 }).ipv6({ src: 'fd00::1', dst: 'fd00::2' }).icmpv6({ type: 'echo-request' }).build(),
  ];
  for (const d of frames) {
    const v = new PacketBufferView(Buffer.from(d), { hook: 'xdp' });
    v.ipv6!.src = ip6('2001:db8::abcd:1');
    v.ipv6!.dst = ip6('fd12:3456::ffff:0:1');
    assert.equal(checkFrame(v.data).problems, [], v.data.toString('hex'));
    assert.ok(sameIpv6(v.ipv6!.src, ip6('2001:db8::abcd:1')) && sameIpv6(v.ipv6!.dst, ip6('fd12:3456::ffff:0:1')));
    assert.is(v.data.subarray(v.parsed.l3Offset! + 8, v.parsed.l3Offset! + 24).toString('hex'), '20010db80000000000000000abcd0001');
  }
  const udp0 = new PacketBufferView(packet().eth().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).udp({ sport: 1, dport: 2, checksum: 0 }).build(), { hook: 'xdp' });
  udp0.ipv6!.dst = ip6('fd00::9');
  assert.is(udp0.udp!.checksum, 0);
  const v = new PacketBufferView(frames[0]!, { hook: 'xdp' });
  assert.throws(() => ((v.ipv6 as unknown as { src: unknown }).src = 5), /IPv6 address/);
});

test('VLAN writes change the outer tag\'s TCI in the frame', () => {
  const d = packet().eth().vlan({ id: 100, pcp: 1 }).vlan({ id: 200 }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 2 }).build();
  const v = new PacketBufferView(d, { hook: 'tc-ingress' });
  v.vlan!.id = 0xfff;
  v.vlan!.pcp = 6;
  v.vlan!.dei = 1;
  assert.is(v.data.readUInt16BE(14), (6 << 13) | (1 << 12) | 0xfff);
  assert.is(v.data.readUInt16BE(18) & 0xfff, 200, 'the inner tag stays');
  assert.equal({ id: v.vlan!.id, pcp: v.vlan!.pcp, dei: v.vlan!.dei }, { id: 0xfff, pcp: 6, dei: 1 });
  assert.equal(checkFrame(v.data).problems, []);
  assert.throws(() => (v.vlan!.id = 0x1000), /0\.\.4095/);
});

test('read-only fields and out-of-range values are refused', () => {
  const v = new PacketBufferView(tcpPacket(), { hook: 'xdp' });
  assert.throws(() => ((v.ipv4 as { proto: number }).proto = 17), /read-only/);
  assert.throws(() => (v.ipv4!.ttl = 256), /0\.\.255/);
  assert.throws(() => (v.tcp!.dport = -1), /0\.\.65535/);
  assert.throws(() => v.mark, /TC only/);
});

test('conversions keep the low bits, as C casts do', () => {
  assert.is(u8(300), 44);
  assert.is(u8(-1), 255);
  assert.is(u16(-2), 0xfffe);
  assert.is(u32(-1), 0xffffffff);
  assert.is(u32(2 ** 40 + 5), 5);
  assert.is(u32(0x1_0000_0005n), 5);
  assert.is(u64(-1), 0xffffffffffffffffn);
  assert.is(u64(1n << 64n), 0n);
  assert.is(u8.layout.size, 1);
  assert.is(u64.typeName, 'u64');
});

test('csumReplace rounds like the kernel: a sum is never +0', () => {
  // 0xffff with a no-op change becomes 0x0000, as csum_replace2 makes it
  assert.is(csumReplace(0xffff, 0x1234, 0x1234, 2), 0x0000);
  assert.is(csumReplace(0x0000, 0x1234, 0x1234, 2), 0x0000);
  // a real update: RFC 1624 example (0xdd2f, word 0x5555 -> 0x3285 gives 0x0000)
  assert.is(csumReplace(0xdd2f, 0x5555, 0x3285, 2), 0x0000);
  assert.is(csumReplace(0x1234, 0x0a000001, 0x0a000002, 4), 0x1233);
});

test('address constants', () => {
  assert.is(ip4('10.0.0.1'), 0x0a000001);
  assert.is(ip4('255.255.255.255'), 0xffffffff);
  assert.equal(ip6('::ffff:10.0.0.1'), { hi: 0n, lo: 0xffff0a000001n });
  assert.is(mac('ff:ff:ff:ff:ff:ff'), 2 ** 48 - 1);
  assert.throws(() => ip4('10.0.0'), (e: unknown) => e instanceof TsbpfError);
});

test('hash maps refuse new keys when full, honour flags, and increment wraps', () => {
  const m = new MemoryMap<number, number>('h', hash(u32, u8, { maxEntries: 2 }));
  assert.ok(m.update(1, 10));
  assert.ok(m.update(2, 20));
  assert.not.ok(m.update(3, 30));
  assert.not.ok(m.update(1, 11, 'noexist'));
  assert.not.ok(m.update(9, 11, 'exist'));
  assert.ok(m.update(1, 250, 'exist'));
  m.increment(1, 10);
  assert.is(m.lookup(1), 4);
  assert.ok(m.delete(2));
  assert.not.ok(m.delete(2));
  assert.is(m.lookup(2), undefined);
});

test('LRU maps evict the least recently used entry', () => {
  const m = new MemoryMap<number, bigint>('l', lruHash(u32, u64, { maxEntries: 2 }));
  m.update(1, 1n);
  m.update(2, 2n);
  m.lookup(1);
  m.update(3, 3n);
  assert.equal(m.entries().map(([k]) => k).sort(), [1, 3]);
});

test('array elements always exist and cannot be deleted', () => {
  const m = new MemoryMap<number, { a: number; b: bigint }>('a', array(struct({ a: u16, b: u64 }), { maxEntries: 3 }));
  assert.equal(m.lookup(2), { a: 0, b: 0n });
  assert.is(m.lookup(3), undefined);
  assert.not.ok(m.update(3, { a: 1, b: 1n }));
  assert.not.ok(m.delete(0));
  assert.is(m.size, 3);
});

test('runInNode runs the function with its maps, which persist across runs', () => {
  const prog = xdp({ maps: { hits: perCpuArray(u64, { maxEntries: 2 }), seen: hash(u32, u32, { maxEntries: 16 }) } }, (pkt, { hits, seen }) => {
    hits.increment(0);
    if (!pkt.ipv4) return XDP_PASS;
    seen.increment(pkt.ipv4.src);
    return pkt.ipv4.ttl < 10 ? XDP_DROP : XDP_PASS;
  });
  const first = runInNode(prog, tcpPacket());
  assert.is(first.verdict, 'XDP_PASS');
  const again = runInNode(prog, tcpPacket(), { maps: first.maps });
  assert.is(again.maps.hits!.lookup(0), 2n);
  assert.is(again.maps.seen!.lookup(ip4('10.0.0.1')), 2);
  const low = packet().eth().ipv4({ src: '10.0.0.1', dst: '10.0.0.2', ttl: 3 }).build();
  assert.is(runInNode(prog, low).retval, 1);
});

test('TC programs see and set the mark; redirect reports its target', () => {
  const prog = tcIngress((pkt) => {
    pkt.mark = u32(pkt.mark + 1);
    if (pkt.len > 60) return redirect(7);
    return pkt.mark > 5 ? TC_ACT_SHOT : TC_ACT_OK;
  });
  const r = runInNode(prog, tcpPacket(), { mark: 41 });
  assert.is(r.mark, 42);
  assert.is(r.retval, 7);
  assert.equal(r.redirect, { ifindex: 7, flags: 0 });
  const small = runInNode(prog, Buffer.alloc(40), { mark: 1 });
  assert.is(small.verdict, 'TC_ACT_OK');
});

test('tail calls jump to the program in the slot; an empty slot carries on', () => {
  const target = xdp(() => XDP_TX);
  const maps = { jump: progArray({ maxEntries: 2 }) };
  const entry = xdp({ maps }, (pkt, { jump }) => {
    tailCall(jump, u32(pkt.len & 1));
    return XDP_DROP;
  });
  const mem = createMemoryMaps(maps);
  mem.jump!.setProgram(0, target);
  const even = runInNode(entry, Buffer.alloc(60), { maps: mem });
  assert.is(even.retval, 3);
  assert.is(even.tailCalls, 1);
  assert.is(runInNode(entry, Buffer.alloc(61), { maps: mem }).retval, 1);
});

test('time and randomness come from the run', () => {
  const maps = { out: ringBuf(struct({ t: u64, r: u32 }), { size: 4096 }) };
  const prog = xdp({ maps }, (_pkt, { out }) => {
    out.output({ t: ktimeNs(), r: randomU32() });
    return XDP_PASS;
  });
  const r = runInNode(prog, Buffer.alloc(20), { now: 123n, random: () => 7 });
  assert.equal(r.maps.out!.events, [{ t: 123n, r: 7 }]);
});

test('helpers refuse to run outside a program run', () => {
  assert.throws(() => ktimeNs(), /only be called while a function program runs/);
});

test('a program declaration checks its maps', () => {
  assert.throws(() => xdp({ maps: { bad: 42 as never } }, () => XDP_PASS), /not a map declaration/);
  assert.throws(() => hash(u32, u32, { maxEntries: 0 }), /positive integer/);
  assert.throws(() => ringBuf(u32, { size: 1000 }), /power of two/);
});

test.run();
