/**
 * tsbpf at tc-ingress and at XDP of both router interfaces (so, like the
 * FORWARD chain, it sees both directions of the forwarded traffic): the same
 * N non-matching rules then the accept rule, written with the DSL and loaded
 * with load(). Rule i is `rule(match.ip4.src(saddr).and(match.<proto>.dport(p))).drop()`,
 * the accept rule `rule(match.ip4.src(cidr).and(match.ip4.dst(cidr))).accept()`,
 * policy drop; an ARP accept comes last (an L2 hook sees ARP, a FORWARD
 * chain does not).
 *
 * The ruleset is loaded with `classify: 'always'` (every run of classifiable
 * rules is a tuple-space-search block, as a ruleset meant to change live
 * should be), so a rule is added with `handle.rules.add(...)` as a map update
 * at every N, 0 included. Per-packet cost is BPF_PROG_TEST_RUN over the
 * benchmark's UDP frame; memory is the memlock of the filter's maps and
 * programs.
 */
import { run } from '../proc.js';
import { bpfMemlockBytes } from '../memory.js';
import { udpTestFrame } from '../packets.js';
import { nonMatchingRule, nonMatchingRules, type NonMatchingRule } from '../rules.js';
import type { BenchTopology } from '../topology.js';
import type { Contender } from './index.js';
import { filter, match, rule, type RuleLike } from '../../sdk/index.js';
import { setSourceCapture } from '../../sdk/source.js';
import { load, type LoadedFilter } from '../../runtime/index.js';
import { describePlan } from '../../codegen/classify/describe.js';

type Ipv4 = `${number}.${number}.${number}.${number}`;
type Cidr = `${Ipv4}/${number}`;

function ruleOf(r: NonMatchingRule): RuleLike {
  const l4 = r.proto === 'tcp' ? match.tcp : match.udp;
  return rule(match.ip4.src(r.saddr as Ipv4).and(l4.dport(r.dport))).drop();
}

function ruleset(topo: BenchTopology, n: number, hook: 'tc-ingress' | 'xdp') {
  const cidr = topo.trafficCidr as Cidr;
  // Source positions are for error messages; a generated ruleset of 100,000 rules does without.
  const was = setSourceCapture(false);
  try {
    return filter('bench', { hook }, ({ chain }) => {
      const rules: RuleLike[] = [];
      for (const r of nonMatchingRules(n)) rules.push(ruleOf(r));
      rules.push(rule(match.ip4.src(cidr).and(match.ip4.dst(cidr))).accept().named('allow'));
      rules.push(rule(match.eth.type('arp')).accept().named('arp'));
      return chain('forward', { policy: 'drop' }, rules);
    });
  } finally {
    setSourceCapture(was);
  }
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function tsbpf(name: string, hook: 'tc-ingress' | 'xdp', description: string): Contender {
  const loaded = new Map<string, LoadedFilter>();
  const handle = (topo: BenchTopology) => {
    const h = loaded.get(topo.id);
    if (!h) throw new Error(`${name}: nothing loaded in this topology`);
    return h;
  };
  return {
    name,
    description,
    async available() {
      try {
        const r = await run('clang', ['--version']);
        if (r.code !== 0) return 'clang --version failed (npx tsbpf setup installs it)';
      } catch {
        return 'clang not found (npx tsbpf setup installs it)';
      }
      try {
        const { native } = await import('../../runtime/native.js');
        native();
        return null;
      } catch (e) {
        return `the tsbpf native addon cannot load: ${(e as Error).message}`;
      }
    },
    async setup(topo, n) {
      const t0 = process.hrtime.bigint();
      const f = ruleset(topo, n, hook);
      const dslMs = ms(t0);
      const t1 = process.hrtime.bigint();
      const h = load(f, { classify: 'always' });
      const compileLoadMs = ms(t1);
      loaded.set(topo.id, h);
      topo.onDestroy(() => {
        loaded.delete(topo.id);
        h.close();
      });
      const t2 = process.hrtime.bigint();
      // Ready for live updates: the rule index the fast path keeps.
      void h.rules.size;
      const liveMs = ms(t2);
      const t3 = process.hrtime.bigint();
      for (const ifname of [topo.router.toClient.ifname, topo.router.toServer.ifname]) h.attach({ hook, ifname, netns: topo.router.ns });
      const attachMs = ms(t3);
      const plan = h.compiled.classification;
      return {
        loadMs: ms(t0),
        details: {
          dslMs: Math.round(dslMs),
          compileLoadMs: Math.round(compileLoadMs),
          liveIndexMs: Math.round(liveMs),
          attachMs: Math.round(attachMs),
          blocks: plan.tss.length,
          tuples: plan.tss.reduce((s, b) => s + b.tuples.length, 0),
          entries: plan.tss.reduce((s, b) => s + b.entries, 0),
          plan: describePlan(plan, (id) => h.compiled.ruleTable[id]?.name ?? String(id)).summary,
        },
      };
    },
    async addOneRule(topo, index) {
      const u = handle(topo).rules.add(ruleOf(nonMatchingRule(index)), { position: { before: 'allow' } });
      if (u.kind !== 'map') throw new Error(`adding a rule regenerated the program (${u.why})`);
      return u.ms;
    },
    async addManyRules(_topo, n, from, count) {
      // A filter of n rules loaded (not attached) with rule slots and hash entries for the batch, as a ruleset
      // that is to take one would be; the batch goes in before the accept rule: map updates only, one switch.
      const room = 2 ** Math.ceil(Math.log2(2 * (n + count + 3)));
      const h = load(ruleset({ trafficCidr: '10.0.0.0/8' } as BenchTopology, n, hook), { classify: 'always', layout: { slotCapacity: room, entryCapacity: room } });
      try {
        const was = setSourceCapture(false);
        const rules: RuleLike[] = [];
        try {
          for (let i = from; i < from + count; i++) rules.push(ruleOf(nonMatchingRule(i)));
        } finally {
          setSourceCapture(was);
        }
        const u = h.rules.addMany(rules, { position: { before: 'allow' } });
        if (u.kind !== 'map') throw new Error(`adding ${count} rules regenerated the program (${u.why})`);
        return u.ms;
      } finally {
        h.close();
      }
    },
    async teardown(topo) {
      const h = loaded.get(topo.id);
      loaded.delete(topo.id);
      h?.close();
    },
    async memoryBytes(topo) {
      const h = handle(topo);
      const fds = [...Object.values(h.object.maps).map((m) => m.fd), ...Object.values(h.object.programs).map((p) => p.fd)];
      return { bytes: bpfMemlockBytes(fds), method: 'bpf-memlock' };
    },
    async perPacketNs(topo) {
      const h = handle(topo);
      const frame = udpTestFrame(topo);
      const verdict = h.testRun(hook, frame).filterVerdict;
      if (verdict !== 'accept') throw new Error(`the test frame is not accepted (${verdict})`);
      // The least of a few long runs: interference only ever adds time.
      let best = Infinity;
      for (let i = 0; i < 5; i++) best = Math.min(best, h.testRun(hook, frame, { repeat: 200_000 }).durationNs);
      return best;
    },
  };
}

export const tsbpfTc = tsbpf('tsbpf-tc', 'tc-ingress', 'tsbpf at tc-ingress of both router interfaces: tuple-space search, rules added by map update');
export const tsbpfXdp = tsbpf('tsbpf-xdp', 'xdp', 'tsbpf at XDP of both router interfaces: tuple-space search, rules added by map update');
