/**
 * The example web-server firewall, loaded into the kernel and attached at
 * tc-ingress of a veth in a throwaway namespace: real TCP, UDP and ICMP from
 * the peer namespace, counters and log events read back from the maps, and
 * the kernel's verdicts compared with the reference evaluator.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { createPair, ping, type PairTopology } from '../net/topology.js';
import { tcpConnect, tcpServer, udpSend } from '../net/traffic.js';
import { webFirewall } from '../../examples/firewall.js';
import { evaluate, EvalState, packet } from '../../sdk/index.js';
import { load, type FilterLogEvent } from '../../runtime/index.js';

if (requireKernel('filter: web firewall through real traffic')) {
  test('testRun verdicts equal the evaluator on crafted packets', () => {
    const fw = webFirewall({ adminNet: '10.1.0.0/16' });
    const f = load(fw);
    try {
      const cases = [
        packet().ipv4({ src: '10.9.0.1', dst: '10.9.0.2' }).tcp({ sport: 40000, dport: 80, flags: 'S' }).build(),
        packet().ipv4({ src: '10.1.2.3', dst: '10.9.0.2' }).tcp({ sport: 40000, dport: 22, flags: 'S' }).build(),
        packet().ipv4({ src: '10.9.0.1', dst: '10.9.0.2' }).tcp({ sport: 40000, dport: 22, flags: 'S' }).build(),
        packet().ipv4({ src: '10.9.0.1', dst: '10.9.0.2' }).tcp({ sport: 40000, dport: 8080, flags: 'S' }).build(),
        packet().ipv4({ src: '10.9.0.1', dst: '10.9.0.2' }).udp({ sport: 40000, dport: 53 }).build(),
        packet().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).tcp({ sport: 40000, dport: 443 }).build(),
        packet().ipv4({ src: '10.9.0.1', dst: '10.9.0.2' }).icmp({ type: 'echo-request' }).build(),
      ];
      for (const data of cases) {
        const want = evaluate(fw, data, { hook: 'tc-ingress' });
        const got = f.testRun('tc-ingress', data);
        assert.is(got.filterVerdict, want.verdict, `verdict for ${data.toString('hex')}`);
        if (want.verdict === 'reject' && want.data) assert.equal(got.data.toString('hex'), want.data.toString('hex'), 'reject reply bytes');
      }
    } finally {
      f.close();
    }
  });

  test('allowed TCP connects, other TCP is refused with a RST, blocked sources are dropped, counters match', async () => {
    let topo: PairTopology | undefined;
    const f = load(webFirewall({ adminNet: '192.168.250.0/24' }) /* never the pair's 10.x.y.0/24 */);
    const servers: Array<{ stop(): void }> = [];
    try {
      topo = createPair();
      const { a: client, b: server } = topo;
      servers.push(await tcpServer(server.ns, 80), await tcpServer(server.ns, 22), await tcpServer(server.ns, 8080));
      const events: FilterLogEvent[] = [];
      const rb = f.onLog((e) => events.push(e));
      f.attach({ hook: 'tc-ingress', ifname: server.ifname, netns: server.ns });

      assert.is(tcpConnect(client.ns, server.ipv4, 80, { payload: 'hello' }), 'connected');
      assert.is(tcpConnect(client.ns, server.ipv4, 8080), 'refused', 'a RST answers closed ports');
      assert.is(tcpConnect(client.ns, server.ipv4, 22, { timeoutMs: 800 }), 'timeout', 'ssh from outside the admin net is dropped');
      const udp = udpSend(client.ns, server.ipv4, 9999, 3, 400);
      assert.is(udp.replies, 0);
      assert.ok(udp.refused, 'UDP is answered with ICMP port unreachable');
      assert.is(ping(client.ns, server.ipv4, 5), 5);

      f.sets['blocked']!.add(`${client.ipv4}/32`);
      assert.is(tcpConnect(client.ns, server.ipv4, 80, { timeoutMs: 800 }), 'timeout', 'a blocked source is dropped at once');
      f.sets['blocked']!.delete(`${client.ipv4}/32`);
      assert.is(tcpConnect(client.ns, server.ipv4, 80), 'connected', 'unblocked again');

      const counters = Object.fromEntries(f.counters().map((c) => [c.name, c]));
      assert.ok(counters['web']!.packets >= 2n, 'web counted SYNs');
      assert.is(counters['ping']!.packets, 5n);
      assert.ok(counters['tcp-refused']!.packets >= 1n);
      assert.ok(counters['ssh-denied']!.packets >= 1n);
      assert.ok(counters['blocklist']!.packets >= 1n);
      assert.ok(counters['udp-refused']!.packets >= 1n, `udp-refused ${counters['udp-refused']!.packets}`);

      // Log events arrive on the event loop.
      const deadline = Date.now() + 2000;
      while (!events.some((e) => e.rule === 'blocklist') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const blockedEvent = events.find((e) => e.rule === 'blocklist');
      assert.ok(blockedEvent, 'a log event for the blocked source');
      assert.is(blockedEvent!.src, client.ipv4);
      assert.is(blockedEvent!.dport, 80);
      assert.is(blockedEvent!.prefix, 'blocked');
      assert.ok(events.some((e) => e.rule === 'ssh-denied' && e.prefix === 'ssh denied'));
      rb.close();
    } finally {
      for (const s of servers) s.stop();
      f.close();
      topo?.destroy();
    }
  });

  test('the evaluator and the kernel agree on the counters of a stream of packets', () => {
    const fw = webFirewall();
    const f = load(fw);
    try {
      const state = new EvalState(fw);
      for (let i = 0; i < 50; i++) {
        const data = packet().ipv4({ src: `10.0.${i % 4}.1`, dst: '10.9.0.2' }).tcp({ sport: 40000 + i, dport: [80, 22, 8080][i % 3]!, flags: 'S' }).build();
        evaluate(fw, data, { hook: 'tc-ingress', state });
        f.testRun('tc-ingress', data);
      }
      for (const c of f.counters()) {
        const want = state.counters.get(c.id) ?? { packets: 0, bytes: 0 };
        assert.is(Number(c.packets), want.packets, `packets of ${c.name}`);
        assert.is(Number(c.bytes), want.bytes, `bytes of ${c.name}`);
      }
    } finally {
      f.close();
    }
  });
}

test.run();
