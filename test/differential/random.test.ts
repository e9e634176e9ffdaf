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
import { evaluate, EvalState, generateCase, type Hook, type Verdict } from '../../sdk/index.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';

const HOOKS: Hook[] = ['tc-ingress', 'xdp', 'tc-egress'];
const RULESETS = 36;
const PACKETS = 64;

/** BPF_PROG_TEST_RUN refuses frames shorter than Ethernet, and at TC IP frames shorter than their IP header. */
function refused(hook: Hook, data: Buffer): boolean {
  if (data.length < 14) return true;
  if (hook === 'xdp') return false;
  const type = data.readUInt16BE(12);
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

/** What the kernel does for the evaluator's verdict: a reject whose reply is suppressed is a drop. */
function expected(verdict: Verdict, replies: boolean): Verdict {
  return verdict === 'reject' && !replies ? 'drop' : verdict;
}

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
  test('at least 2,000 (ruleset, packet) pairs were compared', () => {
    assert.ok(pairs >= 2000, `${pairs} pairs`);
  });
}

test.run();
