/**
 * Packet programs as TypeScript functions: the user-facing surface.
 * See docs/functions.md.
 */
export { u8, u16, u32, u64, isIntType, type IntType, type IntName } from './int.js';
export * from './verdicts.js';
export * from './packet.js';
export {
  hash,
  lruHash,
  perCpuHash,
  lruPerCpuHash,
  array,
  perCpuArray,
  ringBuf,
  progArray,
  struct,
  isMapDecl,
  createMemoryMaps,
  dslState,
  dslMapDecl,
  isDslRef,
  MemoryMap,
  MemorySet,
  type SetHandle,
  type SetKey,
  type MapDecl,
  type MapDecls,
  type FnMapKind,
  type HashMap,
  type ArrayMap,
  type RingBuf,
  type ProgArray,
  type MapHandles,
  type HandleOf,
  type MemoryMaps,
  type UpdateFlag,
  type LayoutLike,
  type ValueOf,
  type MapOptions,
} from './maps.js';
export { ktimeNs, randomU32, redirect, tailCall, runChain, tailChain, ip4, ip6, mac, sameIpv6, csumUpdate16, csumUpdate32, BPF_F_INGRESS } from './helpers.js';
export { xdp, tcIngress, tcEgress, isFnProgram, type FnProgram, type AnyFnProgram, type FnHook, type ProgramFn, type FnProgramOptions, type PacketOf, type ActionOf } from './program.js';
export { runInNode, type RunOptions, type RunResult } from './run.js';
export { PacketBufferView } from './view.js';
export { csumReplace } from './csum.js';
