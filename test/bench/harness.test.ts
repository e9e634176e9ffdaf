/**
 * The benchmark harness without the kernel: rulesets each contender loads,
 * ratios to the no-filter run, the table, the charts, the command line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderChart, renderCharts, CHARTS } from '../../bench/charts.js';
import { contenders } from '../../bench/contenders/index.js';
import { iptablesRuleset } from '../../bench/contenders/iptables.js';
import { nftLinearRuleset, nftSetRuleset } from '../../bench/contenders/nftables.js';
import { parseArgs, UsageError } from '../../bench/options.js';
import { udpTestFrame, tcpTestFrame } from '../../bench/packets.js';
import { computeRatios, formatTable, type BenchReport, type ResultRow } from '../../bench/report.js';
import { nonMatchingRule } from '../../bench/rules.js';
import type { BenchTopology } from '../../bench/topology.js';

const topo = { trafficCidr: '10.7.0.0/16' };

test('non-matching rules: distinct /32 sources in 172.16.0.0/12, tcp and udp alternating', () => {
  assert.equal(nonMatchingRule(0), { saddr: '172.16.0.1', proto: 'tcp', dport: 1024 });
  assert.equal(nonMatchingRule(1), { saddr: '172.16.0.2', proto: 'udp', dport: 1025 });
  assert.equal(nonMatchingRule(99_999).saddr, '172.17.134.160');
  assert.throws(() => nonMatchingRule(-1), /out of range/);
});

test('iptables-restore input: policy DROP, N rules, then the accept rule last', () => {
  const lines = iptablesRuleset(topo, 3).trim().split('\n');
  assert.equal(lines.slice(0, 4), ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]']);
  assert.equal(lines[4], '-A FORWARD -s 172.16.0.1/32 -p tcp -m tcp --dport 1024 -j DROP');
  assert.equal(lines.filter((l) => l.startsWith('-A FORWARD')).length, 4);
  assert.equal(lines.at(-2), '-A FORWARD -s 10.7.0.0/16 -d 10.7.0.0/16 -j ACCEPT');
  assert.equal(lines.at(-1), 'COMMIT');
});

test('nft rulesets: a linear chain of N rules, or one set of N elements', () => {
  const linear = nftLinearRuleset(topo, 2);
  assert.match(linear, /policy drop;\n {4}ip saddr 172\.16\.0\.1 tcp dport 1024 drop\n {4}ip saddr 172\.16\.0\.2 udp dport 1025 drop\n {4}ip saddr 10\.7\.0\.0\/16 ip daddr 10\.7\.0\.0\/16 accept/);
  const set = nftSetRuleset(topo, 2);
  assert.match(set, /elements = \{ 172\.16\.0\.1 \. tcp \. 1024, 172\.16\.0\.2 \. udp \. 1025 \}/);
  assert.match(set, /ip saddr \. meta l4proto \. th dport @blocked drop/);
  assert.not.match(nftSetRuleset(topo, 0), /elements/, 'an empty set has no elements line');
});

test('test frames: the 60-byte UDP frame and a TCP ACK as they reach the router, with valid checksums', () => {
  const fake = {
    client: { mac: '02:00:00:00:00:01', ipv4: '10.7.1.2' },
    server: { ipv4: '10.7.2.2' },
    router: { toClient: { mac: '02:00:00:00:00:02' } },
    iperfPort: 5201,
  } as unknown as BenchTopology;
  const udp = udpTestFrame(fake);
  assert.is(udp.length, 14 + 20 + 8 + 18);
  assert.is(udp.toString('hex', 0, 6), '020000000002', 'destination: the router');
  const sum = (b: Buffer) => {
    let s = 0;
    for (let i = 0; i < b.length; i += 2) s += b.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    return s;
  };
  assert.is(sum(udp.subarray(14, 34)), 0xffff, 'IPv4 header checksum');
  const tcp = tcpTestFrame(fake);
  assert.is(tcp[14 + 9], 6);
  assert.is(tcp[14 + 20 + 13], 0x10, 'ACK');
});

function row(contender: string, n: number, bps: number, pps: number): ResultRow {
  return {
    contender,
    n,
    tcp: { bitsPerSecond: bps, samples: [bps], senderCpuPercent: 99, ratio: null },
    udp: { packetsPerSecond: pps, samples: [pps], sentPerSecond: pps, deliveredPerSecond: pps / 2, lostPercent: 50, senderCpuPercent: 99, ratio: null, addedNsPerPacket: null },
    loadMs: contender === 'none' ? null : 10 + n / 100,
    addRule: contender === 'none' ? null : { medianMs: 3, maxMs: 4, samples: [3, 4] },
    memory: contender === 'none' ? null : { bytes: 1000 + n * 300, method: 'meminfo' },
    perPacketNs: null,
    details: {},
    errors: [],
  };
}

function sample(): BenchReport {
  const results = [row('none', 0, 10e9, 200e3), row('iptables-legacy', 0, 10e9, 200e3), row('none', 10_000, 8e9, 100e3), row('iptables-legacy', 10_000, 4e9, 10e3)];
  computeRatios(results);
  return {
    schema: 'tsbpf-bench/1',
    runId: 'abc123',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:01:00.000Z',
    elapsedSeconds: 60,
    host: { kernel: '6.18', cpus: 2 },
    config: { quick: true, ns: [0, 10_000], contenders: ['none', 'iptables-legacy'], seconds: 1, repeats: 1, retries: 0, memoryCycles: 0, addRepeats: 2 },
    contenders: [
      { name: 'none', description: '' },
      { name: 'iptables-legacy', description: '' },
    ],
    skipped: [],
    results,
  };
}

test('ratios are to the no-filter run at the same N; +ns/pkt is what the filter adds to each packet', () => {
  const r = sample().results;
  assert.is(r[0]!.tcp!.ratio, 1);
  assert.is(r[3]!.tcp!.ratio, 0.5, 'against none at N=10,000 (8 Gbit/s), not at N=0');
  assert.is(r[3]!.udp!.ratio, 0.1);
  assert.is(Math.round(r[3]!.udp!.addedNsPerPacket!), 1e9 / 10e3 - 1e9 / 100e3);
});

test('the table has a line per contender and N, with ratios', () => {
  const table = formatTable(sample());
  assert.match(table, /^contender\s+N\s+TCP Gbit\/s\s+ratio\s+UDP kpps/);
  assert.match(table, /iptables-legacy\s+10,000\s+4\.00\s+0\.500\s+10\.0\s+0\.100\s+90000\s+110\s+3\.00\s+-\s+2\.9 MiB\s+-/);
});

test('charts: one SVG per metric, a line per contender, log x with N=0 set apart; per-packet only with data', () => {
  const files = renderCharts(sample());
  assert.equal([...files.keys()], ['tcp-throughput.svg', 'udp-rate.svg', 'load-time.svg', 'add-rule.svg', 'memory.svg']);
  const udp = files.get('udp-rate.svg')!;
  assert.match(udp, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(udp, /<polyline [^>]*stroke="#d62728"/);
  assert.match(udp, />no filter</, 'ratios get the reference line at 1');
  assert.match(udp, />10k</);
  assert.match(udp, /log scale/, 'a 10x spread and the reference line at 1 -> log y');
  assert.ok(udp.trim().endsWith('</svg>'));
  const perPacket = CHARTS.find((c) => c.file === 'per-packet.svg')!;
  assert.is(renderChart(sample(), perPacket), null);
});

test('command line: full and quick defaults, the no-filter run always first, bad input rejected', () => {
  const full = parseArgs([]).config;
  assert.equal(full.ns, [0, 100, 1000, 10_000, 100_000]);
  assert.equal(full.contenders, contenders.map((c) => c.name));
  const quick = parseArgs(['--quick']).config;
  assert.equal(quick.ns, [0, 1000, 10_000]);
  assert.ok(quick.seconds < full.seconds);
  const picked = parseArgs(['--contenders', 'nft-set,none', '--n', '100,0', '--seconds', '1']).config;
  assert.equal(picked.contenders, ['none', 'nft-set']);
  assert.equal(picked.ns, [0, 100]);
  assert.throws(() => parseArgs(['--contenders', 'pf']), (e: unknown) => e instanceof UsageError && /unknown contender 'pf'/.test(e.message));
  assert.throws(() => parseArgs(['--n', '-5']), (e: unknown) => e instanceof UsageError);
  assert.throws(() => parseArgs(['--seconds', '0']), (e: unknown) => e instanceof UsageError);
});

test.run();
