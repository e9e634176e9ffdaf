#!/usr/bin/env node
/**
 * Services benchmark (issue 5): tsbpf's services program against kube-proxy's
 * iptables rules (KUBE-SERVICES -> KUBE-SVC-* with `statistic random` ->
 * KUBE-SEP-* DNAT) and kube-proxy's nftables shape (a verdict map on
 * address . protocol . port, per-service chains with `numgen random`), on
 * the same router, at 10 to 10,000 services of 10 backends each.
 *
 *   node dist/bench/services.js [--quick] [--n 10,1000,10000] [--seconds S] [--repeats R] [--parallel P]
 *     [--syn-seconds S] [--syn-rounds R] [--contenders tsbpf,iptables,nftables] [--out DIR]
 *
 * Per contender and N: the time to program every service, the time to
 * change one backend, new connections per second through the VIP of the
 * last service (the worst case for a linear chain) as raw SYNs of new tuples
 * (in rounds interleaved across contenders) and as whole connections, TCP
 * throughput through a VIP; for tsbpf also the per-packet cost by test run
 * (tc and XDP). Results go to <out>/services-<time>.json,
 * services-latest.json and SVG charts. docs/benchmarks.md has the method.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC } from '../codegen/clang.js';
import { load } from '../runtime/load.js';
import type { BpfObject } from '../runtime/object.js';
import { loadServices, type LoadedServices } from '../runtime/services.js';
import { packet } from '../sdk/packet.js';
import { serviceDef, services, type ServiceDef } from '../sdk/services.js';
import { renderChart, type ChartSpec } from './charts.js';
import { run, runOk, startDaemon, killAllChildren } from './proc.js';
import { median, type BenchConfig, type ResultRow } from './report.js';
import { createBenchTopology, destroyAllTopologies, IPERF_PORT, type BenchTopology } from './topology.js';

export const BACKENDS = 10;
/** The kernel's conntrack table size on the test VM (net.netfilter.nf_conntrack_max), read at start. */
let NF_CONNTRACK_MAX = 262144;
const SVC_PORT = 80;
const BACKEND_PORT = 8080;

export interface ServicesRow {
  contender: string;
  n: number;
  /** Programming every service, wall ms (and CPU ms of this process for tsbpf). */
  programMs: number | null;
  programCpuMs?: number;
  /** Changing one backend of one service on the live set, median ms. */
  changeMs: number | null;
  /** New TCP connections per second through the last service's VIP (whole connections, bench/tools/connrate.c client). */
  connPerSecond: number | null;
  /**
   * New connections per second the router takes through the last service's
   * VIP: first packets (SYNs) of never-seen tuples, sent raw by two
   * processes and counted where they arrive (bench/tools/connrate.c syn).
   */
  newConnPerSecond?: number | null;
  /** The same SYNs forwarded to the server's own address before anything was programmed (the router without NAT). */
  forwardPerSecond?: number | null;
  /** Router time per new connection: 1/newConnPerSecond - 1/forwardPerSecond, ns. */
  newConnCostNs?: number | null;
  /** TCP throughput through a VIP, bits/s. */
  tcpBitsPerSecond: number | null;
  /** tsbpf only, ns (see docs/stateful.md for how each is taken). */
  perPacket?: Record<string, number>;
  errors: string[];
}

export interface ServicesReport {
  schema: 'tsbpf-bench-services/1';
  startedAt: string;
  finishedAt: string;
  host: Record<string, string | number>;
  config: { ns: number[]; seconds: number; repeats: number; contenders: string[]; parallel?: number; synSeconds?: number; synRounds?: number };
  results: ServicesRow[];
}

interface Contender {
  name: string;
  /** Program n services (VIP i -> 10 backends), and one throughput service last. */
  program(topo: Ctx, n: number): Promise<{ ms: number; cpuMs?: number }>;
  /** Replace one backend of service `i`; returns ms. */
  change(topo: Ctx, i: number): Promise<number>;
  perPacket?(topo: Ctx, n: number): Record<string, number>;
  teardown(topo: Ctx): Promise<void>;
}

interface Ctx {
  topo: BenchTopology;
  /** The native connection-rate tool, when it could be built. */
  tool: string | undefined;
  /** Connections the client keeps in flight. */
  parallel: number;
  /** Backend addresses (10 on the server's interface). */
  backends: string[];
  vip(i: number): string;
  /** VIP of the throughput service (port IPERF_PORT -> the iperf3 server). */
  tputVip: string;
  lb?: LoadedServices;
  defs?: ServiceDef[];
  /** A tc program that returns at once: the test-run loop's own cost. */
  trivial?: BpfObject;
}

const TRIVIAL_C = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("tc") int bench_trivial(struct __sk_buff *skb) { return 0; }
SEC("xdp") int bench_trivial_xdp(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
`;

// ---------------------------------------------------------------------------
// Contenders

function tsbpfDefs(ctx: Ctx, n: number): ServiceDef[] {
  const defs: ServiceDef[] = [];
  for (let i = 0; i < n; i++) defs.push(serviceDef(`s${i}`, { vip: ctx.vip(i), port: SVC_PORT, backends: ctx.backends.map((addr) => ({ addr, port: BACKEND_PORT })) }));
  defs.push(serviceDef('tput', { vip: ctx.tputVip, port: IPERF_PORT, backends: [{ addr: ctx.topo.server.ipv4, port: IPERF_PORT }] }));
  return defs;
}

const tsbpf: Contender = {
  name: 'tsbpf',
  async program(ctx, n) {
    // Conntrack sized for as many connections as the kernel's (nf_conntrack_max, one entry per
    // connection): a DNAT'd connection takes two entries here (its key and its backend-side alias).
    const def = services('bsvc', { maxServices: Math.max(1024, 2 * n + 8), maxBackends: Math.max(16384, BACKENDS * n + 64), conntrack: { maxEntries: 2 * NF_CONNTRACK_MAX } });
    const lb = loadServices(def, { benchHarness: true });
    ctx.trivial = load(compileC(TRIVIAL_C), { name: 'btrivial' });
    ctx.topo.onDestroy(() => ctx.trivial?.close());
    ctx.lb = lb;
    ctx.topo.onDestroy(() => lb.close());
    const { router } = ctx.topo;
    for (const ifname of [router.toClient.ifname, router.toServer.ifname]) lb.attach({ ifname, netns: router.ns });
    ctx.defs = tsbpfDefs(ctx, n);
    const cpu = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    lb.upsertServices(ctx.defs);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const c = process.cpuUsage(cpu);
    return { ms, cpuMs: (c.user + c.system) / 1000 };
  },
  async change(ctx, i) {
    const d = ctx.defs![i]!;
    d.backends[0] = { ...d.backends[0]!, port: d.backends[0]!.port === BACKEND_PORT ? BACKEND_PORT + 1 : BACKEND_PORT };
    const t0 = process.hrtime.bigint();
    ctx.lb!.upsertService(d);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  },
  perPacket(ctx, n) {
    // A test run repeats on one packet and a translating path rewrites it: the harness programs
    // (benchHarness) restore the saved frame before each run; their cost alone (restore + the
    // test-run loop) is subtracted, and the test-run loop's own cost (a program that returns at
    // once) added back, so the figures read like any repeated test run of the datapath.
    const lb = ctx.lb!;
    const vip = ctx.vip(n - 1);
    const client = '10.254.0.2';
    const R = 200_000;
    const med5 = (f: () => number) => median(Array.from({ length: 5 }, f));
    const tcp = (src: string, dst: string, sport: number, dport: number, flags: string) => packet().ipv4({ src, dst }).tcp({ sport, dport, flags }).payload(flags === 'S' || flags === 'SA' ? 0 : 64).build();
    const prog = (suffix: string) => lb.compiled.programs.find((p) => p.kind === 'bench' && p.name.endsWith(suffix))!.name;
    const frames = lb.map('tsbpf_svc_bench').raw;
    const harness = (frame: Buffer) => {
      const saved = Buffer.alloc(64);
      frame.copy(saved, 0, 0, 64);
      frames.set(Buffer.alloc(4), saved);
      const full = med5(() => lb.object.testRun(prog('_bench'), { data: Buffer.from(frame), repeat: R }).durationNs);
      const alone = med5(() => lb.object.testRun(prog('_bench0'), { data: Buffer.from(frame), repeat: R }).durationNs);
      return full - alone;
    };
    // An established DNAT'd connection: handshake through the ingress program (router placement).
    lb.testRun('tc-ingress', tcp(client, vip, 40000, SVC_PORT, 'S'));
    const backend = lb.conntrack({ src: client, sport: 40000 })[0]?.translated.dst ?? ctx.backends[0]!;
    lb.testRun('tc-ingress', tcp(backend, client, BACKEND_PORT, 40000, 'SA'));
    lb.testRun('tc-ingress', tcp(client, vip, 40000, SVC_PORT, 'A'));
    lb.testRun('tc-ingress', tcp(client, '10.254.9.9', 40001, 9, 'S'));
    lb.testRun('tc-ingress', tcp('10.254.9.9', client, 9, 40001, 'SA'));
    const loop = med5(() => ctx.trivial!.testRun('bench_trivial', { data: tcp(client, vip, 40000, SVC_PORT, 'A'), repeat: R }).durationNs);
    const fwd = harness(tcp(client, vip, 40000, SVC_PORT, 'A'));
    const reply = harness(tcp(backend, client, BACKEND_PORT, 40000, 'A'));
    const tracked = harness(tcp(client, '10.254.9.9', 40001, 9, 'A'));
    let sport = 20000;
    const news = Array.from({ length: 2000 }, () => lb.testRun('tc-ingress', tcp(client, vip, sport++, SVC_PORT, 'S')).durationNs);
    lb.ctDelete({ src: client });
    // The XDP variant, same services, same packets (its own maps); its loop cost is a trivial XDP program's.
    const x = loadServices(lb.definition, { benchHarness: true, hook: 'xdp' });
    let xdp: { established: number; establishedReply: number } | undefined;
    try {
      x.upsertServices(ctx.defs!);
      x.testRun('xdp', tcp(client, vip, 40000, SVC_PORT, 'S'));
      const xb = x.conntrack({ src: client, sport: 40000 })[0]?.translated.dst ?? backend;
      x.testRun('xdp', tcp(xb, client, BACKEND_PORT, 40000, 'SA'));
      x.testRun('xdp', tcp(client, vip, 40000, SVC_PORT, 'A'));
      const xprog = (suffix: string) => x.compiled.programs.find((p) => p.kind === 'bench' && p.name.endsWith(suffix))!.name;
      const xframes = x.map('tsbpf_svc_bench').raw;
      const xh = (frame: Buffer) => {
        const saved = Buffer.alloc(64);
        frame.copy(saved, 0, 0, 64);
        xframes.set(Buffer.alloc(4), saved);
        const full = med5(() => x.object.testRun(xprog('_bench'), { data: Buffer.from(frame), repeat: R }).durationNs);
        const alone = med5(() => x.object.testRun(xprog('_bench0'), { data: Buffer.from(frame), repeat: R }).durationNs);
        return full - alone;
      };
      const xloop = med5(() => ctx.trivial!.testRun('bench_trivial_xdp', { data: tcp(client, vip, 40000, SVC_PORT, 'A'), repeat: R }).durationNs);
      xdp = { established: xh(tcp(client, vip, 40000, SVC_PORT, 'A')) + xloop, establishedReply: xh(tcp(xb, client, BACKEND_PORT, 40000, 'A')) + xloop };
    } finally {
      x.close();
    }
    return {
      established: fwd + loop,
      establishedReply: reply + loop,
      tracked: tracked + loop,
      establishedNet: fwd,
      testRunLoop: loop,
      newSingle: median(news),
      xdpEstablished: xdp.established,
      xdpEstablishedReply: xdp.establishedReply,
    };
  },
  async teardown(ctx) {
    ctx.lb?.close();
    ctx.lb = undefined;
    ctx.trivial?.close();
    ctx.trivial = undefined;
  },
};

const chain = (prefix: string, i: number, j?: number) => `${prefix}${i.toString(16).padStart(8, '0')}${j === undefined ? '' : `-${j}`}`;

function iptablesRules(ctx: Ctx, n: number): string {
  const out = ['*nat', ':KUBE-SERVICES - [0:0]'];
  const svc = (i: number, vip: string, port: number, backends: Array<[string, number]>) => {
    out.push(`:${chain('KUBE-SVC-', i)} - [0:0]`);
    backends.forEach((_, j) => out.push(`:${chain('KUBE-SEP-', i, j)} - [0:0]`));
    out.push(`-A KUBE-SERVICES -d ${vip}/32 -p tcp -m tcp --dport ${port} -j ${chain('KUBE-SVC-', i)}`);
    backends.forEach(([addr, bport], j) => {
      const left = backends.length - j;
      const prob = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(11)}` : '';
      out.push(`-A ${chain('KUBE-SVC-', i)}${prob} -j ${chain('KUBE-SEP-', i, j)}`);
      out.push(`-A ${chain('KUBE-SEP-', i, j)} -p tcp -m tcp -j DNAT --to-destination ${addr}:${bport}`);
    });
  };
  for (let i = 0; i < n; i++) svc(i, ctx.vip(i), SVC_PORT, ctx.backends.map((a) => [a, BACKEND_PORT]));
  svc(n, ctx.tputVip, IPERF_PORT, [[ctx.topo.server.ipv4, IPERF_PORT]]);
  out.push('-A PREROUTING -j KUBE-SERVICES', 'COMMIT', '');
  return out.join('\n');
}

const iptables: Contender = {
  name: 'iptables',
  async program(ctx, n) {
    const r = await ctx.topo.routerRunOk('iptables-restore', 'iptables-legacy-restore', [], { stdin: iptablesRules(ctx, n), timeoutMs: 600_000 });
    return { ms: r.ms };
  },
  async change(ctx, i) {
    // kube-proxy rewrites the endpoint's chain; one restore without flushing the rest.
    const sep = chain('KUBE-SEP-', i, 0);
    const rules = ['*nat', `:${sep} - [0:0]`, `-A ${sep} -p tcp -m tcp -j DNAT --to-destination ${ctx.backends[0]}:${BACKEND_PORT + 1}`, 'COMMIT', ''].join('\n');
    const r = await ctx.topo.routerRunOk('iptables-restore --noflush', 'iptables-legacy-restore', ['--noflush'], { stdin: rules, timeoutMs: 600_000 });
    return r.ms;
  },
  async teardown(ctx) {
    await ctx.topo.routerRun('iptables-legacy', ['-t', 'nat', '-F']);
    await ctx.topo.routerRun('iptables-legacy', ['-t', 'nat', '-X']);
  },
};

function nftRules(ctx: Ctx, n: number): string {
  const out = ['table ip kube {'];
  const elems: string[] = [];
  const svc = (i: number, vip: string, port: number, backends: Array<[string, number]>) => {
    const name = chain('svc-', i);
    elems.push(`${vip} . tcp . ${port} : goto ${name}`);
    const eps = backends.map((_, j) => `${j} : goto ${chain('ep-', i, j)}`).join(', ');
    out.push(`  chain ${name} {`, `    numgen random mod ${backends.length} vmap { ${eps} }`, '  }');
    backends.forEach(([addr, bport], j) => out.push(`  chain ${chain('ep-', i, j)} {`, `    meta l4proto tcp dnat to ${addr}:${bport}`, '  }'));
  };
  for (let i = 0; i < n; i++) svc(i, ctx.vip(i), SVC_PORT, ctx.backends.map((a) => [a, BACKEND_PORT]));
  svc(n, ctx.tputVip, IPERF_PORT, [[ctx.topo.server.ipv4, IPERF_PORT]]);
  out.push('  map service-ips {', '    type ipv4_addr . inet_proto . inet_service : verdict', `    elements = { ${elems.join(', ')} }`, '  }');
  out.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;', '    ip daddr . meta l4proto . th dport vmap @service-ips', '  }');
  out.push('}', '');
  return out.join('\n');
}

const nftables: Contender = {
  name: 'nftables',
  async program(ctx, n) {
    const r = await ctx.topo.routerRunOk('nft -f', 'nft', ['-f', '-'], { stdin: nftRules(ctx, n), timeoutMs: 900_000 });
    return { ms: r.ms };
  },
  async change(ctx, i) {
    const ep = chain('ep-', i, 0);
    const r = await ctx.topo.routerRunOk('nft -f', 'nft', ['-f', '-'], { stdin: `flush chain ip kube ${ep}\nadd rule ip kube ${ep} meta l4proto tcp dnat to ${ctx.backends[0]}:${BACKEND_PORT + 1}\n` });
    return r.ms;
  },
  async teardown(ctx) {
    await ctx.topo.routerRun('nft', ['delete', 'table', 'ip', 'kube']);
  },
};

export const CONTENDERS: Contender[] = [tsbpf, iptables, nftables];

// ---------------------------------------------------------------------------
// Traffic

const CONN_RATE = `
const net = require('node:net');
const [host, port, secs, conc] = process.argv.slice(1);
let done = 0, failed = 0; const end = Date.now() + Number(secs) * 1000;
function one() {
  if (Date.now() >= end) return;
  const s = net.connect({ host, port: Number(port) });
  const t = setTimeout(() => { failed++; s.destroy(); one(); }, 2000);
  s.once('data', () => { clearTimeout(t); done++; s.destroy(); one(); });
  s.on('error', () => { clearTimeout(t); failed++; one(); });
}
for (let i = 0; i < Number(conc); i++) one();
setTimeout(() => { console.log(JSON.stringify({ done, failed })); process.exit(0); }, Number(secs) * 1000 + 300);
`;

const HELLO_SERVER = `
const net = require('node:net');
net.createServer((c) => { c.end('hello\\n'); c.on('error', () => {}); }).listen(Number(process.argv[1]), '0.0.0.0', () => console.log('ready'));
`;

/** bench/tools/connrate.c built once per content (a light epoll client and server), or undefined without a C compiler. */
async function connrateTool(): Promise<string | undefined> {
  const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'tools', 'connrate.c');
  try {
    const code = readFileSync(src);
    const bin = path.join(os.tmpdir(), `tsbpf-connrate-${createHash('sha256').update(code).digest('hex').slice(0, 12)}`);
    if (!existsSync(bin)) {
      const r = await run('cc', ['-O2', '-o', `${bin}.tmp`, src]);
      if (r.code !== 0) return undefined;
      renameSync(`${bin}.tmp`, bin);
    }
    return bin;
  } catch {
    return undefined;
  }
}

async function connRate(ctx: Ctx, vip: string, seconds: number): Promise<{ perSecond: number; failed: number }> {
  const r = ctx.tool
    ? await run(ctx.tool, ['client', vip, String(SVC_PORT), String(seconds), String(ctx.parallel)], { netns: ctx.topo.client.ns, timeoutMs: seconds * 1000 + 20_000 })
    : await run(process.execPath, ['-e', CONN_RATE, vip, String(SVC_PORT), String(seconds), '16'], { netns: ctx.topo.client.ns, timeoutMs: seconds * 1000 + 20_000 });
  const j = JSON.parse(r.stdout.trim()) as { done: number; failed: number };
  return { perSecond: j.done / seconds, failed: j.failed };
}

/** Source addresses of the SYN load: 64 unused addresses of the client's /24 (so the router's rp_filter takes them). */
function synSources(ctx: Ctx): { first: string; n: number } {
  const o = ctx.topo.client.ipv4.split('.');
  return { first: `${o[0]}.${o[1]}.${o[2]}.128`, n: 64 };
}

/** Drop (and count) the SYN load where it arrives: a tc program on the server's interface, for sources in NET/MASK. */
const SYN_SINK_C = (net: number, mask: number) => `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); } sunk SEC(".maps");
SEC("tc") int syn_sink(struct __sk_buff *skb)
{
	void *d = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 k = 0;
	__u64 *v;
	if (d + 34 > end || ((__u8 *)d)[12] != 0x08 || ((__u8 *)d)[13] != 0x00)
		return 0;
	if ((bpf_ntohl(*(__u32 *)(d + 26)) & ${mask >>> 0}u) != ${net >>> 0}u)
		return 0;
	v = bpf_map_lookup_elem(&sunk, &k);
	if (v)
		*v += 1;
	return 2;
}
char LICENSE[] SEC("license") = "GPL";
`;

async function synSink(ctx: Ctx): Promise<{ count(): Promise<number> }> {
  const { server } = ctx.topo;
  const o = synSources(ctx).first.split('.').map(Number);
  const net = ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
  const obj = load(compileC(SYN_SINK_C(net, 0xffffffc0)), { name: 'bsynsink' });
  ctx.topo.onDestroy(() => obj.close());
  obj.attach({ program: 'syn_sink', hook: 'tc-ingress', ifname: server.ifname, netns: server.ns });
  const m = obj.map<number, bigint[]>('sunk');
  return {
    async count() {
      return Number((m.get(0) ?? []).reduce((a, x) => a + x, 0n));
    },
  };
}

/**
 * First packets of new connections per second to dst:port, as the server
 * receives them: two raw senders (one per CPU) of SYNs from tuples never used
 * before in the run (`round` picks a fresh source-port stripe).
 */
async function synRate(ctx: Ctx, sink: { count(): Promise<number> }, dst: string, port: number, seconds: number, round: number): Promise<number> {
  const src = synSources(ctx);
  const parts = 2;
  const stripes = 16; // disjoint port stripes: up to 8 rounds to one destination never repeat a tuple
  const before = await sink.count();
  const t0 = process.hrtime.bigint();
  const rs = await Promise.all(
    Array.from({ length: parts }, (_, k) =>
      run(ctx.tool!, ['syn', src.first, String(src.n), dst, String(port), String(seconds), String((round % (stripes / parts)) * parts + k), String(stripes)], {
        netns: ctx.topo.client.ns,
        timeoutMs: seconds * 1000 + 20_000,
      }),
    ),
  );
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  for (const r of rs) if (r.code !== 0) throw new Error(`SYN sender: ${r.stderr.trim()}`);
  const secs = Math.max(...rs.map((r) => (JSON.parse(r.stdout.trim()) as { seconds: number }).seconds), ms / 1000 - 0.5);
  // Let the last packets land before counting.
  await new Promise((res) => setTimeout(res, 200));
  return ((await sink.count()) - before) / secs;
}

async function throughput(ctx: Ctx, seconds: number): Promise<number> {
  const r = await run('iperf3', ['-c', ctx.tputVip, '-p', String(IPERF_PORT), '-t', String(seconds), '-J', '--connect-timeout', '3000'], { netns: ctx.topo.client.ns, timeoutMs: seconds * 1000 + 20_000 });
  const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  if (j.error || typeof j.end?.sum_received?.bits_per_second !== 'number') throw new Error(`iperf3: ${j.error ?? 'no result'}`);
  return j.end.sum_received.bits_per_second;
}

// ---------------------------------------------------------------------------
// The run

export async function runServicesBench(config: { ns: number[]; seconds: number; repeats: number; contenders: string[]; parallel?: number; synSeconds: number; synRounds: number }, log: (s: string) => void): Promise<ServicesReport> {
  const startedAt = new Date().toISOString();
  const results: ServicesRow[] = [];
  try {
    NF_CONNTRACK_MAX = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim()) || NF_CONNTRACK_MAX;
  } catch {
    /* no conntrack module loaded yet: keep the default */
  }
  const tool = await connrateTool();
  if (!tool) log('[services] no C compiler: connection rates with the Node client (slower; it may set the rate)');
  for (const n of config.ns) {
    // Contenders stay set up until every one has been measured: the new-connection rates are
    // taken in interleaved rounds (A, B, C, A, B, C, ...), so a stretch of machine noise hits all.
    const live: Array<{ c: Contender; row: ServicesRow; ctx: Ctx; sink: { count(): Promise<number> }; round: number; say: (s: string) => void }> = [];
    try {
      for (const c of CONTENDERS.filter((x) => config.contenders.includes(x.name))) {
        const row: ServicesRow = { contender: c.name, n, programMs: null, changeMs: null, connPerSecond: null, tcpBitsPerSecond: null, errors: [] };
        results.push(row);
        const say = (s: string) => log(`[services] ${c.name} n=${n}: ${s}`);
        let topo: BenchTopology | undefined;
        let kept = false;
        try {
          topo = await createBenchTopology(`tbs${c.name.slice(0, 2)}`);
          const octets = topo.server.ipv4.split('.');
          const backends = Array.from({ length: BACKENDS }, (_, j) => `${octets[0]}.${octets[1]}.${octets[2]}.${10 + j}`);
          for (const b of backends) await runOk('backend address', 'ip', ['-n', topo.server.ns, 'addr', 'add', `${b}/24`, 'dev', topo.server.ifname]);
          await runOk('tw reuse', 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1'], { netns: topo.client.ns });
          const hello = tool ? startDaemon(tool, ['server', String(BACKEND_PORT)], { netns: topo.server.ns }) : startDaemon(process.execPath, ['-e', HELLO_SERVER, String(BACKEND_PORT)], { netns: topo.server.ns });
          topo.onDestroy(() => hello.stop());
          await hello.ready(/ready/);
          const ctx: Ctx = { topo, tool, parallel: config.parallel ?? 256, backends, vip: (i) => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, tputVip: '10.99.255.254' };
          // The router alone (nothing programmed): SYNs of new tuples forwarded to the server's own address.
          const sink = tool && config.synSeconds > 0 ? await synSink(ctx) : undefined;
          let round = 0;
          if (sink) {
            // (rounds to the server's address: stripes 0..repeats-1)
            const fwd: number[] = [];
            for (let k = 0; k < config.repeats; k++) fwd.push(await synRate(ctx, sink, topo.server.ipv4, BACKEND_PORT, config.synSeconds, round++));
            row.forwardPerSecond = Math.max(...fwd);
            say(`${row.forwardPerSecond.toFixed(0)} SYNs/s forwarded without NAT (runs: ${fwd.map((r) => r.toFixed(0)).join(', ')})`);
          }
          const p = await c.program(ctx, n);
          row.programMs = p.ms;
          if (p.cpuMs !== undefined) row.programCpuMs = p.cpuMs;
          say(`programmed in ${p.ms.toFixed(0)} ms${p.cpuMs !== undefined ? ` (${p.cpuMs.toFixed(0)} ms CPU)` : ''}`);
          const changes: number[] = [];
          for (let k = 0; k < 5; k++) changes.push(await c.change(ctx, Math.floor(((k + 1) * n) / 6)));
          row.changeMs = median(changes);
          if (c.perPacket) row.perPacket = c.perPacket(ctx, n);
          // Best of `repeats` runs: on a shared machine a run that lost its CPU says nothing about the datapath.
          const rates: number[] = [];
          for (let k = 0; k < config.repeats; k++) {
            const rate = await connRate(ctx, ctx.vip(n - 1), config.seconds);
            rates.push(rate.perSecond);
            if (rate.failed) row.errors.push(`connections: ${rate.failed} failed`);
          }
          row.connPerSecond = Math.max(...rates);
          say(`${row.connPerSecond.toFixed(0)} connections/s (runs: ${rates.map((r) => r.toFixed(0)).join(', ')})`);
          const bps: number[] = [];
          for (let k = 0; k < config.repeats; k++) bps.push(await throughput(ctx, config.seconds));
          row.tcpBitsPerSecond = Math.max(...bps);
          say(`${(row.tcpBitsPerSecond / 1e9).toFixed(2)} Gbit/s`);
          if (sink) {
            // The VIP rounds send to another destination: their tuples are new whatever stripes they use.
            live.push({ c, row, ctx, sink, round: 0, say });
            kept = true;
          } else {
            await c.teardown(ctx);
          }
        } catch (e) {
          row.errors.push(e instanceof Error ? e.message : String(e));
          say(`FAILED: ${row.errors.at(-1)}`);
        } finally {
          if (!kept) await topo?.close();
        }
      }
      // New connections through the last VIP: every SYN a tuple the datapath has not seen.
      const syn = new Map<ServicesRow, number[]>();
      for (let k = 0; k < config.synRounds; k++) {
        for (const l of live) {
          if (l.row.errors.length) continue;
          try {
            const r = await synRate(l.ctx, l.sink, l.ctx.vip(n - 1), SVC_PORT, config.synSeconds, l.round++);
            syn.set(l.row, [...(syn.get(l.row) ?? []), r]);
          } catch (e) {
            l.row.errors.push(e instanceof Error ? e.message : String(e));
            l.say(`FAILED: ${l.row.errors.at(-1)}`);
          }
        }
      }
      for (const l of live) {
        const runs = syn.get(l.row);
        if (!runs?.length) continue;
        l.row.newConnPerSecond = Math.max(...runs);
        // Null when the forwarding rate, taken at another moment, came out lower (machine noise).
        if (l.row.forwardPerSecond) {
          const cost = 1e9 / l.row.newConnPerSecond - 1e9 / l.row.forwardPerSecond;
          l.row.newConnCostNs = cost > 0 ? cost : null;
        }
        l.say(`${l.row.newConnPerSecond.toFixed(0)} new connections/s through the VIP (SYNs; runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`);
      }
    } finally {
      for (const l of live) {
        try {
          await l.c.teardown(l.ctx);
        } catch {
          /* the namespaces go anyway */
        }
        await l.ctx.topo.close();
      }
    }
  }
  return { schema: 'tsbpf-bench-services/1', startedAt, finishedAt: new Date().toISOString(), host: { cpus: os.cpus().length, kernel: os.release(), connClient: tool ? 'bench/tools/connrate.c' : 'node' }, config, results };
}

const fmt = (v: number) => `${+v.toPrecision(3)}`;

const CHARTS: Array<ChartSpec & { pick: (r: ServicesRow) => number | null | undefined }> = [
  { file: 'services-program.svg', title: 'Programming N services (10 backends each)', subtitle: 'wall time, ms (lower is better)', pick: (r) => r.programMs, format: fmt, baseline: false, value: () => null },
  { file: 'services-change.svg', title: 'Changing one backend', subtitle: 'median ms (lower is better)', pick: (r) => r.changeMs, format: fmt, baseline: false, value: () => null },
  { file: 'services-connrate.svg', title: 'Whole TCP connections per second through a VIP', subtitle: 'the last of N services, connect/read/close client (higher is better)', pick: (r) => r.connPerSecond, format: fmt, baseline: false, value: () => null },
  { file: 'services-newconn.svg', title: 'New connections per second through a VIP', subtitle: 'first packets (SYNs) of new tuples to the last of N services (higher is better)', pick: (r) => r.newConnPerSecond, format: fmt, baseline: false, value: () => null },
];

export function writeServicesResults(report: ServicesReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  const files = [path.join(dir, `services-${stamp}.json`), path.join(dir, 'services-latest.json')];
  for (const f of files) writeFileSync(f, JSON.stringify(report, null, 2) + '\n');
  // Reuse the bench's chart renderer: rows in its shape, the value picked per chart.
  const contenders = [...new Set(report.results.map((r) => r.contender))];
  for (const spec of CHARTS) {
    const rows: ResultRow[] = report.results.map((r) => ({ contender: r.contender, n: r.n, tcp: null, udp: null, loadMs: null, addRule: null, memory: null, perPacketNs: spec.pick(r) ?? null, details: {}, errors: [] }));
    const cfg: BenchConfig = { quick: false, ns: report.config.ns, contenders, seconds: report.config.seconds, repeats: 1, retries: 0, memoryCycles: 0, addRepeats: 0 };
    const svg = renderChart({ results: rows, contenders: contenders.map((name) => ({ name, description: name })), config: cfg, host: report.host, startedAt: report.startedAt }, { ...spec, value: (row) => row.perPacketNs });
    if (svg) {
      // The shared renderer labels N as filter rules; here N counts services.
      writeFileSync(path.join(dir, spec.file), svg.replace(/N \(rules that do not match the traffic, log scale\)/, 'N services of 10 backends (log scale)'));
      files.push(path.join(dir, spec.file));
    }
  }
  return files;
}

export function formatServicesTable(report: ServicesReport): string {
  const lines = ['contender   N       program ms  change ms  conn/s    new/s     ns/new  Gbit/s  per-packet ns (tsbpf)'];
  for (const r of report.results) {
    const pp = r.perPacket ? Object.entries(r.perPacket).map(([k, v]) => `${k}=${v}`).join(' ') : '';
    lines.push(
      [
        r.contender.padEnd(11),
        String(r.n).padEnd(7),
        (r.programMs?.toFixed(0) ?? '-').padStart(10) + (r.programCpuMs !== undefined ? ` (cpu ${r.programCpuMs.toFixed(0)})` : ''),
        (r.changeMs?.toFixed(2) ?? '-').padStart(9),
        (r.connPerSecond?.toFixed(0) ?? '-').padStart(8),
        (r.newConnPerSecond?.toFixed(0) ?? '-').padStart(8),
        (r.newConnCostNs?.toFixed(0) ?? '-').padStart(7),
        (r.tcpBitsPerSecond ? (r.tcpBitsPerSecond / 1e9).toFixed(2) : '-').padStart(7),
        pp,
        r.errors.length ? `errors: ${r.errors.join('; ')}` : '',
      ].join('  '),
    );
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const ns = (opt('--n') ?? (quick ? '10,1000,10000' : '10,100,1000,10000')).split(',').map(Number);
  const seconds = Number(opt('--seconds') ?? (quick ? 2 : 4));
  const repeats = Number(opt('--repeats') ?? (quick ? 2 : 3));
  const parallel = Number(opt('--parallel') ?? 256);
  const synSeconds = Number(opt('--syn-seconds') ?? 1);
  const synRounds = Number(opt('--syn-rounds') ?? (quick ? 3 : 5));
  const contenders = (opt('--contenders') ?? 'tsbpf,iptables,nftables').split(',');
  const out = opt('--out') ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
  const cleanup = () => {
    killAllChildren();
    destroyAllTopologies();
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const report = await runServicesBench({ ns, seconds, repeats, contenders, parallel, synSeconds, synRounds }, (s) => process.stderr.write(`${s}\n`));
    const files = writeServicesResults(report, out);
    process.stdout.write(formatServicesTable(report));
    process.stderr.write(`wrote ${files.join(', ')}\n`);
    return report.results.some((r) => r.errors.length) ? 1 : 0;
  } finally {
    cleanup();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().then((code) => process.exit(code));
}
