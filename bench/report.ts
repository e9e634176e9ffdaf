/**
 * The benchmark's results: the JSON shape (schema 'tsbpf-bench/1'), ratios to
 * the no-filter run, and the table printed on stdout.
 */
import type { MemoryReport } from './memory.js';

export interface BenchConfig {
  quick: boolean;
  /** Rule counts, in run order. */
  ns: number[];
  /** Contender names, in run order at each N. */
  contenders: string[];
  /** Length of one iperf3 run, s. */
  seconds: number;
  /** iperf3 runs per metric (the best is reported). */
  repeats: number;
  /** Extra UDP runs when the best one was contended (its client did not get its CPU). */
  retries: number;
  /** Extra load/unload cycles for the meminfo memory figure (median of every growth and release). */
  memoryCycles: number;
  /** Rules added one at a time after the traffic tests (the median is reported). */
  addRepeats: number;
  /** Rules added in one call into the live ruleset at the N given by bulkAt (0: not measured). */
  bulkRules?: number;
  /** The N at which bulkRules are added (default 10,000 when measured, else the largest N). */
  bulkAt?: number;
}

export interface TcpResult {
  /** Best receiver goodput of the runs, bits/s. */
  bitsPerSecond: number;
  samples: number[];
  /** CPU the iperf3 client got in the best run (well under 100: the run was contended). */
  senderCpuPercent: number | null;
  /** bitsPerSecond / the no-filter run's at the same N. */
  ratio: number | null;
}

export interface UdpResult {
  /** Best rate of the runs of 18-byte-payload datagrams forwarded by the router (counted on the server's interface), packets/s. */
  packetsPerSecond: number;
  samples: number[];
  /** In the best run: the rate the client sent at. */
  sentPerSecond: number;
  /** In the best run: the rate iperf3's receiving application got (it drops many at its socket). */
  deliveredPerSecond: number;
  lostPercent: number;
  /** As in TcpResult. */
  senderCpuPercent: number | null;
  ratio: number | null;
  /** 1e9/pps - 1e9/pps(no filter): what the filter adds to each packet's cost along the path, ns. */
  addedNsPerPacket: number | null;
}

export interface AddRuleResult {
  medianMs: number;
  maxMs: number;
  samples: number[];
}

export interface ResultRow {
  contender: string;
  n: number;
  tcp: TcpResult | null;
  udp: UdpResult | null;
  /** Time to load the whole ruleset of N rules, ms. */
  loadMs: number | null;
  /** Time to add one rule to a live ruleset of N rules. */
  addRule: AddRuleResult | null;
  /** Time to add bulkRules rules in one call (one map update for tsbpf, one nft -f, one iptables-restore --noflush). */
  addMany?: { count: number; ms: number } | null;
  memory: MemoryReport | null;
  /** Average ns per packet by test run (BPF contenders). */
  perPacketNs: number | null;
  details: Record<string, string | number | boolean>;
  /** What failed at this N, as 'step: message'. */
  errors: string[];
}

export interface BenchReport {
  schema: 'tsbpf-bench/1';
  runId: string;
  startedAt: string;
  finishedAt: string;
  elapsedSeconds: number;
  host: Record<string, string | number>;
  config: BenchConfig;
  contenders: Array<{ name: string; description: string }>;
  skipped: Array<{ name: string; reason: string }>;
  results: ResultRow[];
}

export const BASELINE = 'none';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The no-filter value a row is compared with: the baseline run at the same N
 * (the runs at one N are close in time, which cancels the VM's drift), else
 * the median of the baseline over all N.
 */
function reference(rows: readonly ResultRow[], n: number, pick: (r: ResultRow) => number | undefined): number | null {
  const base = rows.filter((r) => r.contender === BASELINE);
  const same = base.find((r) => r.n === n);
  const v = same ? pick(same) : undefined;
  if (v !== undefined && v > 0) return v;
  const all = base.map(pick).filter((x): x is number => x !== undefined && x > 0);
  return all.length ? median(all) : null;
}

/** Fill in ratio and addedNsPerPacket from the baseline rows. Idempotent. */
export function computeRatios(rows: ResultRow[]): void {
  for (const row of rows) {
    if (row.tcp) {
      const ref = reference(rows, row.n, (r) => r.tcp?.bitsPerSecond);
      row.tcp.ratio = ref ? row.tcp.bitsPerSecond / ref : null;
    }
    if (row.udp) {
      const ref = reference(rows, row.n, (r) => r.udp?.packetsPerSecond);
      row.udp.ratio = ref ? row.udp.packetsPerSecond / ref : null;
      row.udp.addedNsPerPacket = ref && row.udp.packetsPerSecond > 0 ? 1e9 / row.udp.packetsPerSecond - 1e9 / ref : null;
    }
  }
}

// ---- formatting ----

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatBytes(b: number): string {
  const a = Math.abs(b);
  if (a >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  if (a >= 1024 ** 2) return `${+(b / 1024 ** 2).toFixed(1)} MiB`;
  if (a >= 1024) return `${+(b / 1024).toFixed(a >= 10 * 1024 ? 0 : 1)} KiB`;
  return `${b} B`;
}

export function formatMs(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

function ratio(r: number | null | undefined): string {
  return r === null || r === undefined ? '' : r.toFixed(3);
}

/** The stdout table: one line per contender and N. */
export function formatTable(report: Pick<BenchReport, 'results'> & Partial<Pick<BenchReport, 'skipped'>>): string {
  const header = ['contender', 'N', 'TCP Gbit/s', 'ratio', 'UDP kpps', 'ratio', '+ns/pkt', 'load ms', 'add ms', 'add many ms', 'memory', 'test-run ns'];
  const right = [false, true, true, true, true, true, true, true, true, true, true, true];
  const body: string[][] = [];
  const rows = [...report.results].sort((a, b) => a.n - b.n);
  for (const r of rows) {
    body.push([
      r.contender + (r.errors.length ? ' (!)' : ''),
      formatCount(r.n),
      r.tcp ? (r.tcp.bitsPerSecond / 1e9).toFixed(2) : '-',
      r.tcp ? ratio(r.tcp.ratio) : '-',
      r.udp ? (r.udp.packetsPerSecond / 1e3).toFixed(1) : '-',
      r.udp ? ratio(r.udp.ratio) : '-',
      r.udp?.addedNsPerPacket != null ? r.udp.addedNsPerPacket.toFixed(0) : '-',
      r.loadMs != null ? formatMs(r.loadMs) : '-',
      r.addRule ? formatMs(r.addRule.medianMs) : '-',
      r.addMany ? `${formatMs(r.addMany.ms)} (${formatCount(r.addMany.count)})` : '-',
      r.memory ? formatBytes(r.memory.bytes) : '-',
      r.perPacketNs != null ? r.perPacketNs.toFixed(1) : '-',
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  let lastN: number | undefined;
  for (let i = 0; i < body.length; i++) {
    if (lastN !== undefined && rows[i]!.n !== lastN) out.push('');
    lastN = rows[i]!.n;
    out.push(line(body[i]!));
  }
  const errors = rows.flatMap((r) => r.errors.map((e) => `  (!) ${r.contender} N=${formatCount(r.n)}: ${e}`));
  const notes = [
    '',
    'ratio: to the no-filter run at the same N (higher is better); +ns/pkt: cost the filter adds per small UDP packet, from the rates;',
    'load: whole ruleset of N rules; add: one more rule into the live ruleset (median); add many: that many rules in one call; memory: see docs/benchmarks.md.',
  ];
  const skipped = (report.skipped ?? []).map((s) => `  ${s.name}: ${s.reason}`);
  return [...out, ...(errors.length ? ['', 'errors:', ...errors] : []), ...(skipped.length ? ['', 'skipped:', ...skipped] : []), ...notes].join('\n') + '\n';
}
