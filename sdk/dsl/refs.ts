/** Handles the DSL hands out for named things: sets and user maps. */
import type { SourcePosition } from '../errors.js';
import { callerPosition } from '../source.js';
import { u32, type Layout } from '../layout.js';
import type { MapKind, SetDecl } from '../model.js';

export type SetType = SetDecl['type'];

/** What a set of each type holds, as written by the user. */
export type SetElement<K extends SetType> = K extends 'port' ? number : string;

/**
 * Brands that survive two copies of this module (a user's file imported from
 * the sources by the CLI's loader beside tsbpf's compiled copy): instanceof
 * would say no across them.
 */
const REF = Symbol.for('tsbpf.dsl.ref');

/** A named set declared in a filter; pass it to `.in(...)` of a matching field. */
export class SetRef<K extends SetType = SetType> {
  /** @internal */
  readonly [REF] = 'set';
  /** @internal */
  readonly elements: Array<string | number>;

  constructor(
    readonly name: string,
    readonly type: K,
    readonly maxEntries: number,
    elements: ReadonlyArray<SetElement<K>>,
    readonly source: SourcePosition | undefined,
  ) {
    this.elements = [...elements];
  }
}

export interface MapOptions<K, V> {
  kind: MapKind;
  key?: Layout<K>;
  value?: Layout<V>;
  /** Entries; for a ring buffer its size in bytes. */
  maxEntries: number;
}

/** A typed user map declared in a filter. */
export class MapRef<K = unknown, V = unknown> {
  /** @internal */
  readonly [REF] = 'map';
  constructor(
    readonly name: string,
    readonly options: MapOptions<K, V>,
    readonly source: SourcePosition | undefined,
  ) {}
}

/** Options of a set declared on its own (declareSet). */
export interface DeclareSetOptions<K extends SetType> {
  /** Capacity of the kernel map (default 1024). */
  maxEntries?: number;
  /** Initial contents: CIDRs or addresses (ipv4, ipv6), or ports. */
  elements?: ReadonlyArray<SetElement<K>>;
}

/**
 * A set declared on its own, at the top level of a module, so that both a
 * filter (`filter(name, { hook, uses: [blocked] }, ...)`, rules match with
 * `.in(blocked)`) and function programs (`xdp({ maps: { blocked } }, ...)`,
 * `blocked.has(addr)`) can take it, typed. Built into one object they share
 * one kernel map.
 */
export function declareSet<K extends SetType>(name: string, type: K, options: DeclareSetOptions<K> = {}): SetRef<K> {
  return new SetRef<K>(name, type, options.maxEntries ?? 1024, options.elements ?? [], callerPosition());
}

/** A layout, or a function-program integer type carrying one (u32 of tsbpf/fn). */
export type LayoutOrInt<T> = Layout<T> | { readonly layout: Layout<T> };

export interface DeclareMapOptions<K, V> {
  kind: MapKind;
  /** Default for array kinds: u32 (the index). */
  key?: LayoutOrInt<K>;
  value?: LayoutOrInt<V>;
  /** Entries; for a ring buffer its size in bytes. */
  maxEntries: number;
}

/**
 * A typed user map declared on its own (see declareSet): a filter lists it in
 * `uses`, function programs in their `maps`; `MapRef<K, V>` keeps the types.
 */
export function declareMap<K, V>(name: string, options: DeclareMapOptions<K, V>): MapRef<K, V> {
  const layout = <T>(l: LayoutOrInt<T> | undefined): Layout<T> | undefined => (l && 'layout' in l && !('encode' in l) ? l.layout : (l as Layout<T> | undefined));
  // Arrays are indexed by u32: the key may be left out.
  const key = layout(options.key) ?? (options.kind === 'array' || options.kind === 'percpu_array' ? (u32 as unknown as Layout<K>) : undefined);
  const value = layout(options.value);
  return new MapRef<K, V>(name, { kind: options.kind, ...(key ? { key } : {}), ...(value ? { value } : {}), maxEntries: options.maxEntries }, callerPosition());
}

/** A set made by the filter DSL (whichever copy of tsbpf made it). */
export function isSetRef(x: unknown): x is SetRef {
  return !!x && typeof x === 'object' && (x as { [REF]?: unknown })[REF] === 'set';
}

/** A user map made by the filter DSL (whichever copy of tsbpf made it). */
export function isMapRef(x: unknown): x is MapRef {
  return !!x && typeof x === 'object' && (x as { [REF]?: unknown })[REF] === 'map';
}
