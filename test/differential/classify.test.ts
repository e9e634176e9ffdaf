/**
 * Every classifiable rule in a tuple-space-search block, whatever its size
 * (`classify: 'always'`): the seeded random rulesets of the DSL differential
 * test (overlapping CIDRs, port ranges and lists, TCP flags, ICMP, v4 and v6,
 * marks, logs, counts, returns, jumps and gotos around the blocks) must give
 * the evaluator's verdict, reject reply and counters at every hook.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluate, EvalState, generateCase, type Hook, type Verdict } from '../../sdk/index.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';

const HOOKS: Hook[] = ['tc-ingress', 'xdp', 'tc-egress'];
const RULESETS = 30;
const PACKETS = 64;

function refused(hook: Hook, data: Buffer): boolean {
  if (data.length < 14) return true;
  if (hook === 'xdp') return false;
  const type = data.readUInt16BE(12);
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

function expected(verdict: Verdict, replies: boolean): Verdict {
  return verdict === 'reject' && !replies ? 'drop' : verdict;
}

if (requireKernel('differential: classifier blocks (classify always) == evaluate')) {
  let pairs = 0;
  let classified = 0;
  for (let i = 0; i < RULESETS; i++) {
    const seed = 9100 + i;
    const hook = HOOKS[i % HOOKS.length]!;
    // Tail-called chains only for the smaller rulesets: the larger ones jump more than 33 tail calls allow.
    const inline = i % 2 === 0 && i < 10 ? 'none' : 'auto';
    test(`seed ${seed} at ${hook}, every classifiable rule in a classifier block (chains ${inline === 'none' ? 'tail-called' : 'inlined when small'})`, () => {
      const gen = generateCase(seed, { hook, packets: PACKETS, maxChains: 4, maxRules: i < 10 ? 14 : 30 });
      const f = load(gen.filter, { inline, classify: 'always', interfaces: gen.packets[0]?.options.interfaces ?? {} });
      classified += f.compiled.classification.byRule.size;
      const state = new EvalState(gen.filter);
      try {
        for (const p of gen.packets) {
          if (refused(hook, p.data)) continue;
          const want = evaluate(gen.filter, p.data, { ...p.options, state, hook });
          const got = f.testRun(hook, p.data, { mark: p.options.mark, ifindex: p.options.ifindex });
          const what = `seed ${seed}, ${p.intent} [${p.data.toString('hex')}]: evaluator says ${want.verdict} by ${want.rule ?? `policy of ${want.policyChain}`}`;
          assert.is(got.filterVerdict, expected(want.verdict, want.data !== undefined), what);
          if (want.data) assert.is(got.data.toString('hex'), want.data.toString('hex'), `${what}: reject reply`);
          pairs++;
        }
        for (const c of f.counters()) {
          const w = state.counters.get(c.id);
          assert.is(Number(c.packets), w?.packets ?? 0, `seed ${seed}: packets counted by ${c.name}`);
          assert.is(Number(c.bytes), w?.bytes ?? 0, `seed ${seed}: bytes counted by ${c.name}`);
        }
      } finally {
        f.close();
      }
    });
  }
  test('enough pairs and classified rules were compared', () => {
    assert.ok(pairs >= 1500, `${pairs} pairs`);
    assert.ok(classified >= 100, `${classified} rules were in classifier blocks`);
  });
}

test.run();
