/**
 * The seeded generator behind the differential tests: deterministic in its
 * seed, always valid, and varied enough to exercise every verdict, jumps and
 * gotos, both families, sets, and malformed packets.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EvalState, Rng, allRules, evaluate, generateCase, generateCases } from '../../sdk/index.js';
import { parsePacket } from '../../sdk/parse.js';

test('the same seed gives the same ruleset and the same packet bytes', () => {
  const a = generateCase(1234);
  const b = generateCase(1234);
  assert.equal(JSON.stringify(a.definition), JSON.stringify(b.definition));
  assert.equal(a.packets.map((p) => p.data.toString('hex')), b.packets.map((p) => p.data.toString('hex')));
  assert.equal(a.packets.map((p) => p.intent), b.packets.map((p) => p.intent));
  assert.is.not(JSON.stringify(generateCase(1235).definition), JSON.stringify(a.definition));
});

test('Rng is deterministic and stays in bounds', () => {
  const r = new Rng(7);
  const xs = Array.from({ length: 1000 }, () => r.int(3, 9));
  assert.ok(xs.every((x) => x >= 3 && x <= 9));
  assert.equal(new Set(xs).size, 7);
  const again = new Rng(7);
  assert.equal(Array.from({ length: 1000 }, () => again.int(3, 9)), xs);
});

test('400 cases: every one valid and evaluated; every verdict, jump, goto, family and malformation appears', () => {
  const seen = new Set<string>();
  let aimed = 0;
  let hit = 0;
  for (const c of generateCases(1, 400)) {
    const rules = allRules(c.definition);
    for (const r of rules) for (const a of r.actions) seen.add(`action:${a.kind}`);
    if (c.definition.sets.length) seen.add('sets');
    const state = new EvalState(c.definition);
    for (const p of c.packets) {
      const r = evaluate(c.definition, p.data, { ...p.options, state });
      seen.add(`verdict:${r.verdict}:${r.decidedBy}`);
      const v = parsePacket(p.data);
      if (v.ipv4) seen.add('ipv4');
      if (v.ipv6) seen.add('ipv6');
      if (v.vlan.length) seen.add('vlan');
      if (!v.eth) seen.add('no-ethernet');
      if (p.intent.includes('truncated')) seen.add('truncated');
      if (p.intent.includes('non-first fragment')) seen.add('fragment');
      const m = /aimed at rule (\d+)/.exec(p.intent);
      if (m && !p.intent.includes('nudged') && !p.intent.includes(';')) {
        aimed++;
        if (r.trace.some((t) => t.ruleId === Number(m[1]) && t.matched)) hit++;
      }
    }
  }
  for (const want of [
    'action:accept', 'action:drop', 'action:reject', 'action:redirect', 'action:jump', 'action:goto', 'action:return',
    'action:count', 'action:log', 'action:mark', 'action:limit',
    'verdict:accept:rule', 'verdict:drop:rule', 'verdict:reject:rule', 'verdict:redirect:rule',
    'verdict:accept:policy', 'verdict:drop:policy', 'verdict:reject:policy',
    'ipv4', 'ipv6', 'vlan', 'no-ethernet', 'truncated', 'fragment', 'sets',
  ]) {
    assert.ok(seen.has(want), `never generated: ${want}`);
  }
  // Packets aimed at a rule, when the walk reaches it, mostly match it.
  assert.ok(hit / aimed > 0.3, `aimed packets matched their rule ${hit}/${aimed}`);
});

test('the fast path (trace: false) agrees with the explaining path', () => {
  for (const c of generateCases(5000, 150)) {
    const slow = new EvalState(c.definition);
    const fast = new EvalState(c.definition);
    for (const p of c.packets) {
      const a = evaluate(c.definition, p.data, { ...p.options, state: slow });
      const b = evaluate(c.definition, p.data, { ...p.options, state: fast, trace: false });
      assert.equal([b.verdict, b.ruleId, b.mark, b.chainPath, b.trace.length], [a.verdict, a.ruleId, a.mark, a.chainPath, 0], `seed ${c.seed}: ${p.intent}`);
    }
  }
});

test('options shape the cases', () => {
  const c = generateCase(99, { hook: 'xdp', maxRules: 3, maxChains: 0, packets: 2, reject: false, redirect: false, limits: false });
  assert.equal(c.definition.programs.map((p) => p.hook), ['xdp']);
  assert.equal(c.definition.chains.map((ch) => ch.name), ['main']);
  assert.ok(c.definition.chains[0]!.rules.length <= 3);
  assert.is(c.packets.length, 2);
  for (const r of allRules(c.definition)) for (const a of r.actions) assert.ok(!['reject', 'redirect', 'limit'].includes(a.kind));
});

test.run();
