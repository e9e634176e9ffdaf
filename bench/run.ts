/**
 * The benchmark loop. For each N (outer) and each contender (inner, the
 * no-filter run first, so that every contender at one N is compared with a
 * reference taken minutes, not half an hour, apart): a fresh topology; setup
 * (timed); per-packet cost by test run when the contender has one; TCP and
 * UDP traffic interleaved `repeats` times (best run kept, contended UDP runs
 * retried); rules added one at a time (timed); memory over load/unload
 * cycles; teardown; topology removed.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Contender } from './contenders/index.js';
import { measureTcp, measureUdp } from './iperf.js';
import { settledKernelMemory } from './memory.js';
import { run } from './proc.js';
import { computeRatios, formatBytes, formatCount, formatMs, median, type BenchConfig, type BenchReport, type ResultRow } from './report.js';
import { createBenchTopology, type BenchTopology } from './topology.js';

/** Below this share of its CPU, a UDP client run counts as contended. */
const CONTENDED_CPU = 80;

export interface RunHooks {
  /** Progress lines (main sends them to stderr). */
  log?: (line: string) => void;
  /** Netns name prefix; default `tbench-<runId>-`. */
  netnsPrefix?: string;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await run(cmd, args, { timeoutMs: 5000 });
    return (r.stdout || r.stderr).trim().split('\n')[0] ?? '';
  } catch {
    return 'not found';
  }
}

async function hostInfo(): Promise<Record<string, string | number>> {
  const cpus = os.cpus();
  let memTotal = 0;
  try {
    memTotal = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    /* not Linux */
  }
  return {
    kernel: os.release(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? '',
    memoryBytes: memTotal,
    node: process.version,
    iperf3: await firstLine('iperf3', ['--version']),
    iptables: await firstLine('iptables-legacy', ['--version']),
    nft: await firstLine('nft', ['--version']),
  };
}

function emptyRow(contender: string, n: number): ResultRow {
  return { contender, n, tcp: null, udp: null, loadMs: null, addRule: null, memory: null, perPacketNs: null, details: {}, errors: [] };
}

async function measureOne(c: Contender, n: number, config: BenchConfig, prefix: string, say: (s: string) => void, rowsSoFar: ResultRow[]): Promise<ResultRow> {
  const row = emptyRow(c.name, n);
  const fail = (step: string, e: unknown) => {
    row.errors.push(`${step}: ${message(e)}`);
    say(`${step} FAILED: ${message(e)}`);
  };
  let topo: BenchTopology;
  try {
    topo = await createBenchTopology(prefix);
  } catch (e) {
    fail('topology', e);
    return row;
  }
  let installed = false;
  let setupDelta: number | null = null;
  try {
    // Setup: timed, with the kernel memory it costs.
    const before = c.baseline ? 0 : await settledKernelMemory();
    try {
      const t0 = process.hrtime.bigint();
      const res = await c.setup(topo, n);
      installed = true;
      const wall = Number(process.hrtime.bigint() - t0) / 1e6;
      if (res?.details) Object.assign(row.details, res.details);
      if (!c.baseline) {
        row.loadMs = res?.loadMs ?? wall;
        say(`load ${formatMs(row.loadMs)} ms`);
      }
    } catch (e) {
      fail('setup', e);
      return row;
    }
    if (!c.baseline) {
      try {
        const own = c.memoryBytes ? await c.memoryBytes(topo) : null;
        if (own) {
          row.memory = own;
          say(`memory ${formatBytes(own.bytes)} (${own.method})`);
        } else {
          // More readings (teardown, further load/unload cycles) below.
          setupDelta = (await settledKernelMemory()) - before;
          row.memory = { bytes: setupDelta, method: 'meminfo', samples: [setupDelta] };
        }
      } catch (e) {
        fail('memory', e);
      }
    }

    if (c.perPacketNs) {
      try {
        row.perPacketNs = await c.perPacketNs(topo, n);
        if (row.perPacketNs !== null) say(`test run ${row.perPacketNs.toFixed(1)} ns/packet`);
      } catch (e) {
        fail('perPacketNs', e);
      }
    }

    // Traffic: TCP and UDP interleaved, so slow drift hits both alike.
    const tcp: Array<{ bps: number; cpu: number }> = [];
    const udp: Array<{ pps: number; sent: number; delivered: number; lost: number; cpu: number }> = [];
    let tcpError: unknown;
    let udpError: unknown;
    for (let i = 0; i < config.repeats; i++) {
      try {
        const t = await measureTcp(topo, config.seconds);
        tcp.push({ bps: t.bitsPerSecond, cpu: t.senderCpuPercent });
      } catch (e) {
        tcpError = e;
      }
      try {
        const u = await measureUdp(topo, config.seconds);
        udp.push({ pps: u.packetsPerSecond, sent: u.sentPerSecond, delivered: u.deliveredPerSecond, lost: u.lostPercent, cpu: u.senderCpuPercent });
      } catch (e) {
        udpError = e;
      }
    }
    // At -b 0 the UDP client should use its whole CPU: when the best run's
    // client did not (something else ran there) the rate is understated, so
    // run again, up to `retries` more times.
    const bestUdp = () => udp.reduce((a, b) => (b.pps > a.pps ? b : a));
    for (let extra = 0; extra < config.retries && udp.length && bestUdp().cpu < CONTENDED_CPU; extra++) {
      say(`udp run contended (client CPU ${bestUdp().cpu.toFixed(0)}%), once more`);
      try {
        const u = await measureUdp(topo, config.seconds);
        udp.push({ pps: u.packetsPerSecond, sent: u.sentPerSecond, delivered: u.deliveredPerSecond, lost: u.lostPercent, cpu: u.senderCpuPercent });
      } catch (e) {
        udpError = e;
      }
    }
    if (tcpError) fail('tcp', tcpError);
    if (udpError) fail('udp', udpError);
    // Best of the runs: on a shared machine interference only ever slows a run down.
    const cpu = (v: number) => (Number.isFinite(v) ? Math.round(v * 10) / 10 : null);
    if (tcp.length) {
      const best = tcp.reduce((a, b) => (b.bps > a.bps ? b : a));
      row.tcp = { bitsPerSecond: best.bps, samples: tcp.map((t) => t.bps), senderCpuPercent: cpu(best.cpu), ratio: null };
    }
    if (udp.length) {
      const best = bestUdp();
      row.udp = {
        packetsPerSecond: best.pps,
        samples: udp.map((u) => u.pps),
        sentPerSecond: best.sent,
        deliveredPerSecond: best.delivered,
        lostPercent: best.lost,
        senderCpuPercent: cpu(best.cpu),
        ratio: null,
        addedNsPerPacket: null,
      };
    }
    computeRatios([...rowsSoFar, row]);
    if (row.tcp) say(`tcp ${(row.tcp.bitsPerSecond / 1e9).toFixed(2)} Gbit/s${row.tcp.ratio !== null ? ` (ratio ${row.tcp.ratio.toFixed(3)})` : ''}`);
    if (row.udp) {
      const cpuNote = row.udp.senderCpuPercent !== null ? `, client CPU ${row.udp.senderCpuPercent.toFixed(0)}%` : '';
      say(`udp ${(row.udp.packetsPerSecond / 1e3).toFixed(1)} kpps${row.udp.ratio !== null ? ` (ratio ${row.udp.ratio.toFixed(3)}${cpuNote})` : ''}`);
    }

    // Live changes: one rule at a time into the ruleset of N.
    if (!c.baseline) {
      const samples: number[] = [];
      try {
        for (let k = 0; k < config.addRepeats; k++) {
          const t0 = process.hrtime.bigint();
          const own = await c.addOneRule(topo, n + k);
          samples.push(typeof own === 'number' ? own : Number(process.hrtime.bigint() - t0) / 1e6);
        }
      } catch (e) {
        fail('addOneRule', e);
      }
      if (samples.length) {
        row.addRule = { medianMs: median(samples), maxMs: Math.max(...samples), samples };
        say(`add one rule ${formatMs(row.addRule.medianMs)} ms (median of ${samples.length})`);
      }
    }

    // Memory, system-wide and so noisy: what teardown gives back, then more
    // load/unload cycles; the median of every growth and release.
    if (setupDelta !== null) {
      const samples = [setupDelta];
      try {
        for (let k = 0; ; k++) {
          const beforeTeardown = await settledKernelMemory();
          await c.teardown(topo);
          samples.push(beforeTeardown - (await settledKernelMemory()));
          if (k === config.memoryCycles) break;
          const beforeSetup = await settledKernelMemory();
          await c.setup(topo, n);
          samples.push((await settledKernelMemory()) - beforeSetup);
        }
      } catch (e) {
        fail('memory', e);
      }
      row.memory = { bytes: median(samples), method: 'meminfo', samples };
      say(`memory ${formatBytes(row.memory.bytes)} (meminfo, median of ${samples.map(formatBytes).join(', ')})`);
    }

    // Many rules in one call, at one N.
    const bulk = config.bulkRules ?? 0;
    const bulkAt = config.bulkAt ?? (config.ns.includes(10_000) ? 10_000 : Math.max(...config.ns));
    if (!c.baseline && c.addManyRules && bulk > 0 && n === bulkAt) {
      try {
        // The memory cycles end torn down: the ruleset of N again first (not timed).
        if (setupDelta !== null) await c.setup(topo, n);
        const t0 = process.hrtime.bigint();
        const own = await c.addManyRules(topo, n, n + config.addRepeats + 1, bulk);
        row.addMany = { count: bulk, ms: typeof own === 'number' ? own : Number(process.hrtime.bigint() - t0) / 1e6 };
        say(`add ${formatCount(bulk)} rules in one call ${formatMs(row.addMany.ms)} ms`);
      } catch (e) {
        fail('addManyRules', e);
      }
    }
  } finally {
    // Also after a failed setup: it may have left part of a ruleset (teardown tolerates absence).
    try {
      await c.teardown(topo);
    } catch (e) {
      if (installed) fail('teardown', e);
    }
    await topo.close();
  }
  return row;
}

/** Run the benchmark; the returned report is complete (ratios filled in). */
export async function runBench(config: BenchConfig, selected: readonly Contender[], skipped: BenchReport['skipped'], hooks: RunHooks = {}): Promise<BenchReport> {
  const runId = randomBytes(3).toString('hex');
  const prefix = hooks.netnsPrefix ?? `tbench-${runId}-`;
  const started = Date.now();
  const log = hooks.log ?? (() => undefined);
  const stamp = () => {
    const s = Math.round((Date.now() - started) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  };
  const report: BenchReport = {
    schema: 'tsbpf-bench/1',
    runId,
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    elapsedSeconds: 0,
    host: await hostInfo(),
    config,
    contenders: selected.map((c) => ({ name: c.name, description: c.description })),
    skipped,
    results: [],
  };
  const total = config.ns.length * selected.length;
  let done = 0;
  for (const n of config.ns) {
    for (const c of selected) {
      done++;
      const say = (s: string) => log(`[${stamp()}] (${done}/${total}) ${c.name} N=${formatCount(n)}: ${s}`);
      say('start');
      const row = await measureOne(c, n, config, prefix, say, report.results);
      report.results.push(row);
    }
  }
  computeRatios(report.results);
  report.finishedAt = new Date().toISOString();
  report.elapsedSeconds = Math.round((Date.now() - started) / 100) / 10;
  return report;
}
