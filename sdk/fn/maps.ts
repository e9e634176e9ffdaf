/**
 * Maps of function programs: declared once with layouts, they give the C map
 * definition (codegen/fn), the typed handle the function uses, and an
 * in-memory implementation for runs in Node.
 *
 *   const maps = {
 *     hits: perCpuArray(u64, { maxEntries: 4 }),
 *     perSource: lruHash(u32, struct({ count: u32, since: u64 }), { maxEntries: 65536 }),
 *     events: ringBuf(struct({ src: u32, len: u32 }), { size: 65536 }),
 *   };
 *
 * Keys and values are fixed-width integers or structs of them; struct values
 * come back from `lookup` as read-only copies (write them back with `update`).
 */
import { TsbpfError } from '../errors.js';
import { inCidr4, inCidr6 } from '../addr.js';
import { EvalState } from '../evaluate.js';
import * as L from '../layout.js';
import { isIntType, type IntType, type u16, type u32 } from './int.js';
import { isMapRef, isSetRef, MapRef, SetRef, type SetType } from '../dsl/refs.js';
import type { Ipv6Address } from './packet.js';

export type FnMapKind = 'hash' | 'lru_hash' | 'percpu_hash' | 'lru_percpu_hash' | 'array' | 'percpu_array' | 'ringbuf' | 'prog_array';

/** An integer type (u32) or a layout (struct({...})). */
export type LayoutLike = IntType<number> | IntType<bigint> | L.Layout<any>;
/** The value type of a LayoutLike. */
export type ValueOf<X> = X extends IntType<infer T> ? T : X extends L.Layout<infer T> ? T : never;

export interface MapDecl<Kind extends FnMapKind = FnMapKind, K = unknown, V = unknown> {
  readonly kind: Kind;
  /** Absent for ring buffers. */
  readonly key: L.Layout<K> | undefined;
  readonly value: L.Layout<V> | undefined;
  /** Entries, or bytes for a ring buffer. */
  readonly maxEntries: number;
  /** @internal type carrier */
  readonly __types?: { key: K; value: V };
}

/**
 * What a program's `maps` option holds: maps declared for functions
 * (hash(...), array(...), ...), and maps declared with the filter DSL: a
 * filter's sets (`fw.sets.blocked`) and user maps (`fw.maps.seen`). A DSL map
 * keeps its name, so a function and a filter built into one object share one
 * kernel map (and separately loaded objects can share it with reuseMaps).
 */
export type MapDecls = Record<string, MapDecl<any, any, any> | SetRef<any> | MapRef<any, any>>;

/** The key a DSL set is asked about: an IPv4 address (u32), an IPv6 address, or a port. */
export type SetKey<K extends SetType> = K extends 'ipv4' ? u32 : K extends 'ipv6' ? Ipv6Address : u16;

/** A set declared with the filter DSL, as a function sees it. */
export interface SetHandle<K extends SetType = SetType> {
  /** Whether any prefix (or port) of the set holds the key: the same membership rules match with `.in(set)`. */
  has(key: SetKey<K>): boolean;
}

export type UpdateFlag = 'any' | 'noexist' | 'exist';

/** `increment` exists for maps of integer values. */
type Increment<K, V> = V extends number | bigint ? { increment(key: K, by?: V): void } : unknown;

/** A hash map (hash, LRU, per-CPU) as the function sees it. */
export type HashMap<K, V> = {
  /** A copy of the value, or undefined when the key is not there. */
  lookup(key: K): Readonly<V> | undefined;
  has(key: K): boolean;
  /** False when the map is full, or the flag's condition fails. */
  update(key: K, value: V, flag?: UpdateFlag): boolean;
  /** False when the key was not there. */
  delete(key: K): boolean;
} & Increment<K, V>;

/** An array map: keys are indexes 0..maxEntries-1 and every element exists (zero at first). */
export type ArrayMap<V> = {
  /** undefined only for an index out of range. */
  lookup(index: u32): Readonly<V> | undefined;
  update(index: u32, value: V): boolean;
} & Increment<u32, V>;

/** A ring buffer of events for user space. */
export interface RingBuf<E> {
  /** False when the buffer is full. */
  output(event: E): boolean;
}

/** Programs to tail-call into (see tailCall). */
export interface ProgArray {
  readonly __progArray: true;
}

export type HandleOf<D> = D extends SetRef<infer S>
  ? SetHandle<S>
  : D extends MapRef<infer K, infer V>
    ? HashMap<K, V>
    : D extends MapDecl<infer Kind, infer K, infer V>
  ? Kind extends 'array' | 'percpu_array'
    ? ArrayMap<V>
    : Kind extends 'ringbuf'
      ? RingBuf<V>
      : Kind extends 'prog_array'
        ? ProgArray
        : HashMap<K, V>
  : never;

/** What the function's second parameter is: a handle per declared map. */
export type MapHandles<M extends MapDecls> = { readonly [N in keyof M]: HandleOf<M[N]> };

// ---------------------------------------------------------------------------
// declarations

export interface MapOptions {
  maxEntries: number;
}

function toLayout(x: LayoutLike, what: string): L.Layout<any> {
  if (isIntType(x)) return x.layout;
  if (L.isLayout(x)) return x;
  throw new TsbpfError('DSL_INVALID', `${what} must be an integer type (u8, u16, u32, u64) or a struct(...) of them`);
}

function checkMax(n: unknown, what: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 0x7fffffff) {
    throw new TsbpfError('DSL_INVALID', `${what} must be a positive integer, got ${String(n)}`);
  }
  return n;
}

function decl<Kind extends FnMapKind, K, V>(kind: Kind, key: L.Layout<K> | undefined, value: L.Layout<V> | undefined, maxEntries: number): MapDecl<Kind, K, V> {
  return Object.freeze({ kind, key, value, maxEntries });
}

export function hash<KL extends LayoutLike, VL extends LayoutLike>(key: KL, value: VL, options: MapOptions): MapDecl<'hash', ValueOf<KL>, ValueOf<VL>> {
  return decl('hash', toLayout(key, 'hash key'), toLayout(value, 'hash value'), checkMax(options?.maxEntries, 'maxEntries'));
}

/** A hash that evicts the least recently used entry when full. */
export function lruHash<KL extends LayoutLike, VL extends LayoutLike>(key: KL, value: VL, options: MapOptions): MapDecl<'lru_hash', ValueOf<KL>, ValueOf<VL>> {
  return decl('lru_hash', toLayout(key, 'lruHash key'), toLayout(value, 'lruHash value'), checkMax(options?.maxEntries, 'maxEntries'));
}

/** A hash with one value per CPU (no contention; user space sees them all). */
export function perCpuHash<KL extends LayoutLike, VL extends LayoutLike>(key: KL, value: VL, options: MapOptions): MapDecl<'percpu_hash', ValueOf<KL>, ValueOf<VL>> {
  return decl('percpu_hash', toLayout(key, 'perCpuHash key'), toLayout(value, 'perCpuHash value'), checkMax(options?.maxEntries, 'maxEntries'));
}

export function lruPerCpuHash<KL extends LayoutLike, VL extends LayoutLike>(key: KL, value: VL, options: MapOptions): MapDecl<'lru_percpu_hash', ValueOf<KL>, ValueOf<VL>> {
  return decl('lru_percpu_hash', toLayout(key, 'lruPerCpuHash key'), toLayout(value, 'lruPerCpuHash value'), checkMax(options?.maxEntries, 'maxEntries'));
}

export function array<VL extends LayoutLike>(value: VL, options: MapOptions): MapDecl<'array', number, ValueOf<VL>> {
  return decl('array', L.u32, toLayout(value, 'array value'), checkMax(options?.maxEntries, 'maxEntries'));
}

export function perCpuArray<VL extends LayoutLike>(value: VL, options: MapOptions): MapDecl<'percpu_array', number, ValueOf<VL>> {
  return decl('percpu_array', L.u32, toLayout(value, 'perCpuArray value'), checkMax(options?.maxEntries, 'maxEntries'));
}

/** A ring buffer of `size` bytes (a power of two, at least 4096) carrying events of one layout. */
export function ringBuf<EL extends LayoutLike>(event: EL, options: { size: number }): MapDecl<'ringbuf', never, ValueOf<EL>> {
  const size = checkMax(options?.size, 'ring buffer size');
  if (size < 4096 || (size & (size - 1)) !== 0) throw new TsbpfError('DSL_INVALID', `ring buffer size must be a power of two of at least 4096, got ${size}`);
  return decl('ringbuf', undefined, toLayout(event, 'ring buffer event'), size);
}

/** Slots of programs to tail-call into with tailCall(maps.x, slot). */
export function progArray(options: MapOptions): MapDecl<'prog_array', number, number> {
  return decl('prog_array', L.u32, L.u32, checkMax(options?.maxEntries, 'maxEntries'));
}

/** A struct of integer fields (and nested structs), laid out as C does. */
export function struct<F extends Record<string, LayoutLike>>(fields: F, options: L.StructOptions = {}): L.StructLayout<{ -readonly [K in keyof F]: ValueOf<F[K]> }> {
  const out: Record<string, L.Layout<any>> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = toLayout(v, `struct field '${k}'`);
  return L.struct(out, options) as unknown as L.StructLayout<{ -readonly [K in keyof F]: ValueOf<F[K]> }>;
}

export function isMapDecl(x: unknown): x is MapDecl {
  const d = x as MapDecl | null;
  return !!d && typeof d === 'object' && !(isSetRef(d)) && !(isMapRef(d)) && typeof d.kind === 'string' && typeof d.maxEntries === 'number';
}

/** DSL user map kinds a function can use, as function map kinds. */
const DSL_MAP_KINDS: Partial<Record<string, FnMapKind>> = {
  hash: 'hash',
  lru_hash: 'lru_hash',
  percpu_hash: 'percpu_hash',
  array: 'array',
  percpu_array: 'percpu_array',
  ringbuf: 'ringbuf',
};

/**
 * The function-map declaration of a DSL user map (`ctx.map(...)` of a filter),
 * or a sentence saying why a function cannot use it.
 */
export function dslMapDecl(ref: MapRef): MapDecl | string {
  const kind = DSL_MAP_KINDS[ref.options.kind];
  if (!kind) return `map '${ref.name}' is a ${ref.options.kind}, which function programs do not use`;
  if (kind !== 'ringbuf' && (!ref.options.key || !ref.options.value)) return `map '${ref.name}' needs a key and a value layout`;
  if (kind === 'ringbuf' && !ref.options.value) return `ring buffer '${ref.name}' needs an event layout (its value) to be written from a function`;
  return Object.freeze({ kind, key: kind === 'ringbuf' ? undefined : ref.options.key, value: ref.options.value, maxEntries: ref.options.maxEntries });
}

export function isDslRef(x: unknown): x is SetRef | MapRef {
  return isSetRef(x) || isMapRef(x);
}

// ---------------------------------------------------------------------------
// in-memory maps for runs in Node

const HASH_KINDS = new Set<FnMapKind>(['hash', 'lru_hash', 'percpu_hash', 'lru_percpu_hash']);
const ARRAY_KINDS = new Set<FnMapKind>(['array', 'percpu_array']);

/**
 * A map in memory with the kernel's semantics for one CPU: hash maps refuse
 * new keys when full (LRU maps evict the least recently used instead), array
 * elements always exist, ring buffers collect their events.
 */
export class MemoryMap<K = unknown, V = unknown> {
  readonly name: string;
  readonly decl: MapDecl;
  /** Events written to a ring buffer, decoded, in order. */
  readonly events: V[] = [];
  /** prog_array slots. */
  readonly programs = new Map<number, unknown>();
  readonly #entries = new Map<string, Buffer>();

  constructor(name: string, decl: MapDecl) {
    this.name = name;
    this.decl = decl;
    if (ARRAY_KINDS.has(decl.kind)) {
      const zero = Buffer.alloc(decl.value!.size);
      for (let i = 0; i < decl.maxEntries; i++) this.#entries.set(this.#keyHex(i as K), Buffer.from(zero));
    }
  }

  #keyHex(key: K): string {
    const l = this.decl.key;
    if (!l) throw new TsbpfError('INVALID_ARGUMENT', `map '${this.name}' has no keys`);
    return L.encode(l, key).toString('hex');
  }

  #touch(hex: string): void {
    if (this.decl.kind !== 'lru_hash' && this.decl.kind !== 'lru_percpu_hash') return;
    const v = this.#entries.get(hex);
    if (v === undefined) return;
    this.#entries.delete(hex);
    this.#entries.set(hex, v);
  }

  // -- the handle API the function uses

  lookup(key: K): V | undefined {
    const hex = this.#keyHex(key);
    const v = this.#entries.get(hex);
    if (v === undefined) return undefined;
    this.#touch(hex);
    return this.decl.value!.decode(v, 0) as V;
  }

  has(key: K): boolean {
    return this.lookup(key) !== undefined;
  }

  update(key: K, value: V, flag: UpdateFlag = 'any'): boolean {
    const hex = this.#keyHex(key);
    const exists = this.#entries.has(hex);
    if (ARRAY_KINDS.has(this.decl.kind)) {
      if (!exists || flag === 'noexist') return false;
    } else {
      if (flag === 'noexist' && exists) return false;
      if (flag === 'exist' && !exists) return false;
      if (!exists && this.#entries.size >= this.decl.maxEntries) {
        if (this.decl.kind === 'lru_hash' || this.decl.kind === 'lru_percpu_hash') {
          const oldest = this.#entries.keys().next().value as string;
          this.#entries.delete(oldest);
        } else {
          return false;
        }
      }
    }
    const buf = L.encode(this.decl.value!, value);
    // Only LRU maps keep recency order; others keep their slot.
    if (this.decl.kind === 'lru_hash' || this.decl.kind === 'lru_percpu_hash') this.#entries.delete(hex);
    this.#entries.set(hex, buf);
    return true;
  }

  delete(key: K): boolean {
    if (!HASH_KINDS.has(this.decl.kind)) return false;
    return this.#entries.delete(this.#keyHex(key));
  }

  increment(key: K, by: number | bigint = 1): void {
    const vl = this.decl.value as L.IntLayout<number | bigint>;
    const bits = BigInt(vl.size * 8);
    const cur = this.lookup(key) as number | bigint | undefined;
    if (cur === undefined) {
      if (!HASH_KINDS.has(this.decl.kind)) return;
      this.update(key, fromBig(vl, BigInt.asUintN(Number(bits), BigInt(by))) as V, 'noexist');
      return;
    }
    const next = BigInt.asUintN(Number(bits), BigInt(cur) + BigInt(by));
    this.update(key, fromBig(vl, next) as V);
  }

  output(event: V): boolean {
    // Encode and decode: the event is what the C struct would carry.
    this.events.push(this.decl.value!.decode(L.encode(this.decl.value!, event), 0) as V);
    return true;
  }

  // -- user-space side, for tests

  /** Every entry, keys and values decoded, in insertion order. */
  entries(): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    for (const [hex, v] of this.#entries) out.push([this.decl.key!.decode(Buffer.from(hex, 'hex'), 0) as K, this.decl.value!.decode(v, 0) as V]);
    return out;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Sets a value from user space (as BPF_MAP_UPDATE_ELEM would). */
  set(key: K, value: V): void {
    if (!this.update(key, value)) throw new TsbpfError('MAP_OP_FAILED', `cannot set that key in map '${this.name}'`);
  }

  /** prog_array: put a program in a slot (null empties it). */
  setProgram(slot: number, program: unknown): void {
    if (this.decl.kind !== 'prog_array') throw new TsbpfError('INVALID_ARGUMENT', `map '${this.name}' is not a prog_array`);
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.decl.maxEntries) throw new TsbpfError('INVALID_ARGUMENT', `slot ${slot} is outside prog_array '${this.name}'`);
    if (program === null) this.programs.delete(slot);
    else this.programs.set(slot, program);
  }
}

function fromBig(l: L.IntLayout<number | bigint>, v: bigint): number | bigint {
  return l.size === 8 ? v : Number(v);
}

/** In-memory maps by name, shared by every program that declares a map of that name. */
export type MemoryMaps = Record<string, MemoryMap<any, any>>;

/**
 * A DSL set in Node (the handle a function gets): a view of the set in the run's EvalState, the same
 * contents evaluate() matches rules against (so a function and a chain it
 * calls see one set, as they see one kernel map).
 */
export class MemorySet {
  readonly kind = 'set' as const;
  constructor(
    readonly name: string,
    readonly ref: SetRef,
    readonly state: EvalState,
  ) {}

  has(key: number | Ipv6Address): boolean {
    const set = this.state.setContents(this.ref.name);
    if (!set) return false;
    if (this.ref.type === 'port') return set.entries.has(key as number);
    if (this.ref.type === 'ipv4') return [...set.entries.values()].some((c) => typeof c !== 'number' && c.family === 4 && inCidr4(key as number, c));
    const a = key as Ipv6Address;
    const big = (a.hi << 64n) | a.lo;
    return [...set.entries.values()].some((c) => typeof c !== 'number' && c.family === 6 && inCidr6(big, c));
  }

  /** The set's elements (canonical CIDR text or ports), for tests. */
  elements(): Array<string | number> {
    return this.state.setElements(this.ref.name);
  }
}

const DSL_STATES = new WeakMap<MemoryMaps, EvalState>();

/**
 * The EvalState behind the DSL sets of `maps` (and the chains runChain runs):
 * one per maps object, made on first use unless `state` is given.
 */
export function dslState(maps: MemoryMaps, state?: EvalState): EvalState {
  const have = DSL_STATES.get(maps);
  if (have && state && have !== state) throw new TsbpfError('INVALID_ARGUMENT', 'these maps already run with another EvalState');
  if (have) return have;
  const s = state ?? new EvalState();
  DSL_STATES.set(maps, s);
  return s;
}

/** Fresh in-memory maps for the given declarations (adds to `into` when given, keeping existing maps). */
export function createMemoryMaps(decls: MapDecls, into: MemoryMaps = {}): MemoryMaps {
  for (const [name, d0] of Object.entries(decls)) {
    const have = into[name];
    if (isSetRef(d0)) {
      // DSL sets live in the EvalState (evaluate() matches rules against it); the handle is a view of it.
      if (have) throw new TsbpfError('INVALID_ARGUMENT', `two programs declare map '${name}' differently`);
      const state = dslState(into);
      const known = state.setContents(name);
      if (known && known.type !== d0.type) throw new TsbpfError('INVALID_ARGUMENT', `two programs declare set '${name}' differently`);
      state.declareSet({ name: d0.name, type: d0.type, maxEntries: d0.maxEntries, elements: d0.elements });
      continue;
    }
    let d: MapDecl;
    if (isMapRef(d0)) {
      const m = dslMapDecl(d0);
      if (typeof m === 'string') throw new TsbpfError('INVALID_ARGUMENT', m);
      d = m;
    } else d = d0 as MapDecl;
    if (have) {
      if (have.decl.kind !== d.kind || have.decl.maxEntries !== d.maxEntries) {
        throw new TsbpfError('INVALID_ARGUMENT', `two programs declare map '${name}' differently`);
      }
      continue;
    }
    into[name] = new MemoryMap(name, d);
  }
  return into;
}
