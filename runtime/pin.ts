/**
 * Pinning under bpffs: maps at `<dir>/<map>` (the libbpf convention, so a
 * later load can reuse them with `{ pinRoot: dir }`), programs at
 * `<dir>/programs/<program>`. Pinned objects outlive the process; a later
 * process opens a pinned map with `openPinnedMap(path)`.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { TsbpfError } from '../sdk/errors.js';
import type { Layout } from '../sdk/layout.js';
import { layoutOfType, parseBtf, type Btf } from './btf.js';
import { guard, wrapNative } from './errors.js';
import { BpfMap, type MapLayouts } from './map.js';
import { native } from './native.js';

const BPF_FS_MAGIC = 0xcafe4a11;

/** What pin() created, so unpin() removes exactly that. */
export interface PinSet {
  dir: string;
  maps: Record<string, string>;
  programs: Record<string, string>;
  /** Directories pin() created (removed by unpin when empty), deepest last. */
  createdDirs: string[];
}

/** Throws PIN_FAILED unless `dir` (or its nearest existing parent) is on bpffs. */
export function checkBpffs(dir: string): void {
  let p = path.resolve(dir);
  while (!existsSync(p)) p = path.dirname(p);
  let type: number;
  try {
    type = Number(statfsSync(p).type);
  } catch (cause) {
    throw new TsbpfError('PIN_FAILED', `cannot inspect ${p}`, { cause });
  }
  if (type !== BPF_FS_MAGIC) {
    throw new TsbpfError('PIN_FAILED', `${dir} is not on a BPF filesystem`, {
      hint: 'pin under /sys/fs/bpf (mount it with `mount -t bpf bpf /sys/fs/bpf`)',
    });
  }
}

function mkdirs(dir: string, created: string[]): void {
  const missing: string[] = [];
  let p = path.resolve(dir);
  while (!existsSync(p)) {
    missing.unshift(p);
    p = path.dirname(p);
  }
  for (const d of missing) {
    mkdirSync(d);
    created.push(d);
  }
}

/**
 * Pins every map and program given; on any failure removes what it pinned
 * and the directories it made, so nothing is left behind.
 */
export function pinAll(dir: string, maps: ReadonlyArray<{ name: string; fd: number }>, programs: ReadonlyArray<{ name: string; fd: number }>): PinSet {
  if (typeof dir !== 'string' || dir === '') throw new TsbpfError('INVALID_ARGUMENT', 'pin needs a directory under /sys/fs/bpf');
  checkBpffs(dir);
  const set: PinSet = { dir: path.resolve(dir), maps: {}, programs: {}, createdDirs: [] };
  try {
    mkdirs(set.dir, set.createdDirs);
    for (const m of maps) {
      const p = path.join(set.dir, m.name);
      pinOne(m.fd, p, `map '${m.name}'`);
      set.maps[m.name] = p;
    }
    if (programs.length) {
      const pdir = path.join(set.dir, 'programs');
      mkdirs(pdir, set.createdDirs);
      for (const prog of programs) {
        const p = path.join(pdir, prog.name);
        pinOne(prog.fd, p, `program '${prog.name}'`);
        set.programs[prog.name] = p;
      }
    }
  } catch (e) {
    unpinAll(set);
    throw e;
  }
  return set;
}

function pinOne(fd: number, p: string, what: string): void {
  if (existsSync(p)) {
    throw new TsbpfError('PIN_FAILED', `cannot pin ${what} at ${p}: something is pinned there already`, {
      hint: 'unpin the old one (rm the file), or pin into another directory',
    });
  }
  guard({ code: 'PIN_FAILED', what: `pin ${what}` }, () => native().objPin(fd, p));
}

/** Removes the pins of a PinSet and the directories pin() made, when empty. */
export function unpinAll(set: PinSet): void {
  let first: unknown;
  for (const p of [...Object.values(set.programs), ...Object.values(set.maps)]) {
    try {
      unlinkSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') first ??= e;
    }
  }
  for (const d of [...set.createdDirs].reverse()) {
    try {
      if (readdirSync(d).length === 0) rmdirSync(d);
    } catch {
      /* gone, or in use by someone else */
    }
  }
  set.maps = {};
  set.programs = {};
  set.createdDirs = [];
  if (first !== undefined) throw new TsbpfError('PIN_FAILED', `cannot unpin under ${set.dir}`, { cause: first });
}

/**
 * Opens a map pinned at `path` (by this or another process). Keys and values
 * are typed from `layouts`, else from the map's BTF in the kernel, else raw
 * bytes. close() releases its fd.
 */
export function openPinnedMap<K = unknown, V = unknown>(pinPath: string, layouts: MapLayouts<K, unknown> = {}): BpfMap<K, V> {
  if (!existsSync(pinPath)) {
    throw new TsbpfError('PIN_NOT_FOUND', `nothing is pinned at ${pinPath}`, { hint: 'pin the map first with obj.pin(dir)' });
  }
  const fd = guard({ code: 'PIN_NOT_FOUND', what: `open ${pinPath}` }, () => native().objGet(pinPath));
  try {
    const info = guard({ code: 'PIN_NOT_FOUND', what: `${pinPath} is not a map` }, () => native().mapFdInfo(fd));
    let btf: Btf | undefined;
    const key = layouts.key;
    let value: Layout<unknown> | undefined = layouts.value;
    let keyL: Layout<unknown> | undefined = key;
    if (info.btfId && (info.btfKeyTypeId || info.btfValueTypeId) && (!keyL || !value)) {
      try {
        btf = parseBtf(native().btfById(info.btfId));
        if (!keyL && info.btfKeyTypeId) keyL = layoutOfType(btf, info.btfKeyTypeId);
        if (!value && info.btfValueTypeId) value = layoutOfType(btf, info.btfValueTypeId);
      } catch {
        // Types the layouts cannot express: raw bytes for those.
      }
    }
    // The kernel keeps only 15 characters of a map name: use the pin's file name.
    const name = path.basename(pinPath);
    const map = new BpfMap<K, V>({ ...info, name }, fd, { key: keyL as Layout<K> | undefined, value }, { btf, ownsFd: true });
    map.trackForGc();
    return map;
  } catch (e) {
    native().closeFd(fd);
    throw wrapNative(e, { code: 'PIN_NOT_FOUND', what: `open ${pinPath}` });
  }
}
