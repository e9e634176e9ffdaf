/**
 * Fixed-width unsigned integers for function programs.
 *
 * In TypeScript `u8`, `u16` and `u32` are numbers and `u64` is a bigint; the
 * same names are also the conversion functions (`u8(x)` keeps the low 8
 * bits, like a C cast) and the map layouts (`hash(u32, u64, ...)`). The
 * compiler checks that every value stored in a fixed-width place (a `let`, a
 * packet field, a map key or value) fits, and asks for an explicit
 * conversion where it might not: `count = u32(count + 1)`.
 */
import * as L from '../layout.js';

export type u8 = number;
export type u16 = number;
export type u32 = number;
export type u64 = bigint;

export type IntName = 'u8' | 'u16' | 'u32' | 'u64';

/** A fixed-width integer type: call it to convert (wrapping), pass it where a layout is wanted. */
export interface IntType<T extends number | bigint> {
  (value: number | bigint): T;
  readonly typeName: IntName;
  readonly bits: 8 | 16 | 32 | 64;
  /** The layout of this type (sdk/layout.ts), for map keys and values. */
  readonly layout: L.IntLayout<T>;
}

function makeInt<T extends number | bigint>(typeName: IntName, bits: 8 | 16 | 32 | 64, layout: L.IntLayout<T>, convert: (v: number | bigint) => T): IntType<T> {
  const f = ((v: number | bigint) => convert(v)) as IntType<T>;
  Object.defineProperties(f, {
    typeName: { value: typeName, enumerable: true },
    bits: { value: bits, enumerable: true },
    layout: { value: layout, enumerable: true },
    // Function.name would be the arrow's: make it the type's.
    name: { value: typeName },
  });
  return Object.freeze(f);
}

/** Keeps the low 8 bits (two's complement for negative values), as `(__u8)x` in C. */
export const u8: IntType<number> = makeInt('u8', 8, L.u8, (v) => (typeof v === 'bigint' ? Number(BigInt.asUintN(8, v)) : v & 0xff));
/** Keeps the low 16 bits. */
export const u16: IntType<number> = makeInt('u16', 16, L.u16, (v) => (typeof v === 'bigint' ? Number(BigInt.asUintN(16, v)) : v & 0xffff));
/** Keeps the low 32 bits. */
export const u32: IntType<number> = makeInt('u32', 32, L.u32, (v) => (typeof v === 'bigint' ? Number(BigInt.asUintN(32, v)) : v >>> 0));
/** Keeps the low 64 bits, as a bigint. */
export const u64: IntType<bigint> = makeInt('u64', 64, L.u64, (v) => BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(v)));

export const INT_TYPES: Readonly<Record<IntName, IntType<number> | IntType<bigint>>> = { u8, u16, u32, u64 };

export function isIntType(x: unknown): x is IntType<number> | IntType<bigint> {
  return typeof x === 'function' && typeof (x as { typeName?: unknown }).typeName === 'string' && L.isLayout((x as { layout?: unknown }).layout);
}
