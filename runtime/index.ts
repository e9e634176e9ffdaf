/**
 * The runtime's public API: load objects into the kernel, attach them, use
 * their maps, run them on test packets, read their ring buffers, pin state.
 */
export { load } from './entry.js';
export { loadFunctions, type LoadFunctionsOptions } from './functions.js';
export { type LoadOptions, type LoadSource } from './load.js';
export { loadFilter, LoadedFilter, FilterSet, LogSubscription, type LoadFilterOptions, type FilterAttachOptions, type FilterTestRun, type RuleCounter, type FilterLogEvent } from './filter.js';
export { LiveRules, type RulePlace, type RuleOp, type RuleUpdate } from './rules.js';
export { BpfObject, type AnyMaps } from './object.js';
export { BpfProgram, HOOKS, hooksOf, type Hook, type ProgramInfo } from './program.js';
export { BpfMap, RawMap, MapTypes, perCpuLayout, possibleCpus, type MapInfo, type MapLayouts, type UpdateFlag } from './map.js';
export { Attachment, type AttachOptions, type XdpMode } from './attach.js';
export {
  decodeSkbContext,
  encodeSkbContext,
  testRunProgram,
  verdictOf,
  type SkbContext,
  type TcVerdict,
  type TestRunOptions,
  type TestRunResult,
  type KernelVerdict,
  type XdpVerdict,
} from './test-run.js';
export { RingBuffer, ringBuffer, type RingBufferCallback, type RingBufferOptions } from './ringbuf.js';
export { checkBpffs, openPinnedMap, type PinSet } from './pin.js';
// Conntrack tables of filters (and of pinned services programs).
export { ConntrackMap, fctStats } from './conntrack.js';
export { wrapNative } from './errors.js';
export { loadServices, LoadedServices, monotonicNs, type LoadServicesOptions, type ServicesAttachOptions, type ServicesTestRun } from './services.js';
