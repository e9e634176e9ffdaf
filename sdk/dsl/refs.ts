/** Handles the DSL hands out for named things: sets and user maps. */
import type { SourcePosition } from '../errors.js';
import type { Layout } from '../layout.js';
import type { MapKind, SetDecl } from '../model.js';

export type SetType = SetDecl['type'];

/** What a set of each type holds, as written by the user. */
export type SetElement<K extends SetType> = K extends 'port' ? number : string;

/** A named set declared in a filter; pass it to `.in(...)` of a matching field. */
export class SetRef<K extends SetType = SetType> {
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
  constructor(
    readonly name: string,
    readonly options: MapOptions<K, V>,
    readonly source: SourcePosition | undefined,
  ) {}
}
