/**
 * Maps: `BpfMap<K, V>` encodes keys and values with layouts (from the
 * object's BTF, from the user, or raw bytes) and keeps raw Buffer access in
 * `map.raw`. Per-CPU maps have V = T[] (one value per possible CPU).
 */
import { TsbpfError } from '../sdk/errors.js';
import { bytes, u32, type Layout } from '../sdk/layout.js';
import type { Btf } from './btf.js';
import { errnoOf, guard, isUnsupported, wrapNative } from './errors.js';
import { native } from './native.js';

/** How an update treats an existing key: BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export type UpdateFlag = 'any' | 'noexist' | 'exist';

const UPDATE_FLAGS: Record<UpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

/** BPF_MAP_TYPE_* numbers the runtime treats specially. */
export const MapTypes = {
  hash: 1,
  array: 2,
  progArray: 3,
  perfEventArray: 4,
  percpuHash: 5,
  percpuArray: 6,
  lruHash: 9,
  lruPercpuHash: 10,
  lpmTrie: 11,
  arrayOfMaps: 12,
  hashOfMaps: 13,
  devmap: 14,
  cpumap: 16,
  xskmap: 17,
  percpuCgroupStorage: 21,
  ringbuf: 27,
} as const;

const PER_CPU = new Set<number>([MapTypes.percpuHash, MapTypes.percpuArray, MapTypes.lruPercpuHash, MapTypes.percpuCgroupStorage]);
/** Maps whose key is always a u32 index. */
const INDEXED = new Set<number>([
  MapTypes.array,
  MapTypes.progArray,
  MapTypes.perfEventArray,
  MapTypes.percpuArray,
  MapTypes.arrayOfMaps,
  MapTypes.devmap,
  MapTypes.cpumap,
  MapTypes.xskmap,
]);
/** Maps without keys and values reachable from user space. */
const KEYLESS = new Set<number>([MapTypes.ringbuf, 31 /* user_ringbuf */]);

/** What a map is, as the kernel knows it. */
export interface MapInfo {
  name: string;
  /** libbpf's type name: 'hash', 'array', 'percpu_array', 'prog_array', 'ringbuf', ... */
  type: string;
  typeId: number;
  keySize: number;
  /** value_size of one element (per CPU for per-CPU maps). */
  valueSize: number;
  maxEntries: number;
  flags: number;
  id: number;
}

export interface MapLayouts<K = unknown, V = unknown> {
  key?: Layout<K>;
  /** For per-CPU maps: the layout of one CPU's value. */
  value?: Layout<V>;
}

/** Where a map came from, for messages and for ring buffer typing. */
export interface MapOrigin {
  /** The BTF the map's types live in (the object's, or the kernel's for pinned maps). */
  btf?: Btf;
  /** Called when the map is used after its owner closed. */
  isClosed?: () => boolean;
  /** Whether close() on the map closes its fd (pinned maps opened by path). */
  ownsFd?: boolean;
}

let cpuCount: number | undefined;
/** Number of possible CPUs: the length of per-CPU values. */
export function possibleCpus(): number {
  cpuCount ??= native().numPossibleCpus();
  return cpuCount;
}

/** A layout of one value per possible CPU, each slot rounded up to 8 bytes as the kernel does. */
export function perCpuLayout<T>(element: Layout<T>, cpus = possibleCpus()): Layout<T[]> {
  const stride = Math.ceil(element.size / 8) * 8;
  return {
    kind: 'percpu',
    size: stride * cpus,
    align: 8,
    encode(values: T[], buf: Buffer, offset: number): void {
      if (!Array.isArray(values) || values.length !== cpus) {
        throw new TsbpfError('LAYOUT_INVALID', `a per-CPU value needs an array of ${cpus} values (one per possible CPU)`, {
          details: { cpus },
        });
      }
      buf.fill(0, offset, offset + stride * cpus);
      values.forEach((v, i) => element.encode(v, buf, offset + i * stride));
    },
    decode(buf: Buffer, offset: number): T[] {
      const out: T[] = [];
      for (let i = 0; i < cpus; i++) out.push(element.decode(buf, offset + i * stride));
      return out;
    },
  } as Layout<T[]>;
}

/** Raw Buffer access to a map: no layouts, sizes checked before any syscall. */
export class RawMap {
  constructor(private readonly map: BpfMap<unknown, unknown>) {}

  get(key: Buffer): Buffer | undefined {
    const m = this.map;
    m.checkKey(key);
    return guard(m.ctx('lookup'), () => native().mapLookup(m.fd, key, m.valueBytes) ?? undefined);
  }

  set(key: Buffer, value: Buffer, flag: UpdateFlag = 'any'): void {
    const m = this.map;
    m.checkKey(key);
    m.checkValue(value);
    guard(m.ctx('update'), () => native().mapUpdate(m.fd, key, value, flagValue(flag)));
  }

  /** false when the key was not there. */
  delete(key: Buffer): boolean {
    const m = this.map;
    m.checkKey(key);
    return guard(m.ctx('delete'), () => native().mapDelete(m.fd, key));
  }

  has(key: Buffer): boolean {
    return this.get(key) !== undefined;
  }

  *keys(): IterableIterator<Buffer> {
    const m = this.map;
    m.checkOpen();
    m.checkKeyed();
    let key: Buffer | null = null;
    for (;;) {
      const prev: Buffer | null = key;
      key = guard(m.ctx('iterate'), () => native().mapNextKey(m.fd, prev, m.keySize));
      if (key === null) return;
      yield key;
    }
  }

  *entries(): IterableIterator<[Buffer, Buffer]> {
    for (const k of this.keys()) {
      const v = this.get(k);
      // A key deleted between next_key and lookup is skipped.
      if (v !== undefined) yield [k, v];
    }
  }

  /**
   * Every entry with BPF_MAP_LOOKUP_BATCH, in chunks; falls back to
   * iteration where the kernel has no batch ops for the map type.
   */
  lookupBatch(options: { chunk?: number } = {}): Array<[Buffer, Buffer]> {
    const m = this.map;
    m.checkOpen();
    m.checkKeyed();
    const out: Array<[Buffer, Buffer]> = [];
    let chunk = Math.max(1, Math.min(options.chunk ?? 256, Math.max(m.maxEntries, 1)));
    let cursor: Buffer | null = null;
    for (;;) {
      let r;
      try {
        r = native().mapLookupBatch(m.fd, cursor, m.keySize, m.valueBytes, chunk);
      } catch (e) {
        // A hash bucket larger than the chunk: ask for more at once.
        if (errnoOf(e) === 28 /* ENOSPC */ && chunk < m.maxEntries * 2 + 2) {
          chunk *= 2;
          continue;
        }
        if (cursor === null && out.length === 0 && isUnsupported(e)) return [...this.entries()];
        throw wrapNative(e, m.ctx('batch lookup'));
      }
      for (let i = 0; i < r.count; i++) {
        out.push([
          Buffer.from(r.keys.subarray(i * m.keySize, (i + 1) * m.keySize)),
          Buffer.from(r.values.subarray(i * m.valueBytes, (i + 1) * m.valueBytes)),
        ]);
      }
      if (r.next === null) return out;
      cursor = r.next;
    }
  }

  /** Writes every entry with BPF_MAP_UPDATE_BATCH (one update per entry where the kernel lacks it). */
  updateBatch(entries: ReadonlyArray<readonly [Buffer, Buffer]>, flag: UpdateFlag = 'any'): number {
    const m = this.map;
    m.checkOpen();
    m.checkKeyed();
    if (entries.length === 0) return 0;
    for (const [k, v] of entries) {
      m.checkKey(k);
      m.checkValue(v);
    }
    const keys = Buffer.concat(entries.map(([k]) => k));
    const values = Buffer.concat(entries.map(([, v]) => v));
    try {
      return native().mapUpdateBatch(m.fd, keys, values, entries.length, flagValue(flag));
    } catch (e) {
      const updated = (e as { updated?: number }).updated ?? 0;
      if (!(updated === 0 && isUnsupported(e))) {
        throw wrapNative(e, m.ctx('batch update'));
      }
    }
    for (const [k, v] of entries) this.set(k, v, flag);
    return entries.length;
  }
}

function flagValue(flag: UpdateFlag): number {
  const f = UPDATE_FLAGS[flag];
  if (f === undefined) throw new TsbpfError('INVALID_ARGUMENT', `update flag must be 'any', 'noexist' or 'exist', got '${String(flag)}'`);
  return f;
}

/**
 * A BPF map with typed keys and values.
 *
 *   const counters = obj.map<number, bigint>('counters');
 *   counters.get(0);          // 42n
 *   counters.set(0, 0n);
 *   for (const [k, v] of counters) ...
 */
export class BpfMap<K, V> implements Iterable<[K, V]> {
  readonly name: string;
  readonly type: string;
  readonly typeId: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly id: number;
  /** True for per-CPU maps: values are arrays with one element per possible CPU. */
  readonly perCpu: boolean;
  /** Bytes of a whole value buffer (all CPUs for per-CPU maps). */
  readonly valueBytes: number;
  readonly keyLayout: Layout<K>;
  /** The layout of a whole value (a per-CPU array layout for per-CPU maps). */
  readonly valueLayout: Layout<V>;
  /** Raw Buffer access, always available. */
  readonly raw: RawMap;
  readonly btf: Btf | undefined;
  /** @internal Things that read this map (ring buffers) and must close before it. */
  readonly dependents = new Set<{ close(): void }>();
  #fd: number;
  readonly #origin: MapOrigin;
  #closed = false;

  constructor(info: MapInfo, fd: number, layouts: MapLayouts<K, unknown> = {}, origin: MapOrigin = {}) {
    this.name = info.name;
    this.type = info.type;
    this.typeId = info.typeId;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.id = info.id;
    this.#fd = fd;
    this.#origin = origin;
    this.btf = origin.btf;
    this.perCpu = PER_CPU.has(info.typeId);
    this.valueBytes = this.perCpu ? Math.ceil(info.valueSize / 8) * 8 * possibleCpus() : info.valueSize;

    const keyLayout = layouts.key ?? defaultKeyLayout(info);
    const elemLayout = layouts.value ?? defaultValueLayout(info);
    if (!KEYLESS.has(info.typeId)) {
      if (keyLayout.size !== info.keySize) {
        throw new TsbpfError(
          'MAP_KEY_SIZE',
          `map '${info.name}' has keys of ${info.keySize} bytes, but the key layout has ${keyLayout.size}`,
          { hint: 'give a key layout whose size equals the map key size', details: { map: info.name, mapKeySize: info.keySize, layoutSize: keyLayout.size } },
        );
      }
      if (elemLayout.size !== info.valueSize) {
        throw new TsbpfError(
          'MAP_VALUE_SIZE',
          `map '${info.name}' has values of ${info.valueSize} bytes, but the value layout has ${elemLayout.size}`,
          { hint: 'give a value layout whose size equals the map value size', details: { map: info.name, mapValueSize: info.valueSize, layoutSize: elemLayout.size } },
        );
      }
    }
    this.keyLayout = keyLayout as Layout<K>;
    this.valueLayout = (this.perCpu ? perCpuLayout(elemLayout) : elemLayout) as Layout<V>;
    this.raw = new RawMap(this as BpfMap<unknown, unknown>);
  }

  /** The map's fd (owned by its object, or by this map for pinned maps). */
  get fd(): number {
    this.checkOpen();
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed || (this.#origin.isClosed?.() ?? false);
  }

  get(key: K): V | undefined {
    const v = this.raw.get(this.encodeKey(key));
    return v === undefined ? undefined : this.valueLayout.decode(v, 0);
  }

  set(key: K, value: V, flag: UpdateFlag = 'any'): void {
    this.raw.set(this.encodeKey(key), this.encodeValue(value), flag);
  }

  /** false when the key was not there. */
  delete(key: K): boolean {
    return this.raw.delete(this.encodeKey(key));
  }

  has(key: K): boolean {
    return this.raw.has(this.encodeKey(key));
  }

  *keys(): IterableIterator<K> {
    for (const k of this.raw.keys()) yield this.keyLayout.decode(k, 0);
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.raw.entries()) yield this.valueLayout.decode(v, 0);
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.raw.entries()) yield [this.keyLayout.decode(k, 0), this.valueLayout.decode(v, 0)];
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** Every entry at once with batch lookups (or iteration where batches are not supported). */
  lookupBatch(options: { chunk?: number } = {}): Array<[K, V]> {
    return this.raw.lookupBatch(options).map(([k, v]) => [this.keyLayout.decode(k, 0), this.valueLayout.decode(v, 0)]);
  }

  /** Writes many entries with one batch update (or one update each where batches are not supported). */
  updateBatch(entries: Iterable<readonly [K, V]>, flag: UpdateFlag = 'any'): number {
    const raw: Array<[Buffer, Buffer]> = [];
    for (const [k, v] of entries) raw.push([this.encodeKey(k), this.encodeValue(v)]);
    return this.raw.updateBatch(raw, flag);
  }

  /** Deletes every key (hash-like maps; array elements cannot be deleted). */
  clear(): number {
    let n = 0;
    for (const k of [...this.raw.keys()]) if (this.raw.delete(k)) n++;
    return n;
  }

  /**
   * prog_array only: point `slot` at a program (its tail-call target), or
   * empty it with null.
   */
  setProgram(slot: number, program: { fd: number; name?: string } | null): void {
    if (this.typeId !== MapTypes.progArray) {
      throw new TsbpfError('INVALID_ARGUMENT', `map '${this.name}' is a ${this.type} map; setProgram needs a prog_array`);
    }
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxEntries) {
      throw new TsbpfError('INVALID_ARGUMENT', `slot ${slot} is outside prog_array '${this.name}' (0..${this.maxEntries - 1})`);
    }
    const key = Buffer.alloc(4);
    key.writeUInt32LE(slot);
    if (program === null) {
      this.raw.delete(key);
      return;
    }
    const value = Buffer.alloc(4);
    value.writeUInt32LE(program.fd);
    this.raw.set(key, value);
  }

  /** Closes the fd of a map opened from a pin (maps of a loaded object close with it). */
  close(): void {
    if (this.#closed) return;
    this.closeDependents();
    this.#closed = true;
    if (this.#origin.ownsFd) {
      pinnedRegistry.unregister(this);
      native().closeFd(this.#fd);
    }
    this.#fd = -1;
  }

  /** @internal */
  closeDependents(): void {
    for (const d of [...this.dependents]) d.close();
    this.dependents.clear();
  }

  /** @internal */
  trackForGc(): void {
    if (this.#origin.ownsFd) pinnedRegistry.register(this, this.#fd, this);
  }

  /** @internal */
  checkOpen(): void {
    if (this.closed) throw new TsbpfError('CLOSED', `map '${this.name}' is closed`, { hint: 'its object was closed; load it again' });
  }

  /** @internal */
  checkKeyed(): void {
    if (KEYLESS.has(this.typeId)) {
      throw new TsbpfError('INVALID_ARGUMENT', `map '${this.name}' is a ${this.type} map and has no keys`, {
        hint: this.typeId === MapTypes.ringbuf ? 'read it with ringBuffer(map, callback)' : undefined,
      });
    }
  }

  /** @internal */
  checkKey(key: Buffer): void {
    this.checkOpen();
    this.checkKeyed();
    if (!Buffer.isBuffer(key)) throw new TsbpfError('INVALID_ARGUMENT', `a raw key of map '${this.name}' must be a Buffer`);
    if (key.length !== this.keySize) {
      throw new TsbpfError(
        'MAP_KEY_SIZE',
        `key of ${key.length} bytes for map '${this.name}', whose keys have ${this.keySize} bytes`,
        { details: { map: this.name, keySize: this.keySize, given: key.length } },
      );
    }
  }

  /** @internal */
  checkValue(value: Buffer): void {
    if (!Buffer.isBuffer(value)) throw new TsbpfError('INVALID_ARGUMENT', `a raw value of map '${this.name}' must be a Buffer`);
    if (value.length !== this.valueBytes) {
      const per = this.perCpu ? ` (${this.valueSize} rounded up to 8, times ${possibleCpus()} CPUs)` : '';
      throw new TsbpfError(
        'MAP_VALUE_SIZE',
        `value of ${value.length} bytes for map '${this.name}', whose values have ${this.valueBytes} bytes${per}`,
        { details: { map: this.name, valueBytes: this.valueBytes, given: value.length } },
      );
    }
  }

  /** @internal */
  ctx(op: string): { code: 'MAP_OP_FAILED'; what: string } {
    return { code: 'MAP_OP_FAILED', what: `${op} in map '${this.name}'` };
  }

  private encodeKey(key: K): Buffer {
    this.checkOpen();
    this.checkKeyed();
    // A Buffer is taken as the raw key, whatever the layout.
    if (Buffer.isBuffer(key)) return key;
    const buf = Buffer.alloc(this.keySize);
    this.keyLayout.encode(key, buf, 0);
    return buf;
  }

  private encodeValue(value: V): Buffer {
    if (Buffer.isBuffer(value) && value.length === this.valueBytes && (this.valueLayout as { kind?: string }).kind !== 'bytes') return value;
    const buf = Buffer.alloc(this.valueBytes);
    this.valueLayout.encode(value, buf, 0);
    return buf;
  }
}

function defaultKeyLayout(info: MapInfo): Layout<unknown> {
  if (INDEXED.has(info.typeId) && info.keySize === 4) return u32;
  return bytes(Math.max(info.keySize, 1));
}

function defaultValueLayout(info: MapInfo): Layout<unknown> {
  if (info.typeId === MapTypes.progArray || info.typeId === MapTypes.arrayOfMaps || info.typeId === MapTypes.hashOfMaps) {
    // fds in, ids out
    if (info.valueSize === 4) return u32;
  }
  return bytes(Math.max(info.valueSize, 1));
}

// Pinned maps own their fd: close it if the map is dropped without close().
const pinnedRegistry = new FinalizationRegistry<number>((fd) => {
  try {
    native().closeFd(fd);
  } catch {
    /* already closed */
  }
});
