/**
 * Every example in examples/: its kernel verdicts equal the evaluator's on
 * random packets aimed at it (malformed and truncated ones included), and it
 * does its job on real traffic between test namespaces.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluate, EvalState, randomPacketCase, rng, type Filter, type Hook, type PacketBias } from '../../sdk/index.js';
import { load, type LoadedFilter } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { refused } from '../differential/compare.js';
import { createPair, ping, type PairTopology } from '../net/topology.js';
import { tcpConnect, tcpServer, type Server } from '../net/traffic.js';
import { firewall } from '../../examples/firewall.js';
import { droplist } from '../../examples/xdp-droplist.js';
import { rateLimiter } from '../../examples/rate-limiter.js';
import { egressAllow } from '../../examples/egress-allow.js';
import { statefw } from '../../examples/stateful-firewall.js';
import { monotonicNs } from '../../runtime/conntrack.js';

const EXAMPLES: Array<{ name: string; filter: Filter; hook: Hook; bias: PacketBias; setup?: (f: LoadedFilter) => void }> = [
  { name: 'firewall', filter: firewall, hook: 'tc-ingress', bias: { ipv4: ['10.0.0.0/8'], ports: [22, 80, 443, 8080], protos: [6, 17, 1, 58] } },
  {
    name: 'xdp-droplist',
    filter: droplist,
    hook: 'xdp',
    bias: { ipv4: ['10.1.0.0/16', '10.2.0.0/16'], ipv6: ['fd00:1::/32'] },
    setup: (f) => {
      f.sets['deny4']!.add('10.1.0.0/16');
      f.sets['deny6']!.add('fd00:1::/32');
    },
  },
  { name: 'rate-limiter', filter: rateLimiter, hook: 'tc-ingress', bias: { ports: [53, 80], protos: [6, 17, 1] } },
  { name: 'egress-allow', filter: egressAllow, hook: 'tc-egress', bias: { ipv4: ['10.0.0.0/8', '192.168.0.0/16'], ports: [53, 443], protos: [6, 17, 1, 58] } },
  // Conntrack carries state from packet to packet on both sides (the real traffic is in test/filter/conntrack-traffic.test.ts).
  { name: 'stateful-firewall', filter: statefw, hook: 'tc-ingress', bias: { ipv4: ['10.0.0.0/30'], ports: [80, 8080], protos: [6, 17, 1, 58] } },
];

if (requireKernel('examples: kernel == evaluate, and real traffic')) {
  for (const ex of EXAMPLES) {
    test(`${ex.name}: the kernel decides like the evaluator on 400 random packets`, () => {
      const f = load(ex.filter);
      const state = new EvalState(ex.filter);
      try {
        ex.setup?.(f);
        // Mirror the run-time set updates in the evaluator's state.
        if (ex.name === 'xdp-droplist') {
          state.setAdd('deny4', '10.1.0.0/16');
          state.setAdd('deny6', 'fd00:1::/32');
        }
        const r = rng(`${ex.name}-diff`);
        let compared = 0;
        for (let i = 0; i < 400; i++) {
          const p = randomPacketCase(r, ex.bias);
          if (refused(ex.hook, p.data)) continue;
          // Limits: the evaluator's clock is the kernel's only within a burst, so keep them unexhausted.
          // Conntrack compares expiries with the kernel's clock: give it the same one.
          const now = ex.filter.definition.conntrack ? monotonicNs() : BigInt(i) * 1_000_000_000n;
          const want = evaluate(ex.filter, p.data, { hook: ex.hook, state, now });
          const got = f.testRun(ex.hook, p.data);
          const expected = want.verdict === 'reject' && !want.data ? 'drop' : want.verdict;
          assert.is(got.filterVerdict, expected, `${p.description}: evaluator says ${want.verdict} by ${want.rule ?? 'policy'}`);
          if (want.data) assert.is(got.data.toString('hex'), want.data.toString('hex'), `${p.description}: reject reply`);
          compared++;
        }
        assert.ok(compared >= 300, `${compared} packets compared`);
      } finally {
        f.close();
      }
    });
  }

  test('xdp-droplist: a source added to the set at run time is dropped at XDP, and passes again once removed', () => {
    let topo: PairTopology | undefined;
    const f = load(droplist);
    try {
      topo = createPair();
      const { a, b } = topo;
      f.attach({ hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic' });
      assert.is(ping(a.ns, b.ipv4, 3), 3);
      f.sets['deny4']!.add(`${a.ipv4}/32`);
      assert.is(ping(a.ns, b.ipv4, 3, { timeoutS: 0.5 }), 0, 'dropped');
      f.sets['deny4']!.delete(`${a.ipv4}/32`);
      assert.is(ping(a.ns, b.ipv4, 3), 3, 'allowed again');
      f.sets['deny6']!.add(`${a.ipv6}/128`);
      assert.is(ping(a.ns, b.ipv6, 2, { timeoutS: 0.5 }), 0, 'IPv6 source dropped');
      const c = Object.fromEntries(f.counters().map((x) => [x.name, x.packets]));
      assert.ok(c['deny4']! >= 3n && c['deny6']! >= 1n, JSON.stringify(c, (_, v) => (typeof v === 'bigint' ? Number(v) : v)));
    } finally {
      f.close();
      topo?.destroy();
    }
  });

  test('rate-limiter: a ping flood from one source is cut to about its burst, counted per rule', () => {
    let topo: PairTopology | undefined;
    const f = load(rateLimiter);
    try {
      topo = createPair();
      const { a, b } = topo;
      f.attach({ hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
      const answered = ping(a.ns, b.ipv4, 40, { intervalS: 0.005 });
      // burst 10 plus 5/s over ~0.2 s: about 11; generous bounds for a noisy VM.
      assert.ok(answered >= 9 && answered <= 20, `${answered} of 40 answered`);
      const dropped = f.counters().find((c) => c.name === 'ping-flood')!.packets;
      assert.is(Number(dropped), 40 - answered, 'every unanswered ping was dropped by the limit');
    } finally {
      f.close();
      topo?.destroy();
    }
  });

  test('egress-allow: connections to allowed destinations work, others fail at once with ECONNREFUSED', async () => {
    let topo: PairTopology | undefined;
    let server: Server | undefined;
    const f = load(egressAllow);
    try {
      topo = createPair();
      const { a, b } = topo;
      server = await tcpServer(b.ns, 443);
      f.attach({ hook: 'tc-egress', ifname: a.ifname, netns: a.ns });
      assert.is(tcpConnect(a.ns, b.ipv4, 443, { payload: 'hi' }), 'connected', '10.0.0.0/8 is allowed');
      f.sets['allowed4']!.delete('10.0.0.0/8');
      const started = Date.now();
      assert.is(tcpConnect(a.ns, b.ipv4, 443, { timeoutMs: 3000 }), 'refused');
      assert.ok(Date.now() - started < 2500, 'refused at once, not after a timeout');
      const denied = f.counters().find((c) => c.name === 'denied')!.packets;
      assert.ok(denied >= 1n);
    } finally {
      server?.stop();
      f.close();
      topo?.destroy();
    }
  });
}

test.run();
