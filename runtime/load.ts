/**
 * load(): an ELF object (path or bytes) into the kernel, with its maps typed
 * from BTF (or from layouts the caller gives), ready to attach and test.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TsbpfError } from '../sdk/errors.js';
import type { Layout } from '../sdk/layout.js';
import { layoutOfType, parseBtf, type Btf } from './btf.js';
import { guard, wrapNative } from './errors.js';
import { BpfMap, type MapLayouts } from './map.js';
import { native, type NativeMapInfo, type NativeObjectHandle } from './native.js';
import { BpfObject, internalMaps, type AnyMaps } from './object.js';
import { BpfProgram } from './program.js';

/** An object file path, its bytes, or something that carries either (a compile result). */
export type LoadSource = string | Buffer | Uint8Array | { path: string; bytes?: Buffer } | { bytes: Buffer | Uint8Array; path?: string };

export interface LoadOptions {
  /** Object name (libbpf prefixes global-data maps with it); default: the file name. */
  name?: string;
  /** Layouts by map name; they win over the object's BTF. */
  layouts?: Record<string, MapLayouts>;
  /** max_entries by map name, set before the maps are created. */
  maxEntries?: Record<string, number>;
  /** Reuse maps pinned at `<pinRoot>/<map>` (state that outlives a reload). */
  pinRoot?: string;
  /** Reuse maps by name from fds of existing maps (their shape must match); the caller keeps its fds. */
  reuseMaps?: Record<string, number>;
  /** Verifier log level on failure: 1 (default) or 2 (logs every program; slow). */
  logLevel?: 1 | 2;
  /** Verifier log buffer size per program (default 16 MiB). */
  logSize?: number;
}

function sourceOf(src: LoadSource): { native: string | Buffer; name: string; what: string } {
  if (typeof src === 'string') {
    return { native: src, name: path.basename(src).replace(/\.(o|bpf\.o|elf)$/, ''), what: src };
  }
  if (src instanceof Uint8Array) {
    return { native: Buffer.isBuffer(src) ? src : Buffer.from(src), name: 'tsbpf', what: 'object in memory' };
  }
  if (src && typeof src === 'object') {
    if ('bytes' in src && src.bytes instanceof Uint8Array) {
      const name = src.path ? path.basename(src.path).replace(/\.o$/, '') : 'tsbpf';
      return { native: Buffer.isBuffer(src.bytes) ? src.bytes : Buffer.from(src.bytes), name, what: src.path ?? 'object in memory' };
    }
    if ('path' in src && typeof src.path === 'string') return sourceOf(src.path);
  }
  throw new TsbpfError('INVALID_ARGUMENT', 'load needs an object file path or its bytes');
}

/** Layouts of a map from BTF; raw bytes (undefined) for what BTF cannot express. */
function btfLayouts(btf: Btf | undefined, info: NativeMapInfo): MapLayouts {
  if (!btf || info.internal) return {};
  const out: { key?: Layout<unknown>; value?: Layout<unknown> } = {};
  try {
    if (info.btfKeyTypeId) out.key = layoutOfType(btf, info.btfKeyTypeId);
  } catch {
    /* raw keys */
  }
  try {
    if (info.btfValueTypeId) out.value = layoutOfType(btf, info.btfValueTypeId);
  } catch {
    /* raw values */
  }
  // A layout that disagrees with the kernel's sizes is no better than raw.
  if (out.key && out.key.size !== info.keySize) delete out.key;
  if (out.value && out.value.size !== info.valueSize) delete out.value;
  return out;
}

/**
 * Loads a BPF object into the kernel. On any failure (a missing file, a
 * verifier rejection, a bad layout) everything is released again and a
 * TsbpfError says what went wrong.
 */
export function load<M extends AnyMaps = AnyMaps>(source: LoadSource, options: LoadOptions = {}): BpfObject<M> {
  const src = sourceOf(source);
  const name = options.name ?? src.name;
  if (typeof src.native === 'string' && !existsSync(src.native)) {
    throw new TsbpfError('OBJECT_NOT_FOUND', `BPF object file ${src.native} does not exist`, {
      hint: 'check the path, or build the object first (clang -O2 -g -target bpf -c prog.c)',
    });
  }
  const handle: NativeObjectHandle = guard({ code: 'OBJECT_INVALID' }, () =>
    native().objectOpen(src.native, { name, ...(options.pinRoot ? { pinRoot: options.pinRoot } : {}), ...(options.reuseMaps ? { reuseFds: options.reuseMaps } : {}) }),
  );
  try {
    const before = native().objectMaps(handle);
    const known = new Set(before.map((m) => m.name));
    for (const [map, n] of Object.entries(options.maxEntries ?? {})) {
      if (!known.has(map)) throw new TsbpfError('MAP_NOT_FOUND', `maxEntries names map '${map}', which object '${name}' does not have`);
      guard({ code: 'INVALID_ARGUMENT', what: `max_entries of map '${map}'` }, () => native().objectSetMapMaxEntries(handle, map, n));
    }
    for (const map of Object.keys(options.layouts ?? {})) {
      if (!known.has(map)) throw new TsbpfError('MAP_NOT_FOUND', `layouts name map '${map}', which object '${name}' does not have`);
    }
    // Check user layouts against the map sizes before anything reaches the kernel.
    for (const m of before) {
      const given = options.layouts?.[m.name];
      if (given) new BpfMap({ ...m }, -1, given);
    }

    guard({ code: 'LOAD_FAILED', what: `load object '${name}'` }, () =>
      native().objectLoad(handle, { ...(options.logLevel ? { logLevel: options.logLevel } : {}), ...(options.logSize ? { logSize: options.logSize } : {}) }),
    );

    let btf: Btf | undefined;
    try {
      const raw = native().objectBtf(handle);
      btf = raw ? parseBtf(raw) : undefined;
    } catch {
      btf = undefined;
    }
    let obj: BpfObject<M> | undefined;
    const isClosed = () => obj?.closed ?? false;
    const maps: Record<string, BpfMap<unknown, unknown>> = {};
    for (const info of native().objectMaps(handle)) {
      const layouts = { ...btfLayouts(btf, info), ...(options.layouts?.[info.name] ?? {}) };
      const map = new BpfMap<unknown, unknown>(info, info.fd, layouts, { btf, isClosed });
      if (info.internal) internalMaps.add(map);
      maps[info.name] = map;
    }
    const programs = native().objectPrograms(handle);
    obj = new BpfObject<M>({
      name,
      handle,
      btf,
      maps: maps as M,
      programs: (owner) => programs.map((p) => new BpfProgram(p, owner)),
    });
    return obj;
  } catch (e) {
    native().objectClose(handle);
    throw wrapNative(e, { code: 'LOAD_FAILED', what: `load object '${name}'` });
  }
}
