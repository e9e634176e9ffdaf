/**
 * What the lowering knows about every expression: its kind, the C text that
 * computes it, and for integers the interval of values it can take. The
 * intervals are what make Node and the kernel agree: a JS number stays exact
 * below 2^53, a bigint is exact at any size while C's __u64 wraps, so every
 * intermediate is proven to stay where both mean the same value, and
 * anything that might not is a build error asking for an explicit conversion.
 */
import type { Layout, StructLayout } from '../../sdk/layout.js';
import type { HeaderName } from '../../sdk/fn/fields.js';

/** C types a numeric expression can have. 'lit' is a non-negative literal; 's64' carries every JS-exact value. */
export type CNum = 'u8' | 'u16' | 'u32' | 'u64' | 's64' | 'lit';

export type Ty =
  /** A JS number: always an integer with |v| < 2^53. */
  | { t: 'num'; lo: bigint; hi: bigint; ct: CNum }
  /** A JS bigint; C computes it in __u64, which equals the JS value only when 0 <= lo && hi < 2^64 (exact). */
  | { t: 'big'; lo: bigint; hi: bigint }
  | { t: 'bool' }
  | { t: 'verdict' }
  | { t: 'void' }
  | { t: 'ip6' }
  /** A struct value (a copy of a map value). */
  | { t: 'struct'; layout: StructLayout<unknown>; ctype: string }
  /** A packet header: `pkt.tcp` (its presence is `present`). */
  | { t: 'header'; h: HeaderName }
  | { t: 'pkt' }
  | { t: 'maps' }
  | { t: 'map'; name: string }
  /** A map lookup not yet checked: `c` is a C expression giving a pointer to the value, or 0. */
  | { t: 'optptr'; inner: Ty; ctype: string }
  /** A const holding a lookup result, read where it may still be undefined. */
  | { t: 'optvar'; inner: Ty; has: string };

export interface Val {
  ty: Ty;
  c: string;
}

export const MAX_SAFE = (1n << 53n) - 1n;
export const U64_MAX = (1n << 64n) - 1n;

export const WIDTH_MAX: Record<'u8' | 'u16' | 'u32' | 'u64', bigint> = {
  u8: 0xffn,
  u16: 0xffffn,
  u32: 0xffffffffn,
  u64: U64_MAX,
};

export const C_INT: Record<string, string> = { u8: '__u8', u16: '__u16', u32: '__u32', u64: '__u64', s64: '__s64' };

export function num(c: string, lo: bigint, hi: bigint, ct: CNum): Val {
  return { ty: { t: 'num', lo, hi, ct }, c };
}

export function big(c: string, lo: bigint, hi: bigint): Val {
  return { ty: { t: 'big', lo, hi }, c };
}

export function isExactBig(ty: Ty): boolean {
  return ty.t === 'big' && ty.lo >= 0n && ty.hi <= U64_MAX;
}

export function describeTy(ty: Ty): string {
  switch (ty.t) {
    case 'num': return 'a number';
    case 'big': return 'a bigint';
    case 'bool': return 'a boolean';
    case 'verdict': return 'a verdict';
    case 'void': return 'nothing';
    case 'ip6': return 'an IPv6 address';
    case 'struct': return 'a struct';
    case 'header': return `the ${ty.h} header`;
    case 'pkt': return 'the packet';
    case 'maps': return 'the maps';
    case 'map': return `map '${ty.name}'`;
    case 'optptr':
    case 'optvar':
      return 'a lookup result that may be undefined';
  }
}

/** The C type of a layout used for map keys and values (int kinds only; structs by name). */
export function layoutIntKind(l: Layout<unknown>): 'u8' | 'u16' | 'u32' | 'u64' | undefined {
  return l.kind === 'u8' || l.kind === 'u16' || l.kind === 'u32' || l.kind === 'u64' ? l.kind : undefined;
}
