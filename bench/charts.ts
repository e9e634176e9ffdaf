/**
 * SVG charts of a benchmark report, one per metric: x = N on a log scale
 * (N = 0 drawn one decade left of the smallest N, after an axis break), one
 * line per contender. The y axis turns logarithmic when the values span more
 * than a factor of 30, so that 0.02 and 0.09 of the no-filter rate stay
 * distinguishable. Plain SVG 1.1, no scripts or external fonts.
 */
import { formatBytes, type BenchReport, type ResultRow, BASELINE } from './report.js';

export interface ChartSpec {
  /** File name in the results directory. */
  file: string;
  title: string;
  subtitle: string;
  value(row: ResultRow): number | null | undefined;
  format(v: number): string;
  /** Draw the no-filter run as a line (false for ratios, where it is the reference line at 1). */
  baseline: boolean;
  /** A dashed horizontal reference (1 for ratios). */
  reference?: { y: number; label: string };
  /** Skip the chart when no row has a value. */
  optional?: boolean;
  /** Ticks of a log y axis at powers of this (default 10; 4 suits bytes: 1 KiB, 4 KiB, 16 KiB...). */
  logBase?: number;
  /** 'log' always, or 'auto': log when the largest value is more than `logAbove` (default 30) times the smallest. */
  yScale?: 'auto' | 'log';
  logAbove?: number;
}

const fmtRatio = (v: number) => (v === 0 ? '0' : v >= 0.1 ? v.toFixed(v >= 1 ? 1 : 2) : v >= 0.01 ? v.toFixed(3) : String(+v.toPrecision(2)));
const fmtMs = (v: number) => (v === 0 ? '0' : v >= 1000 ? `${v / 1000} s` : v >= 1 ? `${+v.toPrecision(3)} ms` : `${+(v * 1000).toPrecision(3)} µs`);
const fmtNs = (v: number) => `${+v.toPrecision(3)} ns`;

export const CHARTS: ChartSpec[] = [
  {
    file: 'tcp-throughput.svg',
    title: 'TCP throughput through the router',
    subtitle: 'ratio to the no-filter run at the same N (higher is better)',
    value: (r) => r.tcp?.ratio,
    format: fmtRatio,
    baseline: false,
    reference: { y: 1, label: 'no filter' },
    logAbove: 8,
  },
  {
    file: 'udp-rate.svg',
    title: 'Small-packet UDP rate through the router (18-byte payload)',
    subtitle: 'packets forwarded per second, ratio to the no-filter run at the same N (higher is better)',
    value: (r) => r.udp?.ratio,
    format: fmtRatio,
    baseline: false,
    reference: { y: 1, label: 'no filter' },
    logAbove: 8,
  },
  {
    file: 'load-time.svg',
    title: 'Time to load the whole ruleset',
    subtitle: 'N non-matching rules plus the accept rule, wall time (lower is better)',
    value: (r) => r.loadMs,
    format: fmtMs,
    baseline: false,
  },
  {
    file: 'add-rule.svg',
    title: 'Time to add one rule to a live ruleset of N',
    subtitle: 'median, wall time including the tool start-up (lower is better)',
    value: (r) => r.addRule?.medianMs,
    format: fmtMs,
    baseline: false,
  },
  {
    file: 'memory.svg',
    title: 'Kernel memory used by the ruleset',
    subtitle: 'netfilter: /proc/meminfo delta; BPF: memlock (lower is better)',
    value: (r) => r.memory?.bytes,
    format: formatBytes,
    baseline: false,
    logBase: 4,
    yScale: 'log',
  },
  {
    file: 'per-packet.svg',
    title: 'Per-packet cost by test run (BPF_PROG_TEST_RUN)',
    subtitle: 'average ns per small UDP packet (lower is better)',
    value: (r) => r.perPacketNs,
    format: fmtNs,
    baseline: false,
    optional: true,
  },
];

/** Fixed colours for the known contenders, so charts of different runs compare at a glance. */
const COLORS: Record<string, string> = {
  none: '#7f7f7f',
  'iptables-legacy': '#d62728',
  'iptables-nft': '#ff7f0e',
  'nft-linear': '#9467bd',
  'nft-set': '#2ca02c',
  'tsbpf-tc': '#1f77b4',
  'tsbpf-xdp': '#17becf',
};
const PALETTE = ['#8c564b', '#e377c2', '#bcbd22', '#393b79', '#637939', '#843c39'];
const W = 780;
const H = 460;
const M = { left: 78, right: 190, top: 62, bottom: 56 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function nLabel(n: number): string {
  if (n >= 1e6 && n % 1e6 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 1e3 === 0) return `${n / 1e3}k`;
  return String(n);
}

function niceStep(span: number, target: number): number {
  const raw = span / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

interface Axis {
  map(v: number): number;
  ticks: Array<{ v: number; label: string }>;
  log: boolean;
}

function xAxis(ns: number[]): Axis {
  const pos = ns.filter((n) => n > 0);
  const lo = pos.length ? Math.log10(Math.min(...pos)) : 0;
  const hi = pos.length ? Math.log10(Math.max(...pos)) : 1;
  const zeroAt = lo - 1;
  const from = ns.includes(0) ? zeroAt : lo;
  const [a, b] = from === hi ? [from - 0.5, hi + 0.5] : [from - 0.15, hi + 0.15];
  const x0 = M.left;
  const x1 = W - M.right;
  const map = (n: number) => x0 + (((n > 0 ? Math.log10(n) : zeroAt) - a) / (b - a)) * (x1 - x0);
  return { map, ticks: [...new Set(ns)].sort((p, q) => p - q).map((n) => ({ v: n, label: nLabel(n) })), log: true };
}

function yAxis(values: number[], spec: ChartSpec): Axis {
  const reference = spec.reference?.y;
  const base = spec.logBase ?? 10;
  const format = spec.format;
  const all = reference !== undefined ? [...values, reference] : values;
  const positive = all.filter((v) => v > 0);
  const y0 = H - M.bottom;
  const y1 = M.top;
  const min = Math.min(...positive);
  const max = Math.max(...positive);
  const wide = positive.length === all.length && max / min > (spec.logAbove ?? 30);
  if (positive.length > 0 && (spec.yScale === 'log' || wide)) {
    const lg = (v: number) => Math.log(v) / Math.log(base);
    const a = Math.floor(lg(min) + 1e-9);
    const b = Math.max(Math.ceil(lg(max) - 1e-9), a + 1);
    const ticks: Array<{ v: number; label: string }> = [];
    for (let e = a; e <= b; e++) {
      ticks.push({ v: base ** e, label: format(base ** e) });
      if (base === 10 && b - a <= 2 && e < b) for (const m of [2, 5]) ticks.push({ v: m * 10 ** e, label: format(m * 10 ** e) });
    }
    return { map: (v) => y0 + ((lg(v) - a) / (b - a)) * (y1 - y0), ticks, log: true };
  }
  const top = all.length ? Math.max(...all, 0) : 1;
  const bottom = Math.min(0, ...all);
  const step = niceStep(top - bottom || 1, 5);
  const lo = Math.floor(bottom / step) * step;
  const hi = Math.max(Math.ceil((top * 1.05) / step) * step, lo + step);
  const ticks: Array<{ v: number; label: string }> = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push({ v: +v.toPrecision(12), label: format(+v.toPrecision(12)) });
  return { map: (v) => y0 + ((v - lo) / (hi - lo)) * (y1 - y0), ticks, log: false };
}

/** The SVG text of one chart, or null when it is optional and has no data. */
export function renderChart(report: Pick<BenchReport, 'results' | 'contenders' | 'config' | 'host' | 'startedAt'>, spec: ChartSpec): string | null {
  const names = report.contenders.map((c) => c.name).filter((n) => spec.baseline || n !== BASELINE);
  let extra = 0;
  const series = names.map((name) => {
    const points = report.results
      .filter((r) => r.contender === name)
      .map((r) => ({ n: r.n, v: spec.value(r) }))
      .filter((p): p is { n: number; v: number } => typeof p.v === 'number' && Number.isFinite(p.v))
      .sort((a, b) => a.n - b.n);
    const color = COLORS[name] ?? PALETTE[extra++ % PALETTE.length]!;
    return { name, points, color };
  });
  const values = series.flatMap((s) => s.points.map((p) => p.v));
  if (values.length === 0 && spec.optional) return null;
  const x = xAxis(report.config.ns.length ? report.config.ns : [0]);
  const y = yAxis(values.length ? values : [1], spec);
  // Log axes cannot show zero or negative values (a memory delta lost in noise): leave those points out.
  let hidden = 0;
  for (const s of series) {
    if (!y.log) continue;
    hidden += s.points.filter((p) => p.v <= 0).length;
    s.points = s.points.filter((p) => p.v > 0);
  }

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${M.left}" y="26" font-size="16" font-weight="bold" fill="#222">${esc(spec.title)}</text>`);
  const notes = `${y.log ? ' · log scale' : ''}${hidden ? ` · ${hidden} point${hidden > 1 ? 's' : ''} ≤ 0 not drawn` : ''}`;
  out.push(`<text x="${M.left}" y="45" font-size="12" fill="#555">${esc(spec.subtitle + notes)}</text>`);
  const [px0, px1, py0, py1] = [M.left, W - M.right, H - M.bottom, M.top];
  // grid and y ticks
  for (const t of y.ticks) {
    const yy = y.map(t.v);
    if (yy < py1 - 0.5 || yy > py0 + 0.5) continue;
    out.push(`<line x1="${px0}" y1="${yy.toFixed(1)}" x2="${px1}" y2="${yy.toFixed(1)}" stroke="#e6e6e6" stroke-width="1"/>`);
    out.push(`<text x="${px0 - 8}" y="${(yy + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#444">${esc(t.label)}</text>`);
  }
  // x ticks
  for (const t of x.ticks) {
    const xx = x.map(t.v);
    out.push(`<line x1="${xx.toFixed(1)}" y1="${py1}" x2="${xx.toFixed(1)}" y2="${py0}" stroke="#f0f0f0" stroke-width="1"/>`);
    out.push(`<line x1="${xx.toFixed(1)}" y1="${py0}" x2="${xx.toFixed(1)}" y2="${py0 + 5}" stroke="#444"/>`);
    out.push(`<text x="${xx.toFixed(1)}" y="${py0 + 19}" font-size="11" text-anchor="middle" fill="#444">${esc(t.label)}</text>`);
  }
  out.push(`<line x1="${px0}" y1="${py0}" x2="${px1}" y2="${py0}" stroke="#444"/>`);
  out.push(`<line x1="${px0}" y1="${py1}" x2="${px0}" y2="${py0}" stroke="#444"/>`);
  if (report.config.ns.includes(0) && report.config.ns.some((n) => n > 0)) {
    // the break between N = 0 and the log-scaled part of the axis
    const bx = (x.map(0) + x.map(Math.min(...report.config.ns.filter((n) => n > 0)))) / 2;
    out.push(`<rect x="${(bx - 4).toFixed(1)}" y="${py0 - 5}" width="8" height="10" fill="#ffffff"/>`);
    for (const dx of [-4, 1]) out.push(`<line x1="${(bx + dx).toFixed(1)}" y1="${py0 + 5}" x2="${(bx + dx + 3).toFixed(1)}" y2="${py0 - 5}" stroke="#444"/>`);
  }
  out.push(`<text x="${(px0 + px1) / 2}" y="${H - 14}" font-size="12" text-anchor="middle" fill="#222">N (rules that do not match the traffic, log scale)</text>`);
  if (spec.reference) {
    const yy = y.map(spec.reference.y);
    out.push(`<line x1="${px0}" y1="${yy.toFixed(1)}" x2="${px1}" y2="${yy.toFixed(1)}" stroke="#7f7f7f" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${px1 - 4}" y="${(yy - 5).toFixed(1)}" font-size="11" text-anchor="end" fill="#7f7f7f">${esc(spec.reference.label)}</text>`);
  }
  // series
  for (const s of series) {
    if (s.points.length === 0) continue;
    const pts = s.points.map((p) => `${x.map(p.n).toFixed(1)},${y.map(p.v).toFixed(1)}`);
    const dash = s.name === BASELINE ? ' stroke-dasharray="6 4"' : '';
    out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2.2"${dash}/>`);
    for (const p of s.points) {
      out.push(`<circle cx="${x.map(p.n).toFixed(1)}" cy="${y.map(p.v).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(`${s.name}, N=${p.n}: ${spec.format(p.v)}`)}</title></circle>`);
    }
  }
  // legend
  let ly = M.top + 8;
  for (const s of series) {
    const lx = W - M.right + 18;
    const dash = s.name === BASELINE ? ' stroke-dasharray="6 4"' : '';
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
    out.push(`<circle cx="${lx + 12}" cy="${ly}" r="3.5" fill="${s.color}"/>`);
    const label = s.points.length ? s.name : `${s.name} (no data)`;
    out.push(`<text x="${lx + 32}" y="${ly + 4}" font-size="12" fill="#222">${esc(label)}</text>`);
    ly += 20;
  }
  const foot = `${report.startedAt.slice(0, 16).replace('T', ' ')} · ${report.host.kernel ?? ''} · ${report.host.cpus ?? '?'} CPUs${report.config.quick ? ' · quick run' : ''}`;
  out.push(`<text x="${W - 8}" y="${H - 4}" font-size="9" text-anchor="end" fill="#999">${esc(foot)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Every chart with data: file name -> SVG text. */
export function renderCharts(report: BenchReport): Map<string, string> {
  const files = new Map<string, string>();
  for (const spec of CHARTS) {
    const svg = renderChart(report, spec);
    if (svg !== null) files.set(spec.file, svg);
  }
  return files;
}
