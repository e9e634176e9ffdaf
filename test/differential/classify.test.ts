/**
 * Every classifiable rule in a tuple-space-search block, whatever its size
 * (`classify: 'always'`): the seeded random rulesets of the DSL differential
 * test (overlapping CIDRs, port ranges and lists, TCP flags, ICMP, v4 and v6,
 * marks, logs, counts, returns, jumps and gotos around the blocks) must give
 * the evaluator's verdict, reject reply and counters at every hook.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateCase, type Hook } from '../../sdk/index.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { compareCase } from './compare.js';

const HOOKS: Hook[] = ['tc-ingress', 'xdp', 'tc-egress'];
const RULESETS = 30;
const PACKETS = 64;

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
      try {
        pairs += compareCase(gen, f, hook);
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
