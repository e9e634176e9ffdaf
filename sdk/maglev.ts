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
  const live = backends.map((b, i) => ({ i, b })).filter((x) => x.b.weight > 0);
  if (live.length === 0) return table;
  const q = quotas(
    live.map((x) => x.b.weight),
    m,
  );
  const offset = live.map((x) => nameHash(x.b.name, 0x5bd1e995) % m);
  const skip = live.map((x) => (nameHash(x.b.name, 0x1b873593) % (m - 1)) + 1);
  const have = new Array<number>(live.length).fill(0);
  if (previous) {
    const byName = new Map(live.map((x, j) => [x.b.name, j]));
    const owned: number[][] = live.map(() => []);
    for (let s = 0; s < previous.table.length && s < m; s++) {
      const name = previous.names[previous.table[s]!];
      const j = name === undefined ? undefined : byName.get(name);
      if (j !== undefined) owned[j]!.push(s);
    }
    owned.forEach((slots, j) => {
      // Over quota: keep the slots this backend prefers most (earliest in its permutation).
      if (slots.length > q[j]!) {
        const inv = modInverse(skip[j]!, m);
        const rank = (s: number) => (((s - offset[j]! + m) % m) * inv) % m;
        slots.sort((a, b) => rank(a) - rank(b));
        slots.length = q[j]!;
      }
      for (const s of slots) table[s] = live[j]!.i;
      have[j] = slots.length;
    });
  }
  // Each backend's position in its permutation, as the slot itself (slot += skip walks the permutation).
  const pos = Int32Array.from(offset);
  const sk = Int32Array.from(skip);
  const idx = Int32Array.from(live.map((x) => x.i));
  const want = Int32Array.from(q.map((x, j) => x - have[j]!));
  let missing = want.reduce((s, x) => s + x, 0);
  while (missing > 0) {
    for (let j = 0; j < idx.length; j++) {
      if (want[j]! <= 0) continue;
      let c = pos[j]!;
      while (table[c]! >= 0) {
        c += sk[j]!;
        if (c >= m) c -= m;
      }
      table[c] = idx[j]!;
      c += sk[j]!;
      pos[j] = c >= m ? c - m : c;
      want[j]!--;
      missing--;
    }
  }
  return table;
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
