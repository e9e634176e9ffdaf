// Layouts: typed codecs between TS values and the bytes of C objects.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import {
  array, be16, be32, be64, bool, bytes, cDecl, cDecls, cType, cstring, decode, describeLayout, encode, f32, f64,
  formatIpv6, i16, i32, i64, i8, ipv4, ipv6, mac, parseIpv6Bytes, sameShape, struct, structAt, tsTypeText, u16, u32,
  u64, u8, union,
  type Infer, type Layout,
} from '../../sdk/layout.js';

const hex = (b: Buffer): string => b.toString('hex');

function throwsLayout(fn: () => unknown, pattern: RegExp): TsbpfError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError);
    const err = e as TsbpfError;
    assert.is(err.code, 'LAYOUT_INVALID');
    assert.match(err.message, pattern);
    return err;
  }
  assert.unreachable('expected a LAYOUT_INVALID error');
  throw new Error('unreachable');
}

test('integers are little-endian, be16/be32/be64 are network order', () => {
  assert.is(hex(encode(u16, 0x1234)), '3412');
  assert.is(hex(encode(be16, 0x1234)), '1234');
  assert.is(hex(encode(u32, 0x01020304)), '04030201');
  assert.is(hex(encode(be32, 0x01020304)), '01020304');
  assert.is(hex(encode(u64, 0x0102030405060708n)), '0807060504030201');
  assert.is(hex(encode(be64, 0x0102030405060708n)), '0102030405060708');
  assert.is(hex(encode(i8, -1)), 'ff');
  assert.is(hex(encode(i16, -2)), 'feff');
  assert.is(hex(encode(i32, -1)), 'ffffffff');
  assert.is(hex(encode(i64, -1n)), 'ffffffffffffffff');
});

test('every scalar round-trips, including the extremes', () => {
  const cases: Array<[Layout<any>, unknown[]]> = [
    [u8, [0, 1, 255]], [u16, [0, 65535]], [u32, [0, 0xffffffff]], [u64, [0n, 2n ** 64n - 1n]],
    [i8, [-128, 127]], [i16, [-32768, 32767]], [i32, [-(2 ** 31), 2 ** 31 - 1]], [i64, [-(2n ** 63n), 2n ** 63n - 1n]],
    [be16, [0, 443, 65535]], [be32, [0, 0xdeadbeef]], [be64, [0n, 2n ** 64n - 1n]],
    [bool, [true, false]], [f32, [1.5, -2.25]], [f64, [Math.PI]],
    [ipv4, ['0.0.0.0', '10.1.2.3', '255.255.255.255']], [ipv6, ['::', '::1', 'fd00::1', '2001:db8::8:800:200c:417a']],
    [mac, ['00:00:00:00:00:00', 'de:ad:be:ef:00:01']],
  ];
  for (const [layout, values] of cases) {
    for (const v of values) assert.equal(decode(layout, encode(layout, v)), v, `${layout.kind} ${String(v)}`);
  }
});

test('sizes and alignments are those of the C types', () => {
  const want: Array<[Layout<unknown>, number, number]> = [
    [u8, 1, 1], [u16, 2, 2], [u32, 4, 4], [u64, 8, 8], [be16, 2, 2], [be32, 4, 4], [be64, 8, 8], [bool, 1, 1],
    [ipv4, 4, 4], [ipv6, 16, 4], [mac, 6, 1], [bytes(5), 5, 1], [cstring(16), 16, 1], [array(u16, 3), 6, 2],
  ];
  for (const [l, size, align] of want) {
    assert.is(l.size, size, `${l.kind} size`);
    assert.is(l.align, align, `${l.kind} align`);
  }
});

test('addresses: ipv4 and ipv6 are stored in network order, ipv6 and mac decode canonically', () => {
  assert.is(hex(encode(ipv4, '10.0.0.1')), '0a000001');
  assert.is(hex(encode(ipv6, 'fd00::1')), 'fd000000000000000000000000000001');
  assert.is(decode(ipv6, encode(ipv6, 'FD00:0000:0000:0000:0000:0000:0000:0001')), 'fd00::1');
  assert.is(decode(ipv6, encode(ipv6, '2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1'); // first longest run
  assert.is(decode(ipv6, encode(ipv6, '2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1'); // a single 0 is not compressed
  assert.is(decode(ipv6, encode(ipv6, '::ffff:10.0.0.1')), '::ffff:10.0.0.1');
  assert.is(hex(encode(ipv6, '::ffff:10.0.0.1')), '00000000000000000000ffff0a000001');
  assert.is(decode(mac, encode(mac, 'AA-BB-CC-DD-EE-FF')), 'aa:bb:cc:dd:ee:ff');
  assert.is(formatIpv6(parseIpv6Bytes('1:2:3:4:5:6:7:8')!), '1:2:3:4:5:6:7:8');
  for (const bad of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '::1.2.3', 'fe80::1%eth0']) {
    assert.is(parseIpv6Bytes(bad), undefined, bad);
  }
});

test('out-of-range numbers and bad addresses are LAYOUT_INVALID errors naming the value', () => {
  throwsLayout(() => encode(u8, 256), /u8 value out of range 0\.\.255 \(got 256\)/);
  throwsLayout(() => encode(u8, -1), /out of range/);
  throwsLayout(() => encode(i8, 128), /i8 value out of range -128\.\.127/);
  throwsLayout(() => encode(u16, 1.5), /expected an integer for u16 \(got 1\.5\)/);
  throwsLayout(() => encode(u32, '7' as unknown as number), /expected an integer/);
  throwsLayout(() => encode(u64, -1n), /out of range/);
  throwsLayout(() => encode(u64, 2 ** 60 as unknown as bigint), /not a safe integer; pass a bigint/);
  throwsLayout(() => encode(be16, 65536), /be16 value out of range/);
  throwsLayout(() => encode(ipv4, '10.0.0.256'), /expected an IPv4 address.*"10\.0\.0\.256"/);
  throwsLayout(() => encode(ipv4, '010.0.0.1'), /IPv4/);
  throwsLayout(() => encode(ipv6, '1::2::3'), /expected an IPv6 address/);
  throwsLayout(() => encode(mac, 'aa:bb:cc:dd:ee'), /expected a MAC address/);
  throwsLayout(() => encode(bool, 'yes' as unknown as boolean), /expected a boolean/);
  throwsLayout(() => encode(bytes(4), Buffer.alloc(3)), /expected exactly 4 bytes \(got Buffer\(3\)\)/);
  throwsLayout(() => encode(cstring(4), 'too long'), /longer than char\[4\]/);
  throwsLayout(() => encode(array(u8, 2), [1, 2, 3]), /expected exactly 2 elements/);
});

test('errors inside structs and arrays name the field path', () => {
  const key = struct({ tuple: struct({ saddr: ipv4, ports: array(be16, 2) }), proto: u8 });
  const err = throwsLayout(
    () => encode(key, { tuple: { saddr: '10.0.0.1', ports: [80, 70000] }, proto: 6 }),
    /^at 'tuple\.ports\[1\]': be16 value out of range 0\.\.65535 \(got 70000\)$/,
  );
  assert.is(err.info.path, 'tuple.ports[1]');
  throwsLayout(() => encode(key, { tuple: { saddr: '10.0.0.1' }, proto: 6 } as never), /at 'tuple\.ports': missing field/);
  throwsLayout(() => encode(key, { tuple: { saddr: '10.0.0.1', ports: [1, 2] }, proto: 6, prot: 1 } as never), /at 'prot': unknown field; struct has tuple, proto/);
  throwsLayout(() => encode(key, null as never), /expected an object for struct/);
});

test('struct: natural alignment, padding and tail padding as in C', () => {
  // struct { __u8 a; __u32 b; __u16 c; __u64 d; __u8 e; }: 0, 4, 8, 16, 24; size 32
  const mixed = struct({ a: u8, b: u32, c: u16, d: u64, e: u8 });
  assert.equal(mixed.fields.map((f) => f.offset), [0, 4, 8, 16, 24]);
  assert.is(mixed.size, 32);
  assert.is(mixed.align, 8);
  // a 5-tuple: 13 bytes of fields, 3 bytes of tail padding
  const flow = struct({ saddr: ipv4, daddr: ipv4, sport: be16, dport: be16, proto: u8 });
  assert.is(flow.size, 16);
  assert.is(flow.align, 4);
  // nested structs align to their own alignment; arrays to their element's
  const outer = struct({ x: u8, inner: struct({ y: u16, z: u64 }), tail: array(u16, 3), m: mac, ip6: ipv6 });
  assert.equal(outer.fields.map((f) => f.offset), [0, 8, 24, 30, 36]);
  assert.is(outer.size, 56);
  // an empty struct has size 0 (as clang's C, not C++)
  assert.is(struct({}).size, 0);
});

test('padding bytes are encoded as zero, even into a dirty buffer', () => {
  const l = struct({ a: u8, b: u32, c: u8 });
  const buf = Buffer.alloc(16, 0xee);
  l.encode({ a: 1, b: 2, c: 3 }, buf, 4);
  assert.is(hex(buf), 'eeeeeeee' + '01000000' + '02000000' + '03000000');
  assert.is(hex(encode(l, { a: 0xff, b: 0xffffffff, c: 0xff })), 'ff000000ffffffffff000000');
});

test('struct values decode to plain objects in declaration order', () => {
  const l = struct({ z: u8, a: u16, m: struct({ k: be16 }), list: array(struct({ v: u8 }), 2), raw: bytes(2), name: cstring(8), on: bool });
  const value = { z: 1, a: 2, m: { k: 3 }, list: [{ v: 4 }, { v: 5 }], raw: Buffer.from([6, 7]), name: 'eth0', on: true };
  const back = decode(l, encode(l, value));
  assert.equal(back, value);
  assert.equal(Object.keys(back), ['z', 'a', 'm', 'list', 'raw', 'name', 'on']);
});

test('decoded byte arrays are copies, not views of the map buffer', () => {
  const buf = encode(bytes(4), Buffer.from([1, 2, 3, 4]));
  const v = decode(bytes(4), buf);
  buf[0] = 9;
  assert.is(v[0], 1);
});

test('Infer gives the TS type of a layout', () => {
  const l = struct({ ip: ipv4, port: be16, n: u64, tags: array(u8, 2), ok: bool });
  type V = Infer<typeof l>;
  const v: V = { ip: '10.0.0.1', port: 80, n: 1n, tags: [1, 2], ok: true };
  // @ts-expect-error a u64 field is a bigint
  const wrong: V = { ip: '10.0.0.1', port: 80, n: 1, tags: [1, 2], ok: true };
  void wrong;
  assert.equal(decode(l, encode(l, v)), v);
});

test('packed structs have no padding and alignment 1', () => {
  const p = struct({ a: u8, b: u32, c: u16 }, { packed: true });
  assert.equal(p.fields.map((f) => f.offset), [0, 1, 5]);
  assert.is(p.size, 7);
  assert.is(p.align, 1);
  assert.is(hex(encode(p, { a: 1, b: 0x01020304, c: 0x0506 })), '01040302010605');
});

test('unions: decode gives every member, encode writes the members given', () => {
  const u = union({ v4: be32, v6: bytes(16) });
  assert.is(u.size, 16);
  assert.is(u.align, 4);
  const b = encode(u, { v4: 0x0a000001 });
  assert.is(hex(b), '0a000001' + '00'.repeat(12));
  const both = decode(u, b);
  assert.is(both.v4, 0x0a000001);
  assert.is(hex(both.v6!), hex(b));
  assert.equal(decode(u, encode(u, both)), both);
});

test('bitfields (from BTF) pack into their storage units, signed ones sign-extend', () => {
  // struct { __u32 a:3; __u32 b:5; __s32 c:4; __u8 d; }
  const l = structAt<{ a: number; b: number; c: number; d: number }>({
    size: 4, align: 4,
    fields: [
      { name: 'a', layout: u32, offset: 0, bitOffset: 0, bitSize: 3 },
      { name: 'b', layout: u32, offset: 0, bitOffset: 3, bitSize: 5 },
      { name: 'c', layout: i32, offset: 1, bitOffset: 8, bitSize: 4 },
      { name: 'd', layout: u8, offset: 2 },
    ],
  });
  const b = encode(l, { a: 5, b: 17, c: -3, d: 200 });
  // a=101, b=10001 -> byte0 = 10001101 = 0x8d; c=-3 -> 1101 = 0x0d
  assert.is(hex(b), '8d0dc800');
  assert.equal(decode(l, b), { a: 5, b: 17, c: -3, d: 200 });
  throwsLayout(() => encode(l, { a: 8, b: 0, c: 0, d: 0 }), /at 'a': 3-bit field value out of range 0\.\.7/);
  throwsLayout(() => encode(l, { a: 0, b: 0, c: -9, d: 0 }), /4-bit field value out of range -8\.\.7/);
});

test('layout construction errors', () => {
  assert.throws(() => struct({ 'not an identifier': u8 }), (e: TsbpfError) => e.code === 'LAYOUT_INVALID' && /valid C identifier/.test(e.message));
  assert.throws(() => struct({ int: u8 }), /valid C identifier/);
  assert.throws(() => struct({ a: 5 as never }), /struct field 'a' is not a layout/);
  assert.throws(() => array(u8, -1), /array length must be an integer/);
  assert.throws(() => bytes(3, { align: 4 }), /not a multiple of its alignment/);
  assert.throws(() => structAt({ size: 4, align: 4, fields: [{ name: 'x', layout: u64, offset: 0 }] }), /does not fit its 4-byte struct/);
  assert.throws(() => encode(u32, 1) && u32.decode(Buffer.alloc(2), 0), /does not fit a buffer of 2 bytes/);
  assert.throws(() => decode(u64, Buffer.alloc(4)), /expected at least 8 bytes/);
});

test('cDecl writes the C struct, declaring nested structs first with derived names', () => {
  const key = struct({ saddr: ipv4, ports: array(be16, 2), inner: struct({ a: u8, b: u64 }), list: array(struct({ v: u16 }, { name: 'item' }), 2), raw: bytes(3), name: cstring(8), m: mac, on: bool });
  assert.is(
    cDecl(key, 'flow_key'),
    [
      'struct flow_key_inner {\n\t__u8 a;\n\t__u64 b;\n};\n',
      'struct item {\n\t__u16 v;\n};\n',
      'struct flow_key {\n\ttsbpf_ipv4_t saddr;\n\t__be16 ports[2];\n\tstruct flow_key_inner inner;\n\tstruct item list[2];\n\t__u8 raw[3];\n\tchar name[8];\n\ttsbpf_mac_t m;\n\t_Bool on;\n};\n',
    ].join('\n'),
  );
  assert.is(cType(key, 'flow_key'), 'struct flow_key');
  assert.is(cType(u32), '__u32');
  assert.is(cType(ipv6), 'tsbpf_ipv6_t');
  assert.is(cDecl(array(array(u32, 3), 2), 'grid_t'), 'typedef __u32 grid_t[2][3];\n');
  assert.is(cDecl(u64, 'counter_t'), 'typedef __u64 counter_t;\n');
  assert.is(cDecl(struct({ a: u8, b: u32 }, { packed: true }), 'p'), 'struct p {\n\t__u8 a;\n\t__u32 b;\n} __attribute__((packed));\n');
  // a nested struct shared by two declarations is declared once; different layouts under one name are an error
  const shared = struct({ x: u32 }, { name: 'shared' });
  const text = cDecls([['a', struct({ s: shared })], ['b', struct({ s: shared })]]);
  assert.is(text.match(/struct shared \{/g)?.length, 1);
  assert.throws(() => cDecls([['a', struct({ s: shared })], ['b', struct({ s: struct({ y: u8 }, { name: 'shared' }) })]]), /two different layouts are both named 'shared'/);
  // overlapping members (possible from BTF) have no plain C spelling
  const overlap = structAt({ size: 8, align: 4, fields: [{ name: 'a', layout: u32, offset: 4 }, { name: 'b', layout: u32, offset: 0 }] });
  assert.throws(() => cDecl(overlap, 'o'), /cannot write a C declaration for 'o'/);
});

test('tsTypeText and describeLayout', () => {
  const l = struct({ ip: ipv4, n: u64, list: array(u16, 2), grid: array(array(u8, 2), 2), nested: struct({ on: bool }), raw: bytes(2) }, { name: 'k' });
  assert.is(tsTypeText(l), '{ ip: string; n: bigint; list: number[]; grid: Array<number[]>; nested: { on: boolean }; raw: Buffer }');
  assert.is(tsTypeText(union({ a: u8, b: u16 })), '{ a?: number; b?: number }');
  assert.is(
    describeLayout(struct({ a: u8, b: u32 }, { name: 'ab' })),
    'struct ab (8 bytes, align 4)\n  0  a  u8\n  4  b  u32',
  );
  assert.is(String(u32), 'u32 (4 bytes, align 4)');
});

test('sameShape compares byte-level layouts', () => {
  assert.ok(sameShape(struct({ a: u8, b: u32 }), struct({ a: u8, b: u32 }, { name: 'other' })));
  assert.not.ok(sameShape(struct({ a: u8, b: u32 }), struct({ a: u8, b: u32 }, { packed: true })));
  assert.not.ok(sameShape(struct({ a: u32 }), struct({ a: be32 })));
});

test.run();
