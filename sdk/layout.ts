/**
 * Layouts: the one typed source of truth for map keys and values.
 *
 * A layout is a codec between a TS value and the bytes of a C object as
 * clang lays it out for `-target bpf` (little-endian, natural alignment, tail
 * padding to the struct's alignment). The same layout gives the C declaration
 * (`cDecl`) for codegen, the TS type text (`tsTypeText`) for generated
 * modules, and the codec the runtime uses for every map operation.
 *
 *   const key = struct({ saddr: ipv4, daddr: ipv4, sport: be16, dport: be16, proto: u8 });
 *   type Key = Infer<typeof key>;   // { saddr: string; daddr: string; sport: number; ... }
 *   encode(key, { ... })            // Buffer of key.size bytes, padding zeroed
 */
import { TsbpfError } from './errors.js';

/** A codec between values of type T and `size` bytes aligned to `align`. */
export interface Layout<T> {
  readonly kind: string;
  readonly size: number;
  readonly align: number;
  /** Writes `value` at `offset`; padding bytes inside the layout are written as zero. */
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
}

/** The value type of a layout. */
export type Infer<L> = L extends Layout<infer T> ? T : never;

export type IntKind = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64' | 'be16' | 'be32' | 'be64';
export type ScalarKind = IntKind | 'bool' | 'f32' | 'f64' | 'ipv4' | 'ipv6' | 'mac';

export interface ScalarLayout<T> extends Layout<T> {
  readonly kind: ScalarKind;
}

export interface IntLayout<T extends number | bigint> extends ScalarLayout<T> {
  readonly kind: IntKind;
  readonly signed: boolean;
  readonly bigEndian: boolean;
  readonly min: bigint;
  readonly max: bigint;
}

/** Raw bytes; `align` is 1 unless the bytes stand for an opaque BTF type (a union, an odd-sized int). */
export interface BytesLayout extends Layout<Buffer> {
  readonly kind: 'bytes';
}

export interface CStringLayout extends Layout<string> {
  readonly kind: 'cstring';
}

export interface ArrayLayout<T> extends Layout<T[]> {
  readonly kind: 'array';
  readonly element: Layout<T>;
  readonly length: number;
}

/** One member of a struct or union, at a fixed byte offset (and bit range for bitfields). */
export interface Field {
  readonly name: string;
  readonly layout: Layout<unknown>;
  /** Byte offset from the start of the struct. For a bitfield: offset of its storage unit. */
  readonly offset: number;
  /** Bitfields only: bit offset from the start of the struct (LSB-first, little-endian). */
  readonly bitOffset?: number;
  /** Bitfields only: width in bits. */
  readonly bitSize?: number;
  /** Members of an anonymous union flattened into a struct may be left out on encode. */
  readonly optional?: boolean;
}

export interface StructLayout<T> extends Layout<T> {
  readonly kind: 'struct' | 'union';
  /** The C tag (struct NAME), when the layout has one. */
  readonly name: string | undefined;
  readonly fields: readonly Field[];
  readonly packed: boolean;
}

/** Every layout this module builds. */
export type AnyLayout =
  | IntLayout<number>
  | IntLayout<bigint>
  | ScalarLayout<boolean>
  | ScalarLayout<number>
  | ScalarLayout<string>
  | BytesLayout
  | CStringLayout
  | ArrayLayout<unknown>
  | StructLayout<unknown>;

// ---------------------------------------------------------------------------
// errors and paths

function invalid(path: string, message: string, value: unknown): never {
  const where = path === '' ? '' : `at '${path}': `;
  throw new TsbpfError('LAYOUT_INVALID', `${where}${message} (got ${show(value)})`, {
    details: { path, value },
  });
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Buffer.isBuffer(v)) return `Buffer(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (v === null) return 'null';
  if (typeof v === 'object') return 'object';
  return String(v);
}

function join(path: string, name: string | number): string {
  if (typeof name === 'number') return `${path}[${name}]`;
  return path === '' ? name : `${path}.${name}`;
}

/**
 * Internal shape of every layout: `write`/`read` carry the field path so a
 * bad value deep inside a struct is reported as 'key.tuple.sport'.
 */
abstract class Base<T> implements Layout<T> {
  abstract readonly kind: string;
  abstract readonly size: number;
  abstract readonly align: number;
  abstract write(value: T, buf: Buffer, offset: number, path: string): void;
  abstract read(buf: Buffer, offset: number): T;

  encode(value: T, buf: Buffer, offset: number): void {
    checkRoom(this, buf, offset);
    this.write(value, buf, offset, '');
  }

  decode(buf: Buffer, offset: number): T {
    checkRoom(this, buf, offset);
    return this.read(buf, offset);
  }

  toString(): string {
    return describeLayout(this);
  }
}

function checkRoom(layout: Layout<unknown>, buf: Buffer, offset: number): void {
  if (!Buffer.isBuffer(buf)) invalid('', 'expected a Buffer', buf);
  if (!Number.isInteger(offset) || offset < 0 || offset + layout.size > buf.length) {
    throw new TsbpfError(
      'LAYOUT_INVALID',
      `a ${layout.kind} of ${layout.size} bytes does not fit a buffer of ${buf.length} bytes at offset ${offset}`,
      { details: { size: layout.size, bufferLength: buf.length, offset } },
    );
  }
}

/** Writes into `buf` with path-aware errors (used by composite layouts). */
function writeAt(layout: Layout<unknown>, value: unknown, buf: Buffer, offset: number, path: string): void {
  if (layout instanceof Base) layout.write(value, buf, offset, path);
  else layout.encode(value, buf, offset);
}

function readAt(layout: Layout<unknown>, buf: Buffer, offset: number): unknown {
  return layout instanceof Base ? layout.read(buf, offset) : layout.decode(buf, offset);
}

// ---------------------------------------------------------------------------
// integers

const INT_SPEC: Record<IntKind, { size: number; signed: boolean; be: boolean }> = {
  u8: { size: 1, signed: false, be: false },
  u16: { size: 2, signed: false, be: false },
  u32: { size: 4, signed: false, be: false },
  u64: { size: 8, signed: false, be: false },
  i8: { size: 1, signed: true, be: false },
  i16: { size: 2, signed: true, be: false },
  i32: { size: 4, signed: true, be: false },
  i64: { size: 8, signed: true, be: false },
  be16: { size: 2, signed: false, be: true },
  be32: { size: 4, signed: false, be: true },
  be64: { size: 8, signed: false, be: true },
};

class IntCodec<T extends number | bigint> extends Base<T> implements IntLayout<T> {
  readonly size: number;
  readonly align: number;
  readonly signed: boolean;
  readonly bigEndian: boolean;
  readonly min: bigint;
  readonly max: bigint;
  readonly big: boolean;

  constructor(readonly kind: IntKind) {
    super();
    const s = INT_SPEC[kind];
    this.size = s.size;
    this.align = s.size;
    this.signed = s.signed;
    this.bigEndian = s.be;
    const bits = BigInt(s.size * 8);
    this.min = s.signed ? -(1n << (bits - 1n)) : 0n;
    this.max = s.signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
    this.big = s.size === 8;
  }

  /** The value as a bigint after checking it is an integer within range. */
  check(value: unknown, path: string, min = this.min, max = this.max, what: string = this.kind): bigint {
    let v: bigint;
    if (typeof value === 'bigint') v = value;
    else if (typeof value === 'number' && Number.isInteger(value)) {
      if (!Number.isSafeInteger(value)) invalid(path, `${what} value is not a safe integer; pass a bigint`, value);
      v = BigInt(value);
    } else return invalid(path, `expected an integer for ${what}`, value);
    if (v < min || v > max) invalid(path, `${what} value out of range ${min}..${max}`, value);
    return v;
  }

  write(value: T, buf: Buffer, off: number, path: string): void {
    if (this.big) {
      const v = this.check(value, path);
      if (this.signed) buf.writeBigInt64LE(v, off);
      else if (this.bigEndian) buf.writeBigUInt64BE(v, off);
      else buf.writeBigUInt64LE(v, off);
      return;
    }
    // Fast path for plain numbers; the generic check gives the message.
    let n: number;
    if (typeof value === 'number' && Number.isInteger(value) && value >= Number(this.min) && value <= Number(this.max)) n = value;
    else n = Number(this.check(value, path));
    switch (this.kind) {
      case 'u8': buf.writeUInt8(n, off); break;
      case 'i8': buf.writeInt8(n, off); break;
      case 'u16': buf.writeUInt16LE(n, off); break;
      case 'i16': buf.writeInt16LE(n, off); break;
      case 'be16': buf.writeUInt16BE(n, off); break;
      case 'u32': buf.writeUInt32LE(n, off); break;
      case 'i32': buf.writeInt32LE(n, off); break;
      case 'be32': buf.writeUInt32BE(n, off); break;
      default: throw new TsbpfError('INTERNAL', `no writer for ${this.kind}`);
    }
  }

  read(buf: Buffer, off: number): T {
    switch (this.kind) {
      case 'u8': return buf.readUInt8(off) as T;
      case 'i8': return buf.readInt8(off) as T;
      case 'u16': return buf.readUInt16LE(off) as T;
      case 'i16': return buf.readInt16LE(off) as T;
      case 'be16': return buf.readUInt16BE(off) as T;
      case 'u32': return buf.readUInt32LE(off) as T;
      case 'i32': return buf.readInt32LE(off) as T;
      case 'be32': return buf.readUInt32BE(off) as T;
      case 'u64': return buf.readBigUInt64LE(off) as T;
      case 'i64': return buf.readBigInt64LE(off) as T;
      case 'be64': return buf.readBigUInt64BE(off) as T;
    }
  }
}

export const u8: IntLayout<number> = new IntCodec<number>('u8');
export const u16: IntLayout<number> = new IntCodec<number>('u16');
export const u32: IntLayout<number> = new IntCodec<number>('u32');
export const u64: IntLayout<bigint> = new IntCodec<bigint>('u64');
export const i8: IntLayout<number> = new IntCodec<number>('i8');
export const i16: IntLayout<number> = new IntCodec<number>('i16');
export const i32: IntLayout<number> = new IntCodec<number>('i32');
export const i64: IntLayout<bigint> = new IntCodec<bigint>('i64');
/** 16-bit number stored in network byte order (ports). */
export const be16: IntLayout<number> = new IntCodec<number>('be16');
/** 32-bit number stored in network byte order. */
export const be32: IntLayout<number> = new IntCodec<number>('be32');
/** 64-bit number stored in network byte order. */
export const be64: IntLayout<bigint> = new IntCodec<bigint>('be64');

// ---------------------------------------------------------------------------
// other scalars

class BoolCodec extends Base<boolean> implements ScalarLayout<boolean> {
  readonly kind = 'bool' as const;
  readonly size = 1;
  readonly align = 1;
  write(value: boolean, buf: Buffer, off: number, path: string): void {
    if (typeof value === 'boolean') buf[off] = value ? 1 : 0;
    else if (value === 0 || value === 1) buf[off] = value;
    else invalid(path, 'expected a boolean', value);
  }
  read(buf: Buffer, off: number): boolean {
    return buf[off] !== 0;
  }
}

export const bool: ScalarLayout<boolean> = new BoolCodec();

class FloatCodec extends Base<number> implements ScalarLayout<number> {
  readonly size: number;
  readonly align: number;
  constructor(readonly kind: 'f32' | 'f64') {
    super();
    this.size = kind === 'f32' ? 4 : 8;
    this.align = this.size;
  }
  write(value: number, buf: Buffer, off: number, path: string): void {
    if (typeof value !== 'number') invalid(path, `expected a number for ${this.kind}`, value);
    if (this.kind === 'f32') buf.writeFloatLE(value, off);
    else buf.writeDoubleLE(value, off);
  }
  read(buf: Buffer, off: number): number {
    return this.kind === 'f32' ? buf.readFloatLE(off) : buf.readDoubleLE(off);
  }
}

export const f32: ScalarLayout<number> = new FloatCodec('f32');
export const f64: ScalarLayout<number> = new FloatCodec('f64');

/** Parses dotted-quad IPv4 text into 4 bytes; undefined when it is not one. */
export function parseIpv4Bytes(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** Parses IPv6 text (with '::' and an optional dotted IPv4 tail) into 16 bytes. */
export function parseIpv6Bytes(text: string): number[] | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  let head = text;
  let tail4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    const v4 = parseIpv4Bytes(text.slice(lastColon + 1));
    if (!v4) return undefined;
    tail4 = v4;
    head = text.slice(0, lastColon + 1);
    // 'a::1.2.3.4' leaves 'a::'; 'a:b:c:d:e:f:1.2.3.4' leaves 'a:...:f:' (drop the lone colon)
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const groupsWanted = tail4.length ? 6 : 8;
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const a = parseGroups(halves[0]!);
    const b = parseGroups(halves[1]!);
    if (!a || !b || a.length + b.length > groupsWanted - 1) return undefined;
    groups = [...a, ...new Array<number>(groupsWanted - a.length - b.length).fill(0), ...b];
  } else {
    const a = parseGroups(head);
    if (!a || a.length !== groupsWanted) return undefined;
    groups = a;
  }
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return [...bytes, ...tail4];
}

/** RFC 5952 canonical text of 16 address bytes (IPv4-mapped addresses keep a dotted tail). */
export function formatIpv6(b: ArrayLike<number>): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  // longest run of two or more zero groups, the first on a tie
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

class Ipv4Codec extends Base<string> implements ScalarLayout<string> {
  // Stored as a __be32 (like iphdr.saddr), so aligned to 4.
  readonly kind = 'ipv4' as const;
  readonly size = 4;
  readonly align = 4;
  write(value: string, buf: Buffer, off: number, path: string): void {
    const b = typeof value === 'string' ? parseIpv4Bytes(value) : undefined;
    if (!b) return invalid(path, "expected an IPv4 address like '10.0.0.1'", value);
    buf[off] = b[0]!; buf[off + 1] = b[1]!; buf[off + 2] = b[2]!; buf[off + 3] = b[3]!;
  }
  read(buf: Buffer, off: number): string {
    return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  }
}

class Ipv6Codec extends Base<string> implements ScalarLayout<string> {
  // Stored as struct in6_addr (a union with __be32[4]), so aligned to 4.
  readonly kind = 'ipv6' as const;
  readonly size = 16;
  readonly align = 4;
  write(value: string, buf: Buffer, off: number, path: string): void {
    const b = typeof value === 'string' ? parseIpv6Bytes(value) : undefined;
    if (!b) return invalid(path, "expected an IPv6 address like 'fd00::1'", value);
    for (let i = 0; i < 16; i++) buf[off + i] = b[i]!;
  }
  read(buf: Buffer, off: number): string {
    return formatIpv6(buf.subarray(off, off + 16));
  }
}

class MacCodec extends Base<string> implements ScalarLayout<string> {
  readonly kind = 'mac' as const;
  readonly size = 6;
  readonly align = 1;
  write(value: string, buf: Buffer, off: number, path: string): void {
    const m = typeof value === 'string' ? /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(value) : null;
    if (!m) return invalid(path, "expected a MAC address like 'aa:bb:cc:dd:ee:ff'", value);
    const parts = [m[1], m[3], m[4], m[5], m[6], m[7]];
    for (let i = 0; i < 6; i++) buf[off + i] = parseInt(parts[i]!, 16);
  }
  read(buf: Buffer, off: number): string {
    const out: string[] = [];
    for (let i = 0; i < 6; i++) out.push(buf[off + i]!.toString(16).padStart(2, '0'));
    return out.join(':');
  }
}

/** IPv4 address as dotted-quad text, stored in network byte order (C: __be32). */
export const ipv4: ScalarLayout<string> = new Ipv4Codec();
/** IPv6 address as text (canonical RFC 5952 form on decode), stored as struct in6_addr. */
export const ipv6: ScalarLayout<string> = new Ipv6Codec();
/** Ethernet address 'aa:bb:cc:dd:ee:ff' (6 bytes). */
export const mac: ScalarLayout<string> = new MacCodec();

// ---------------------------------------------------------------------------
// byte arrays and C strings

function checkCount(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 1 << 24) {
    throw new TsbpfError('LAYOUT_INVALID', `${what} length must be an integer 0..${1 << 24}, got ${show(n)}`);
  }
}

class BytesCodec extends Base<Buffer> implements BytesLayout {
  readonly kind = 'bytes' as const;
  constructor(readonly size: number, readonly align: number) {
    super();
  }
  write(value: Buffer, buf: Buffer, off: number, path: string): void {
    if (!(value instanceof Uint8Array)) invalid(path, `expected a Buffer of ${this.size} bytes`, value);
    if (value.length !== this.size) invalid(path, `expected exactly ${this.size} bytes`, value);
    buf.set(value, off);
  }
  read(buf: Buffer, off: number): Buffer {
    // A copy, so a decoded value does not alias the map's buffer.
    return Buffer.from(buf.subarray(off, off + this.size));
  }
}

/** `n` raw bytes (C: __u8 name[n]). `align` is for opaque BTF types such as unions; default 1. */
export function bytes(n: number, options: { align?: number } = {}): BytesLayout {
  checkCount('bytes', n);
  const align = options.align ?? 1;
  if (![1, 2, 4, 8].includes(align)) throw new TsbpfError('LAYOUT_INVALID', `bytes alignment must be 1, 2, 4 or 8, got ${align}`);
  if (n % align !== 0) throw new TsbpfError('LAYOUT_INVALID', `bytes(${n}) is not a multiple of its alignment ${align}`);
  return new BytesCodec(n, align);
}

class CStringCodec extends Base<string> implements CStringLayout {
  readonly kind = 'cstring' as const;
  readonly align = 1;
  constructor(readonly size: number) {
    super();
  }
  write(value: string, buf: Buffer, off: number, path: string): void {
    if (typeof value !== 'string') invalid(path, 'expected a string', value);
    const b = Buffer.from(value, 'utf8');
    if (b.length > this.size) invalid(path, `string is ${b.length} bytes, longer than char[${this.size}]`, value);
    if (b.includes(0)) invalid(path, 'string contains a NUL character', value);
    buf.fill(0, off, off + this.size);
    b.copy(buf, off);
  }
  read(buf: Buffer, off: number): string {
    const s = buf.subarray(off, off + this.size);
    const end = s.indexOf(0);
    return s.subarray(0, end === -1 ? this.size : end).toString('utf8');
  }
}

/** A NUL-padded C string in `char name[n]` (a string of up to n bytes of UTF-8). */
export function cstring(n: number): CStringLayout {
  checkCount('cstring', n);
  return new CStringCodec(n);
}

// ---------------------------------------------------------------------------
// arrays

class ArrayCodec<T> extends Base<T[]> implements ArrayLayout<T> {
  readonly kind = 'array' as const;
  readonly size: number;
  readonly align: number;
  constructor(readonly element: Layout<T>, readonly length: number) {
    super();
    this.size = element.size * length;
    this.align = element.align;
  }
  write(value: T[], buf: Buffer, off: number, path: string): void {
    if (!Array.isArray(value)) invalid(path, `expected an array of ${this.length}`, value);
    if (value.length !== this.length) invalid(path, `expected exactly ${this.length} elements`, value);
    const es = this.element.size;
    for (let i = 0; i < this.length; i++) writeAt(this.element, value[i], buf, off + i * es, join(path, i));
  }
  read(buf: Buffer, off: number): T[] {
    const out: T[] = new Array<T>(this.length);
    const es = this.element.size;
    for (let i = 0; i < this.length; i++) out[i] = readAt(this.element, buf, off + i * es) as T;
    return out;
  }
}

/** A fixed C array `T name[n]` as a JS array of exactly n elements. */
export function array<T>(element: Layout<T>, n: number): ArrayLayout<T> {
  checkLayout(element, 'array element');
  checkCount('array', n);
  return new ArrayCodec(element, n);
}

// ---------------------------------------------------------------------------
// structs and unions

const C_KEYWORDS = new Set(
  ('auto break case char const continue default do double else enum extern float for goto if inline int long ' +
    'register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while ' +
    '_Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert _Thread_local asm typeof').split(' '),
);

function isCIdentifier(name: string): boolean {
  // '__proto__' would be the object's prototype, not a field, in decoded values.
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !C_KEYWORDS.has(name) && name !== '__proto__';
}

function checkLayout(l: unknown, what: string): void {
  const x = l as Layout<unknown> | undefined;
  if (!x || typeof x !== 'object' || typeof x.encode !== 'function' || typeof x.decode !== 'function' || typeof x.size !== 'number') {
    throw new TsbpfError('LAYOUT_INVALID', `${what} is not a layout (got ${show(l)})`);
  }
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

class StructCodec<T> extends Base<T> implements StructLayout<T> {
  readonly kind: 'struct' | 'union';
  private readonly names: Set<string>;

  constructor(
    kind: 'struct' | 'union',
    readonly name: string | undefined,
    readonly fields: readonly Field[],
    readonly size: number,
    readonly align: number,
    readonly packed: boolean,
  ) {
    super();
    this.kind = kind;
    this.names = new Set(fields.map((f) => f.name));
  }

  write(value: T, buf: Buffer, off: number, path: string): void {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
      invalid(path, `expected an object for ${this.kind}${this.name ? ` ${this.name}` : ''}`, value);
    }
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      if (!this.names.has(k)) {
        invalid(join(path, k), `unknown field; ${this.kind} has ${[...this.names].join(', ') || 'no fields'}`, obj[k]);
      }
    }
    // Padding and bits not covered by a field are zero; bitfields OR into this.
    buf.fill(0, off, off + this.size);
    for (const f of this.fields) {
      const v = obj[f.name];
      if (v === undefined) {
        if (this.kind === 'union' || f.optional) continue;
        invalid(join(path, f.name), 'missing field', v);
      }
      if (f.bitSize !== undefined) writeBits(f, v, buf, off, join(path, f.name));
      else writeAt(f.layout, v, buf, off + f.offset, join(path, f.name));
    }
  }

  read(buf: Buffer, off: number): T {
    const out: Record<string, unknown> = {};
    for (const f of this.fields) {
      out[f.name] = f.bitSize !== undefined ? readBits(f, buf, off) : readAt(f.layout, buf, off + f.offset);
    }
    return out as T;
  }
}

function bitRange(f: Field): { first: number; count: number; shift: bigint } {
  const bo = f.bitOffset!;
  const first = Math.floor(bo / 8);
  const last = Math.floor((bo + f.bitSize! - 1) / 8);
  return { first, count: last - first + 1, shift: BigInt(bo % 8) };
}

function writeBits(f: Field, value: unknown, buf: Buffer, off: number, path: string): void {
  const il = f.layout as IntCodec<number | bigint>;
  const bits = BigInt(f.bitSize!);
  const min = il.signed ? -(1n << (bits - 1n)) : 0n;
  const max = il.signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  let v = il.check(value, path, min, max, `${f.bitSize}-bit field`);
  v &= (1n << bits) - 1n;
  const { first, count, shift } = bitRange(f);
  let word = 0n;
  for (let i = count - 1; i >= 0; i--) word = (word << 8n) | BigInt(buf[off + first + i]!);
  word = (word & ~(((1n << bits) - 1n) << shift)) | (v << shift);
  for (let i = 0; i < count; i++) {
    buf[off + first + i] = Number(word & 0xffn);
    word >>= 8n;
  }
}

function readBits(f: Field, buf: Buffer, off: number): unknown {
  const il = f.layout as IntCodec<number | bigint>;
  const bits = BigInt(f.bitSize!);
  const { first, count, shift } = bitRange(f);
  let word = 0n;
  for (let i = count - 1; i >= 0; i--) word = (word << 8n) | BigInt(buf[off + first + i]!);
  let v = (word >> shift) & ((1n << bits) - 1n);
  if (il.signed && v & (1n << (bits - 1n))) v -= 1n << bits;
  return il.big ? v : Number(v);
}

export interface StructOptions {
  /** The C tag used by cDecl (struct NAME); nested unnamed structs get names derived from the parent. */
  name?: string;
  /** __attribute__((packed)): no padding, alignment 1. */
  packed?: boolean;
}

/** The value type of a struct with fields F. */
export type StructValue<F extends Record<string, Layout<any>>> = { -readonly [K in keyof F]: Infer<F[K]> };

/**
 * A C struct whose members are the given fields, in declaration order, laid
 * out as clang does: each at its natural alignment, the size rounded up to the
 * largest member alignment.
 */
export function struct<F extends Record<string, Layout<any>>>(fields: F, options: StructOptions = {}): StructLayout<StructValue<F>> {
  if (fields === null || typeof fields !== 'object') throw new TsbpfError('LAYOUT_INVALID', 'struct() takes an object of fields');
  checkTag(options.name);
  const packed = options.packed === true;
  const out: Field[] = [];
  let offset = 0;
  let align = 1;
  for (const [name, layout] of Object.entries(fields)) {
    if (!isCIdentifier(name)) {
      throw new TsbpfError('LAYOUT_INVALID', `struct field name '${name}' is not a valid C identifier`);
    }
    checkLayout(layout, `struct field '${name}'`);
    const a = packed ? 1 : layout.align;
    offset = alignUp(offset, a);
    out.push({ name, layout, offset });
    offset += layout.size;
    align = Math.max(align, a);
  }
  return new StructCodec('struct', options.name, out, alignUp(offset, align), align, packed);
}

/** A C union: every member at offset 0. Decode gives every member; encode writes the members given, in order. */
export function union<F extends Record<string, Layout<any>>>(fields: F, options: { name?: string } = {}): StructLayout<Partial<StructValue<F>>> {
  checkTag(options.name);
  const out: Field[] = [];
  let size = 0;
  let align = 1;
  for (const [name, layout] of Object.entries(fields)) {
    if (!isCIdentifier(name)) throw new TsbpfError('LAYOUT_INVALID', `union member name '${name}' is not a valid C identifier`);
    checkLayout(layout, `union member '${name}'`);
    out.push({ name, layout, offset: 0 });
    size = Math.max(size, layout.size);
    align = Math.max(align, layout.align);
  }
  return new StructCodec('union', options.name, out, alignUp(size, align), align, false);
}

/**
 * A struct with explicit member offsets (from BTF): for packed structs,
 * bitfields and flattened anonymous members that struct() cannot express.
 */
export function structAt<T = Record<string, unknown>>(spec: {
  name?: string;
  kind?: 'struct' | 'union';
  size: number;
  align: number;
  fields: readonly Field[];
}): StructLayout<T> {
  checkTag(spec.name);
  checkCount('struct size', spec.size);
  const seen = new Set<string>();
  for (const f of spec.fields) {
    if (!isCIdentifier(f.name)) throw new TsbpfError('LAYOUT_INVALID', `field name '${f.name}' is not a valid C identifier`);
    checkLayout(f.layout, `field '${f.name}'`);
    if (seen.has(f.name)) throw new TsbpfError('LAYOUT_INVALID', `duplicate field '${f.name}' in ${spec.name ?? 'struct'}`);
    seen.add(f.name);
    if (f.bitSize !== undefined) {
      if (!(f.layout instanceof IntCodec)) throw new TsbpfError('LAYOUT_INVALID', `bitfield '${f.name}' must have an integer type`);
      if (f.bitOffset === undefined || f.bitSize < 1 || f.bitSize > f.layout.size * 8 || f.bitOffset + f.bitSize > spec.size * 8) {
        throw new TsbpfError('LAYOUT_INVALID', `bitfield '${f.name}' (bits ${f.bitOffset}+${f.bitSize}) does not fit its ${spec.size}-byte struct`);
      }
    } else if (f.offset < 0 || f.offset + f.layout.size > spec.size) {
      throw new TsbpfError('LAYOUT_INVALID', `field '${f.name}' at offset ${f.offset} (${f.layout.size} bytes) does not fit its ${spec.size}-byte struct`);
    }
  }
  const packed = spec.fields.some((f) => f.bitSize === undefined && f.offset % f.layout.align !== 0) || spec.size % spec.align !== 0;
  return new StructCodec(spec.kind ?? 'struct', spec.name, spec.fields, spec.size, spec.align, packed);
}

function checkTag(name: string | undefined): void {
  if (name !== undefined && !isCIdentifier(name)) throw new TsbpfError('LAYOUT_INVALID', `'${name}' is not a valid C struct name`);
}

// ---------------------------------------------------------------------------
// whole-buffer helpers

/** A fresh zeroed Buffer of `layout.size` bytes holding `value`. */
export function encode<T>(layout: Layout<T>, value: T): Buffer {
  const buf = Buffer.alloc(layout.size);
  layout.encode(value, buf, 0);
  return buf;
}

/** Decodes the first `layout.size` bytes of `buf`. */
export function decode<T>(layout: Layout<T>, buf: Buffer | Uint8Array): T {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < layout.size) {
    throw new TsbpfError('LAYOUT_INVALID', `expected at least ${layout.size} bytes to decode a ${layout.kind}, got ${b.length}`);
  }
  return layout.decode(b, 0);
}

export function isLayout(x: unknown): x is Layout<unknown> {
  const l = x as Layout<unknown> | null;
  return !!l && typeof l === 'object' && typeof l.kind === 'string' && typeof l.size === 'number' && typeof l.encode === 'function' && typeof l.decode === 'function';
}

export function isStructLayout(l: Layout<unknown>): l is StructLayout<unknown> {
  return (l.kind === 'struct' || l.kind === 'union') && Array.isArray((l as StructLayout<unknown>).fields);
}

export function isArrayLayout(l: Layout<unknown>): l is ArrayLayout<unknown> {
  return l.kind === 'array' && isLayout((l as ArrayLayout<unknown>).element);
}

// ---------------------------------------------------------------------------
// C text

/** Declarations codegen puts before any use of these types: the typedefs for ipv4/ipv6/mac. */
export const C_PRELUDE = `#include <linux/types.h>
#include <linux/in6.h>
typedef __be32 tsbpf_ipv4_t;
typedef struct in6_addr tsbpf_ipv6_t;
typedef struct { __u8 addr[6]; } tsbpf_mac_t;
`;

const C_SCALAR: Record<string, string> = {
  u8: '__u8', u16: '__u16', u32: '__u32', u64: '__u64',
  i8: '__s8', i16: '__s16', i32: '__s32', i64: '__s64',
  be16: '__be16', be32: '__be32', be64: '__be64',
  bool: '_Bool', f32: 'float', f64: 'double',
  ipv4: 'tsbpf_ipv4_t', ipv6: 'tsbpf_ipv6_t', mac: 'tsbpf_mac_t',
};

/**
 * The C type name of a layout: '__u32', 'tsbpf_ipv4_t', 'struct NAME'. Arrays,
 * byte arrays, C strings and unnamed structs have no name of their own: pass
 * the name given to cDecl (a typedef for non-structs, a struct tag for structs).
 */
export function cType(layout: Layout<unknown>, name?: string): string {
  const s = C_SCALAR[layout.kind];
  if (s && !isStructLayout(layout)) return s;
  if (isStructLayout(layout)) {
    const tag = name ?? layout.name;
    if (tag === undefined) throw new TsbpfError('LAYOUT_INVALID', `an unnamed ${layout.kind} needs a name for its C type`);
    return `${layout.kind} ${tag}`;
  }
  if (!name) throw new TsbpfError('LAYOUT_INVALID', `a ${layout.kind} layout needs a typedef name for its C type (see cDecl)`);
  return name;
}

/**
 * C declarations for `layout` under `name`: for a struct (or union)
 * `struct name { ... };`, for anything else `typedef ... name;`. Nested
 * unnamed structs are declared first as `<parent>_<field>`. Deterministic.
 */
export function cDecl(layout: Layout<unknown>, name: string): string {
  return cDecls([[name, layout]]);
}

/** cDecl for several named layouts at once; a nested struct shared by several is declared once. */
export function cDecls(entries: ReadonlyArray<readonly [string, Layout<unknown>]>): string {
  const out: string[] = [];
  const declared = new Map<string, string>();
  for (const [name, layout] of entries) {
    if (!isCIdentifier(name)) throw new TsbpfError('LAYOUT_INVALID', `'${name}' is not a valid C name`);
    if (isStructLayout(layout)) emitStruct(layout, name, out, declared);
    else {
      declared.set(name, `typedef ${name}`);
      out.push(`typedef ${cMember(layout, name, name, out, declared)};\n`);
    }
  }
  return out.join('\n');
}

/** The member declarator `T name[n]`, declaring nested structs into `out` first. */
function cMember(layout: Layout<unknown>, ident: string, scope: string, out: string[], declared: Map<string, string>): string {
  if (isStructLayout(layout)) {
    const tag = layout.name ?? scope;
    emitStruct(layout, tag, out, declared);
    return `${layout.kind} ${tag} ${ident}`;
  }
  if (isArrayLayout(layout)) {
    // element declarator with the dimension appended: T ident[n][m]
    const inner = cMember(layout.element, `${ident}[${layout.length}]`, `${scope}_elem`, out, declared);
    return inner;
  }
  switch (layout.kind) {
    case 'bytes':
      return `__u8 ${ident}[${layout.size}]${layout.align > 1 ? ` __attribute__((aligned(${layout.align})))` : ''}`;
    case 'cstring':
      return `char ${ident}[${layout.size}]`;
  }
  const s = C_SCALAR[layout.kind];
  if (!s) throw new TsbpfError('LAYOUT_INVALID', `no C type for a layout of kind '${layout.kind}'`);
  return `${s} ${ident}`;
}

function emitStruct(l: StructLayout<unknown>, tag: string, out: string[], declared: Map<string, string>): void {
  const sig = shapeOf(l);
  const prev = declared.get(tag);
  if (prev !== undefined) {
    if (prev !== sig) throw new TsbpfError('LAYOUT_INVALID', `two different layouts are both named '${tag}'`);
    return;
  }
  declared.set(tag, sig);
  const lines: string[] = [];
  let pos = 0; // bytes laid out so far, as clang would place them
  let pad = 0;
  const natural = !l.packed;
  const groups = groupUnionMembers(l);
  for (const g of groups) {
    if (g.length > 1 || g[0]!.optional) {
      // flattened anonymous union
      const inner = g.map((f) => `\t\t${cMember(f.layout, f.name, `${tag}_${f.name}`, out, declared)};`);
      const start = g[0]!.offset;
      if (start < pos) cannotDeclare(tag);
      if (start > alignUp(pos, natural ? Math.max(...g.map((f) => f.layout.align)) : 1)) {
        lines.push(`\t__u8 __pad${pad++}[${start - pos}];`);
      }
      lines.push(`\tunion {\n${inner.join('\n')}\n\t};`);
      pos = start + Math.max(...g.map((f) => f.layout.size));
      continue;
    }
    const f = g[0]!;
    if (l.kind === 'union') {
      if (f.offset !== 0 || f.bitSize !== undefined) cannotDeclare(tag);
      lines.push(`\t${cMember(f.layout, f.name, `${tag}_${f.name}`, out, declared)};`);
      continue;
    }
    if (f.bitSize !== undefined) {
      const storage = C_SCALAR[f.layout.kind] ?? '__u32';
      lines.push(`\t${storage} ${f.name} : ${f.bitSize};`);
      pos = Math.max(pos, Math.ceil((f.bitOffset! + f.bitSize) / 8));
      continue;
    }
    if (f.offset < pos) cannotDeclare(tag);
    const aligned = natural ? alignUp(pos, f.layout.align) : pos;
    if (f.offset > aligned) lines.push(`\t__u8 __pad${pad++}[${f.offset - pos}];`);
    lines.push(`\t${cMember(f.layout, f.name, `${tag}_${f.name}`, out, declared)};`);
    pos = f.offset + f.layout.size;
  }
  const attrs = l.packed ? ' __attribute__((packed))' : '';
  const tailPad = l.kind === 'struct' && alignUp(pos, natural ? l.align : 1) < l.size ? `\t__u8 __pad${pad++}[${l.size - pos}];\n` : '';
  out.push(`${l.kind} ${tag} {\n${lines.join('\n')}${lines.length ? '\n' : ''}${tailPad}}${attrs};\n`);
}

function cannotDeclare(tag: string): never {
  // Only BTF layouts get here (anonymous structs inside unions flattened into overlapping members).
  throw new TsbpfError('LAYOUT_INVALID', `cannot write a C declaration for '${tag}': its members overlap in a way C cannot express here`);
}

/** Consecutive optional members at one offset are one flattened anonymous union. */
function groupUnionMembers(l: StructLayout<unknown>): Field[][] {
  const groups: Field[][] = [];
  for (const f of l.fields) {
    const last = groups[groups.length - 1];
    if (f.optional && last && last[0]!.optional && last[0]!.offset === f.offset && f.bitSize === undefined) last.push(f);
    else groups.push([f]);
  }
  return groups;
}

// ---------------------------------------------------------------------------
// TS text and descriptions

const TS_SCALAR: Record<string, string> = {
  u8: 'number', u16: 'number', u32: 'number', u64: 'bigint',
  i8: 'number', i16: 'number', i32: 'number', i64: 'bigint',
  be16: 'number', be32: 'number', be64: 'bigint',
  bool: 'boolean', f32: 'number', f64: 'number',
  ipv4: 'string', ipv6: 'string', mac: 'string', cstring: 'string', bytes: 'Buffer',
};

/** The TS type of a layout's values, as source text: 'number', '{ a: number; b: string[] }'. */
export function tsTypeText(layout: Layout<unknown>): string {
  const s = TS_SCALAR[layout.kind];
  if (s) return s;
  if (isArrayLayout(layout)) {
    const e = tsTypeText(layout.element);
    return /^[A-Za-z]+$/.test(e) ? `${e}[]` : `Array<${e}>`;
  }
  if (isStructLayout(layout)) {
    if (layout.fields.length === 0) return 'Record<string, never>';
    const opt = (f: Field): string => (layout.kind === 'union' || f.optional ? '?' : '');
    return `{ ${layout.fields.map((f) => `${f.name}${opt(f)}: ${tsTypeText(f.layout)}`).join('; ')} }`;
  }
  return 'unknown';
}

/** A one-line name of a layout: 'u32', 'ipv4', 'u16[4]', 'bytes(16)', 'struct flow_key'. */
export function layoutName(layout: Layout<unknown>): string {
  if (isArrayLayout(layout)) {
    // C order: the outer dimension first (i16[2][3] is two rows of three)
    const dims: number[] = [];
    let el: Layout<unknown> = layout;
    while (isArrayLayout(el)) { dims.push(el.length); el = el.element; }
    return `${layoutName(el)}${dims.map((d) => `[${d}]`).join('')}`;
  }
  if (isStructLayout(layout)) return layout.name ? `${layout.kind} ${layout.name}` : layout.kind;
  if (layout.kind === 'bytes' || layout.kind === 'cstring') return `${layout.kind}(${layout.size})`;
  return layout.kind;
}

/**
 * A readable multi-line description with offsets and sizes, e.g.
 *   struct flow_key (16 bytes, align 4)
 *     0  saddr  ipv4
 *     ...
 */
export function describeLayout(layout: Layout<unknown>, indent = ''): string {
  const head = `${layoutName(layout)} (${layout.size} byte${layout.size === 1 ? '' : 's'}, align ${layout.align})`;
  if (!isStructLayout(layout)) return indent + head;
  const lines = [indent + head];
  const width = String(layout.size).length;
  for (const f of layout.fields) {
    const at = f.bitSize !== undefined ? `${Math.floor(f.bitOffset! / 8)}:${f.bitOffset! % 8}` : String(f.offset);
    const bits = f.bitSize !== undefined ? ` : ${f.bitSize}` : '';
    const sub = isStructLayout(f.layout) ? '\n' + describeLayout(f.layout, indent + '    ').split('\n').slice(1).join('\n') : '';
    lines.push(`${indent}  ${at.padStart(width)}  ${f.name}${f.optional ? '?' : ''}  ${layoutName(f.layout)}${bits}${sub}`);
  }
  return lines.join('\n');
}

/**
 * A canonical text of the byte-level shape of a layout (kinds, offsets, sizes;
 * field names included, struct tags not). Two layouts with the same shape
 * encode the same values to the same bytes.
 */
export function shapeOf(layout: Layout<unknown>): string {
  if (isArrayLayout(layout)) return `${shapeOf(layout.element)}[${layout.length}]`;
  if (isStructLayout(layout)) {
    const fs = layout.fields.map((f) => {
      const at = f.bitSize !== undefined ? `${f.bitOffset}:${f.bitSize}` : `${f.offset}`;
      return `${f.name}${f.optional ? '?' : ''}@${at}=${shapeOf(f.layout)}`;
    });
    return `${layout.kind}/${layout.size}/${layout.align}{${fs.join(',')}}`;
  }
  if (layout.kind === 'bytes' || layout.kind === 'cstring') return `${layout.kind}(${layout.size}/${layout.align})`;
  return layout.kind;
}

export function sameShape(a: Layout<unknown>, b: Layout<unknown>): boolean {
  return shapeOf(a) === shapeOf(b);
}
