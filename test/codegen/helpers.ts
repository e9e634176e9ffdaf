/**
 * Shared by the codegen tests: a cache directory for this process (removed at
 * exit), and real kernel loads of generated objects through the native addon
 * (runtime/native.ts), closed again by each test. Nothing is pinned.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native, type NativeMapInfo, type NativeObjectHandle } from '../../runtime/native.js';

let tmp: string | undefined;
/** A cache directory private to this test process. */
export function cacheDir(): string {
  if (!tmp) {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-cg-'));
    const dir = tmp;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return tmp;
}

export interface LoadedObject {
  programs: Map<string, { fd: number; type: string }>;
  maps: Map<string, NativeMapInfo>;
  /** BPF_PROG_TEST_RUN of one program. */
  run(program: string, data: Buffer, ctx?: Buffer): { retval: number; data: Buffer };
  /** Value of key 0 (u32) of an array map. */
  lookup(map: string, key: Buffer): Buffer | null;
  update(map: string, key: Buffer, value: Buffer): void;
  close(): void;
}

/** Open and load an object (every program through the verifier); throws with the verifier log on rejection. */
export function loadObject(objPath: string): LoadedObject {
  const n = native();
  const obj: NativeObjectHandle = n.objectOpen(objPath);
  try {
    n.objectLoad(obj);
  } catch (e) {
    n.objectClose(obj);
    throw e;
  }
  const programs = new Map(n.objectPrograms(obj).map((p) => [p.name, { fd: p.fd, type: p.type }]));
  const maps = new Map(n.objectMaps(obj).map((m) => [m.name, m]));
  return {
    programs,
    maps,
    run(program, data, ctx) {
      const p = programs.get(program);
      if (!p) throw new Error(`no program '${program}' (have ${[...programs.keys()].join(', ')})`);
      const r = n.testRun(p.fd, { data, dataSizeOut: data.length + 512, ...(ctx ? { ctx } : {}) });
      return { retval: r.retval, data: r.data };
    },
    lookup(map, key) {
      const m = maps.get(map);
      if (!m) throw new Error(`no map '${map}'`);
      // Per-CPU maps return one 8-byte aligned value per possible CPU.
      const perCpu = m.type.startsWith('percpu');
      const size = perCpu ? Math.ceil(m.valueSize / 8) * 8 * n.numPossibleCpus() : m.valueSize;
      return n.mapLookup(m.fd, key, size);
    },
    update(map, key, value) {
      const m = maps.get(map);
      if (!m) throw new Error(`no map '${map}'`);
      n.mapUpdate(m.fd, key, value);
    },
    close() {
      n.objectClose(obj);
    },
  };
}

/** Run `fn` with a loaded object, closing it afterwards. */
export function withObject<T>(objPath: string, fn: (o: LoadedObject) => T): T {
  const o = loadObject(objPath);
  try {
    return fn(o);
  } finally {
    o.close();
  }
}

/** A u32 key. */
export function u32key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** A seeded PRNG (mulberry32) for reproducible fuzz inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * BPF_PROG_TEST_RUN for TC refuses (EINVAL) a frame whose Ethernet type is
 * IPv4 or IPv6 but that is too short for the IP header; XDP covers those.
 * Neither hook takes a frame shorter than an Ethernet header.
 */
export function tcTestRunRefuses(data: Buffer): boolean {
  if (data.length < 14) return true;
  const type = data.readUInt16BE(12);
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

/** Frames BPF_PROG_TEST_RUN refuses at this hook. */
export function testRunRefuses(hook: string, data: Buffer): boolean {
  return data.length < 14 || (hook !== 'xdp' && tcTestRunRefuses(data));
}
