/**
 * Measures how long compileFunctions takes with and without type checking
 * (the numbers in docs/functions.md). Not a test: run it by hand,
 *
 *   node dist/test/fn/measure-build.js [runs]
 *
 * Each cold build is a fresh Node process (what `tsbpf build` pays); warm
 * builds reuse the process's ts-morph project (a watch loop, a test file
 * building several programs). clang's cache is kept warm except in the
 * "clang runs" row, so the rows show the TypeScript side.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { compileFunctions } from '../../codegen/fn/index.js';
import { examplePath } from './harness.js';

const runs = Number(process.argv[2] ?? 5);
const here = fileURLToPath(import.meta.url);
const examples = ['dns-guard.ts', 'syn-limiter.ts', 'port-redirect.ts'].map(examplePath);

if (process.argv[3] === '--child') {
  // one cold build, printed as JSON
  const [, , , , file, typeCheck, cacheDir] = process.argv;
  const t0 = performance.now();
  const r = compileFunctions(file!, { typeCheck: typeCheck === 'true', clang: { cacheDir: cacheDir! } });
  const cpu = process.cpuUsage();
  console.log(JSON.stringify({ ...r.timings, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, cached: r.object?.cached }));
  process.exit(0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

type Sample = Record<string, number>;
const KEYS = ['totalMs', 'parseMs', 'typeCheckMs', 'lowerMs', 'clangMs', 'cpuMs'] as const;

/** Cold builds, type checking on and off interleaved so both see the same machine load. */
function cold(freshCache: boolean): Record<'on' | 'off', Sample[]> {
  const out: Record<'on' | 'off', Sample[]> = { on: [], off: [] };
  const warmCache = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-measure-'));
  try {
    for (const file of examples) spawnSync(process.execPath, [here, '1', '--child', file, 'false', warmCache]);
    for (let i = 0; i < runs; i++) {
      for (const file of examples) {
        for (const tc of i % 2 ? ['off', 'on'] as const : ['on', 'off'] as const) {
          const cache = freshCache ? mkdtempSync(path.join(os.tmpdir(), 'tsbpf-measure-')) : warmCache;
          const r = spawnSync(process.execPath, [here, '1', '--child', file, String(tc === 'on'), cache], { encoding: 'utf8' });
          if (freshCache) rmSync(cache, { recursive: true, force: true });
          out[tc].push(JSON.parse(r.stdout.trim().split('\n').pop()!) as Sample);
        }
      }
    }
  } finally {
    rmSync(warmCache, { recursive: true, force: true });
  }
  return out;
}

/** Rebuilds in one process after an edit of the file (a watch loop): only that file is re-read and re-checked. */
function warm(): Record<'on' | 'off', Sample[]> {
  const out: Record<'on' | 'off', Sample[]> = { on: [], off: [] };
  const cache = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-measure-'));
  try {
    const texts = examples.map((f) => readFileSync(f, 'utf8'));
    for (const f of examples) compileFunctions(f, { clang: { cacheDir: cache } });
    let edit = 0;
    for (let i = 0; i < runs * 3; i++) {
      examples.forEach((f, j) => {
        for (const tc of ['on', 'off'] as const) {
          const t = compileFunctions(f, { typeCheck: tc === 'on', text: `${texts[j]}\n// edit ${edit++}\n`, clang: { cacheDir: cache } }).timings;
          out[tc].push({ ...t, cpuMs: NaN });
        }
      });
    }
    for (const f of examples) compileFunctions(f, { emitOnly: true }); // back to the file's own text
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
  return out;
}

const f = (n: number) => (Number.isNaN(n) ? '    -' : n.toFixed(0).padStart(5));
const table: string[] = [];
const row = (what: string, samples: Record<'on' | 'off', Sample[]>) => {
  for (const tc of ['on', 'off'] as const) {
    const m = (k: (typeof KEYS)[number]) => median(samples[tc].map((s) => s[k]!));
    table.push(`| ${what} | ${tc} | ${f(m('totalMs'))} | ${f(m('cpuMs'))} | ${f(m('parseMs'))} | ${f(m('typeCheckMs'))} | ${f(m('lowerMs'))} | ${f(m('clangMs'))} |`);
  }
};
row('new process, object cached', cold(false));
row('new process, clang runs', cold(true));
row('same process, file edited', warm());
console.log(`median of ${runs} runs x ${examples.length} examples, milliseconds; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? ''}), load average ${os.loadavg()[0]!.toFixed(1)}`);
console.log('| build | type check | total (wall) | CPU | read + bind | type check | lower to C | clang |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const l of table) console.log(l);
