/**
 * BTF, the type information clang writes into a BPF object (.BTF): parsed in
 * TS so that an object compiled elsewhere gets typed map accessors, and so
 * that tests can prove our layouts equal clang's. Also reads the BTF-defined
 * maps of the '.maps' section (the `__uint/__type` struct convention of
 * libbpf's bpf_helpers.h).
 */
import { TsbpfError } from '../sdk/errors.js';
import {
  array, be16, be32, be64, bool, bytes, cstring, f32, f64, i16, i32, i64, i8, ipv4, ipv6, mac,
  structAt, u16, u32, u64, u8,
  type Field, type Layout,
} from '../sdk/layout.js';
import { parseElf, type ElfFile } from './elf.js';

export const BTF_MAGIC = 0xeb9f;

export type BtfKind =
  | 'void' | 'int' | 'ptr' | 'array' | 'struct' | 'union' | 'enum' | 'fwd' | 'typedef' | 'volatile'
  | 'const' | 'restrict' | 'func' | 'func_proto' | 'var' | 'datasec' | 'float' | 'decl_tag' | 'type_tag' | 'enum64';

const KINDS: BtfKind[] = [
  'void', 'int', 'ptr', 'array', 'struct', 'union', 'enum', 'fwd', 'typedef', 'volatile',
  'const', 'restrict', 'func', 'func_proto', 'var', 'datasec', 'float', 'decl_tag', 'type_tag', 'enum64',
];

interface Base { id: number; name: string }
export interface BtfVoid extends Base { kind: 'void' }
export interface BtfInt extends Base {
  kind: 'int';
  size: number;
  signed: boolean;
  char: boolean;
  bool: boolean;
  /** BTF_INT_OFFSET: bit offset of the value within its storage (old-style bitfields). */
  bitOffset: number;
  /** BTF_INT_BITS */
  bits: number;
}
export interface BtfPtr extends Base { kind: 'ptr'; type: number }
export interface BtfArray extends Base { kind: 'array'; type: number; indexType: number; nelems: number }
export interface BtfMember { name: string; type: number; bitOffset: number; /** 0 unless a bitfield */ bitfieldSize: number }
export interface BtfStruct extends Base { kind: 'struct' | 'union'; size: number; members: BtfMember[] }
export interface BtfEnumValue { name: string; value: bigint }
export interface BtfEnum extends Base { kind: 'enum' | 'enum64'; size: number; signed: boolean; values: BtfEnumValue[] }
export interface BtfFwd extends Base { kind: 'fwd'; union: boolean }
export interface BtfRef extends Base { kind: 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag'; type: number }
export interface BtfFunc extends Base { kind: 'func'; type: number; /** 0 static, 1 global, 2 extern */ linkage: number }
export interface BtfFuncProto extends Base { kind: 'func_proto'; returnType: number; params: Array<{ name: string; type: number }> }
export interface BtfVar extends Base { kind: 'var'; type: number; /** 0 static, 1 global, 2 extern */ linkage: number }
export interface BtfDatasec extends Base { kind: 'datasec'; size: number; vars: Array<{ type: number; offset: number; size: number }> }
export interface BtfFloat extends Base { kind: 'float'; size: number }
export interface BtfDeclTag extends Base { kind: 'decl_tag'; type: number; /** -1: the type itself, else member or parameter index */ componentIdx: number }

export type BtfType =
  | BtfVoid | BtfInt | BtfPtr | BtfArray | BtfStruct | BtfEnum | BtfFwd | BtfRef | BtfFunc
  | BtfFuncProto | BtfVar | BtfDatasec | BtfFloat | BtfDeclTag;

export interface Btf {
  /** Index = type id; [0] is void. */
  readonly types: readonly BtfType[];
  type(id: number): BtfType;
  /** The first type with this name (and kind, if given). */
  find(name: string, kind?: BtfKind): BtfType | undefined;
  /** Skips typedefs and const/volatile/restrict/type tags. */
  resolve(id: number): BtfType;
  /** Skips const/volatile/restrict/type tags only (typedef names carry meaning: __be32). */
  skipModifiers(id: number): BtfType;
  sizeOf(id: number): number;
  alignOf(id: number): number;
  /** A C spelling of the type: 'struct flow_key', '__u32', '__u8[16]', 'const char *'. */
  typeName(id: number): string;
  /** The string at `offset` in the string section. */
  str(offset: number): string;
}

function bad(message: string): never {
  throw new TsbpfError('BTF_INVALID', message, { hint: 'the object was not built with usable BTF; build it with clang -g -O2 -target bpf' });
}

/** Parses a raw .BTF section (little-endian). */
export function parseBtf(raw: Buffer): Btf {
  if (!Buffer.isBuffer(raw) || raw.length < 24) bad(`BTF is too short (${raw?.length ?? 0} bytes) for its header`);
  const magic = raw.readUInt16LE(0);
  if (magic === 0x9feb) bad('BTF is big-endian; only little-endian BPF objects are supported');
  if (magic !== BTF_MAGIC) bad(`not BTF (magic 0x${magic.toString(16)}, expected 0xeb9f)`);
  const version = raw[2];
  if (version !== 1) bad(`unsupported BTF version ${version}`);
  const hdrLen = raw.readUInt32LE(4);
  const typeOff = raw.readUInt32LE(8);
  const typeLen = raw.readUInt32LE(12);
  const strOff = raw.readUInt32LE(16);
  const strLen = raw.readUInt32LE(20);
  if (hdrLen < 24 || hdrLen > raw.length) bad(`BTF header length ${hdrLen} is invalid`);
  const body = raw.subarray(hdrLen);
  if (typeOff + typeLen > body.length) bad(`BTF is truncated: the type section ends at ${typeOff + typeLen}, past ${body.length}`);
  if (strOff + strLen > body.length) bad(`BTF is truncated: the string section ends at ${strOff + strLen}, past ${body.length}`);
  const strings = body.subarray(strOff, strOff + strLen);
  if (strLen > 0 && strings[0] !== 0) bad('BTF string section does not start with an empty string');
  const str = (off: number): string => {
    if (off === 0) return '';
    if (off >= strings.length) bad(`BTF string offset ${off} is outside the string section (${strings.length} bytes)`);
    const end = strings.indexOf(0, off);
    if (end === -1) bad(`BTF string at ${off} is not NUL-terminated`);
    return strings.toString('utf8', off, end);
  };

  const d = body.subarray(typeOff, typeOff + typeLen);
  const types: BtfType[] = [{ id: 0, kind: 'void', name: '' }];
  let p = 0;
  const need = (n: number, id: number): void => {
    if (p + n > d.length) bad(`BTF is truncated inside type ${id}`);
  };
  while (p < d.length) {
    const id = types.length;
    need(12, id);
    const name = str(d.readUInt32LE(p));
    const info = d.readUInt32LE(p + 4);
    const sizeOrType = d.readUInt32LE(p + 8);
    p += 12;
    const vlen = info & 0xffff;
    const kindNo = (info >>> 24) & 0x1f;
    const kflag = (info >>> 31) === 1;
    const kind = KINDS[kindNo];
    if (!kind || kind === 'void') bad(`BTF type ${id} has unknown kind ${kindNo}`);
    let t: BtfType;
    switch (kind) {
      case 'int': {
        need(4, id);
        const x = d.readUInt32LE(p);
        p += 4;
        const enc = (x >>> 24) & 0xf;
        t = { id, kind, name, size: sizeOrType, signed: (enc & 1) !== 0, char: (enc & 2) !== 0, bool: (enc & 4) !== 0, bitOffset: (x >>> 16) & 0xff, bits: x & 0xff };
        break;
      }
      case 'ptr':
        t = { id, kind, name, type: sizeOrType };
        break;
      case 'array':
        need(12, id);
        t = { id, kind, name, type: d.readUInt32LE(p), indexType: d.readUInt32LE(p + 4), nelems: d.readUInt32LE(p + 8) };
        p += 12;
        break;
      case 'struct':
      case 'union': {
        need(12 * vlen, id);
        const members: BtfMember[] = [];
        for (let i = 0; i < vlen; i++, p += 12) {
          const off = d.readUInt32LE(p + 8);
          members.push({
            name: str(d.readUInt32LE(p)),
            type: d.readUInt32LE(p + 4),
            bitOffset: kflag ? off & 0xffffff : off,
            bitfieldSize: kflag ? off >>> 24 : 0,
          });
        }
        t = { id, kind, name, size: sizeOrType, members };
        break;
      }
      case 'enum': {
        need(8 * vlen, id);
        const values: BtfEnumValue[] = [];
        for (let i = 0; i < vlen; i++, p += 8) {
          const v = kflag ? d.readInt32LE(p + 4) : d.readUInt32LE(p + 4);
          values.push({ name: str(d.readUInt32LE(p)), value: BigInt(v) });
        }
        t = { id, kind, name, size: sizeOrType, signed: kflag, values };
        break;
      }
      case 'enum64': {
        need(12 * vlen, id);
        const values: BtfEnumValue[] = [];
        for (let i = 0; i < vlen; i++, p += 12) {
          let v = (BigInt(d.readUInt32LE(p + 8)) << 32n) | BigInt(d.readUInt32LE(p + 4));
          if (kflag && v >= 1n << 63n) v -= 1n << 64n;
          values.push({ name: str(d.readUInt32LE(p)), value: v });
        }
        t = { id, kind, name, size: sizeOrType, signed: kflag, values };
        break;
      }
      case 'fwd':
        t = { id, kind, name, union: kflag };
        break;
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'type_tag':
        t = { id, kind, name, type: sizeOrType };
        break;
      case 'func':
        t = { id, kind, name, type: sizeOrType, linkage: vlen };
        break;
      case 'func_proto': {
        need(8 * vlen, id);
        const params: Array<{ name: string; type: number }> = [];
        for (let i = 0; i < vlen; i++, p += 8) params.push({ name: str(d.readUInt32LE(p)), type: d.readUInt32LE(p + 4) });
        t = { id, kind, name, returnType: sizeOrType, params };
        break;
      }
      case 'var':
        need(4, id);
        t = { id, kind, name, type: sizeOrType, linkage: d.readUInt32LE(p) };
        p += 4;
        break;
      case 'datasec': {
        need(12 * vlen, id);
        const vars: Array<{ type: number; offset: number; size: number }> = [];
        for (let i = 0; i < vlen; i++, p += 12) vars.push({ type: d.readUInt32LE(p), offset: d.readUInt32LE(p + 4), size: d.readUInt32LE(p + 8) });
        t = { id, kind, name, size: sizeOrType, vars };
        break;
      }
      case 'float':
        t = { id, kind, name, size: sizeOrType };
        break;
      case 'decl_tag':
        need(4, id);
        t = { id, kind, name, type: sizeOrType, componentIdx: d.readInt32LE(p) };
        p += 4;
        break;
    }
    types.push(t);
  }
  return makeBtf(types, str);
}

function makeBtf(types: BtfType[], str: (off: number) => string): Btf {
  const type = (id: number): BtfType => {
    const t = types[id];
    if (!t) bad(`BTF type id ${id} does not exist (there are ${types.length - 1} types)`);
    return t;
  };
  const refTarget = (t: BtfType): number | undefined =>
    t.kind === 'typedef' || t.kind === 'const' || t.kind === 'volatile' || t.kind === 'restrict' || t.kind === 'type_tag' ? t.type : undefined;

  const follow = (id: number, alsoTypedef: boolean): BtfType => {
    let t = type(id);
    for (let hops = 0; hops < 64; hops++) {
      const next = refTarget(t);
      if (next === undefined || (t.kind === 'typedef' && !alsoTypedef)) return t;
      t = type(next);
    }
    return bad(`BTF type ${id} is a chain of more than 64 typedefs or modifiers (a loop?)`);
  };

  const sizeCache = new Map<number, number>();
  const sizeOf = (id: number, depth = 0): number => {
    const cached = sizeCache.get(id);
    if (cached !== undefined) return cached;
    if (depth > 64) bad(`BTF type ${id} nests more than 64 levels deep`);
    const t = follow(id, true);
    let n: number;
    switch (t.kind) {
      case 'int': case 'struct': case 'union': case 'enum': case 'enum64': case 'float': case 'datasec':
        n = t.size; break;
      case 'ptr':
        n = 8; break;
      case 'array':
        n = t.nelems * sizeOf(t.type, depth + 1); break;
      case 'var':
        n = sizeOf(t.type, depth + 1); break;
      default:
        return bad(`BTF type ${id} (${t.kind}${t.name ? ` ${t.name}` : ''}) has no size`);
    }
    sizeCache.set(id, n);
    return n;
  };

  // Like libbpf's btf__align_of: natural alignment, 1 for a struct whose offsets show it is packed.
  const alignOf = (id: number, depth = 0): number => {
    if (depth > 64) bad(`BTF type ${id} nests more than 64 levels deep`);
    const t = follow(id, true);
    switch (t.kind) {
      case 'int': case 'enum': case 'enum64': case 'float':
        return Math.min(Math.max(t.size, 1), 8);
      case 'ptr':
        return 8;
      case 'array':
        return alignOf(t.type, depth + 1);
      case 'struct': case 'union': {
        let a = 1;
        for (const m of t.members) {
          const ma = alignOf(m.type, depth + 1);
          if (m.bitfieldSize === 0 && !isOldBitfield(m) && m.bitOffset % (8 * ma) !== 0) return 1;
          a = Math.max(a, ma);
        }
        return t.size % a === 0 ? a : 1;
      }
      default:
        return bad(`BTF type ${id} (${t.kind}) has no alignment`);
    }
  };
  const isOldBitfield = (m: BtfMember): boolean => {
    const r = follow(m.type, true);
    return r.kind === 'int' && (r.bits !== r.size * 8 || r.bitOffset !== 0);
  };

  const typeName = (id: number, depth = 0): string => {
    if (depth > 32) return '...';
    const t = type(id);
    switch (t.kind) {
      case 'void': return 'void';
      case 'int': case 'float': case 'typedef': return t.name;
      case 'struct': case 'union': case 'enum': return `${t.kind} ${t.name || '(anon)'}`;
      case 'enum64': return `enum ${t.name || '(anon)'}`;
      case 'fwd': return `${t.union ? 'union' : 'struct'} ${t.name}`;
      case 'ptr': return `${typeName(t.type, depth + 1)} *`;
      case 'array': return `${typeName(t.type, depth + 1)}[${t.nelems}]`;
      case 'const': case 'volatile': case 'restrict': return `${t.kind} ${typeName(t.type, depth + 1)}`;
      case 'type_tag': return typeName(t.type, depth + 1);
      case 'func_proto': return `${typeName(t.returnType, depth + 1)} (*)(${t.params.map((q) => (q.type === 0 ? '...' : typeName(q.type, depth + 1))).join(', ')})`;
      default: return t.name || t.kind;
    }
  };

  const byName = new Map<string, BtfType[]>();
  for (const t of types) {
    if (!t.name) continue;
    const list = byName.get(t.name);
    if (list) list.push(t);
    else byName.set(t.name, [t]);
  }

  return {
    types,
    type,
    find: (name, kind) => byName.get(name)?.find((t) => kind === undefined || t.kind === kind),
    resolve: (id) => follow(id, true),
    skipModifiers: (id) => follow(id, false),
    sizeOf: (id) => sizeOf(id),
    alignOf: (id) => alignOf(id),
    typeName: (id) => typeName(id),
    str,
  };
}

// ---------------------------------------------------------------------------
// layouts from BTF

/** Typedef names (and struct tags) whose meaning is more than their bytes. */
const NAMED: Record<string, { layout: Layout<unknown>; size: number }> = {
  __be16: { layout: be16, size: 2 },
  __be32: { layout: be32, size: 4 },
  __be64: { layout: be64, size: 8 },
  tsbpf_ipv4_t: { layout: ipv4, size: 4 },
  tsbpf_ipv6_t: { layout: ipv6, size: 16 },
  tsbpf_mac_t: { layout: mac, size: 6 },
  ipv4_t: { layout: ipv4, size: 4 },
  ipv6_t: { layout: ipv6, size: 16 },
  mac_t: { layout: mac, size: 6 },
  mac_addr_t: { layout: mac, size: 6 },
};
const NAMED_STRUCTS: Record<string, { layout: Layout<unknown>; size: number }> = {
  in_addr: { layout: ipv4, size: 4 },
  in6_addr: { layout: ipv6, size: 16 },
};

/**
 * The layout of BTF type `typeId`: integers become u8..u64/i8..i64 (bool for
 * _Bool), typedefs __be16/__be32/__be64 become be16/be32/be64,
 * tsbpf_ipv4_t/tsbpf_ipv6_t/tsbpf_mac_t and struct in_addr/in6_addr become
 * ipv4/ipv6/mac, `char x[n]` a cstring, unsigned byte arrays bytes(n), other
 * arrays array(), structs and unions keep BTF's exact member offsets
 * (bitfields included; anonymous members are flattened, anonymous union
 * members become optional fields).
 */
export function layoutOfType(btf: Btf, typeId: number): Layout<unknown> {
  return layoutOf(btf, typeId, btf.typeName(typeId), 0);
}

function unsupported(btf: Btf, path: string, id: number, why: string): never {
  throw new TsbpfError('LAYOUT_INVALID', `cannot make a layout for '${path}' (${btf.typeName(id)}): ${why}`, {
    details: { path, typeId: id },
  });
}

function intLayout(size: number, signed: boolean): Layout<unknown> | undefined {
  switch (size) {
    case 1: return signed ? i8 : u8;
    case 2: return signed ? i16 : u16;
    case 4: return signed ? i32 : u32;
    case 8: return signed ? i64 : u64;
    default: return undefined;
  }
}

function layoutOf(btf: Btf, id: number, path: string, depth: number): Layout<unknown> {
  if (depth > 32) unsupported(btf, path, id, 'nested more than 32 levels deep');
  let t = btf.skipModifiers(id);
  // Walk typedef chains looking for a name that says what the bytes mean.
  while (t.kind === 'typedef') {
    const named = NAMED[t.name];
    if (named && btf.sizeOf(t.id) === named.size) return named.layout;
    t = btf.skipModifiers(t.type);
  }
  switch (t.kind) {
    case 'void':
      return unsupported(btf, path, id, 'void has no layout');
    case 'int': {
      if (t.bool && t.size === 1) return bool;
      if (t.bits !== t.size * 8 || t.bitOffset !== 0) return unsupported(btf, path, id, 'an old-style BTF bitfield integer outside a struct');
      return intLayout(t.size, t.signed) ?? bytes(t.size, { align: Math.min(t.size, 8) });
    }
    case 'enum':
    case 'enum64':
      return intLayout(t.size, t.signed || t.values.some((v) => v.value < 0n)) ?? unsupported(btf, path, id, `enum of ${t.size} bytes`);
    case 'float':
      if (t.size === 4) return f32;
      if (t.size === 8) return f64;
      return bytes(t.size, { align: Math.min(t.size, 8) });
    case 'ptr':
      // A pointer in a map value (kptr) is 8 opaque bytes to user space.
      return u64;
    case 'array': {
      const el = btf.skipModifiers(t.type);
      const elr = btf.resolve(t.type);
      if (elr.kind === 'int' && elr.size === 1 && !elr.bool && el.kind !== 'typedef') {
        if (elr.char || elr.name === 'char') return cstring(t.nelems);
        if (!elr.signed) return bytes(t.nelems);
      }
      // __u8 (a typedef of unsigned char) arrays are byte arrays too, unless the typedef name means more.
      if (elr.kind === 'int' && elr.size === 1 && !elr.bool && !elr.signed && el.kind === 'typedef' && !NAMED[el.name]) {
        return bytes(t.nelems);
      }
      return array(layoutOf(btf, t.type, `${path}[]`, depth + 1), t.nelems);
    }
    case 'struct':
    case 'union': {
      const named = NAMED_STRUCTS[t.name];
      if (named && t.size === named.size) return named.layout;
      const fields: Field[] = [];
      collectMembers(btf, t, 0, false, path, depth, fields);
      return structAt({
        name: t.name || undefined,
        kind: t.kind,
        size: t.size,
        align: btf.alignOf(t.id),
        fields,
      });
    }
    case 'fwd':
      return unsupported(btf, path, id, 'an incomplete type (only forward-declared)');
    default:
      return unsupported(btf, path, id, `BTF kind '${t.kind}' has no value layout`);
  }
}

function collectMembers(btf: Btf, t: BtfStruct, baseBits: number, optional: boolean, path: string, depth: number, out: Field[]): void {
  for (const m of t.members) {
    const bitOffset = baseBits + m.bitOffset;
    const mpath = m.name ? `${path}.${m.name}` : path;
    const mt = btf.resolve(m.type);
    if (!m.name) {
      if (mt.kind === 'struct' || mt.kind === 'union') {
        if (bitOffset % 8 !== 0) unsupported(btf, path, m.type, 'an anonymous member that is not byte-aligned');
        // C lets the parent name these members directly: flatten them.
        collectMembers(btf, mt, bitOffset, optional || t.kind === 'union' || mt.kind === 'union', path, depth + 1, out);
        continue;
      }
      // An unnamed bitfield (`int : 3;`) is padding.
      continue;
    }
    let bitSize = m.bitfieldSize;
    let bits = bitOffset;
    if (bitSize === 0 && mt.kind === 'int' && (mt.bits !== mt.size * 8 || mt.bitOffset !== 0)) {
      bitSize = mt.bits;
      bits += mt.bitOffset;
    }
    const isUnionMember = optional || t.kind === 'union';
    if (bitSize > 0) {
      const storage = mt.kind === 'int' || mt.kind === 'enum' || mt.kind === 'enum64'
        ? intLayout(mt.size, mt.kind === 'int' ? mt.signed : mt.signed || mt.values.some((v) => v.value < 0n))
        : undefined;
      if (!storage) unsupported(btf, mpath, m.type, 'a bitfield of a type that is not an integer or enum');
      out.push({ name: m.name, layout: storage, offset: Math.floor(bits / 8), bitOffset: bits, bitSize, ...(isUnionMember ? { optional: true } : {}) });
      continue;
    }
    if (bits % 8 !== 0) unsupported(btf, mpath, m.type, `member at bit offset ${bits} is not byte-aligned`);
    const layout = layoutOf(btf, m.type, mpath, depth + 1);
    out.push({ name: m.name, layout, offset: bits / 8, ...(optional ? { optional: true } : {}) });
  }
}

// ---------------------------------------------------------------------------
// BTF-defined maps

/** libbpf's names of BPF_MAP_TYPE_* (index = value). */
export const MAP_TYPE_NAMES: readonly string[] = [
  'unspec', 'hash', 'array', 'prog_array', 'perf_event_array', 'percpu_hash', 'percpu_array', 'stack_trace',
  'cgroup_array', 'lru_hash', 'lru_percpu_hash', 'lpm_trie', 'array_of_maps', 'hash_of_maps', 'devmap', 'sockmap',
  'cpumap', 'xskmap', 'sockhash', 'cgroup_storage', 'reuseport_sockarray', 'percpu_cgroup_storage', 'queue', 'stack',
  'sk_storage', 'devmap_hash', 'struct_ops', 'ringbuf', 'inode_storage', 'task_storage', 'bloom_filter', 'user_ringbuf',
  'cgrp_storage', 'arena',
];

export interface MapDef {
  name: string;
  /** libbpf's type name, e.g. 'hash', 'percpu_array', 'lpm_trie', 'ringbuf'. */
  type: string;
  /** BPF_MAP_TYPE_* */
  typeId: number;
  /** BTF type ids of key and value (0 when the map gives sizes only). */
  keyTypeId: number;
  valueTypeId: number;
  /** C spellings of the key and value types, e.g. 'struct flow_key', '__u32'. */
  keyTypeName?: string;
  valueTypeName?: string;
  keySize: number;
  /** For per-CPU maps: the size of one CPU's value. */
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** 0 none, 1 LIBBPF_PIN_BY_NAME */
  pinning: number;
  numaNode?: number;
  mapExtra?: bigint;
  /** Whether a lookup returns one value per CPU. */
  percpu: boolean;
  key?: Layout<unknown>;
  value?: Layout<unknown>;
  /** Why `key`/`value` could not be made, when they could not. */
  keyError?: string;
  valueError?: string;
  /** The inner map of a map-in-map (from `__array(values, struct {...})`). */
  inner?: MapDef;
}

const PERCPU = new Set(['percpu_hash', 'percpu_array', 'lru_percpu_hash', 'percpu_cgroup_storage']);

/** The maps of the object's '.maps' section, in section order. */
export function mapDefsFromBtf(btf: Btf): MapDef[] {
  const sec = btf.types.find((t): t is BtfDatasec => t.kind === 'datasec' && t.name === '.maps');
  if (!sec) return [];
  const out: MapDef[] = [];
  for (const v of sec.vars) {
    const vt = btf.type(v.type);
    if (vt.kind !== 'var') bad(`'.maps' entry ${v.type} is a ${vt.kind}, not a variable`);
    out.push(mapDefOf(btf, vt.name, vt.type));
  }
  return out;
}

function mapDefOf(btf: Btf, name: string, typeId: number): MapDef {
  const def = btf.resolve(typeId);
  if (def.kind !== 'struct') bad(`map '${name}' is defined by a ${def.kind}, expected a struct of __uint/__type members`);
  const ints: Record<string, number | bigint> = {};
  let keyTypeId = 0;
  let valueTypeId = 0;
  let inner: MapDef | undefined;
  for (const m of def.members) {
    const mt = btf.skipModifiers(m.type);
    switch (m.name) {
      case 'key':
      case 'value': {
        if (mt.kind !== 'ptr') bad(`map '${name}': member '${m.name}' must be __type(${m.name}, T), a pointer`);
        if (m.name === 'key') keyTypeId = mt.type;
        else valueTypeId = mt.type;
        break;
      }
      case 'values': {
        // __array(values, T): an array of pointers; T is the inner map (or a program prototype).
        const arr = mt.kind === 'array' ? mt : undefined;
        const elem = arr ? btf.skipModifiers(arr.type) : undefined;
        if (!elem || elem.kind !== 'ptr') bad(`map '${name}': member 'values' must be __array(values, T)`);
        const target = btf.resolve(elem.type);
        if (target.kind === 'struct') inner = mapDefOf(btf, `${name}.inner`, elem.type);
        break;
      }
      default: {
        const n = uintMember(btf, mt);
        if (n === undefined) bad(`map '${name}': member '${m.name}' is not an __uint() value`);
        ints[m.name] = n;
      }
    }
  }
  const typeNo = Number(ints['type'] ?? 0);
  const type = MAP_TYPE_NAMES[typeNo] ?? `type_${typeNo}`;
  const sizeOrDefault = (explicit: number | bigint | undefined, btfId: number, fallback: number): number =>
    btfId ? btf.sizeOf(btfId) : explicit !== undefined ? Number(explicit) : fallback;
  // libbpf fills 4-byte keys/values for fd arrays (programs, inner maps, perf buffers) when they are left out.
  const fdMap = ['prog_array', 'array_of_maps', 'hash_of_maps', 'perf_event_array', 'cgroup_array'].includes(type);
  const out: MapDef = {
    name,
    type,
    typeId: typeNo,
    keyTypeId,
    valueTypeId,
    keySize: sizeOrDefault(ints['key_size'], keyTypeId, fdMap ? 4 : 0),
    valueSize: sizeOrDefault(ints['value_size'], valueTypeId, fdMap ? 4 : 0),
    maxEntries: Number(ints['max_entries'] ?? 0),
    flags: Number(ints['map_flags'] ?? 0),
    pinning: Number(ints['pinning'] ?? 0),
    percpu: PERCPU.has(type),
  };
  if (ints['numa_node'] !== undefined) out.numaNode = Number(ints['numa_node']);
  if (ints['map_extra'] !== undefined) out.mapExtra = BigInt(ints['map_extra']);
  if (inner) out.inner = inner;
  if (keyTypeId) {
    out.keyTypeName = btf.typeName(keyTypeId);
    try {
      out.key = layoutOfType(btf, keyTypeId);
    } catch (e) {
      out.keyError = (e as Error).message;
    }
  }
  if (valueTypeId) {
    out.valueTypeName = btf.typeName(valueTypeId);
    try {
      out.value = layoutOfType(btf, valueTypeId);
    } catch (e) {
      out.valueError = (e as Error).message;
    }
  }
  return out;
}

/** `__uint(name, N)` is `int (*name)[N]`; `__ulong(name, N)` is an enum holding N. */
function uintMember(btf: Btf, t: BtfType): number | bigint | undefined {
  if (t.kind === 'ptr') {
    const a = btf.skipModifiers(t.type);
    if (a.kind === 'array') return a.nelems;
    return undefined;
  }
  if ((t.kind === 'enum' || t.kind === 'enum64') && t.values.length > 0) {
    const v = t.values[0]!.value;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n ? Number(v) : v;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// objects

/** Variables of a data section ('.rodata', '.data', '.bss', '.maps', ...) as BTF records them. */
export function datasecVars(btf: Btf, section: string): Array<{ name: string; typeId: number; offset: number; size: number }> {
  const sec = btf.types.find((t): t is BtfDatasec => t.kind === 'datasec' && t.name === section);
  if (!sec) return [];
  return sec.vars.map((v) => {
    const vt = btf.type(v.type);
    return { name: vt.name, typeId: vt.kind === 'var' ? vt.type : v.type, offset: v.offset, size: v.size };
  });
}

/** The object's parsed BTF; OBJECT_INVALID for a bad ELF, BTF_INVALID when .BTF is missing or bad. */
export function btfFromObject(elfBytes: Buffer | ElfFile, name?: string): Btf {
  const elf = Buffer.isBuffer(elfBytes) ? parseElf(elfBytes, name ? { name } : {}) : elfBytes;
  const sec = elf.section('.BTF');
  if (!sec) {
    throw new TsbpfError('BTF_INVALID', `${name ? `'${name}'` : 'the object'} has no .BTF section, so its maps have no types`, {
      hint: 'compile it with clang -g -O2 -target bpf (-g emits BTF)',
    });
  }
  return parseBtf(sec.data);
}

/** The BTF-defined maps of an object file's bytes, with layouts for their keys and values. */
export function mapDefsFromObject(elfBytes: Buffer, name?: string): MapDef[] {
  return mapDefsFromBtf(btfFromObject(elfBytes, name));
}

// ---------------------------------------------------------------------------
// .BTF.ext: function and line info (maps instructions back to source lines)

export interface BtfLineInfo {
  /** Byte offset of the instruction in its section. */
  insnOff: number;
  file: string;
  line: string;
  lineNum: number;
  column: number;
}

export interface BtfExt {
  funcInfo: Map<string, Array<{ insnOff: number; typeId: number }>>;
  lineInfo: Map<string, BtfLineInfo[]>;
}

/** Parses .BTF.ext against its .BTF (for the strings). Keys of the maps are section names. */
export function parseBtfExt(raw: Buffer, btf: Btf): BtfExt {
  if (raw.length < 24) bad(`BTF.ext is too short (${raw.length} bytes)`);
  if (raw.readUInt16LE(0) !== BTF_MAGIC) bad('not BTF.ext (bad magic)');
  const hdrLen = raw.readUInt32LE(4);
  const funcOff = raw.readUInt32LE(8);
  const funcLen = raw.readUInt32LE(12);
  const lineOff = raw.readUInt32LE(16);
  const lineLen = raw.readUInt32LE(20);
  const body = raw.subarray(hdrLen);
  const records = <T>(off: number, len: number, minRec: number, read: (b: Buffer, at: number) => T): Map<string, T[]> => {
    const out = new Map<string, T[]>();
    if (len === 0) return out;
    if (off + len > body.length) bad('BTF.ext is truncated');
    const d = body.subarray(off, off + len);
    const recSize = d.readUInt32LE(0);
    if (recSize < minRec) bad(`BTF.ext record size ${recSize} is too small`);
    let p = 4;
    while (p + 8 <= d.length) {
      const sec = btf.str(d.readUInt32LE(p));
      const n = d.readUInt32LE(p + 4);
      p += 8;
      if (p + n * recSize > d.length) bad('BTF.ext is truncated inside a record list');
      const list: T[] = [];
      for (let i = 0; i < n; i++, p += recSize) list.push(read(d, p));
      out.set(sec, list);
    }
    return out;
  };
  return {
    funcInfo: records(funcOff, funcLen, 8, (d, at) => ({ insnOff: d.readUInt32LE(at), typeId: d.readUInt32LE(at + 4) })),
    lineInfo: records(lineOff, lineLen, 16, (d, at) => {
      const lc = d.readUInt32LE(at + 12);
      return { insnOff: d.readUInt32LE(at), file: btf.str(d.readUInt32LE(at + 4)), line: btf.str(d.readUInt32LE(at + 8)), lineNum: lc >>> 10, column: lc & 0x3ff };
    }),
  };
}
