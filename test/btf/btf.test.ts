// Reading BPF objects without libbpf: ELF sections and symbols, BTF types,
// layouts of BTF types and the BTF-defined maps of '.maps'.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { TsbpfError } from '../../sdk/errors.js';
import { decode, describeLayout, isStructLayout, shapeOf, type StructLayout } from '../../sdk/layout.js';
import { parseElf, SHT_SYMTAB, STT_FUNC } from '../../runtime/elf.js';
import {
  btfFromObject, datasecVars, layoutOfType, mapDefsFromBtf, mapDefsFromObject, parseBtf, parseBtfExt,
  type Btf, type BtfKind,
} from '../../runtime/btf.js';
import { compileFixture } from './compile.js';

const layouts = compileFixture('layouts.c');
const kinds = compileFixture('btf-kinds.c');

function throwsCode(fn: () => unknown, code: string, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError, String(e));
    assert.is((e as TsbpfError).code, code);
    assert.match((e as TsbpfError).message, pattern);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

const structId = (btf: Btf, name: string): number => {
  const t = btf.find(name, 'struct') ?? btf.find(name, 'union');
  if (!t) throw new Error(`no type ${name}`);
  return t.id;
};

// --- ELF --------------------------------------------------------------------

test('elf: sections by name, program sections and symbols of a clang object', () => {
  const elf = parseElf(layouts.bytes);
  assert.is(elf.machine, 247);
  for (const name of ['.BTF', '.BTF.ext', '.maps', '.rodata', '.data', 'tc', 'license']) assert.ok(elf.section(name), name);
  assert.is(elf.section('license')!.data.toString('latin1'), 'GPL\0');
  assert.equal(elf.programSections().map((s) => s.name), ['tc']);
  assert.equal(elf.programs().map((p) => [p.name, p.section]), [['count_flows', 'tc']]);
  assert.ok(elf.sections.some((s) => s.type === SHT_SYMTAB));
  const flows = elf.symbols.find((s) => s.name === 'flows')!;
  assert.is(elf.sections[flows.sectionIndex]!.name, '.maps');
  assert.ok(elf.symbols.some((s) => s.name === 'count_flows' && s.type === STT_FUNC));
  // the program refers to maps and globals through relocations against symbols
  const tc = elf.section('tc')!;
  const targets = elf.relocationsFor(tc.index).map((r) => elf.symbols[r.symbol]!.name);
  for (const name of ['flows', 'counts', 'jumps']) assert.ok(targets.includes(name), name);
});

test('elf: a symbol\'s bytes come from its section (a .rodata initializer)', () => {
  const elf = parseElf(layouts.bytes);
  const g = elf.symbols.find((s) => s.name === 'g_lpm')!;
  assert.is(elf.symbolData(g)!.toString('hex'), '18000000' + '0a010200');
});

test('elf: not an ELF file, truncated, wrong class, byte order or machine: OBJECT_INVALID', () => {
  throwsCode(() => parseElf(Buffer.from('hello, not an object')), 'OBJECT_INVALID', /not an ELF file/);
  throwsCode(() => parseElf(Buffer.alloc(100)), 'OBJECT_INVALID', /not an ELF file \(bad magic\)/);
  throwsCode(() => parseElf(layouts.bytes.subarray(0, 40)), 'OBJECT_INVALID', /too short for an ELF header/);
  throwsCode(() => parseElf(layouts.bytes.subarray(0, 4096)), 'OBJECT_INVALID', /truncated/);
  const b32 = Buffer.from(layouts.bytes);
  b32[4] = 1;
  throwsCode(() => parseElf(b32), 'OBJECT_INVALID', /not a 64-bit ELF/);
  const be = Buffer.from(layouts.bytes);
  be[5] = 2;
  throwsCode(() => parseElf(be), 'OBJECT_INVALID', /big-endian/);
  const host = readFileSync(process.execPath);
  throwsCode(() => parseElf(host, { name: 'node' }), 'OBJECT_INVALID', /'node' is an ELF file for machine \d+, not BPF/);
});

// --- BTF types ----------------------------------------------------------------

test('btf: every kind clang emits is parsed', () => {
  const btf = btfFromObject(kinds.bytes);
  const seen = new Set(btf.types.map((t) => t.kind));
  const want: BtfKind[] = ['int', 'ptr', 'array', 'struct', 'union', 'enum', 'fwd', 'typedef', 'volatile', 'const', 'restrict', 'func', 'func_proto', 'var', 'datasec', 'float', 'decl_tag', 'type_tag'];
  for (const k of want) assert.ok(seen.has(k), k);
  const s = btf.find('kinds', 'struct')!;
  assert.is(s.kind, 'struct');
  if (s.kind !== 'struct') return;
  assert.equal(s.members.map((m) => m.name), ['cv', 'rp', 'tagged', 'n', 'lvl', 'op', 'label', 'hits']);
  assert.is(btf.typeName(s.members[0]!.type), 'const volatile __u32');
  assert.is(btf.typeName(s.members[1]!.type), 'restrict int *');
  assert.is(btf.typeName(s.members[6]!.type), 'char[8]');
  const tag = btf.types.find((t) => t.kind === 'decl_tag')!;
  assert.equal(tag.kind === 'decl_tag' && [tag.name, tag.type, tag.componentIdx], ['counter', s.id, 7]);
  const helper = btf.find('helper', 'func')!;
  assert.ok(helper.kind === 'func' && helper.linkage === 0);
  const proto = helper.kind === 'func' ? btf.type(helper.type) : undefined;
  assert.equal(proto?.kind === 'func_proto' && proto.params.map((p) => p.name), ['p', 'n']);
  assert.equal(datasecVars(btf, '.data').map((v) => v.name), ['g_kinds', 'g_float']);
  assert.is(btf.sizeOf(s.id), 64);
  assert.is(btf.alignOf(s.id), 8);
});

test('btf: layouts of kinds that have values, clear errors for those that do not', () => {
  const btf = btfFromObject(kinds.bytes);
  const l = layoutOfType(btf, structId(btf, 'kinds')) as StructLayout<unknown>;
  assert.equal(l.fields.map((f) => `${f.name}@${f.offset}:${f.layout.kind}`), [
    'cv@0:u32', 'rp@8:u64', 'tagged@16:u64', 'n@24:union', 'lvl@32:u32', 'op@40:u64', 'label@48:cstring', 'hits@56:u64',
  ]);
  const n = l.fields[3]!.layout;
  assert.ok(isStructLayout(n));
  assert.equal(n.fields.map((f) => `${f.name}:${f.layout.kind}`), ['u:u32', 'f:f32', 'd:f64']);
  // .data holds g_kinds = { .cv = 1, .lvl = HIGH, .label = "kinds" }
  const elf = parseElf(kinds.bytes);
  const value = decode(l, elf.symbolData(elf.symbols.find((s) => s.name === 'g_kinds')!)!) as Record<string, unknown>;
  assert.is(value.cv, 1);
  assert.is(value.lvl, 7);
  assert.is(value.label, 'kinds');
  throwsCode(() => layoutOfType(btf, btf.find('opaque', 'fwd')!.id), 'LAYOUT_INVALID', /'struct opaque' .*incomplete type/);
  throwsCode(() => layoutOfType(btf, btf.find('helper', 'func')!.id), 'LAYOUT_INVALID', /BTF kind 'func' has no value layout/);
  throwsCode(() => layoutOfType(btf, 0), 'LAYOUT_INVALID', /void has no layout/);
  throwsCode(() => layoutOfType(btf, 100000), 'BTF_INVALID', /type id 100000 does not exist/);
});

test('btf: struct layouts keep clang\'s offsets, typedef names give meaning', () => {
  const btf = btfFromObject(layouts.bytes);
  const at = (name: string): string[] =>
    (layoutOfType(btf, structId(btf, name)) as StructLayout<unknown>).fields.map((f) =>
      `${f.name}@${f.bitSize !== undefined ? `${f.bitOffset}:${f.bitSize}` : f.offset}:${f.layout.kind}${f.optional ? '?' : ''}`);
  assert.equal(at('mixed'), ['a@0:u8', 'b@4:u32', 'c@8:u16', 'd@16:u64', 'e@24:u8']);
  assert.equal(at('flow_key'), ['saddr@0:be32', 'daddr@4:be32', 'sport@8:be16', 'dport@10:be16', 'proto@12:u8']);
  assert.equal(at('endpoint'), ['ip6@0:ipv6', 'mac@16:mac', 'ip4@24:ipv4', 'flags@28:u8', 'peer@32:ipv6']);
  assert.equal(at('misc'), ['s8@0:i8', 'flag@1:bool', 's32@4:i32', 'name@8:cstring', 'color@24:u32', 's64@32:i64', 'big@40:be64']);
  assert.equal(at('lpm_v4_key'), ['prefixlen@0:u32', 'addr@4:bytes']);
  assert.equal(at('bits'), ['a@0:3:u32', 'b@3:5:u32', 'c@8:4:i32', 'd@2:u8', 'e@32:9:u16', 'f@8:u64']);
  assert.equal(at('anon'), ['kind@0:u32', 'v4@4:u32?', 'v6@4:bytes?', 'port@20:u16']);
  const packed = layoutOfType(btf, structId(btf, 'packed_s'));
  assert.equal([packed.size, packed.align], [7, 1]);
  assert.is(describeLayout(layoutOfType(btf, structId(btf, 'arrays'))), [
    'struct arrays (48 bytes, align 8)',
    '   0  p  struct pair[3]',
    '  12  b  u8',
    '  16  q  u64[2]',
    '  32  grid  i16[2][3]',
  ].join('\n'));
});

test('btf: the BTF-defined maps of .maps, with their layouts', () => {
  const defs = mapDefsFromObject(layouts.bytes);
  const brief = defs.map((d) => [d.name, d.type, d.keySize, d.valueSize, d.maxEntries, d.flags, d.pinning, d.percpu]);
  assert.equal(brief, [
    ['flows', 'hash', 16, 16, 1024, 0, 0, false],
    ['counts', 'percpu_array', 4, 8, 4, 0, 0, true],
    ['jumps', 'prog_array', 4, 4, 4, 0, 0, false],
    ['mixed_array', 'array', 4, 32, 8, 0, 0, false],
    ['endpoints', 'lru_hash', 48, 56, 128, 0, 1, false],
    ['routes', 'lpm_trie', 8, 48, 64, 1, 0, false],
    ['oddities', 'hash', 16, 24, 16, 0, 0, false],
    ['misc_map', 'hash', 48, 7, 16, 0, 0, false],
    ['events', 'ringbuf', 0, 0, 4096, 0, 0, false],
    ['outer', 'hash_of_maps', 4, 4, 2, 0, 0, false],
  ]);
  const flows = defs[0]!;
  assert.is(flows.keyTypeName, 'struct flow_key');
  assert.is(flows.valueTypeName, 'struct stats');
  assert.is(flows.key!.size, 16);
  assert.is(shapeOf(flows.value!), 'struct/16/8{packets@0=u64,bytes@8=u64}');
  assert.is(defs[1]!.key!.kind, 'u32');
  assert.is(defs[1]!.value!.kind, 'u64');
  const jumps = defs[2]!;
  assert.equal([jumps.keyTypeId, jumps.valueTypeId, jumps.key, jumps.value], [0, 0, undefined, undefined]);
  const outer = defs[9]!;
  assert.equal(outer.inner && [outer.inner.type, outer.inner.keySize, outer.inner.valueSize, outer.inner.maxEntries], ['array', 4, 4, 1]);
  // mapDefsFromBtf gives the same from parsed BTF
  assert.is(mapDefsFromBtf(btfFromObject(layouts.bytes)).length, 10);
});

test('btf: an object without BTF, or with broken BTF, is a clear error', () => {
  const noBtf = compileFixture('layouts.c', { debug: false });
  throwsCode(() => mapDefsFromObject(noBtf.bytes, 'plain.o'), 'BTF_INVALID', /'plain\.o' has no \.BTF section/);
  throwsCode(() => mapDefsFromObject(Buffer.from('garbage')), 'OBJECT_INVALID', /not an ELF file/);
  const raw = parseElf(layouts.bytes).section('.BTF')!.data;
  throwsCode(() => parseBtf(Buffer.alloc(8)), 'BTF_INVALID', /too short/);
  const badMagic = Buffer.from(raw);
  badMagic.writeUInt16LE(0x1234, 0);
  throwsCode(() => parseBtf(badMagic), 'BTF_INVALID', /not BTF \(magic 0x1234/);
  throwsCode(() => parseBtf(raw.subarray(0, raw.length - 10)), 'BTF_INVALID', /truncated/);
  const badVersion = Buffer.from(raw);
  badVersion[2] = 9;
  throwsCode(() => parseBtf(badVersion), 'BTF_INVALID', /unsupported BTF version 9/);
});

/** A raw BTF blob from type records and a string table, as the kernel's format lays it out. */
function buildBtf(types: Buffer[], strings: string[]): Buffer {
  const strs = Buffer.from('\0' + strings.map((s) => s + '\0').join(''));
  const typeSec = Buffer.concat(types);
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr[2] = 1;
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(0, 8);
  hdr.writeUInt32LE(typeSec.length, 12);
  hdr.writeUInt32LE(typeSec.length, 16);
  hdr.writeUInt32LE(strs.length, 20);
  return Buffer.concat([hdr, typeSec, strs]);
}
const u32s = (...xs: number[]): Buffer => {
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => b.writeUInt32LE(x >>> 0, i * 4));
  return b;
};
const info = (kind: number, vlen: number, kflag = false): number => ((kflag ? 1 : 0) << 31) | (kind << 24) | vlen;

test('btf: enum64 (clang 15+) and signed enums, built by hand', () => {
  // strings: 1 'big', 5 'A', 7 'B', 9 'sgn', 13 'N'
  const btf = parseBtf(buildBtf([
    // [1] ENUM64 'big' size 8, signed, values A = -2, B = 2^40
    u32s(1, info(19, 2, true), 8, 5, 0xfffffffe, 0xffffffff, 7, 0, 0x100),
    // [2] ENUM 'sgn' size 4, signed, N = -1
    u32s(9, info(6, 1, true), 4, 13, 0xffffffff),
  ], ['big', 'A', 'B', 'sgn', 'N']));
  const e = btf.type(1);
  assert.ok(e.kind === 'enum64');
  if (e.kind !== 'enum64') return;
  assert.equal(e.values.map((v) => [v.name, v.value]), [['A', -2n], ['B', 1n << 40n]]);
  assert.is(layoutOfType(btf, 1).kind, 'i64');
  const s = btf.type(2);
  assert.ok(s.kind === 'enum' && s.signed && s.values[0]!.value === -1n);
  assert.is(layoutOfType(btf, 2).kind, 'i32');
  assert.is(btf.typeName(1), 'enum big');
});

test('btf: malformed type records are BTF_INVALID', () => {
  throwsCode(() => parseBtf(buildBtf([u32s(0, info(25, 0), 0)], [])), 'BTF_INVALID', /unknown kind 25/);
  throwsCode(() => parseBtf(buildBtf([u32s(0, info(4, 3), 8, 0, 0)], [])), 'BTF_INVALID', /truncated inside type 1/);
  throwsCode(() => parseBtf(buildBtf([u32s(999, info(2, 0), 0)], ['x'])), 'BTF_INVALID', /string offset 999/);
  // a typedef loop
  const loop = parseBtf(buildBtf([u32s(1, info(8, 0), 2), u32s(1, info(8, 0), 1)], ['t']));
  throwsCode(() => loop.sizeOf(1), 'BTF_INVALID', /chain of more than 64/);
});

test('btf.ext: line info maps instructions back to the C source', () => {
  const elf = parseElf(layouts.bytes);
  const btf = parseBtf(elf.section('.BTF')!.data);
  const ext = parseBtfExt(elf.section('.BTF.ext')!.data, btf);
  const lines = ext.lineInfo.get('tc')!;
  assert.ok(lines.length > 3);
  assert.match(lines[0]!.file, /layouts\.c$/);
  assert.ok(lines.some((l) => /bpf_map_lookup_elem\(&flows/.test(l.line)));
  const funcs = ext.funcInfo.get('tc')!;
  assert.is(funcs.length, 1);
  const f = btf.type(funcs[0]!.typeId);
  assert.is(f.kind === 'func' && f.name, 'count_flows');
});

test.run();
