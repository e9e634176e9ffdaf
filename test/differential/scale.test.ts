/**
 * Classification at scale: random rulesets of 10,000 and 100,000 rules
 * (overlapping CIDRs, port ranges and lists, v4 and v6, mixed actions, a few
 * non-classifiable rules and jumps into sub-chains) compiled with the
 * default plan, loaded through `load()`, and run in the kernel on packets
 * aimed deep into the chain. Verdicts and per-rule counters must equal
 * `evaluate()`'s. A chain too long for one program is cut into tail-called
 * continuations and still agrees.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluate, EvalState, filter, generateLargeCase, match, packet, rule, type GeneratedCase, type Hook, type RuleLike, type Verdict } from '../../sdk/index.js';
import { setSourceCapture } from '../../sdk/source.js';
import { load, type LoadedFilter } from '../../runtime/index.js';
import { MAX_TAIL_CALLS } from '../../codegen/ir.js';
import { requireKernel } from '../kernel.js';
import { refused } from './compare.js';

function expected(verdict: Verdict, replies: boolean): Verdict {
  return verdict === 'reject' && !replies ? 'drop' : verdict;
}

/** Every packet through kernel and evaluator; returns the rules that decided, for coverage checks. */
function compare(gen: GeneratedCase, f: LoadedFilter, hook: Hook): { pairs: number; deep: number } {
  const state = new EvalState(gen.filter);
  const rules = gen.definition.chains.reduce((n, c) => n + c.rules.length, 0);
  let pairs = 0;
  let deep = 0;
  for (const p of gen.packets) {
    if (refused(hook, p.data)) continue;
    const want = evaluate(gen.filter, p.data, { ...p.options, state, hook, trace: false });
    const got = f.testRun(hook, p.data, { mark: p.options.mark, ifindex: p.options.ifindex });
    const what = `seed ${gen.seed}, ${p.intent} [${p.data.toString('hex')}]: evaluator says ${want.verdict} by ${want.rule ?? `policy of ${want.policyChain}`}`;
    assert.is(got.filterVerdict, expected(want.verdict, want.data !== undefined), what);
    if (want.data) assert.is(got.data.toString('hex'), want.data.toString('hex'), `${what}: reject reply`);
    if ((want.ruleId ?? rules) > rules / 2) deep++;
    pairs++;
  }
  for (const c of f.counters()) {
    const w = state.counters.get(c.id);
    if (Number(c.packets) !== (w?.packets ?? 0)) assert.unreachable(`seed ${gen.seed}: ${c.name} counted ${c.packets} packets in the kernel, ${w?.packets ?? 0} in the evaluator`);
  }
  return { pairs, deep };
}

if (requireKernel('differential at scale: 10,000 and 100,000 rules')) {
  const cases: Array<{ rules: number; hook: Hook; seed: number; packets: number }> = [
    { rules: 10_000, hook: 'tc-ingress', seed: 41, packets: 200 },
    { rules: 10_000, hook: 'xdp', seed: 42, packets: 200 },
    { rules: 100_000, hook: 'tc-ingress', seed: 43, packets: 150 },
  ];
  for (const c of cases) {
    test(`${c.rules.toLocaleString('en')} random rules at ${c.hook}: kernel == evaluate`, () => {
      const gen = generateLargeCase(c.seed, { rules: c.rules, hook: c.hook, packets: c.packets });
      const f = load(gen.filter, { interfaces: { lo: 1 } });
      try {
        const plan = f.compiled.classification;
        const classified = plan.byRule.size;
        assert.ok(classified > c.rules * 0.95, `${classified} of ${c.rules} rules are classified`);
        assert.ok(plan.linear.length < c.rules * 0.01, `${plan.linear.length} rules stay linear`);
        for (const [prog, n] of Object.entries(f.compiled.tailCalls)) assert.ok(n <= MAX_TAIL_CALLS, `${prog}: ${n} tail calls`);
        assert.is(f.compiled.inline, 'auto', 'no fallback to inlining everything');
        const { pairs, deep } = compare(gen, f, c.hook);
        assert.ok(pairs >= c.packets * 0.9, `${pairs} packets compared`);
        // Packets aim at rules deep in the chain: classification is exercised there, not only near the top.
        assert.ok(deep >= pairs * 0.3, `${deep} of ${pairs} packets were decided past the middle of the ruleset`);
      } finally {
        f.close();
      }
    });
  }

  test('a chain too long for one program continues in tail-called programs, with the same verdicts', () => {
    // 1,200 rules, most of them not classifiable (TTL tests), with classifiable
    // runs between them and a jump whose return must land in the right continuation.
    const was = setSourceCapture(false);
    let f: ReturnType<typeof filter>;
    try {
      f = filter('segments', { hook: 'tc-ingress' }, ({ chain }) => {
        const sub = chain('sub', {}, [rule(match.udp.dport(7)).count().return(), rule(match.udp.dport(8)).drop()]);
        const rules: RuleLike[] = [];
        for (let i = 0; i < 1200; i++) {
          const src = `10.${(i >> 8) & 255}.${i & 255}.0/24` as const;
          if (i % 5 === 4) rules.push(rule(match.ip4.src(src).and(match.udp.dport([1000 + i, 3000 + i]))).count().accept());
          else if (i === 700) rules.push(rule(match.udp).jump(sub));
          else rules.push(rule(match.ip4.src(src).and(match.ip.ttl.lt(2 + (i % 50)))).count().drop());
        }
        return chain('main', { policy: 'accept' }, rules);
      });
    } finally {
      setSourceCapture(was);
    }
    const h = load(f, { interfaces: { lo: 1 } });
    try {
      const programs = h.compiled.programs.filter((p) => p.stage === 'chain').map((p) => p.chain);
      assert.ok(programs.filter((c) => c?.startsWith('main')).length >= 3, `main runs in ${programs.join(', ')}`);
      const state = new EvalState(f);
      let n = 0;
      for (const i of [0, 3, 4, 399, 404, 699, 700, 701, 704, 899, 1104, 1199]) {
        for (const [ttl, dport] of [[1, 9], [60, 1000 + i], [60, 7], [60, 8], [60, 3000 + i]] as const) {
          const data = packet()
            .ipv4({ src: `10.${(i >> 8) & 255}.${i & 255}.9`, dst: '192.0.2.1', ttl })
            .udp({ sport: 40000, dport })
            .build();
          const want = evaluate(f, data, { state, hook: 'tc-ingress' });
          const got = h.testRun('tc-ingress', data);
          assert.is(got.filterVerdict, want.verdict, `rule ${i}, ttl ${ttl}, dport ${dport}: evaluator says ${want.verdict} by ${want.rule ?? 'policy'}`);
          n++;
        }
      }
      for (const c of h.counters()) assert.is(Number(c.packets), state.counters.get(c.id)?.packets ?? 0, `counter of ${c.name}`);
      assert.ok(n >= 60);
    } finally {
      h.close();
    }
  });
}

test.run();
