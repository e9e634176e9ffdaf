/**
 * Live rule updates under traffic: a router forwards a continuous TCP stream
 * (every byte checked against a pattern) and numbered UDP datagrams (every
 * number must arrive) through a tsbpf filter at the router's tc-ingress on
 * both sides, while the filter's rules change 1,000 times by map update and
 * 20 times by regenerating the program. Nothing the rules allow is dropped:
 * the counting catch-all behind the allow rule stays at 0 (so the allow rule
 * was visible to every packet, including while it was being replaced), no
 * non-matching rule ever counts, the filter's error counters stay 0, and the
 * streams arrive whole.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { evaluate, EvalState, filter, match, packet, rule, Rng, type RuleLike } from '../../sdk/index.js';
import { setSourceCapture } from '../../sdk/source.js';
import { load, type LoadedFilter, type RuleUpdate } from '../../runtime/index.js';
import { createRouter, type RouterTopology } from '../net/topology.js';
import { requireKernel } from '../kernel.js';

const BASE_RULES = 2000;
const MAP_UPDATES = 1000;
const SHAPE_CHANGES = 20;

/** Receives one TCP stream, checks byte i == (i * 7 + 13) & 255, prints {bytes, bad} at the end. */
const TCP_SINK = `
const net = require('node:net');
let bytes = 0, bad = -1;
const s = net.createServer((c) => {
  c.on('data', (d) => { for (let i = 0; i < d.length; i++) { if (bad < 0 && d[i] !== ((bytes + i) * 7 + 13) % 256) bad = bytes + i; } bytes += d.length; });
  c.on('end', () => { console.log(JSON.stringify({ bytes, bad })); process.exit(0); });
  c.on('error', (e) => { console.log(JSON.stringify({ bytes, bad, error: e.code })); process.exit(0); });
});
s.listen(Number(process.argv[1]), () => console.log('ready'));
`;

/** Writes the pattern to host:port as fast as the connection takes it, until SIGTERM; then ends the stream. */
const TCP_SOURCE = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
let off = 0, stop = false;
const s = net.connect({ host, port: Number(port) }, () => {
  const pump = () => {
    while (!stop) {
      const b = Buffer.alloc(65536);
      for (let i = 0; i < b.length; i++) b[i] = ((off + i) * 7 + 13) % 256;
      off += b.length;
      if (!s.write(b)) return s.once('drain', pump);
    }
    s.end(() => { console.log(JSON.stringify({ sent: off })); process.exit(0); });
  };
  console.log('ready');
  pump();
});
s.on('error', (e) => { console.log(JSON.stringify({ sent: off, error: e.code })); process.exit(0); });
process.on('SIGTERM', () => { stop = true; });
`;

/** Counts distinct sequence numbers of datagrams; prints {got, max} on SIGTERM. */
const UDP_SINK = `
const dgram = require('node:dgram');
const seen = new Set(); let max = -1;
const s = dgram.createSocket('udp4');
s.on('message', (m) => { const n = m.readUInt32BE(0); seen.add(n); if (n > max) max = n; });
s.bind(Number(process.argv[1]), () => { try { s.setRecvBufferSize(4 << 20); } catch {} console.log('ready'); });
process.on('SIGTERM', () => { console.log(JSON.stringify({ got: seen.size, max })); process.exit(0); });
`;

/** Sends numbered datagrams, 4 every millisecond, until SIGTERM; prints {sent}. */
const UDP_SOURCE = `
const dgram = require('node:dgram');
const [host, port] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
let n = 0;
const t = setInterval(() => { for (let k = 0; k < 4; k++) { const b = Buffer.alloc(64); b.writeUInt32BE(n++, 0); s.send(b, Number(port), host); } }, 1);
console.log('ready');
process.on('SIGTERM', () => { clearInterval(t); setTimeout(() => { console.log(JSON.stringify({ sent: n })); process.exit(0); }, 50); });
`;

interface Proc {
  proc: ChildProcess;
  ready: Promise<void>;
  /** The last JSON line it printed, once it has exited. */
  result: Promise<Record<string, number | string>>;
}

function run(netns: string, script: string, args: string[]): Proc {
  const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let readyFn!: () => void;
  const ready = new Promise<void>((resolve, reject) => {
    readyFn = resolve;
    setTimeout(() => reject(new Error(`${script.slice(0, 40)}... did not start`)), 10_000).unref();
  });
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('ready')) readyFn();
  });
  const result = new Promise<Record<string, number | string>>((resolve) => {
    proc.on('exit', () => {
      const line = out.split('\n').filter((l) => l.startsWith('{')).pop();
      resolve(line ? (JSON.parse(line) as Record<string, number | string>) : {});
    });
  });
  return { proc, ready, result };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (requireKernel('live rule updates under traffic')) {
  test(`${MAP_UPDATES} map updates and ${SHAPE_CHANGES} program swaps under a TCP stream and numbered UDP: nothing allowed is lost`, async () => {
    let topo: RouterTopology | undefined;
    let h: LoadedFilter | undefined;
    const procs: Proc[] = [];
    try {
      topo = createRouter({ prefix: 'tl' });
      const { client, server } = topo;
      const net16 = `${client.ipv4.split('.').slice(0, 2).join('.')}.0.0/16` as `${number}.${number}.${number}.${number}/${number}`;
      const r = new Rng(77);
      const octets = client.ipv4.split('.');
      const half = (i: number) => `${octets[0]}.${octets[1]}.${i * 128}.0/17` as `${number}.${number}.${number}.${number}/${number}`;
      const blocked = (i: number) => `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}` as `${number}.${number}.${number}.${number}`;
      const nonMatching = (i: number): RuleLike =>
        rule(match.ip4.src(blocked(i)).and(i % 2 ? match.udp.dport(1024 + (i % 5000)) : match.tcp.dport(1024 + (i % 5000)))).count().drop();
      const was = setSourceCapture(false);
      let f: ReturnType<typeof filter>;
      try {
        f = filter('live', { hook: 'tc-ingress' }, ({ chain }) => {
          const rules: RuleLike[] = [rule(match.eth.type('arp')).accept().named('arp'), rule(match.ip6).accept().named('v6')];
          for (let i = 0; i < BASE_RULES; i++) rules.push(nonMatching(i).named(`n${i}`));
          rules.push(rule(match.ip4.src(net16).and(match.ip4.dst(net16))).count().accept().named('allow'));
          // Behind the allow rule: what reaches it is traffic the filter lost.
          rules.push(rule(match.ip4.src(net16)).count().drop().named('lost'));
          return chain('forward', { policy: 'drop' }, rules);
        });
      } finally {
        setSourceCapture(was);
      }
      h = load(f);
      assert.ok(h.compiled.classification.byRule.size >= BASE_RULES, 'the ruleset is classified');
      h.attach({ hook: 'tc-ingress', ifname: topo.router.toClient.ifname, netns: topo.router.ns });
      h.attach({ hook: 'tc-ingress', ifname: topo.router.toServer.ifname, netns: topo.router.ns });

      const tcpSink = run(server.ns, TCP_SINK, ['5301']);
      const udpSink = run(server.ns, UDP_SINK, ['5302']);
      procs.push(tcpSink, udpSink);
      await Promise.all([tcpSink.ready, udpSink.ready]);
      const tcpSource = run(client.ns, TCP_SOURCE, [server.ipv4, '5301']);
      const udpSource = run(client.ns, UDP_SOURCE, [server.ipv4, '5302']);
      procs.push(tcpSource, udpSource);
      await Promise.all([tcpSource.ready, udpSource.ready]);
      await sleep(300);

      // The changes: non-matching rules added, removed and replaced anywhere;
      // the allow rule swapped for equivalent ones; an earlier accept for the
      // flow added and removed; every 50 changes a shape change (a TTL rule
      // comes or goes, which regenerates the program).
      const live: string[] = [];
      let serial = BASE_RULES;
      const results: RuleUpdate[] = [];
      let reloads = 0;
      const allowForms = [
        () => rule(match.ip4.src(net16).and(match.ip4.dst(net16))).count().accept(),
        () => rule(match.ip4.dst(net16).and(match.ip4.src(net16))).count().accept(),
        () => rule(match.ip4.src(net16).and(match.ip4.dst([net16, '192.0.2.0/24']))).count().accept(),
        // Other keys altogether: swapping to or from it removes entries and adds others, in one switch.
        () => rule(match.ip4.src([half(0), half(1)]).and(match.ip4.dst(net16))).count().accept(),
      ];
      let ttl = false;
      let allowForm = 0;
      for (let i = 0; i < MAP_UPDATES + SHAPE_CHANGES; i++) {
        if (i % 50 === 49 && reloads < SHAPE_CHANGES) {
          reloads++;
          const u = ttl ? h.rules.remove('ttl') : h.rules.add(rule(match.ip.ttl.lt(2)).count().drop().named('ttl'), { position: { after: 'v6' } });
          ttl = !ttl;
          assert.is(u.kind, 'reload', `shape change ${reloads} regenerates the program`);
          results.push(u);
          await sleep(20); // let the event loop breathe: traffic processes print nothing meanwhile
          continue;
        }
        const k = r.int(0, 9);
        let u: RuleUpdate;
        if (k <= 3 || live.length < 10) {
          const name = `x${serial}`;
          const position = r.chance(0.5) ? { before: 'allow' } : { after: `n${r.int(0, BASE_RULES - 1)}` };
          u = h.rules.add(nonMatching(serial++).named(name), { position });
          live.push(name);
        } else if (k === 4) {
          u = h.rules.remove(live.splice(r.int(0, live.length - 1), 1)[0]!);
        } else if (k === 5) {
          u = h.rules.replace(live[r.int(0, live.length - 1)]!, nonMatching(serial++));
        } else if (k <= 8) {
          // Every other swap changes the allow rule's keys entirely: a switch that is not atomic shows here.
          allowForm = allowForm === 3 ? r.int(0, 2) : 3;
          u = h.rules.replace('allow', allowForms[allowForm]!());
        } else {
          u = h.rules.update([
            { op: 'add', rule: rule(match.ip4.src(client.ipv4 as `${number}.${number}.${number}.${number}`).and(match.udp.dport(5302))).count().accept().named('early'), place: { position: { before: 'n0' } } },
            { op: 'remove', rule: 'early' },
          ]);
        }
        assert.is(u.kind, 'map', `change ${i} is a map update`);
        results.push(u);
      }
      await sleep(300);

      tcpSource.proc.kill('SIGTERM');
      udpSource.proc.kill('SIGTERM');
      const sent = await tcpSource.result;
      const udpSent = await udpSource.result;
      await sleep(300);
      udpSink.proc.kill('SIGTERM');
      const got = await tcpSink.result;
      const udpGot = await udpSink.result;

      assert.is(results.filter((u) => u.kind === 'map').length, MAP_UPDATES);
      assert.is(results.filter((u) => u.kind === 'reload').length, SHAPE_CHANGES);
      assert.ok(!sent['error'] && !got['error'], `TCP stream ended cleanly (${JSON.stringify(sent)} / ${JSON.stringify(got)})`);
      assert.is(got['bad'], -1, 'every byte of the TCP stream arrived as sent');
      assert.is(got['bytes'], sent['sent'], 'the whole TCP stream arrived');
      assert.ok(Number(got['bytes']) > 1_000_000, `${got['bytes']} bytes went through`);
      assert.ok(Number(udpSent['sent']) > 1000, `${udpSent['sent']} datagrams sent`);
      assert.is(udpGot['got'], udpSent['sent'], 'every numbered datagram arrived');

      const counters = new Map(h.counters().map((c) => [c.name, c.packets]));
      assert.is(counters.get('lost'), 0n, 'no packet of the flow fell past the allow rule');
      for (const [name, n] of counters) if (/^(n|x)\d+$/.test(name)) assert.is(n, 0n, `non-matching rule ${name} matched nothing`);
      assert.ok((counters.get('allow') ?? 0n) > 1000n, `the allow rule counted ${counters.get('allow')} packets`);
      const errors = h.object.maps['tsbpf_errors']!;
      for (const [, perCpu] of errors.raw.lookupBatch()) assert.ok(perCpu.every((b) => b === 0), 'no internal failure (tail call, state, classifier)');

      // The ruleset the handle reports is the one the kernel runs.
      const def = h.definition;
      const state = new EvalState(def);
      for (const [src, dport] of [[client.ipv4, 5301], [blocked(3), 1027], ['10.9.9.9', 80]] as const) {
        const data = packet().ipv4({ src, dst: server.ipv4 }).tcp({ sport: 40000, dport }).build();
        assert.is(h.testRun('tc-ingress', data).filterVerdict, evaluate(def, data, { state }).verdict, `${src}:${dport}`);
      }
    } finally {
      for (const p of procs) p.proc.kill('SIGKILL');
      h?.close();
      topo?.destroy();
    }
  });
}

test.run();
