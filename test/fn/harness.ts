/**
 * Differential runs of function programs: the same packets through the
 * function in Node (runInNode) and through the compiled object in the
 * kernel (BPF_PROG_TEST_RUN), comparing verdicts, the bytes left behind,
 * the TC mark and, at the end, every map.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FnCompileResult } from '../../codegen/fn/index.js';
import type { BpfObject, RingBuffer } from '../../runtime/index.js';
import { runInNode, type AnyFnProgram, type MemoryMaps } from '../../sdk/fn/index.js';

/** The repository root (tests run from dist/test/fn). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function examplePath(name: string): string {
  return path.join(repoRoot, 'examples', 'fn', name);
}

export interface Mismatch {
  index: number;
  what: string;
  node: unknown;
  kernel: unknown;
  packet: string;
  description?: string;
}

/**
 * BPF_PROG_TEST_RUN at TC refuses (EINVAL) a frame whose Ethernet type is
 * IPv4 or IPv6 but that is too short for the IP header. Such frames still
 * run in Node (the view must cope) and at XDP.
 */
export function tcRefuses(data: Buffer): boolean {
  if (data.length < 14) return true;
  const type = data.readUInt16BE(12);
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

export interface DiffRun {
  mismatches: Mismatch[];
  /** Packets the kernel refused to test-run (TC only; see tcRefuses). */
  skipped: number;
  /** Verdict name -> count, from the kernel. */
  verdicts: Record<string, number>;
  /** Packets whose bytes the program changed. */
  rewritten: number;
}

/**
 * Runs every packet through `program` in Node and `programName` of `obj` in
 * the kernel, one after the other (so time-based state sees nearly the same
 * clock), keeping Node's maps in `jsMaps`.
 */
export function runBoth(
  obj: BpfObject,
  program: AnyFnProgram,
  programName: string,
  packets: Array<{ data: Buffer; description?: string; mark?: number }>,
  jsMaps: MemoryMaps,
  result?: FnCompileResult,
): DiffRun {
  const mismatches: Mismatch[] = [];
  // Ring buffers: the kernel's events of each packet must be Node's events of that packet.
  const rings: Array<{ name: string; ring: RingBuffer<unknown>; got: unknown[] }> = [];
  for (const m of result?.maps ?? []) {
    if (m.kind !== 'ringbuf' || !(m.name in program.maps)) continue;
    const got: unknown[] = [];
    rings.push({ name: m.name, got, ring: obj.ringBuffer(m.name, (ev) => got.push(ev), { layout: m.value!, ref: false }) });
  }
  const verdicts: Record<string, number> = {};
  let rewritten = 0;
  let skipped = 0;
  const tc = program.hook !== 'xdp';
  packets.forEach((p, index) => {
    const mark = p.mark ?? 0;
    if (tc && tcRefuses(p.data)) {
      // Node must still handle it; the kernel cannot be asked, and the maps must not diverge.
      runInNode(program, p.data, { mark, ifindex: 1 });
      skipped++;
      return;
    }
    const node = runInNode(program, p.data, { maps: jsMaps, mark, ifindex: 1 });
    const k = obj.testRun(programName, tc ? { data: p.data, ctx: { mark } } : { data: p.data });
    verdicts[k.verdict] = (verdicts[k.verdict] ?? 0) + 1;
    const fail = (what: string, n: unknown, kv: unknown) =>
      mismatches.push({ index, what, node: n, kernel: kv, packet: p.data.toString('hex'), ...(p.description ? { description: p.description } : {}) });
    if (node.retval !== k.retval) fail('verdict', node.retval, k.retval);
    if (!node.data.equals(k.data)) fail('data', node.data.toString('hex'), k.data.toString('hex'));
    if (tc) {
      const km = (k.ctx as { mark?: number } | undefined)?.mark;
      if (km !== node.mark) fail('mark', node.mark, km);
    }
    if (!k.data.equals(p.data)) rewritten++;
    for (const r of rings) {
      r.ring.consume();
      const js = jsMaps[r.name]!.events.splice(0);
      const kernel = r.got.splice(0);
      if (stable(js) !== stable(kernel)) fail(`events of ${r.name}`, js, kernel);
    }
  });
  for (const r of rings) r.ring.close();
  return { mismatches, verdicts, rewritten, skipped };
}

export interface MapCompareOptions {
  /** Per map and struct field: how far apart the two may be (timestamps taken a moment apart). */
  tolerance?: Record<string, Record<string, bigint>>;
}

/** Differences between the kernel's maps and Node's, per-CPU values summed. */
export function compareMaps(obj: BpfObject, result: FnCompileResult, jsMaps: MemoryMaps, options: MapCompareOptions = {}): string[] {
  const out: string[] = [];
  for (const m of result.maps) {
    // DSL sets live in Node's EvalState, not among the maps (test/fn/dsl.test.ts compares what the programs change).
    if (m.kind === 'ringbuf' || m.kind === 'prog_array' || m.dsl?.kind === 'set') continue;
    const perCpu = m.kind.startsWith('percpu') || m.kind === 'lru_percpu_hash';
    const kernel = new Map<string, unknown>();
    for (const [k, v] of obj.maps[m.name]!.entries()) kernel.set(stable(k), perCpu ? sumCpus(v as unknown[]) : v);
    const node = new Map<string, unknown>();
    for (const [k, v] of jsMaps[m.name]?.entries() ?? []) node.set(stable(k), v);
    const keys = new Set([...kernel.keys(), ...node.keys()]);
    for (const key of keys) {
      const a = node.get(key);
      const b = kernel.get(key);
      if (a === undefined || b === undefined) {
        out.push(`${m.name}[${key}]: node ${stable(a)} kernel ${stable(b)}`);
        continue;
      }
      if (!close(a, b, options.tolerance?.[m.name] ?? {})) out.push(`${m.name}[${key}]: node ${stable(a)} kernel ${stable(b)}`);
    }
  }
  return out;
}

function sumCpus(values: unknown[]): unknown {
  if (values.length === 0) return undefined;
  if (typeof values[0] === 'bigint') return (values as bigint[]).reduce((a, b) => a + b, 0n);
  if (typeof values[0] === 'number') return (values as number[]).reduce((a, b) => a + b, 0);
  // Structs: the CPU that holds a non-zero value (test runs stay on one CPU per call).
  return values.find((v) => JSON.stringify(v, bigintJson) !== JSON.stringify(values[values.length - 1], bigintJson)) ?? values[0];
}

function close(a: unknown, b: unknown, tolerance: Record<string, bigint>): boolean {
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      const t = tolerance[k];
      if (t !== undefined && typeof ra[k] === 'bigint' && typeof rb[k] === 'bigint') {
        const d = (ra[k] as bigint) - (rb[k] as bigint);
        if (d > t || d < -t) return false;
      } else if (stable(ra[k]) !== stable(rb[k])) return false;
    }
    return true;
  }
  return stable(a) === stable(b);
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

export function stable(v: unknown): string {
  return JSON.stringify(v, bigintJson) ?? 'undefined';
}

/** One line per mismatch, for assertion messages. */
export function explain(mismatches: Mismatch[], max = 5): string {
  return mismatches
    .slice(0, max)
    .map((m) => `#${m.index} ${m.what}: node=${stable(m.node)} kernel=${stable(m.kernel)}${m.description ? ` (${m.description})` : ''}\n  packet ${m.packet}`)
    .join('\n');
}
