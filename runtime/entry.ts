/**
 * The one `load()` users call: a DSL filter (or model definition) is compiled
 * and loaded as a LoadedFilter; an object file path or bytes is loaded as a
 * BpfObject with maps typed from its BTF.
 */
import { Filter, type DefinitionLike } from '../sdk/dsl/filter.js';
import { loadFilter, type LoadedFilter, type LoadFilterOptions } from './filter.js';
import { load as loadObject, type LoadOptions, type LoadSource } from './load.js';
import type { AnyMaps, BpfObject } from './object.js';

function isDefinitionLike(x: unknown): x is DefinitionLike {
  if (x instanceof Filter) return true;
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && Array.isArray((x as { chains?: unknown }).chains) && Array.isArray((x as { programs?: unknown }).programs);
}

export function load(filter: DefinitionLike, options?: LoadFilterOptions): LoadedFilter;
export function load<M extends AnyMaps = AnyMaps>(source: LoadSource, options?: LoadOptions): BpfObject<M>;
export function load(source: DefinitionLike | LoadSource, options: LoadFilterOptions | LoadOptions = {}): LoadedFilter | BpfObject {
  if (isDefinitionLike(source)) return loadFilter(source, options as LoadFilterOptions);
  return loadObject(source as LoadSource, options as LoadOptions);
}
