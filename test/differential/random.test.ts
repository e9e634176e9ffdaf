/**
 * The main oracle: random filters from a seeded generator (nested chains,
 * jumps, gotos, returns, sets, limits, marks, rejects, redirects, v4 and v6)
 * and packets aimed at their rules, malformed and truncated ones included,
 * loaded through the public `load()` and run in the kernel at every hook with
 * chains both tail-called and inlined. The kernel's verdict, reject reply
 * bytes and per-rule counters must equal `evaluate()`'s on every pair.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateCase, type Hook } from '../../sdk/index.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { compareCase } from './compare.js';

const HOOKS: Hook[] = ['tc-ingress', 'xdp', 'tc-egress'];
const RULESETS = 36;
const PACKETS = 64;

if (requireKernel('differential: random rulesets, kernel == evaluate')) {
  let pairs = 0;
  for (let i = 0; i < RULESETS; i++) {
    const seed = 7000 + i;
    const hook = HOOKS[i % HOOKS.length]!;
    const inline = i % 2 === 0 ? 'none' : 'auto';
    test(`seed ${seed} at ${hook}, chains ${inline === 'none' ? 'tail-called' : 'inlined when small'}`, () => {
      const gen = generateCase(seed, { hook, packets: PACKETS, maxChains: 4, maxRules: 14 });
      const interfaces = gen.packets[0]?.options.interfaces ?? {};
      const f = load(gen.filter, { inline, interfaces });
      try {
        pairs += compareCase(gen, f, hook);
      } finally {
        f.close();
      }
    });
  }
  test('at least 2,000 (ruleset, packet) pairs were compared', () => {
    assert.ok(pairs >= 2000, `${pairs} pairs`);
  });
}

test.run();
