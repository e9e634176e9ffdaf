/**
 * `npm run bench` end to end, tiny: the no-filter run, nftables with a set
 * and iptables-legacy at N = 0 and 100, one 1-second iperf3 run per metric.
 * Checks the JSON, the table and the charts, and that the run leaves no
 * namespace, process or file behind.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { BenchReport } from '../../bench/report.js';
import { requireKernel } from '../kernel.js';
import { listNetns } from '../net/topology.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/main.js');

/** Pids of processes whose environment holds `marker` (the bench's children inherit it). */
function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) pids.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

function runBench(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

if (requireKernel('bench harness end to end')) {
  test('a tiny run measures every metric, writes JSON, table and charts, and leaves nothing behind', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'tsbpf-bench-test-'));
    const marker = `TSBPF_BENCH_TEST=${randomBytes(6).toString('hex')}`;
    const [key, value] = marker.split('=') as [string, string];
    try {
      const args = ['--contenders', 'nft-set,iptables-legacy', '--n', '0,100', '--seconds', '1', '--repeats', '1', '--retries', '0', '--memory-cycles', '0', '--add-repeats', '2', '--out', out];
      const r = await runBench(args, { [key]: value });
      assert.is(r.code, 0, `bench failed:\n${r.stderr}`);

      // progress on stderr, per contender, N and metric
      assert.match(r.stderr, /\(5\/6\) nft-set N=100: load [\d.]+ ms/);
      assert.match(r.stderr, /iptables-legacy N=100: udp [\d.]+ kpps \(ratio [\d.]+, client CPU \d+%\)/);

      // the table on stdout
      assert.match(r.stdout, /^contender\s+N\s+TCP Gbit\/s/);
      assert.match(r.stdout, /\nnft-set\s+100\s+[\d.]+\s+[\d.]+\s+[\d.]+/);

      // the JSON
      const report = JSON.parse(readFileSync(path.join(out, 'latest.json'), 'utf8')) as BenchReport;
      assert.is(report.schema, 'tsbpf-bench/1');
      assert.equal(report.config.ns, [0, 100]);
      assert.equal(report.contenders.map((c) => c.name), ['none', 'nft-set', 'iptables-legacy']);
      assert.equal(report.results.map((x) => `${x.contender}@${x.n}`), ['none@0', 'nft-set@0', 'iptables-legacy@0', 'none@100', 'nft-set@100', 'iptables-legacy@100']);
      for (const row of report.results) {
        const at = `${row.contender} N=${row.n}`;
        assert.equal(row.errors, [], at);
        assert.ok(row.tcp!.bitsPerSecond > 0, `${at}: tcp`);
        assert.ok(row.udp!.packetsPerSecond > 0, `${at}: udp`);
        assert.ok(row.tcp!.ratio! > 0 && row.udp!.ratio! > 0, `${at}: ratios`);
        assert.is(row.perPacketNs, null, 'no test runs for netfilter');
        if (row.contender === 'none') {
          assert.is(row.tcp!.ratio, 1);
          assert.is(row.loadMs, null);
          assert.is(row.memory, null);
        } else {
          assert.ok(row.loadMs! > 0, `${at}: load time`);
          assert.is(row.addRule!.samples.length, 2, `${at}: add one rule`);
          assert.is(row.memory!.method, 'meminfo');
          assert.is(row.memory!.samples!.length, 2, `${at}: growth at setup and release at teardown`);
        }
      }
      const stamped = readdirSync(out).filter((f) => /^\d{4}-.*Z\.json$/.test(f));
      assert.is(stamped.length, 1);
      assert.is(readFileSync(path.join(out, stamped[0]!), 'utf8'), readFileSync(path.join(out, 'latest.json'), 'utf8'));

      // the charts
      for (const f of ['tcp-throughput.svg', 'udp-rate.svg', 'load-time.svg', 'add-rule.svg', 'memory.svg']) {
        const svg = readFileSync(path.join(out, f), 'utf8');
        assert.match(svg, /^<svg /, f);
        assert.match(svg, /iptables-legacy/, f);
      }
      assert.not.ok(existsSync(path.join(out, 'per-packet.svg')), 'no per-packet chart without data');
      assert.equal(readdirSync(out).filter((f) => f.endsWith('.tmp')), []);

      // nothing left behind
      assert.equal(listNetns().filter((ns) => ns.startsWith(`tbench-${report.runId}-`)), []);
      assert.equal(processesWith(marker), [], 'no process of the run is left');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('Ctrl-C in the middle of a run removes its namespaces and processes', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'tsbpf-bench-test-'));
    const marker = `TSBPF_BENCH_TEST=${randomBytes(6).toString('hex')}`;
    const [key, value] = marker.split('=') as [string, string];
    const before = new Set(listNetns());
    try {
      const child = spawn(process.execPath, [MAIN, '--contenders', 'nft-linear', '--n', '0', '--seconds', '5', '--repeats', '1', '--out', out], {
        env: { ...process.env, [key]: value },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      // Interrupt once the first iperf3 run is under way.
      await new Promise<void>((resolve) => {
        child.stderr.on('data', (b: Buffer) => {
          stderr += b.toString();
          if (/none N=0: start/.test(stderr)) setTimeout(resolve, 1500);
        });
        child.on('close', () => resolve());
      });
      const code = await new Promise<number | null>((resolve) => {
        child.on('close', (c) => resolve(c));
        child.kill('SIGINT');
      });
      assert.is(code, 130, stderr);
      assert.match(stderr, /SIGINT, cleaning up/);
      const leftover = listNetns().filter((ns) => !before.has(ns) && ns.startsWith('tbench-'));
      assert.equal(leftover, []);
      assert.equal(processesWith(marker), []);
      assert.not.ok(existsSync(path.join(out, 'latest.json')), 'an interrupted run writes no results');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

test.run();
