/**
 * The services program (conntrack + load balancing + NAT) against its TS
 * reference, packet by packet: seeded sequences of connections through a
 * router and from a client (TCP handshakes and teardowns, UDP, ICMP echo,
 * IPv4 and IPv6, services, hairpin (at a router, and looped back at a
 * client that is its own backend), affinity, static DNAT, SNAT with a tiny
 * port range that runs out, masquerade, ICMP errors quoting translated
 * packets, invalid TCP) run through BPF_PROG_TEST_RUN and evaluateServices.
 * Every verdict and every output byte must agree, and so must the conntrack
 * tables and the counters at the end.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { addrWords, keyId } from '../../sdk/ct.js';
import { evaluateServices, ServicesState } from '../../sdk/stateful.js';
import { loadServices, monotonicNs } from '../../runtime/services.js';
import { generateSteps, IFADDR, worldDefinition, type Runner } from './world.js';
import { checksumProblems, describeDiff, timeless } from './compare.js';

if (requireKernel('stateful: services program vs the TS reference')) {
  for (const [seed, count] of [
    [1, 1500],
    [2, 1500],
    [3, 1500],
    [4, 1500],
  ] as const) {
    test(`seed ${seed}: ${count} packets agree byte for byte, and the conntrack tables and counters match`, () => compare(seed, count, 'tc'));
  }
  // The XDP program is the ingress half: the same sequences through a router that runs only ingress.
  for (const [seed, count] of [
    [11, 1500],
    [12, 1500],
  ] as const) {
    test(`XDP, seed ${seed}: ${count} packets at ingress agree byte for byte with the reference, and so do conntrack and counters`, () => compare(seed, count, 'xdp'));
  }
}

function compare(seed: number, count: number, hook: 'tc' | 'xdp'): void {
  {
    {
      const def = worldDefinition();
      const lb = loadServices(def, { interfaces: { lo: 1 }, ifaddrs: { 1: IFADDR }, hook });
      try {
        const st = new ServicesState(def, { seed: lb.seed, interfaces: { lo: 1 } });
        st.ifaddrs.set(1, { v4: addrWords(IFADDR.v4)[0], v6: addrWords(IFADDR.v6) });
        const kernel: Runner = (h, data) => {
          const r = lb.testRun(hook === 'xdp' ? 'xdp' : h, data);
          return { action: r.action, data: r.data };
        };
        const reference: Runner = (h, data) => {
          const r = evaluateServices(st, data, { hook: h, now: monotonicNs() });
          return { action: r.verdict, data: r.data, entry: r.entry, direction: r.direction };
        };
        let n = 0;
        let loops = 0;
        const kinds = new Set<string>();
        for (const step of generateSteps(seed, count, kernel, reference, { ingressOnly: hook === 'xdp' })) {
          n++;
          kinds.add(step.what.replace(/^flow \d+ /, '').replace(/ .*/, ''));
          const where = `packet ${n} (${step.what}) at ${step.hook}: ${step.input.toString('hex')}`;
          assert.is(step.invariant, undefined, `reference invariant at ${where}`);
          assert.is(step.kernel.action, step.reference.action, `action of ${where}`);
          if (step.reference.action === 'loop') loops++;
          if (step.reference.action !== 'drop') {
            if (step.input.equals(step.reference.data) === false) {
              assert.equal(checksumProblems(step.reference.data), [], `checksums after translation of ${where}`);
            }
            assert.ok(step.kernel.data.equals(step.reference.data), `bytes of ${where}: ${describeDiff(step.kernel.data, step.reference.data)}\n kernel    ${step.kernel.data.toString('hex')}\n reference ${step.reference.data.toString('hex')}`);
          }
        }
        assert.ok(kinds.has('icmp') && kinds.has('reply') && kinds.has('noise'), `the sequence covers errors, replies and noise (${[...kinds].join(', ')})`);

        // The conntrack tables, entry by entry.
        const kt = lb.conntrackTable();
        const want = new Map([...st.ct.entries.values()].map((v) => [keyId(v.key), v.entry]));
        const got = new Map([...kt.entries.values()].map((v) => [keyId(v.key), v.entry]));
        assert.equal([...got.keys()].sort(), [...want.keys()].sort(), 'the same conntrack keys');
        for (const [k, e] of want) assert.equal(timeless(got.get(k)!), timeless(e), `entry ${k}`);

        // Counters.
        const ks = lb.stats();
        for (const [name, v] of Object.entries(st.stats)) assert.is(Number(ks[name as keyof typeof ks]), v, `counter ${name}`);
        assert.ok(st.stats.dropNatExhausted > 0 || seed > 2, 'the tiny SNAT range ran out at least once');
        assert.ok(st.stats.icmpTranslated > 0, 'ICMP errors were translated');
        assert.ok(st.stats.hairpin > 0 || (seed > 2 && seed < 10), 'a hairpin connection');
        assert.ok(loops > 0 || seed > 1, "a hairpin at the client's egress, looped back into its ingress");
        assert.ok(st.stats.translated > 0, 'packets were translated');
      } finally {
        lb.close();
      }
    }
  }
}

test.run();
