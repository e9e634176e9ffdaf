/**
 * tsbpf: `import { ... } from 'tsbpf'` gives the sdk (DSL, layouts, packets,
 * evaluator), codegen's `compile` and the runtime (load, attach, maps, test runs).
 */
export * from './sdk/index.js';
export * from './runtime/index.js';
export * from './codegen/index.js';
