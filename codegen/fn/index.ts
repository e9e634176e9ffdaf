/** Function programs: TypeScript functions lowered to BPF C (see docs/functions.md). */
export { compileFunctions, compileProgram, type CompileFunctionsOptions, type FnCompileResult, type FnMapResult } from './compile.js';
export { formatDiagnostic, type FnDiagnostic } from './diagnostics.js';
export { MAX_LOOP_ITERATIONS } from './lower.js';
