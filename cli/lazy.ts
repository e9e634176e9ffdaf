/**
 * The function-program compiler pulls in ts-morph and TypeScript (~0.4 s to
 * load): load it only for commands that meet a function program, so
 * `tsbpf maps`, `detach` and friends start fast.
 */
import type { compileFunctions } from '../codegen/fn/compile.js';

export async function fnCompiler(): Promise<typeof compileFunctions> {
  return (await import('../codegen/fn/compile.js')).compileFunctions;
}
