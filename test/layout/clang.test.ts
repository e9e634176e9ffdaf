// Layouts written in TS lay structs out exactly as clang -target bpf does:
// the same sizes and offsets as the BTF of test/fixtures/layouts.c, and the
// same bytes as the C initializers of its globals. And the C that cDecl
// writes for TS layouts compiles back to the same layouts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  array, be16, be32, be64, bool, bytes, C_PRELUDE, cDecls, cstring, decode, encode, i16, i32, i64, i8, ipv4, ipv6,
  mac, shapeOf, struct, structAt, u16, u32, u64, u8, union,
  type Layout,
} from '../../sdk/layout.js';
import { parseElf } from '../../runtime/elf.js';
import { btfFromObject, layoutOfType, type Btf } from '../../runtime/btf.js';
import { compileC, compileFixture } from '../btf/compile.js';

// The structs of layouts.c, written once in TS.
const mixed = struct({ a: u8, b: u32, c: u16, d: u64, e: u8 });
const flowKey = struct({ saddr: be32, daddr: be32, sport: be16, dport: be16, proto: u8 });
const stats = struct({ packets: u64, bytes: u64 });
const nested = struct({ x: u16, m: mixed, tail: bytes(3), arr: array(u32, 3) });
const pair = struct({ k: u8, v: u16 });
const arrays = struct({ p: array(pair, 3), b: u8, q: array(u64, 2), grid: array(array(i16, 3), 2) });
const endpoint = struct({ ip6: ipv6, mac, ip4: ipv4, flags: u8, peer: ipv6 });
const misc = struct({ s8: i8, flag: bool, s32: i32, name: cstring(16), color: u32, s64: i64, big: be64 });
const lpmKey = struct({ prefixlen: u32, addr: bytes(4) });
const packed = struct({ a: u8, b: u32, c: u16 }, { packed: true });
// Bitfields and anonymous unions need explicit offsets (struct() does not make them).
const bits = structAt({
  size: 16, align: 8, fields: [
    { name: 'a', layout: u32, offset: 0, bitOffset: 0, bitSize: 3 },
    { name: 'b', layout: u32, offset: 0, bitOffset: 3, bitSize: 5 },
    { name: 'c', layout: i32, offset: 1, bitOffset: 8, bitSize: 4 },
    { name: 'd', layout: u8, offset: 2 },
    { name: 'e', layout: u16, offset: 4, bitOffset: 32, bitSize: 9 },
    { name: 'f', layout: u64, offset: 8 },
  ],
});
const anon = structAt({
  size: 24, align: 4, fields: [
    { name: 'kind', layout: u32, offset: 0 },
    { name: 'v4', layout: be32, offset: 4, optional: true },
    { name: 'v6', layout: bytes(16), offset: 4, optional: true },
    { name: 'port', layout: u16, offset: 20 },
  ],
});

const obj = compileFixture('layouts.c');
const btf = btfFromObject(obj.bytes);
const elf = parseElf(obj.bytes);

function btfLayout(b: Btf, name: string): Layout<unknown> {
  const t = b.find(name, 'struct') ?? b.find(name, 'union');
  if (!t) throw new Error(`no struct ${name} in BTF`);
  return layoutOfType(b, t.id);
}

/** The bytes of a global's C initializer, from .rodata or .data. */
function globalBytes(name: string): Buffer {
  const sym = elf.symbols.find((s) => s.name === name);
  if (!sym) throw new Error(`no symbol ${name}`);
  return elf.symbolData(sym)!;
}

const cases: Array<[string, Layout<unknown>]> = [
  ['mixed', mixed], ['flow_key', flowKey], ['stats', stats], ['nested', nested], ['pair', pair], ['arrays', arrays],
  ['endpoint', endpoint], ['misc', misc], ['lpm_v4_key', lpmKey], ['packed_s', packed],
];

test('TS struct() layouts have the sizes, alignments and offsets clang gives the C structs', () => {
  for (const [name, layout] of cases) {
    const fromC = btfLayout(btf, name);
    assert.is(layout.size, btf.sizeOf(btf.find(name, 'struct')!.id), `${name} size`);
    assert.is(layout.align, fromC.align, `${name} align`);
    assert.is(shapeOf(layout), shapeOf(fromC), name);
  }
});

test('bitfields and anonymous unions: explicit layouts agree with BTF', () => {
  assert.is(shapeOf(bits), shapeOf(btfLayout(btf, 'bits')));
  // v4 is a __u32 in C, be32 here: same offsets, different meaning
  assert.is(shapeOf(anon).replace('be32', 'u32'), shapeOf(btfLayout(btf, 'anon')));
});

test('TS encoding equals the bytes of the C initializers, padding included', () => {
  const expect: Array<[string, Layout<any>, unknown]> = [
    ['g_mixed', mixed, { a: 0x11, b: 0x22334455, c: 0x6677, d: 0x8899aabbccddeeffn, e: 0x5a }],
    ['g_flow', flowKey, { saddr: 0x0a000001, daddr: 0xc0a80102, sport: 12345, dport: 80, proto: 6 }],
    ['g_nested', nested, { x: 0xbeef, m: { a: 1, b: 2, c: 3, d: 4n, e: 5 }, tail: Buffer.from([7, 8, 9]), arr: [10, 11, 0xffffffff] }],
    ['g_arrays', arrays, { p: [{ k: 1, v: 2 }, { k: 3, v: 4 }, { k: 5, v: 0xffff }], b: 9, q: [1n, 0x0102030405060708n], grid: [[-1, 2, -3], [4, -5, 6]] }],
    ['g_endpoint', endpoint, { ip6: 'fd00::1', mac: '02:00:5e:10:ab:cd', ip4: '172.16.0.1', flags: 3, peer: '2001:db8::42' }],
    ['g_misc', misc, { s8: -5, flag: true, s32: -100000, name: 'eth0', color: 300, s64: -2n, big: 0x0102030405060708n }],
    ['g_bits', bits, { a: 5, b: 17, c: -3, d: 200, e: 300, f: 42n }],
    ['g_anon', anon, { kind: 4, v4: 0x0a000002, port: 443 }],
    ['g_packed', packed, { a: 1, b: 0x01020304, c: 0x0506 }],
    ['g_lpm', lpmKey, { prefixlen: 24, addr: Buffer.from([10, 1, 2, 0]) }],
    ['g_stats', stats, { packets: 3n, bytes: 180n }],
  ];
  for (const [sym, layout, value] of expect) {
    const c = globalBytes(sym);
    assert.is(encode(layout, value).toString('hex'), c.toString('hex'), sym);
  }
  // and decoding the C bytes gives the values back (the anonymous union shows both views)
  assert.equal(decode(endpoint, globalBytes('g_endpoint')), expect[4]![2]);
  assert.equal(decode(bits, globalBytes('g_bits')), expect[6]![2]);
  const a = decode(anon, globalBytes('g_anon')) as { v4: number; v6: Buffer };
  assert.is(a.v4, 0x0a000002);
  assert.is(a.v6.subarray(0, 4).toString('hex'), '0a000002');
});

test('layouts from BTF decode the C initializers too', () => {
  const v = decode(btfLayout(btf, 'endpoint'), globalBytes('g_endpoint'));
  assert.equal(v, { ip6: 'fd00::1', mac: '02:00:5e:10:ab:cd', ip4: '172.16.0.1', flags: 3, peer: '2001:db8::42' });
  const m = decode(btfLayout(btf, 'misc'), globalBytes('g_misc'));
  assert.equal(m, { s8: -5, flag: true, s32: -100000, name: 'eth0', color: 300, s64: -2n, big: 0x0102030405060708n });
});

test('cDecl: the C that TS layouts declare compiles to the same layouts (TS -> C -> BTF)', () => {
  const ts: Array<[string, Layout<unknown>]> = [
    ['k_mixed', mixed],
    ['k_nested', nested],
    ['k_arrays', arrays],
    ['k_endpoint', endpoint],
    ['k_misc', misc],
    ['k_packed', packed],
    ['k_union', union({ v4: ipv4, v6: ipv6, raw: bytes(16) })],
    ['k_deep', struct({ a: u8, inner: struct({ b: u16, list: array(struct({ c: u8, d: u64 }), 2) }), m: mac, e: be16 })],
  ];
  const source = [
    C_PRELUDE,
    '#include <bpf/bpf_helpers.h>',
    cDecls(ts),
    // one global of each so the types reach BTF
    ...ts.map(([name, l], i) => `${l.kind === 'union' ? 'union' : 'struct'} ${name} g${i};`),
    '',
  ].join('\n');
  const b = btfFromObject(compileC(source, 'cdecl-roundtrip').bytes);
  for (const [name, layout] of ts) {
    const fromC = btfLayout(b, name);
    assert.is(shapeOf(fromC), shapeOf(layout), name);
  }
});

test('cDecl of BTF layouts (bitfields, anonymous unions, packed) compiles back to the same layouts', () => {
  const names = ['bits', 'anon', 'packed_s', 'misc', 'arrays', 'endpoint', 'nested'];
  const fromBtf = names.map((n) => [`x_${n}`, btfLayout(btf, n)] as const);
  const source = [C_PRELUDE, cDecls(fromBtf), ...fromBtf.map(([n], i) => `struct ${n} g${i};`), ''].join('\n');
  const again = btfFromObject(compileC(source, 'btf-roundtrip').bytes);
  for (const [name, layout] of fromBtf) assert.is(shapeOf(btfLayout(again, name)), shapeOf(layout), name);
});

test.run();
