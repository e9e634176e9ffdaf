/**
 * Services through real traffic: a client namespace, a router running the
 * services program on every interface (tc ingress and egress), and four
 * backend namespaces with named TCP and UDP echo servers. Connections to a
 * VIP spread over the backends by weight, replies come back from the VIP,
 * megabytes cross DNAT and SNAT intact, removing a backend leaves its
 * connections alone, a client that is its own backend reaches itself, ICMP
 * errors reach the right socket through NAT, conntrack entries show up and
 * expire, and an exhausted SNAT range is counted and reported.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { udpSend } from '../net/traffic.js';
import { serviceDef, services, type ServiceSpec, type ServicesDefinition } from '../../sdk/services.js';
import { loadServices, type LoadedServices } from '../../runtime/services.js';
import { createLbTopology, holdConnections, namedServer, spread, transfer, type LbTopology, type NsProcess } from './net.js';

const PORT = 8080;
const UDP_PORT = 5353;

interface Ctx {
  topo: LbTopology;
  servers: NsProcess[];
  /** One services program on every router interface, reprogrammed by each test (no reload). */
  lb: LoadedServices;
}

const ctx = {} as Ctx;
const t = suite<Ctx>('services through real traffic', ctx);

type Stats = ReturnType<LoadedServices['stats']>;

/**
 * Give the running program this definition's services, NAT rules and
 * timeouts, with an empty conntrack table; `fn` gets the counters' growth
 * since then.
 */
async function withServices(def: ServicesDefinition, fn: (lb: LoadedServices, stats: () => Stats) => Promise<void> | void): Promise<void> {
  const lb = ctx.lb;
  lb.reprogram(def);
  lb.ctFlush();
  const before = lb.stats();
  const delta = () => {
    const now = lb.stats();
    return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - before[k as keyof Stats]])) as Stats;
  };
  await fn(lb, delta);
}

const backends = (n: number, weights: number[] = []) => ctx.topo.backends.slice(0, n).map((b, i) => ({ addr: b.ipv4, port: PORT, weight: weights[i] ?? 1 }));

if (requireKernel('stateful: services through real traffic')) {
  t.before(async () => {
    ctx.topo = createLbTopology(4);
    ctx.servers = [];
    try {
      for (const [i, b] of ctx.topo.backends.entries()) {
        ctx.servers.push(await namedServer(b.ns, `b${i}`, PORT, 'tcp', 6));
        ctx.servers.push(await namedServer(b.ns, `b${i}`, UDP_PORT, 'udp', 6));
      }
      // The client is a backend too (hairpin).
      ctx.servers.push(await namedServer(ctx.topo.client.ns, 'client', PORT, 'tcp', 6));
      ctx.lb = loadServices(services('lbt', { conntrack: { maxEntries: 16384 } }));
      const { router } = ctx.topo;
      for (const h of [router.toClient, ...router.toBackends]) ctx.lb.attach({ ifname: h.ifname, netns: router.ns });
    } catch (e) {
      for (const s of ctx.servers) s.stop();
      ctx.lb?.close();
      ctx.topo.destroy();
      throw e;
    }
  });

  let started = 0;
  t.before.each(() => {
    started = Date.now();
  });
  t.after.each(() => {
    if (process.env.TSBPF_TIMING) process.stderr.write(`  ${Date.now() - started} ms\n`);
  });

  t.after(() => {
    for (const s of ctx.servers ?? []) s.stop();
    ctx.lb?.close();
    ctx.topo?.destroy();
  });

  t('TCP to a Maglev VIP reaches every backend in proportion to its weight', async () => {
    const vip = ctx.topo.vip(1);
    const def = services('lbt', { conntrack: { maxEntries: 16384 } }, (s) => s.service('web', { vip, port: 80, mode: 'maglev', backends: backends(4, [1, 1, 1, 2]) }));
    await withServices(def, async (lb, stats) => {
      const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 300);
      assert.is(r.failed, 0, 'every connection completed its handshake (replies came back from the VIP)');
      const share = (name: string) => (r.counts[name] ?? 0) / 300;
      for (const b of ['b0', 'b1', 'b2']) assert.ok(Math.abs(share(b) - 0.2) < 0.09, `${b} got ${r.counts[b]} of 300 (expected about 60)`);
      assert.ok(Math.abs(share('b3') - 0.4) < 0.11, `b3 (weight 2) got ${r.counts['b3']} of 300 (expected about 120)`);
      assert.equal(Object.keys(r.peers).every((p) => p.startsWith(`${vip}:`)), true, 'the client saw only the VIP');
      const st = stats();
      assert.ok(st.lbNew >= 300n, `lbNew ${st.lbNew}`);
      assert.is(st.dropError, 0n);
    });
  });

  t('UDP to a random-mode VIP: every backend answers, and every answer comes from the VIP', async () => {
    const vip = ctx.topo.vip(2);
    const def = services('lbu', { conntrack: { maxEntries: 16384 } }, (s) =>
      s.service('dns', { vip, port: 53, protocol: 'udp', mode: 'random', backends: ctx.topo.backends.map((b) => ({ addr: b.ipv4, port: UDP_PORT })) }),
    );
    await withServices(def, async () => {
      const r = await spread(ctx.topo.client.ns, vip, 53, 'udp', 200);
      assert.is(r.failed, 0);
      for (const b of ['b0', 'b1', 'b2', 'b3']) assert.ok((r.counts[b] ?? 0) > 20, `${b} answered ${r.counts[b] ?? 0} of 200`);
      assert.ok(Object.keys(r.peers).every((p) => p === `${vip}:53`), `replies came from ${Object.keys(r.peers).slice(0, 3).join(', ')}`);
    });
  });

  t('IPv6: TCP to a v6 VIP spreads over the backends', async () => {
    const vip = ctx.topo.vip6(3);
    const def = services('lb6', { conntrack: { maxEntries: 16384 } }, (s) => s.service('web6', { vip, port: 80, backends: ctx.topo.backends.map((b) => ({ addr: b.ipv6, port: PORT })) }));
    await withServices(def, async () => {
      const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 120);
      assert.is(r.failed, 0);
      assert.is(Object.keys(r.counts).length, 4, `backends reached: ${JSON.stringify(r.counts)}`);
    });
  });

  t('1 MB through DNAT (a VIP) and through SNAT (masquerade) arrives byte for byte', async () => {
    const vip = ctx.topo.vip(4);
    const { router } = ctx.topo;
    const def = services('lbm', { conntrack: { maxEntries: 16384 } }, (s) => {
      s.service('web', { vip, port: 80, backends: backends(2) });
      for (const h of router.toBackends) s.masquerade({ out: h.ifname, from: `${ctx.topo.client.ipv4}/32` });
    });
    await withServices(def, async (lb, stats) => {
      const viaVip = transfer(ctx.topo.client.ns, vip, 80, 1 << 20);
      assert.ok(viaVip.ok, `through DNAT: ${JSON.stringify(viaVip)}`);
      const b3 = ctx.topo.backends[3]!;
      const viaSnat = transfer(ctx.topo.client.ns, b3.ipv4, PORT, 1 << 20);
      assert.ok(viaSnat.ok, `through SNAT: ${JSON.stringify(viaSnat)}`);
      // Both connections were masqueraded to the router's address on the way out.
      const conns = lb.conntrack({ protocol: 'tcp', src: ctx.topo.client.ipv4 });
      const snatted = conns.filter((c) => c.flags.includes('snat'));
      assert.ok(snatted.length >= 2, `masqueraded connections: ${snatted.length}`);
      assert.ok(snatted.some((c) => c.translated.dst === b3.ipv4 && c.translated.src === router.toBackends[3]!.ipv4), 'the direct one left with the router address');
      assert.ok(snatted.some((c) => c.original.dst === vip && c.flags.includes('dnat')), 'the VIP one was DNATed and SNATed');
      const big = conns.find((c) => c.original.dst === vip)!;
      assert.ok(big.bytes.original > 1_000_000n && big.bytes.reply > 1_000_000n, `counted ${big.bytes.original} / ${big.bytes.reply} bytes`);
    });
  });

  t('removing a backend keeps its established connections; new ones avoid it', async () => {
    const vip = ctx.topo.vip(5);
    const def = services('lbr', { conntrack: { maxEntries: 16384 } }, (s) => s.service('web', { vip, port: 80, backends: backends(4) }));
    await withServices(def, async (lb, stats) => {
      const held = await holdConnections(ctx.topo.client.ns, vip, 80, 12);
      try {
        assert.ok(held.names.every((n) => n !== null), `all connected: ${JSON.stringify(held.names)}`);
        const victim = held.names[0]!;
        const idx = Number(victim.slice(1));
        assert.ok(lb.removeBackend('web', ctx.topo.backends[idx]!.ipv4, PORT));
        for (const [i, n] of held.names.entries()) if (n === victim) assert.ok(await held.echo(i), `connection ${i} to ${victim} still echoes`);
        const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 60);
        assert.is(r.failed, 0);
        assert.is(r.counts[victim], undefined, `new connections avoid ${victim}: ${JSON.stringify(r.counts)}`);
        // Not ready: the same, by readiness instead of removal.
        const other = held.names.find((n) => n !== victim)!;
        lb.setBackend('web', { addr: ctx.topo.backends[Number(other.slice(1))]!.ipv4, port: PORT, ready: false });
        for (const [i, n] of held.names.entries()) if (n === other) assert.ok(await held.echo(i), `connection ${i} to ${other} survives not-ready`);
        const r2 = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 40);
        assert.is(r2.counts[other], undefined, `no new connections to a backend that is not ready: ${JSON.stringify(r2.counts)}`);
      } finally {
        held.close();
      }
    });
  });

  t('session affinity: one client keeps one backend', async () => {
    const vip = ctx.topo.vip(6);
    const def = services('lba', { conntrack: { maxEntries: 16384 } }, (s) => s.service('web', { vip, port: 80, affinity: { timeout: 60 }, backends: backends(4) }));
    await withServices(def, async (lb, stats) => {
      const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 30, { concurrency: 1 });
      assert.is(r.failed, 0);
      assert.is(Object.keys(r.counts).length, 1, `one backend: ${JSON.stringify(r.counts)}`);
      assert.ok(stats().affinity >= 29n);
    });
  });

  t('hairpin: a client that is the backend reaches itself through the VIP', async () => {
    const vip = ctx.topo.vip(7);
    const def = services('lbh', { conntrack: { maxEntries: 16384 } }, (s) => s.service('self', { vip, port: 80, backends: [{ addr: ctx.topo.client.ipv4, port: PORT }] }));
    await withServices(def, async (lb, stats) => {
      const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 5, { concurrency: 1 });
      assert.equal(r.counts, { client: 5 });
      assert.ok(stats().hairpin >= 5n);
      const x = transfer(ctx.topo.client.ns, vip, 80, 256 * 1024);
      assert.ok(x.ok, JSON.stringify(x));
    });
  });

  t('ICMP errors through DNAT and SNAT reach the sending socket (translated inner headers)', async () => {
    const vip = ctx.topo.vip(8);
    const { router } = ctx.topo;
    const def = services('lbi', { conntrack: { maxEntries: 16384 } }, (s) => {
      // Nothing listens on 7777: the backend answers with ICMP port unreachable.
      s.service('closed', { vip, port: 7777, protocol: 'udp', backends: [{ addr: ctx.topo.backends[0]!.ipv4, port: 7777 }] });
      s.masquerade({ out: router.toBackends[1]!.ifname, from: `${ctx.topo.client.ipv4}/32` });
    });
    await withServices(def, async (lb, stats) => {
      const viaVip = udpSend(ctx.topo.client.ns, vip, 7777, 3, 800);
      assert.ok(viaVip.refused, 'ECONNREFUSED through DNAT: the quoted packet was translated back to the VIP');
      const viaSnat = udpSend(ctx.topo.client.ns, ctx.topo.backends[1]!.ipv4, 7777, 3, 800);
      assert.ok(viaSnat.refused, 'ECONNREFUSED through masquerade');
      assert.ok(stats().icmpTranslated >= 2n, `icmpTranslated ${stats().icmpTranslated}`);
    });
  });

  t('conntrack entries are visible, expire, and garbage collection removes them', async () => {
    const vip = ctx.topo.vip(9);
    const def = services('lbc', { conntrack: { maxEntries: 16384, timeouts: { udp: 1, 'udp-replied': 1 } } }, (s) =>
      s.service('dns', { vip, port: 53, protocol: 'udp', backends: [{ addr: ctx.topo.backends[2]!.ipv4, port: UDP_PORT }] }),
    );
    await withServices(def, async (lb, stats) => {
      const r = await spread(ctx.topo.client.ns, vip, 53, 'udp', 1);
      assert.equal(r.counts, { b2: 1 });
      const [c, ...rest] = lb.conntrack({ protocol: 'udp', dst: vip });
      assert.is(rest.length, 0);
      assert.ok(c, 'the connection is listed');
      assert.is(c!.state, 'udp-replied');
      assert.is(c!.translated.dst, ctx.topo.backends[2]!.ipv4);
      assert.is(c!.translated.dport, UDP_PORT);
      assert.equal(c!.packets, { original: 1n, reply: 1n });
      assert.ok(c!.flags.includes('dnat'));
      await new Promise((res) => setTimeout(res, 1300));
      assert.is(lb.conntrack({ protocol: 'udp', dst: vip }).length, 0, 'expired entries are not listed');
      assert.is(lb.conntrack({ protocol: 'udp', dst: vip, expired: true }).length, 1, 'until collected');
      assert.ok(lb.gc() >= 2, 'gc deletes the connection and its NAT key');
      const left = [...lb.conntrackTable().entries.values()].filter(({ key }) => [key.pa, key.pb].includes(53) || [key.pa, key.pb].includes(UDP_PORT));
      assert.is(left.length, 0, 'nothing of it is left');
    });
  });

  t('an exhausted SNAT port range drops, counts and reports; the flows that got a port work', async () => {
    const { router } = ctx.topo;
    const b = ctx.topo.backends[3]!;
    const def = services('lbx', { conntrack: { maxEntries: 16384 } }, (s) => s.snat({ out: router.toBackends[3]!.ifname, from: `${ctx.topo.client.ipv4}/32`, to: router.toBackends[3]!.ipv4, toPort: [40000, 40001] }));
    await withServices(def, async (lb, stats) => {
      const events: string[] = [];
      const rb = lb.onEvent((e) => events.push(`${e.kind} rule ${e.rule}`));
      const held = await holdConnections(ctx.topo.client.ns, b.ipv4, PORT, 3, 1500);
      try {
        assert.is(held.names.filter((n) => n === 'b3').length, 2, `two connections got the two ports: ${JSON.stringify(held.names)}`);
        assert.ok(stats().dropNatExhausted >= 1n, 'the third was dropped and counted');
        const deadline = Date.now() + 2000;
        while (!events.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
        assert.ok(events.includes('nat-exhausted rule 0'), `event: ${events.join(', ')}`);
        const ports = lb.conntrack({ protocol: 'tcp', dst: b.ipv4 }).filter((c) => c.flags.includes('snat')).map((c) => c.translated.sport).sort();
        assert.equal(ports, [40000, 40001], 'one port per flow, never the same one twice');
      } finally {
        held.close();
        rb.close();
      }
    });
  });

  t('reprogramming keeps to the loaded map sizes, and says what to do otherwise', () => {
    assert.throws(() => ctx.lb.reprogram(services('big', { tableSize: 1021, conntrack: { maxEntries: 16384 } })), /differs from the loaded program in map sizes/);
  });

  t('a service without ready backends drops new connections, counts and reports them', async () => {
    const vip = ctx.topo.vip(10);
    const def = services('lbn', { conntrack: { maxEntries: 16384 } }, (s) => s.service('none', { vip, port: 80, backends: [] }));
    await withServices(def, async (lb, stats) => {
      const events: string[] = [];
      const rb = lb.onEvent((e) => events.push(e.kind));
      const r = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 1, { timeoutMs: 500 });
      assert.is(r.failed, 1);
      assert.ok(stats().dropNoBackend >= 1n);
      // A backend arrives: the next connection works, no reload.
      lb.upsertService(serviceDef('none', { vip, port: 80, backends: backends(1) } satisfies ServiceSpec));
      const r2 = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 3);
      assert.equal(r2.counts, { b0: 3 });
      const deadline = Date.now() + 2000;
      while (!events.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      assert.ok(events.includes('no-backend'));
      rb.close();
    });
  });
}

t.run();
