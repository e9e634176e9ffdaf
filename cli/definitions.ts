/**
 * Finding the filters a user's file exports, for build/load/test/explain.
 */
import { isFilter, type Filter } from '../sdk/dsl/filter.js';
import { isFnProgram, type AnyFnProgram } from '../sdk/fn/program.js';
import { TsbpfError } from '../sdk/errors.js';
import { importUserFile } from './user-file.js';

export interface FoundFilter {
  exportName: string;
  filter: Filter;
}

/** Every exported Filter of `file` (or the one named by `exportName`). */
export async function filtersOf(file: string, exportName?: string): Promise<FoundFilter[]> {
  const mod = await importUserFile(file);
  const found = Object.entries(mod)
    .filter(([, v]) => isFilter(v))
    .map(([k, v]) => ({ exportName: k, filter: v as Filter }));
  if (exportName) {
    const one = found.find((f) => f.exportName === exportName);
    if (!one) {
      throw new TsbpfError('INVALID_ARGUMENT', `${file} has no exported filter named '${exportName}'`, {
        hint: found.length ? `it exports: ${found.map((f) => f.exportName).join(', ')}` : 'export a filter: export const fw = filter(...)',
      });
    }
    return [one];
  }
  if (found.length === 0) {
    throw new TsbpfError('INVALID_ARGUMENT', `${file} exports no filter`, { hint: "export one: export const fw = filter('fw', { hook: 'tc-ingress' }, ...)" });
  }
  return found;
}

/** Exactly one filter, or an error that lists the choices. */
export async function oneFilterOf(file: string, exportName?: string): Promise<FoundFilter> {
  const all = await filtersOf(file, exportName);
  if (all.length > 1) {
    throw new TsbpfError('INVALID_ARGUMENT', `${file} exports several filters: ${all.map((f) => f.exportName).join(', ')}`, {
      hint: 'choose one with --export NAME',
    });
  }
  return all[0]!;
}

export interface FoundFunction {
  exportName: string;
  program: AnyFnProgram;
}

/** Everything a user file exports that tsbpf can build: declarative filters and function programs. */
export async function buildablesOf(file: string): Promise<{ filters: FoundFilter[]; functions: FoundFunction[]; module: Record<string, unknown> }> {
  const mod = await importUserFile(file);
  const filters: FoundFilter[] = [];
  const functions: FoundFunction[] = [];
  for (const [k, v] of Object.entries(mod)) {
    // isFilter, not instanceof: a file inside this repository imports tsbpf's sources, a second copy of Filter.
    if (isFilter(v)) filters.push({ exportName: k, filter: v });
    else if (isFnProgram(v)) functions.push({ exportName: k, program: v });
  }
  // The module goes to compileFunctions too: the filters runChain runs and the DSL maps come from it.
  return { filters, functions, module: mod };
}
