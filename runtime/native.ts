/**
 * The contract of the native addon (runtime/native, C++ over libbpf).
 *
 * The addon is deliberately thin and fd-based, like libbpf's bpf.h: it knows
 * nothing of layouts or TS types. Everything typed lives in runtime/*.ts.
 *
 * Errors thrown by the addon are plain Error objects with extra properties:
 *   errno:   positive errno
 *   op:      the libbpf call that failed (e.g. 'bpf_object__load')
 *   program: for a load failure, the program whose load failed (if known)
 *   verifierLog: for a load failure, the whole verifier log of that program
 *   libbpfLog: for open/load failures, what libbpf printed meanwhile
 *   updated: for mapUpdateBatch failures, how many elements were updated
 * Errors in arguments (a bug in the caller) are TypeErrors with op 'argument'.
 * Map operations check key and value sizes against the map (EINVAL), so a
 * wrong size is an error, never memory corruption.
 * runtime/errors wraps them into TsbpfError.
 */
import { createRequire } from 'node:module';
import { TsbpfError } from '../sdk/errors.js';

/** Opaque handle of an opened bpf_object (a napi External). */
export type NativeObjectHandle = { readonly __brand: 'bpf_object' };
/** Opaque handle of a ring_buffer polled by uv_poll. */
export type NativeRingBufferHandle = { readonly __brand: 'ring_buffer' };

export interface NativeProgramInfo {
  name: string;
  /** libbpf's program type name, e.g. 'sched_cls', 'xdp'. */
  type: string;
  /** ELF section name, e.g. 'tc', 'xdp', 'classifier/ingress'. */
  section: string;
  /** fd after load, -1 before. */
  fd: number;
  /** kernel program id after load, 0 before. */
  id: number;
  /** kernel tag (hex) after load, '' before. */
  tag: string;
}

export interface NativeMapInfo {
  name: string;
  /** libbpf's map type name, e.g. 'hash', 'percpu_array', 'ringbuf', 'prog_array'. */
  type: string;
  /** numeric BPF_MAP_TYPE_* */
  typeId: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  fd: number;
  id: number;
  /** BTF type ids of key and value in the object's BTF, 0 when absent. */
  btfKeyTypeId: number;
  btfValueTypeId: number;
  /** libbpf's internal maps for global data (.bss, .data, .rodata, .kconfig). */
  internal: boolean;
}

/** What the kernel reports for any map fd (bpf_map_get_info_by_fd). */
export interface NativeMapFdInfo {
  name: string;
  type: string;
  typeId: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  id: number;
  btfId: number;
  btfKeyTypeId: number;
  btfValueTypeId: number;
}

export interface NativeProgFdInfo {
  name: string;
  type: string;
  id: number;
  tag: string;
}

export interface OpenOptions {
  /** Object name used by libbpf (defaults to the file name). */
  name?: string;
  /**
   * For every map (global-data maps excepted): reuse a pinned map at
   * `${pinRoot}/${mapName}` when present. A pinned map of another type, key
   * or value size, max_entries or flags is an error (op 'bpf_map__reuse_fd').
   * Nothing is pinned automatically.
   */
  pinRoot?: string;
  /**
   * Maps to reuse by name: the object's map takes the existing map behind
   * the fd (bpf_map__reuse_fd; the caller keeps its fd). A map of another
   * type, key or value size, max_entries or flags is an error (op
   * 'bpf_map__reuse_fd'), so is a name the object does not have.
   */
  reuseFds?: Record<string, number>;
}

export interface LoadOptions {
  /**
   * Verifier log level. 1 (default): no log on the first attempt, and a
   * failing program is retried once with level 1 to get its log. 2: every
   * program loads with level 2 from the start (slower; for debugging).
   */
  logLevel?: number;
  /** Log buffer size in bytes per program. Default 16 MiB (only touched when the kernel writes). */
  logSize?: number;
}

/** Where a network operation runs: a named netns (/var/run/netns/NAME) or a path like /proc/PID/ns/net. */
export interface NetnsTarget {
  netns?: string;
}

export interface TcAttachOptions extends NetnsTarget {
  ifname: string;
  direction: 'ingress' | 'egress';
  progFd: number;
  /** tc filter priority, 1..65535; 0 lets the kernel pick. */
  priority?: number;
  /** tc filter handle; 0 lets the kernel pick. */
  handle?: number;
  /** replace an existing filter at the same priority and handle. */
  replace?: boolean;
}

export interface TcAttachResult {
  ifindex: number;
  priority: number;
  handle: number;
  /** Whether this call created the clsact qdisc. */
  createdQdisc: boolean;
}

export interface TcDetachOptions extends NetnsTarget {
  ifname: string;
  direction: 'ingress' | 'egress';
  priority: number;
  handle: number;
  /** Remove the clsact qdisc when no filters are left on either direction. */
  removeQdiscIfEmpty?: boolean;
}

export interface XdpAttachOptions extends NetnsTarget {
  ifname: string;
  progFd: number;
  mode?: 'generic' | 'driver' | 'offload';
  /** Replace atomically the program whose fd is given (XDP_FLAGS_REPLACE). */
  expectedFd?: number;
  /** Fail if a program is attached already (XDP_FLAGS_UPDATE_IF_NOEXIST). Default false. */
  noReplace?: boolean;
}

export interface XdpAttachResult {
  ifindex: number;
  /** The mode the program ended up in (the kernel picks when `mode` is not given). */
  mode: 'generic' | 'driver' | 'offload';
}

export interface XdpDetachOptions extends NetnsTarget {
  ifname: string;
  mode?: 'generic' | 'driver' | 'offload';
  /** Only detach if this program is the one attached. */
  expectedFd?: number;
}

export interface TestRunOptions {
  data: Buffer;
  /** Bytes reserved for data out; default data.length + 256. */
  dataSizeOut?: number;
  /** __sk_buff (TC) or xdp_md (XDP) context in. */
  ctx?: Buffer;
  /** Bytes reserved for ctx out (0: none). */
  ctxSizeOut?: number;
  repeat?: number;
  flags?: number;
}

export interface TestRunResult {
  retval: number;
  data: Buffer;
  ctx: Buffer | null;
  /** average duration per run in ns, as the kernel reports it. */
  duration: number;
}

export interface BatchResult {
  keys: Buffer;
  values: Buffer;
  count: number;
  /** Opaque cursor for the next call, null when done. */
  next: Buffer | null;
}

export interface NativeAddon {
  /** libbpf_num_possible_cpus() */
  numPossibleCpus(): number;
  libbpfVersion(): string;

  objectOpen(src: string | Buffer, options?: OpenOptions): NativeObjectHandle;
  objectLoad(obj: NativeObjectHandle, options?: LoadOptions): void;
  objectPrograms(obj: NativeObjectHandle): NativeProgramInfo[];
  objectMaps(obj: NativeObjectHandle): NativeMapInfo[];
  /** Raw BTF of the object (btf__raw_data), null when the object has none. */
  objectBtf(obj: NativeObjectHandle): Buffer | null;
  /** Set a map's max_entries (or other open-time attributes) before load. */
  objectSetMapMaxEntries(obj: NativeObjectHandle, map: string, maxEntries: number): void;
  /** Closes the object: its programs and maps fds (unless dup'ed) are released. */
  objectClose(obj: NativeObjectHandle): void;

  mapLookup(fd: number, key: Buffer, valueSize: number, flags?: number): Buffer | null;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags?: number): void;
  /** false when the key was absent. */
  mapDelete(fd: number, key: Buffer): boolean;
  /** Next key after `key` (first key when null), null at the end. */
  mapNextKey(fd: number, key: Buffer | null, keySize: number): Buffer | null;
  /** BPF_MAP_LOOKUP_BATCH; throws with errno EINVAL/ENOTSUPP where the map type has no batch ops. */
  mapLookupBatch(fd: number, cursor: Buffer | null, keySize: number, valueSize: number, maxCount: number): BatchResult;
  /** BPF_MAP_UPDATE_BATCH; returns the number of elements updated. */
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags?: number): number;
  mapFdInfo(fd: number): NativeMapFdInfo;
  progFdInfo(fd: number): NativeProgFdInfo;
  /** Raw BTF of a kernel BTF object by id (btf__load_from_kernel_by_id). */
  btfById(id: number): Buffer;

  objPin(fd: number, path: string): void;
  /** bpf_obj_get: a new fd the caller owns. */
  objGet(path: string): number;
  closeFd(fd: number): void;
  dupFd(fd: number): number;

  tcAttach(options: TcAttachOptions): TcAttachResult;
  tcDetach(options: TcDetachOptions): void;
  xdpAttach(options: XdpAttachOptions): XdpAttachResult;
  xdpDetach(options: XdpDetachOptions): void;
  /** Program id attached at XDP on the interface (0 when none). */
  xdpQuery(options: { ifname: string; mode?: 'generic' | 'driver' | 'offload' } & NetnsTarget): number;
  ifIndex(ifname: string, netns?: string): number;

  testRun(progFd: number, options: TestRunOptions): TestRunResult;

  /** Events are delivered on the event loop; the callback gets a copy of each record. */
  ringBufferOpen(mapFd: number, callback: (data: Buffer) => void): NativeRingBufferHandle;
  /** Consume what is ready now, synchronously; returns the number of records. */
  ringBufferConsume(rb: NativeRingBufferHandle): number;
  ringBufferClose(rb: NativeRingBufferHandle): void;
  /** Whether an open ring buffer keeps the event loop alive (default true, like a socket). */
  ringBufferRef(rb: NativeRingBufferHandle, ref: boolean): void;
}

let cached: NativeAddon | undefined;

/** The addon, loaded on first use so that sdk/codegen users never need it. */
export function native(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const bindings = require('bindings') as (opts: { bindings: string; module_root: string }) => NativeAddon;
    cached = bindings({ bindings: 'tsbpf_native', module_root: packageRoot() });
  } catch (cause) {
    throw new TsbpfError('NATIVE_UNAVAILABLE', 'the tsbpf native addon is not built or cannot be loaded', {
      cause,
      hint: 'run `npx tsbpf setup` (installs libbpf-dev, clang, ...) then `npm rebuild tsbpf`',
    });
  }
  return cached;
}

function packageRoot(): string {
  // dist/runtime/native.js -> package root is two levels up from dist/runtime
  const here = new URL('.', import.meta.url).pathname;
  return here.replace(/\/dist\/runtime\/$/, '').replace(/\/runtime\/$/, '');
}
