/**
 * Lookup tables of a service: M slots (M prime) holding backend indexes.
 *
 * - Maglev (Eisenbud et al., NSDI 2016): each backend walks its own
 *   permutation of the slots (offset and skip from two hashes of its name)
 *   and the backends take turns claiming the next free slot of theirs, up to
 *   a quota in proportion to their weight. Updates start from the previous
 *   table (see maglevTable), so replacing, adding or removing one backend of
 *   N moves only about 1/N of the slots, and so of flows (slot = flow hash % M).
 * - Weighted random: slots shared out in proportion to the weights (largest
 *   remainder); the datapath picks a slot at random.
 *
 * The datapath only reads the table (codegen/include/tsbpf/lb.h); building
 * it is the control plane's job, here.
 */
import { TsbpfError } from './errors.js';

export interface TableBackend {
  /** A stable name (e.g. 'addr:port'): Maglev permutations follow it, not the position. */
  name: string;
  weight: number;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** 32-bit string hash (murmur3-style over UTF-8 bytes; ASCII without allocating). */
export function nameHash(s: string, seed: number): number {
  let h = seed >>> 0;
  let len = 0;
  const step = (byte: number) => {
    let k = Math.imul(byte + 0x9e3779b1, 0xcc9e2d51);
    k = ((k << 15) | (k >>> 17)) >>> 0;
    k = Math.imul(k, 0x1b873593);
    h = (h ^ k) >>> 0;
    h = ((h << 13) | (h >>> 19)) >>> 0;
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    len++;
  };
  let ascii = true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
  if (ascii) for (let i = 0; i < s.length; i++) step(s.charCodeAt(i));
  else for (const b of Buffer.from(s, 'utf8')) step(b);
  h ^= len;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function checkSize(m: number): void {
  if (!isPrime(m) || m > 65521) throw new TsbpfError('INVALID_ARGUMENT', `the lookup table size must be a prime up to 65521 (got ${m})`, { hint: 'e.g. 251, 1021, 4099, 16381' });
}

/** A table as names: slot -> index into `names` (-1: empty). */
export interface NamedTable {
  table: Int32Array;
  names: readonly string[];
}

/** a^-1 mod m (extended Euclid; m prime, 0 < a < m). */
function modInverse(a: number, m: number): number {
  let [r0, r1] = [m, a % m];
  let [t0, t1] = [0, 1];
  while (r1 !== 0) {
    const q = Math.floor(r0 / r1);
    [r0, r1] = [r1, r0 - q * r1];
    [t0, t1] = [t1, t0 - q * t1];
  }
  return ((t0 % m) + m) % m;
}

/** Slots per backend in proportion to the weights (largest remainder; ties by position). */
function quotas(weights: readonly number[], m: number): number[] {
  const n = weights.length;
  if (weights.every((w) => w === weights[0])) {
    // Equal weights: every remainder is the same, so the first m % n backends get one more.
    const base = Math.floor(m / n);
    return weights.map((_, i) => base + (i < m % n ? 1 : 0));
  }
  const total = weights.reduce((s, w) => s + w, 0);
  const exact = weights.map((w) => (m * w) / total);
  const q = exact.map(Math.floor);
  let left = m - q.reduce((s, x) => s + x, 0);
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left-- <= 0) break;
    q[i]!++;
  }
  return q;
}

/**
 * The Maglev table: slot -> index into `backends` (-1 everywhere when no
 * backend has a weight > 0).
 *
 * Every backend has a preference order over the slots (its Maglev
 * permutation, from two hashes of its name) and a quota of slots in
 * proportion to its weight. Given the `previous` table, a backend keeps the
 * slots it had, up to its quota (the ones it prefers most); then backends
 * below quota take turns claiming their next preferred free slot. From an
 * empty table this is Maglev's population with quotas; after a change only
 * the slots that must move do: replacing or removing one backend of N moves
 * its 1/N of the slots, adding one moves 1/(N+1). Equal input gives equal
 * output, so nodes that apply the same changes compute the same tables.
 */
export function maglevTable(backends: readonly TableBackend[], m: number, previous?: NamedTable): Int32Array {
  checkSize(m);
  const table = new Int32Array(m).fill(-1);
  // Live backends (weight > 0), as parallel typed arrays: this runs once per service change,
  // 10,000 times when a whole cluster is programmed, so it allocates little.
  const n0 = backends.length;
  const idx = new Int32Array(n0);
  let n = 0;
  for (let i = 0; i < n0; i++) if (backends[i]!.weight > 0) idx[n++] = i;
  if (n === 0) return table;
  let equal = true;
  const w0 = backends[idx[0]!]!.weight;
  for (let j = 1; j < n; j++) if (backends[idx[j]!]!.weight !== w0) equal = false;
  const q = equal ? equalQuotas(n, m) : quotas(Array.from(idx.subarray(0, n), (i) => backends[i]!.weight), m);
  const pos = new Int32Array(n);
  const sk = new Int32Array(n);
  for (let j = 0; j < n; j++) {
    const p = permutation(backends[idx[j]!]!.name, m);
    pos[j] = p[0]!;
    sk[j] = p[1]!;
  }
  const want = new Int32Array(n);
  for (let j = 0; j < n; j++) want[j] = q[j]!;
  if (previous) {
    const byName = new Map<string, number>();
    for (let j = 0; j < n; j++) byName.set(backends[idx[j]!]!.name, j);
    const owned: number[][] = [];
    for (let j = 0; j < n; j++) owned.push([]);
    // Previous slot -> live backend (names resolved once per previous backend, not per slot).
    const prevTo = previous.names.map((name) => byName.get(name) ?? -1);
    for (let s = 0; s < previous.table.length && s < m; s++) {
      const k = previous.table[s]!;
      const j = k < 0 ? -1 : (prevTo[k] ?? -1);
      if (j >= 0) owned[j]!.push(s);
    }
    for (let j = 0; j < n; j++) {
      const slots = owned[j]!;
      // Over quota: keep the slots this backend prefers most (earliest in its permutation).
      if (slots.length > q[j]!) {
        const inv = modInverse(sk[j]!, m);
        const off = pos[j]!;
        const rank = (s: number) => (((s - off + m) % m) * inv) % m;
        slots.sort((a, b) => rank(a) - rank(b));
        slots.length = q[j]!;
      }
      for (const s of slots) table[s] = idx[j]!;
      want[j] = q[j]! - slots.length;
    }
  }
  // Each backend's position in its permutation, as the slot itself (slot += skip walks the permutation).
  let missing = 0;
  for (let j = 0; j < n; j++) missing += want[j]!;
  while (missing > 0) {
    for (let j = 0; j < n; j++) {
      if (want[j]! <= 0) continue;
      let c = pos[j]!;
      const step = sk[j]!;
      while (table[c]! >= 0) {
        c += step;
        if (c >= m) c -= m;
      }
      table[c] = idx[j]!;
      c += step;
      pos[j] = c >= m ? c - m : c;
      want[j]!--;
      missing--;
    }
  }
  return table;
}

/** Equal weights: every remainder is the same, so the first m % n backends get one more. */
function equalQuotas(n: number, m: number): number[] {
  const base = Math.floor(m / n);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = base + (i < m % n ? 1 : 0);
  return out;
}

// A backend's Maglev permutation (offset, skip) depends only on its name and M: keep the
// recent ones (services share backends, and a change recomputes the backends it keeps).
const PERMUTATIONS = new Map<number, Map<string, Int32Array>>();
const PERMUTATIONS_MAX = 1 << 17;

function permutation(name: string, m: number): Int32Array {
  let byName = PERMUTATIONS.get(m);
  if (byName === undefined) PERMUTATIONS.set(m, (byName = new Map()));
  let p = byName.get(name);
  if (p === undefined) {
    if (byName.size >= PERMUTATIONS_MAX) byName.clear();
    p = new Int32Array(2);
    p[0] = nameHash(name, 0x5bd1e995) % m;
    p[1] = (nameHash(name, 0x1b873593) % (m - 1)) + 1;
    byName.set(name, p);
  }
  return p;
}

/** Slots in proportion to the weights (largest remainder), for random selection. */
export function weightedTable(backends: readonly TableBackend[], m: number): Int32Array {
  checkSize(m);
  const table = new Int32Array(m).fill(-1);
  const live = backends.map((b, i) => ({ i, w: b.weight })).filter((x) => x.w > 0);
  const total = live.reduce((s, x) => s + x.w, 0);
  if (total === 0) return table;
  const shares = live.map((x) => ({ i: x.i, n: Math.floor((m * x.w) / total), frac: (m * x.w) / total - Math.floor((m * x.w) / total) }));
  let left = m - shares.reduce((s, x) => s + x.n, 0);
  for (const s of [...shares].sort((a, b) => b.frac - a.frac || a.i - b.i)) {
    if (left-- <= 0) break;
    s.n++;
  }
  let k = 0;
  for (const s of shares) for (let j = 0; j < s.n; j++) table[k++] = s.i;
  return table;
}

/**
 * The share of flows that change backend between two tables (backends named
 * by `namesA[i]` / `namesB[i]`): slots whose backend name differs, over M.
 * Flows pick slot = flowHash % M, so for uniform hashes this is the share of
 * flows that move.
 */
export function tableDisruption(a: Int32Array, namesA: readonly string[], b: Int32Array, namesB: readonly string[]): number {
  if (a.length !== b.length) throw new TsbpfError('INVALID_ARGUMENT', 'tables of different sizes');
  let moved = 0;
  for (let i = 0; i < a.length; i++) if (namesA[a[i]!] !== namesB[b[i]!]) moved++;
  return moved / a.length;
}
