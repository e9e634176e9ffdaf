/**
 * Memory a ruleset costs the kernel.
 *
 * Netfilter (the default, method 'meminfo'): the growth across `setup` and
 * the release across `teardown` of SUnreclaim + VmallocUsed + Percpu in
 * /proc/meminfo, over a few load/unload cycles; the median is reported. iptables-legacy keeps
 * its table as one vmalloc'ed blob plus per-CPU counters; nf_tables keeps
 * rules, sets and the chain's rule array in slab and kvmalloc memory (large
 * kmallocs are counted in SUnreclaim). Readings are taken once the counters
 * have settled (namespaces destroyed earlier are freed asynchronously), and
 * are noisy by some tens of KiB when other things run on the machine: the
 * figure is meaningful from about a thousand rules up.
 *
 * BPF (a contender's own `memoryBytes`): the `memlock` its maps and programs
 * report in fdinfo, which is what the kernel charges for them.
 */
import { readFileSync } from 'node:fs';

export interface MemoryReport {
  bytes: number;
  /** How it was measured: 'meminfo' (the default above), 'bpf-memlock', or a contender's own word. */
  method: string;
  /** The readings behind `bytes` (meminfo: the growth at setup and the release at teardown). */
  samples?: number[];
}

const FIELDS = ['SUnreclaim', 'VmallocUsed', 'Percpu'];

/** SUnreclaim + VmallocUsed + Percpu, bytes. */
export function kernelMemoryBytes(): number {
  let kb = 0;
  for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m && FIELDS.includes(m[1]!)) kb += Number(m[2]);
  }
  return kb * 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * kernelMemoryBytes once it stops moving: the median of three readings 100 ms
 * apart within 64 KiB of each other (or of the last three after `maxMs`).
 */
export async function settledKernelMemory(maxMs = 1200): Promise<number> {
  const started = Date.now();
  const window: number[] = [kernelMemoryBytes()];
  for (;;) {
    await sleep(100);
    window.push(kernelMemoryBytes());
    if (window.length > 3) window.shift();
    const spread = Math.max(...window) - Math.min(...window);
    if ((window.length === 3 && spread <= 64 * 1024) || Date.now() - started > maxMs) return [...window].sort((a, b) => a - b)[window.length >> 1]!;
  }
}

/**
 * Sum of the `memlock:` lines of BPF map and program fds of a process (this
 * one by default): what a BPF contender reports as its memory.
 */
export function bpfMemlockBytes(fds: Iterable<number>, pid: number | 'self' = 'self'): number {
  let total = 0;
  for (const fd of fds) {
    const text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    const m = /^memlock:\s+(\d+)/m.exec(text);
    if (m) total += Number(m[1]);
  }
  return total;
}
