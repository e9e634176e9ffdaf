/**
 * Interface names in rules (`match.ifname('lo')`) are slots of the
 * `tsbpf_ifindex` map that the loader fills. Names given to `load()` in
 * `interfaces` hold from the moment the filter is loaded, so test runs see
 * them exactly as `evaluate(..., { interfaces })` does; names not given are
 * resolved when the filter is attached, and match nothing until then.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluate, filter, match, packet, rule, type Hook } from '../../sdk/index.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';

const fw = filter('ifnames', { hook: ['tc-ingress', 'xdp', 'tc-egress'] }, ({ chain }) =>
  chain('input', { policy: 'accept' }, [
    rule(match.ifname('lo').and(match.udp.dport(53))).count().drop(),
    rule(match.ifname('eth0')).count().drop(),
  ]),
);
const dns = packet().ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1000, dport: 53 }).build();
const HOOKS: Hook[] = ['tc-ingress', 'xdp', 'tc-egress'];

if (requireKernel('filter: interface names given to load()')) {
  test('names given to load() match in test runs, as in the evaluator (the run is on lo, ifindex 1)', () => {
    const interfaces = { lo: 1 };
    const f = load(fw, { interfaces });
    try {
      for (const hook of HOOKS) {
        const want = evaluate(fw, dns, { hook, ifindex: 1, interfaces });
        assert.is(want.verdict, 'drop');
        assert.is(want.rule, 'input#0');
        assert.is(f.testRun(hook, dns, { ifindex: 1 }).filterVerdict, 'drop', hook);
      }
      const counters = f.counters();
      assert.is(counters[0]!.packets, 3n, 'input#0 counted at every hook');
      assert.is(counters[1]!.packets, 0n, 'eth0 was not given: its slot is 0 and matches nothing');
    } finally {
      f.close();
    }
  });

  test('without interfaces, names are unresolved until attach: no match, in the kernel and the evaluator', () => {
    const f = load(fw);
    try {
      for (const hook of HOOKS) {
        assert.is(evaluate(fw, dns, { hook, ifindex: 1 }).verdict, 'accept');
        assert.is(f.testRun(hook, dns, { ifindex: 1 }).filterVerdict, 'accept', hook);
      }
      assert.ok(f.counters().every((c) => c.packets === 0n));
    } finally {
      f.close();
    }
  });
}

test.run();
