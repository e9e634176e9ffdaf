/**
 * loadFunctions(build): the object of function programs (codegen/fn
 * compileFunctions) into the kernel, typed by the build's layouts, with the
 * declared elements of DSL sets written. Maps declared with the filter DSL
 * can be taken over from another loaded object (`shareWith`: a filter loaded
 * on its own), so the function and the filter use one kernel map.
 */
import type { FnCompileResult } from '../codegen/fn/compile.js';
import { TsbpfError } from '../sdk/errors.js';
import { load, type LoadOptions } from './load.js';
import type { BpfObject } from './object.js';

export interface LoadFunctionsOptions extends LoadOptions {
  /**
   * An object whose maps of the same names the functions' DSL maps (sets,
   * declareMap maps, fw.sets.x, fw.maps.x) are: e.g. the filter loaded with
   * loadFilter(fw).object. Their contents stay as they are.
   */
  shareWith?: BpfObject;
}

export function loadFunctions(build: Pick<FnCompileResult, 'object' | 'layouts' | 'maps'>, options: LoadFunctionsOptions = {}): BpfObject {
  if (!build.object) throw new TsbpfError('INVALID_ARGUMENT', 'this build has no object (it was made with emitOnly)');
  const { shareWith, ...loadOptions } = options;
  const reuse: Record<string, number> = { ...(options.reuseMaps ?? {}) };
  if (shareWith) {
    for (const m of build.maps) {
      if (!m.dsl) continue;
      const other = shareWith.maps[m.name];
      if (!other) throw new TsbpfError('INVALID_ARGUMENT', `the object to share with has no map '${m.name}'`, { hint: 'share with the object of the filter that declares it' });
      reuse[m.name] = other.fd;
    }
  }
  const obj = load(build.object, { ...loadOptions, layouts: { ...build.layouts, ...(options.layouts ?? {}) }, ...(Object.keys(reuse).length ? { reuseMaps: reuse } : {}) });
  try {
    for (const m of build.maps) {
      if (!m.initial?.length || reuse[m.name] !== undefined) continue;
      const map = obj.maps[m.name];
      if (!map) continue;
      for (const e of m.initial) if (!options.pinRoot || !map.raw.has(e.key)) map.raw.set(e.key, e.value);
    }
    return obj;
  } catch (e) {
    obj.close();
    throw e;
  }
}
