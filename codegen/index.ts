/**
 * codegen's public API: a filter model to readable C to a verified BPF object
 * (docs/codegen.md).
 */
// Program and map infos are renamed so `export *` of runtime and codegen side by side does not clash.
export { compile, type CompileOptions, type CompileResult, type ProgramInfo as CompiledProgram, type RuleInfo, type Stage } from './compile.js';
export { compileC, cacheKey, clangVersion, defaultCacheDir, includeDir, type ClangOptions, type ClangResult } from './clang.js';
export { explainVerifierError, verifierError, findProgram, type VerifierExplanation } from './verifier.js';
export { lower, MAX_TAIL_CALLS, INLINE_MAX_RULES, type Ir, type InlineMode } from './ir.js';
export { setKey, type MapInfo as CompiledMap, type MapRole, type MapType } from './maps.js';
export { describeMatch, describeRule, describeAction } from './describe.js';
export { COUNTER, LOG_EVENT, PKT, STATE, LPM4_KEY, LPM6_KEY, VERDICT_CODE, HAS, pktRecordOf, type PktRecord } from './layouts.js';
export { compileServices, servicesLayouts, type ServicesCompileResult, type ServicesCompileOptions } from './stateful/compile.js';
export { emitServicesC, servicesPrograms, type ServicesProgram } from './stateful/emit.js';
