/**
 * Filters with conntrack and NAT rules (match.ct, ctMark, snat, dnat,
 * masquerade) against the reference evaluator, over generated packet
 * SEQUENCES: connections through a router and from a client (TCP handshakes
 * and teardowns, UDP, ICMP echo, IPv4 and IPv6, DNAT port forwards, a tiny
 * SNAT range that runs out, masquerade, ICMP errors quoting translated
 * packets, invalid TCP, unsolicited packets the rules drop). Each packet runs
 * through BPF_PROG_TEST_RUN and through evaluate() with one EvalState: every
 * verdict and every output byte must agree, and so must the conntrack tables
 * (times aside) and the conntrack counters at the end.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { addrWords, keyId } from '../../sdk/ct.js';
import { evaluate, EvalState } from '../../sdk/evaluate.js';
import { filter, match, rule } from '../../sdk/index.js';
import { loadFilter } from '../../runtime/filter.js';
import { monotonicNs } from '../../runtime/conntrack.js';
import { generateSteps, IFADDR, type Runner } from '../stateful/world.js';
import { checksumProblems, describeDiff, timeless } from '../stateful/compare.js';
import { parsePacket } from '../../sdk/parse.js';
import { packet } from '../../sdk/packet.js';

/** The world of test/stateful/world.ts as a rule filter: DNAT at ingress, SNAT and masquerade at egress. */
export function worldFilter(tcpLoose = false) {
  return filter('ctdiff', { hook: ['tc-ingress', 'tc-egress'], conntrack: { maxEntries: 8192, tcpLoose } }, ({ chain }) => {
    const input = chain('in', { policy: 'drop' }, [
      rule(match.ct.state(['established', 'related'])).count().accept(),
      rule(match.ct.state('invalid')).count().drop(),
      rule(match.ip4.dst('203.0.113.10').and(match.tcp.dport(8080))).dnat({ to: '10.1.0.9', port: 80 }),
      rule(match.ip4.dst('203.0.113.11').and(match.udp)).dnat({ to: '10.1.0.20-10.1.0.23' }),
      rule(match.ip4.dst('10.96.0.1').and(match.tcp.dport(80))).dnat({ to: ['10.1.0.1', '10.1.0.4'], port: 8080 }),
      rule(match.ip6.dst('fd96::1').and(match.tcp.dport(80))).dnat({ to: 'fd01::1-fd01::3', port: [8080, 8081] }),
      rule(match.ip4.src('172.16.0.0/12')).ctMark(0x50, 0xf0),
      rule(match.ct.mark({ value: 0x50, mask: 0xf0 }).and(match.tcp.dport(443))).drop(),
      rule(match.ct.state('new').and(match.tcp.dport([80, 443, 8080]))).ctMark(1, 0x0f).accept(),
      rule(match.udp.dport(53)).accept(),
      rule(match.icmp.type('echo-request')).accept(),
      rule(match.icmp6.type('echo-request')).accept(),
      rule(match.ip6.dst('fd96::1')).accept(),
    ]);
    const output = chain('out', { policy: 'accept' }, [
      rule(match.ct.state('established')).accept(),
      rule(match.ip4.src('10.5.0.0/16')).snat({ to: '192.0.2.1', ports: [1000, 1001] }),
      rule(match.ip4.src('10.6.0.0/16')).snat({ to: '192.0.2.10-192.0.2.13' }),
      rule(match.ip4.src('10.0.0.0/16')).masquerade(),
      rule(match.ip6.src('fd00::/64')).masquerade({ ports: [20000, 29999] }),
      rule(match.ct.mark(1).and(match.ip4.dst('10.96.0.0/16'))).ctMark(2).accept(),
      rule(match.ip4.dst('192.0.2.201')).drop(),
    ]);
    return { 'tc-ingress': input, 'tc-egress': output };
  });
}

test('a filter without conntrack has no ct table and emits no ct code', () => {
  const f = filter('plain', { hook: 'tc-ingress' }, ({ chain }) => chain('in', { policy: 'drop' }, [rule(match.tcp.dport(80)).accept()]));
  assert.is(f.definition.conntrack, undefined);
});

const totals = { runs: 0, packets: 0, icmpTranslated: 0, exhausted: 0, related: 0 };

if (requireKernel('differential: filters with conntrack and NAT vs evaluate()')) {
  for (const [seed, count] of [
    [11, 600],
    [12, 600],
    [13, 600],
    [14, 600],
  ] as const) {
    // The last seed lets TCP connections be picked up mid-stream (tcpLoose).
    test(`seed ${seed}${seed === 14 ? ' (tcpLoose)' : ''}: ${count} packets agree (verdicts, bytes), and so do the conntrack tables and counters`, () => {
      const f = worldFilter(seed === 14);
      const lf = loadFilter(f, { conntrackSeed: 0x1234 + seed, ifaddrs: { 1: IFADDR } });
      const kernelEvents: Array<{ ruleId: number; text: string }> = [];
      const rb = lf.onConntrackEvent((e) => kernelEvents.push(e));
      try {
        const state = new EvalState(f, { ctSeed: lf.conntrackSeed });
        state.conntrack!.ifaddrs.set(1, { v4: addrWords(IFADDR.v4)[0], v6: addrWords(IFADDR.v6) });
        const kernel: Runner = (hook, data) => {
          const r = lf.testRun(hook, data);
          return { action: r.filterVerdict === 'accept' ? 'accept' : 'drop', data: r.data };
        };
        const reference: Runner = (hook, data) => {
          const r = evaluate(f, data, { hook, state, now: monotonicNs(), trace: false });
          return { action: r.verdict === 'accept' ? 'accept' : 'drop', data: r.packet ?? Buffer.from(data), entry: r.ct?.entry, direction: r.ct?.direction };
        };
        let n = 0;
        let accepted = 0;
        let dropped = 0;
        let translated = 0;
        const kinds = new Set<string>();
        for (const step of generateSteps(seed, count, kernel, reference)) {
          n++;
          kinds.add(step.what.replace(/^flow \d+ /, '').replace(/ .*/, ''));
          const where = `packet ${n} (${step.what}) at ${step.hook}: ${step.input.toString('hex')}`;
          assert.is(step.invariant, undefined, `reference invariant at ${where}`);
          assert.is(step.kernel.action, step.reference.action, `action of ${where}`);
          if (step.reference.action === 'accept') {
            accepted++;
            if (!step.input.equals(step.reference.data)) {
              translated++;
              assert.equal(checksumProblems(step.reference.data), [], `checksums after translation of ${where}`);
            }
            assert.ok(step.kernel.data.equals(step.reference.data), `bytes of ${where}: ${describeDiff(step.kernel.data, step.reference.data)}\n kernel    ${step.kernel.data.toString('hex')}\n reference ${step.reference.data.toString('hex')}`);
          } else dropped++;
        }
        assert.ok(n >= count, `${n} packets ran`);
        assert.ok(kinds.has('icmp') && kinds.has('reply') && kinds.has('noise'), `the sequence covers errors, replies and noise (${[...kinds].join(', ')})`);
        assert.ok(accepted > n / 4 && dropped > 3 && translated > 20, `accepted ${accepted}, dropped ${dropped}, translated ${translated} of ${n}`);

        // The conntrack tables, entry by entry.
        const fc = state.conntrack!;
        const kt = lf.conntrack.table();
        const want = new Map([...fc.ct.entries.values()].map((v) => [keyId(v.key), v.entry]));
        const got = new Map([...kt.entries.values()].map((v) => [keyId(v.key), v.entry]));
        assert.ok(want.size > 20, `${want.size} conntrack entries`);
        assert.equal([...got.keys()].sort(), [...want.keys()].sort(), 'the same conntrack keys');
        for (const [k, e] of want) assert.equal(timeless(got.get(k)!), timeless(e), `entry ${k}`);

        // Counters.
        const ks = lf.conntrackStats();
        for (const [name, v] of Object.entries(fc.stats)) assert.is(Number(ks[name as keyof typeof ks]), v, `counter ${name}`);
        assert.ok(fc.stats.reply > 0 && fc.stats.new > 0 && fc.stats.translated > 0, 'replies, new connections and translations');
        assert.is(fc.events.length, fc.stats.dropNatExhausted, 'one event per exhaustion');
        rb.consume();
        assert.equal(kernelEvents.map((e) => e.ruleId), fc.events.map((e) => e.ruleId), 'the kernel sent the same nat-exhausted events');
        if (kernelEvents.length) assert.match(kernelEvents[0]!.text, /^nat-exhausted: rule \d+, 10\.5\./);
        totals.runs++;
        totals.packets += n;
        totals.icmpTranslated += fc.stats.icmpTranslated;
        totals.exhausted += fc.stats.dropNatExhausted;
        totals.related += kinds.has('icmp') ? 1 : 0;
      } finally {
        rb.close();
        lf.close();
      }
    });
  }

  test('a live rule update that reloads the program keeps the connections and their NAT', () => {
    const f = filter('ctlive', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => ({
      'tc-ingress': chain('in', { policy: 'drop' }, [rule(match.ct.state('established')).accept(), rule(match.tcp.dport(8080)).dnat({ to: '10.1.0.9', port: 80 })]),
      'tc-egress': chain('out', { policy: 'accept' }, []),
    }));
    const lf = loadFilter(f, { conntrackSeed: 7 });
    try {
      const syn = packet().ipv4({ src: '10.0.0.5', dst: '203.0.113.10' }).tcp({ sport: 4000, dport: 8080, flags: 'S' }).build();
      assert.is(lf.testRun('tc-ingress', syn).filterVerdict, 'accept');
      assert.is(lf.conntrack.list().length, 1);
      const u = lf.rules.add(rule(match.ct.state('new').and(match.udp.dport(53))).accept(), { chain: 'in', position: 1 });
      assert.is(u.kind, 'reload', 'a ct rule is not classifiable: the program is regenerated');
      const conns = lf.conntrack.list();
      assert.is(conns.length, 1, 'the connection survived the reload');
      assert.equal([conns[0]!.translated.dst, conns[0]!.translated.dport], ['10.1.0.9', 80]);
      assert.is(lf.conntrackSeed, 7);
      const reply = packet().ipv4({ src: '10.1.0.9', dst: '10.0.0.5' }).tcp({ sport: 80, dport: 4000, flags: 'SA' }).build();
      const r = lf.testRun('tc-ingress', reply);
      assert.is(r.filterVerdict, 'accept', 'its reply is still accepted and translated back');
      assert.is(parsePacket(r.data).ipv4!.src, 0xcb00710a);
    } finally {
      lf.close();
    }
  });

  test('across the seeds: ICMP errors were translated and the tiny SNAT range ran out', () => {
    assert.is(totals.runs, 4, 'every seed ran');
    assert.ok(totals.packets >= 2400, `${totals.packets} packets`);
    assert.ok(totals.icmpTranslated > 0, `${totals.icmpTranslated} ICMP errors translated`);
    assert.ok(totals.exhausted > 0, `${totals.exhausted} packets dropped for want of an SNAT port`);
  });
}

test.run();
