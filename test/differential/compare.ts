/**
 * What the differential suites share: which frames BPF_PROG_TEST_RUN refuses,
 * the kernel's verdict for an evaluator verdict, and one generated case run
 * through both with verdicts, reject replies and counters compared.
 */
import * as assert from 'uvu/assert';
import { evaluate, EvalState, type GeneratedCase, type Hook, type Verdict } from '../../sdk/index.js';
import type { LoadedFilter } from '../../runtime/index.js';

/** BPF_PROG_TEST_RUN refuses frames shorter than Ethernet, and at TC IP frames shorter than their IP header. */
export function refused(hook: Hook, data: Buffer): boolean {
  if (data.length < 14) return true;
  if (hook === 'xdp') return false;
  const type = data.readUInt16BE(12);
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

/** What the kernel does for the evaluator's verdict: a reject whose reply is suppressed is a drop. */
export function expected(verdict: Verdict, replies: boolean): Verdict {
  return verdict === 'reject' && !replies ? 'drop' : verdict;
}

/** Runs every packet of a generated case through the kernel and the evaluator; returns the pairs compared. */
export function compareCase(gen: GeneratedCase, f: LoadedFilter, hook: Hook): number {
  const state = new EvalState(gen.filter);
  let pairs = 0;
  for (const p of gen.packets) {
    if (refused(hook, p.data)) continue;
    const want = evaluate(gen.filter, p.data, { ...p.options, state, hook });
    const got = f.testRun(hook, p.data, { mark: p.options.mark, ifindex: p.options.ifindex });
    const what = `seed ${gen.seed}, ${p.intent} [${p.data.toString('hex')}]: evaluator says ${want.verdict} by ${want.rule ?? `policy of ${want.policyChain}`}`;
    assert.is(got.filterVerdict, expected(want.verdict, want.data !== undefined), what);
    if (want.data) assert.is(got.data.toString('hex'), want.data.toString('hex'), `${what}: reject reply`);
    pairs++;
  }
  for (const c of f.counters()) {
    const w = state.counters.get(c.id);
    assert.is(Number(c.packets), w?.packets ?? 0, `seed ${gen.seed}: packets counted by ${c.name}`);
    assert.is(Number(c.bytes), w?.bytes ?? 0, `seed ${gen.seed}: bytes counted by ${c.name}`);
  }
  return pairs;
}
