/**
 * What conntrack costs a rule filter, per packet by BPF_PROG_TEST_RUN: the
 * same two-rule ruleset without conntrack and with it (an `established`
 * rule first), for a packet of an established connection in the original
 * direction (lookup, update, rules), a reply (lookup, update, accepted
 * before the rules), a DNAT'd connection's packet (plus the ct program and
 * the rewrite, which a test run repeats on already translated bytes, so
 * that row is a single cold run), and a new connection (single cold run).
 *
 * Part of `npm run bench` (scripts/bench.mjs runs it after the filter
 * benchmark; docs/benchmarks.md), or alone:
 *
 *   node dist/bench/conntrack-filter.js [--quick] [--repeat N] [--out DIR]
 *
 * The table goes to stdout; <out>/conntrack-filter-<time>.json and
 * conntrack-filter-latest.json (default out: bench/results).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { filter, match, rule, type Filter } from '../sdk/index.js';
import { packet } from '../sdk/packet.js';
import { loadFilter, type LoadedFilter } from '../runtime/filter.js';

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes('--quick');
const REPEAT = Number(opt('--repeat') ?? (QUICK ? 50_000 : 200_000));
const OUT = path.resolve(opt('--out') ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results'));
if (!Number.isInteger(REPEAT) || REPEAT < 1) {
  process.stderr.write(`conntrack-filter: --repeat needs a positive integer, got '${opt('--repeat') ?? ''}'\n`);
  process.exit(2);
}

function ruleset(ct: boolean): Filter {
  return filter(ct ? 'bench_ct' : 'bench_plain', { hook: ['tc-ingress', 'tc-egress'], ...(ct ? { conntrack: true } : {}) }, ({ chain }) => ({
    'tc-ingress': chain('in', { policy: 'drop' }, [
      ...(ct ? [rule(match.ct.state(['established', 'related'])).accept()] : []),
      ...(ct ? [rule(match.ip4.dst('203.0.113.1').and(match.tcp.dport(8080))).dnat({ to: '10.1.0.9', port: 80 })] : []),
      rule(match.tcp.dport(80)).accept(),
    ]),
    'tc-egress': chain('out', { policy: 'accept' }, []),
  }));
}

const tcp = (src: string, sport: number, dst: string, dport: number, flags: string, payload = 0) =>
  packet().ipv4({ src, dst }).tcp({ sport, dport, flags }).payload(payload).build();

/** Median of 7 runs of `repeat` test runs each, ns per run. */
function median(lf: LoadedFilter, data: Buffer, repeat: number): number {
  const xs: number[] = [];
  for (let i = 0; i < 7; i++) xs.push(lf.testRun('tc-ingress', data, { repeat }).durationNs);
  xs.sort((a, b) => a - b);
  return xs[3]!;
}

const startedAt = new Date().toISOString();
const rows: Array<{ case: string; plainNs: number | null; conntrackNs: number }> = [];
const plain = loadFilter(ruleset(false));
const ct = loadFilter(ruleset(true), { conntrackSeed: 1 });
try {
  const syn = tcp('10.0.0.1', 1234, '10.0.0.2', 80, 'S');
  const ack = tcp('10.0.0.1', 1234, '10.0.0.2', 80, 'A', 100);
  ct.testRun('tc-ingress', syn);
  ct.testRun('tc-ingress', tcp('10.0.0.2', 80, '10.0.0.1', 1234, 'SA'));
  ct.testRun('tc-ingress', ack);
  rows.push({ case: 'established, original direction (rules run)', plainNs: median(plain, ack, REPEAT), conntrackNs: median(ct, ack, REPEAT) });
  rows.push({ case: 'established, reply (accepted before the rules)', plainNs: null, conntrackNs: median(ct, tcp('10.0.0.2', 80, '10.0.0.1', 1234, 'A', 100), REPEAT) });
  const single = (data: Buffer, before: () => void) => {
    const xs: number[] = [];
    for (let i = 0; i < 7; i++) {
      before();
      xs.push(ct.testRun('tc-ingress', data).durationNs);
    }
    return xs.sort((a, b) => a - b)[3]!;
  };
  rows.push({ case: 'new connection, committed (single run, cold)', plainNs: null, conntrackNs: single(syn, () => ct.conntrack.flush()) });
  const dsyn = tcp('10.0.0.5', 4000, '203.0.113.1', 8080, 'S');
  const dack = tcp('10.0.0.5', 4000, '203.0.113.1', 8080, 'A', 100);
  rows.push({
    case: 'DNAT, established original direction: lookup, rules, ct program, rewrite (single run)',
    plainNs: null,
    conntrackNs: single(dack, () => {
      ct.conntrack.flush();
      ct.testRun('tc-ingress', dsyn);
      ct.testRun('tc-ingress', tcp('10.1.0.9', 80, '10.0.0.5', 4000, 'SA'));
    }),
  });
} finally {
  plain.close();
  ct.close();
}

process.stdout.write(`conntrack in a rule filter, ns per packet by test run (median of 7 x ${REPEAT}${QUICK ? ', quick' : ''})\n`);
process.stdout.write(`${'case'.padEnd(90)} ${'plain'.padStart(8)}  ${'conntrack'.padStart(9)}\n`);
for (const r of rows) process.stdout.write(`${r.case.padEnd(90)} ${r.plainNs === null ? '       -' : `${String(r.plainNs).padStart(5)} ns`}  ${String(r.conntrackNs).padStart(6)} ns\n`);
const json = JSON.stringify({ schema: 'tsbpf-bench-conntrack-filter/1', at: startedAt, quick: QUICK, host: { cpus: os.cpus().length, kernel: os.release() }, repeat: REPEAT, rows }, null, 2) + '\n';
mkdirSync(OUT, { recursive: true });
const written: string[] = [];
for (const name of [`conntrack-filter-${startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`, 'conntrack-filter-latest.json']) {
  const file = path.join(OUT, name);
  writeFileSync(`${file}.tmp`, json);
  renameSync(`${file}.tmp`, file);
  written.push(file);
}
process.stderr.write(`conntrack-filter: wrote ${written.join(', ')}\n`);
