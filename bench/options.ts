/**
 * Command-line options of `npm run bench`, and where results are written.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCharts } from './charts.js';
import { contenderByName, contenders } from './contenders/index.js';
import type { BenchConfig, BenchReport } from './report.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const FULL: Omit<BenchConfig, 'contenders'> = { quick: false, ns: [0, 100, 1_000, 10_000, 100_000], seconds: 3, repeats: 3, retries: 3, addRepeats: 5, memoryCycles: 2, bulkRules: 50_000 };
export const QUICK: Omit<BenchConfig, 'contenders'> = { quick: true, ns: [0, 1_000, 10_000], seconds: 1, repeats: 2, retries: 2, addRepeats: 3, memoryCycles: 1, bulkRules: 50_000 };

export const USAGE = `usage: npm run bench -- [options]

  --quick               N = 0, 1k, 10k; best of two 1 s runs per metric (about two minutes)
  --n LIST              rule counts, e.g. 0,100,1000 (default 0,100,1000,10000,100000)
  --contenders LIST     names, in run order (default: all; 'none' is always run first)
  --seconds S           length of each iperf3 run (default 3, quick 1)
  --repeats R           iperf3 runs per metric, the best reported (default 3, quick 2)
  --retries K           extra UDP runs when the client did not get its CPU (default 3, quick 2)
  --add-repeats K       rules added one at a time, median reported (default 5, quick 3)
  --bulk K              rules added in one call at N = 10,000 (or the largest N); 0: not measured (default 50000)
  --memory-cycles K     extra load/unload cycles for the memory figure (default 2, quick 1)
  --out DIR             results directory (default bench/results)
  --list                print the contenders and exit

Needs root (network namespaces), iperf3, iptables and nftables.`;

export class UsageError extends Error {}

export interface Cli {
  config: BenchConfig;
  out: string;
  list: boolean;
}

function parseList(flag: string, v: string | undefined): string[] {
  if (!v) throw new UsageError(`${flag} needs a value`);
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

function parsePositive(flag: string, v: string | undefined, integer: boolean): number {
  const x = Number(v);
  if (!v || !Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x))) throw new UsageError(`${flag} needs a positive ${integer ? 'integer' : 'number'}, got '${v ?? ''}'`);
  return x;
}

function parseCount(flag: string, v: string | undefined): number {
  const k = Number(v);
  if (!v || !Number.isInteger(k) || k < 0) throw new UsageError(`${flag} needs a count (0 or more), got '${v ?? ''}'`);
  return k;
}

export function parseArgs(argv: string[]): Cli {
  const quick = argv.includes('--quick');
  const config: BenchConfig = { ...(quick ? QUICK : FULL), contenders: contenders.map((c) => c.name) };
  let out = path.join(ROOT, 'bench', 'results');
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => argv[++i];
    switch (a) {
      case '--quick':
        break;
      case '--n':
        config.ns = parseList(a, next()).map((s) => {
          const n = Number(s.replace(/_/g, ''));
          if (!Number.isInteger(n) || n < 0) throw new UsageError(`--n: '${s}' is not a rule count`);
          return n;
        });
        break;
      case '--contenders':
        config.contenders = parseList(a, next());
        break;
      case '--seconds':
        config.seconds = parsePositive(a, next(), true);
        break;
      case '--repeats':
        config.repeats = parsePositive(a, next(), true);
        break;
      case '--retries':
        config.retries = parseCount(a, next());
        break;
      case '--memory-cycles':
        config.memoryCycles = parseCount(a, next());
        break;
      case '--add-repeats':
        config.addRepeats = parsePositive(a, next(), true);
        break;
      case '--bulk':
        config.bulkRules = parseCount(a, next());
        break;
      case '--out': {
        const v = next();
        if (!v) throw new UsageError('--out needs a directory');
        out = path.resolve(v);
        break;
      }
      case '--list':
        list = true;
        break;
      case '-h':
      case '--help':
        throw new UsageError('');
      default:
        throw new UsageError(`unknown option '${a}'`);
    }
  }
  for (const name of config.contenders) {
    if (!contenderByName(name)) throw new UsageError(`unknown contender '${name}' (known: ${contenders.map((c) => c.name).join(', ')})`);
  }
  // The reference run goes first at every N: every ratio needs it.
  config.contenders = ['none', ...config.contenders.filter((n) => n !== 'none')];
  config.ns = [...new Set(config.ns)].sort((a, b) => a - b);
  return { config, out, list };
}

function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** Writes <timestamp>.json, latest.json and the charts; returns the paths written. */
export function writeResults(report: BenchReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(report, null, 2) + '\n';
  const stamp = report.startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const written = [path.join(dir, `${stamp}.json`), path.join(dir, 'latest.json')];
  for (const f of written) writeAtomic(f, json);
  for (const [name, svg] of renderCharts(report)) {
    const f = path.join(dir, name);
    writeAtomic(f, svg);
    written.push(f);
  }
  return written;
}
