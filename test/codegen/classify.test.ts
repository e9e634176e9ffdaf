/**
 * Classification planning, without a kernel: which rules a classifier can
 * hold (and why not), how a match becomes hash entries (ranges as prefixes,
 * lists and `or` as several entries, implied presence dropped), how runs of
 * rules become blocks and which plan each gets, and what explain says.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from '../../codegen/compile.js';
import { describePlan } from '../../codegen/classify/describe.js';
import { tupleText } from '../../codegen/classify/fields.js';
import { AUTO_MAX_LINEAR_RUN, planClassification, T_MAX } from '../../codegen/classify/plan.js';
import { classifyRule, classifyRules, rangePieces } from '../../codegen/classify/rule.js';
import { filter, match, range, rule, type RuleLike } from '../../sdk/index.js';
import type { RuleDef } from '../../sdk/model.js';
import { isPlainValidRule, validateDefinition } from '../../sdk/dsl/validate.js';

function ruleDef(r: RuleLike): RuleDef {
  const f = filter('t', { hook: 'tc-ingress' }, ({ chain }) => chain('c', {}, [r]));
  return f.toModel().chains[0]!.rules[0]!;
}

function bigFilter(n: number, extra: RuleLike[] = []) {
  return filter('big', { hook: 'tc-ingress' }, ({ chain }) => {
    const rules: RuleLike[] = [];
    for (let i = 0; i < n; i++) rules.push(rule(match.ip4.src(`172.16.${i >> 8}.${i & 255}`).and(match.tcp.dport(1000 + i))).drop());
    return chain('input', { policy: 'drop' }, [...rules, ...extra]);
  });
}

test('a port range becomes the fewest prefix-aligned pieces that cover it exactly', () => {
  const pieces = rangePieces(1000, 1600, 16);
  const covered = new Set<number>();
  for (const [m, v] of pieces) for (let x = 0; x < 65536; x++) if ((x & m) === v) covered.add(x);
  assert.is(covered.size, 601);
  for (let x = 1000; x <= 1600; x++) assert.ok(covered.has(x), `${x} covered`);
  assert.equal(pieces.length, 5, '1000-1007, 1008-1023, 1024-1535, 1536-1599, 1600');
  assert.equal(rangePieces(0, 65535, 16), [[0, 0]], 'the whole range is one wildcard');
  assert.equal(rangePieces(80, 80, 16), [[0xffff, 80]], 'a single port is exact');
});

test('a 5-tuple-like rule is one entry; implied presence (TCP means ports and IP) is dropped from the key', () => {
  const k = classifyRule(ruleDef(rule(match.ip4.src('10.0.0.0/8').and(match.tcp.dport(80))).count().drop()));
  assert.ok(k.ok);
  if (!k.ok) return;
  assert.is(k.conjs.length, 1);
  assert.is(tupleText(k.conjs[0]!), 'pres(ip4) l4 dport src4/8');
  assert.equal([...k.fields].sort(), ['dport', 'l4', 'pres', 'src']);
  assert.is(k.v6, false);
});

test('lists and or expand into entries; contradictions expand into none', () => {
  const lists = classifyRule(ruleDef(rule(match.ip4.src(['10.0.0.0/8', '192.168.0.0/16']).and(match.udp.dport([53, 123, range(1000, 1003)]))).accept()));
  assert.ok(lists.ok && lists.conjs.length === 2 * 3, 'two sources x (53, 123, 1000-1003)');
  const never = classifyRule(ruleDef(rule(match.ip4.src('10.0.0.0/8').and(match.icmp6.type('echo-request'))).drop()));
  assert.ok(never.ok && never.conjs.length === 0, 'ICMPv6 over IPv4 matches nothing');
  const v6 = classifyRule(ruleDef(rule(match.ip6.dst('2001:db8::/64')).drop()));
  assert.ok(v6.ok && v6.v6, 'a /64 needs IPv6-wide address fields');
  const all = classifyRule(ruleDef(rule().accept()));
  assert.ok(all.ok && all.conjs.length === 1 && tupleText(all.conjs[0]!) === '(any packet)');
});

test('what stays linear, and why', () => {
  const why = (r: RuleLike) => {
    const k = classifyRule(ruleDef(r));
    return k.ok ? 'classifiable' : k.why;
  };
  assert.match(why(rule(match.ip.ttl.lt(5)).drop()), /ip.ttl is not a classifier field/);
  assert.match(why(rule(match.not(match.tcp.dport(22))).drop()), /negation/);
  assert.match(why(rule(match.tcp.dport(22)).count()), /without a verdict/);
  assert.match(why(rule(match.tcp.dport(22)).limit({ rate: 5 }).accept()), /limit/);
  assert.match(why(rule(match.tcp.dport(22)).redirect('eth1')), /redirect by interface name/);
  assert.match(why(rule(match.ip4.src(Array.from({ length: 70 }, (_, i) => `10.0.${i}.0/24` as const))).drop()), /more than 64 entries/);
  assert.is(why(rule(match.tcp.dport(22)).log('x').mark(1).count().redirect(3)), 'classifiable');
  assert.is(why(rule(match.udp.dport(53)).return()), 'classifiable');
});

test('auto: small runs stay tests, long runs become lookups, and the reason is given', () => {
  const small = planClassification(bigFilter(10).toModel());
  assert.is(small.tss.length, 0);
  assert.match(small.blocks[0]!.why, /cheaper as tests/);
  const big = planClassification(bigFilter(300).toModel());
  assert.is(big.tss.length, 1);
  assert.is(big.tss[0]!.tuples.length, 1);
  assert.is(big.tss[0]!.entries, 300);
  assert.match(big.tss[0]!.why, /300 rules over 1 tuple/);
  assert.ok(300 > AUTO_MAX_LINEAR_RUN || /lookup/.test(big.tss[0]!.why));
  const always = planClassification(bigFilter(3).toModel(), { classify: 'always' });
  assert.is(always.tss.length, 1);
  const never = planClassification(bigFilter(300).toModel(), { classify: 'never' });
  assert.is(never.tss.length, 0);
  assert.is(never.linear.length, 300);
});

test('a non-classifiable rule splits a run; each block keeps its place in the chain', () => {
  const f = bigFilter(300, [rule(match.ip.ttl.lt(2)).drop(), ...Array.from({ length: 300 }, (_, i) => rule(match.udp.dport(2000 + i)).accept())]);
  const plan = planClassification(f.toModel());
  assert.equal(plan.blocks.map((b) => [b.plan, b.ruleIds[0], b.ruleIds.length]), [['tss', 0, 300], ['tss', 301, 300]]);
  assert.equal(plan.linear.map((l) => l.id), [300]);
  // Priorities follow rule order within a block.
  const prios = plan.tss[0]!.members.map((m) => m.prio);
  assert.ok(prios.every((p, i) => i === 0 || p > prios[i - 1]!));
});

test(`a run with more than ${T_MAX} distinct tuples is cut into blocks of at most ${T_MAX}`, () => {
  const f = filter('tuples', { hook: 'tc-ingress' }, ({ chain }) => {
    const rules: RuleLike[] = [];
    // 32 source lengths x 5 destination lengths: 160 distinct tuples, one rule each.
    for (let len = 1; len <= 32; len++) {
      for (let d = 1; d <= 5; d++) rules.push(rule(match.ip4.src(`10.0.0.0/${len}` as `${number}.${number}.${number}.${number}/${number}`).and(match.ip4.dst(`10.0.0.0/${d}` as `${number}.${number}.${number}.${number}/${number}`))).drop());
    }
    return chain('input', {}, rules);
  });
  const plan = planClassification(f.toModel(), { classify: 'always' });
  assert.ok(plan.tss.length >= 2, `${plan.tss.length} blocks`);
  for (const b of plan.tss) assert.ok(b.tuples.length <= T_MAX, `block ${b.id}: ${b.tuples.length} tuples`);
  assert.is(plan.tss.reduce((n, b) => n + b.members.length, 0), 160);
});

test('the C of a classified filter: one call per block and a shared tail; the golden small filter is unchanged', () => {
  const r = compile(bigFilter(300), { emitOnly: true });
  assert.ok(r.c.includes('v = tsbpf_cls_block_tc(ctx, st, 0);'));
  assert.ok(r.c.includes('cls_done:'));
  assert.ok(r.c.includes('struct tsbpf_cls_key {'));
  assert.ok(!r.c.includes('/* rule 5 '), 'classified rules have no code of their own');
  assert.is(r.maps.find((m) => m.name === 'tsbpf_cls')!.initialBatch!.count, 300);
  assert.is(r.maps.find((m) => m.name === 'tsbpf_cls')!.initial!.length, 300, 'the packed entries unpack on demand');
  const small = compile(bigFilter(5), { emitOnly: true });
  assert.ok(!small.c.includes('tsbpf_cls'), 'a small filter compiles as before');
});

test('explain --plan text: blocks, their plan and reasons, tuples, what stays linear', () => {
  const r = compile(bigFilter(300, [rule(match.ip.ttl.lt(2)).drop()]), { emitOnly: true });
  const text = describePlan(r.classification, (id) => r.ruleTable[id]!.name);
  assert.match(text.summary, /300 rules in 1 tuple-space search block/);
  assert.match(text.summary, /1 rule not classifiable/);
  assert.match(text.summary, /key: pres, l4, proto, sport, dport, src\(v4\), dst\(v4\)/);
  assert.equal(text.rows[0]!.slice(0, 6), [0, 'input', 'input#0..input#299 (300)', 'lookup', 1, 300]);
  assert.ok(text.notes.some((n) => /block 0 tuples: pres\(ip4\) l4 dport src4\/32 \(300 entries\)/.test(n)));
  assert.ok(text.notes.some((n) => /not classifiable: ip.ttl is not a classifier field \(1\)/.test(n)));
});

test('a long chain is cut into continuation programs reached by goto', () => {
  const f = filter('long', { hook: 'tc-ingress' }, ({ chain }) => {
    const rules: RuleLike[] = [];
    for (let i = 0; i < 900; i++) rules.push(rule(match.ip.ttl.lt(1 + (i % 200))).drop());
    return chain('input', { policy: 'accept' }, rules);
  });
  const r = compile(f, { emitOnly: true });
  const chains = r.programs.filter((p) => p.stage === 'chain').map((p) => p.chain);
  assert.equal(chains, ['input', 'input~2', 'input~3']);
  assert.ok(r.c.includes("goto input~2"), 'the first program continues in the second');
  assert.ok(r.tailCalls[r.programs[0]!.program]! <= 4);
  assert.is(r.programs.flatMap((p) => p.rules).length, 900, 'every rule is in exactly one program');
});

test('classifyRules (by shape) gives what classifyRule gives, rule by rule', () => {
  type Ip = `${number}.${number}.${number}.${number}`;
  const ip = (i: number) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 7) & 255}` as Ip;
  const rules: RuleLike[] = [];
  for (let i = 0; i < 60; i++) {
    const k = i % 10;
    if (k === 0) rules.push(rule(match.ip4.src(ip(i)).and(match.tcp.dport(i))).accept());
    else if (k === 1) rules.push(rule(match.ip4.src(`${ip(i)}/${8 + (i % 20)}` as `${Ip}/${number}`).and(match.udp.sport(i * 3))).count().drop());
    else if (k === 2) rules.push(rule(match.ip4.dst(ip(i)).and(match.ip4.src(ip(i + 1))).and(match.tcp.dport(i % 2 ? 0 : 65535))).accept());
    // Same word twice (contradiction when the values differ): not a template, classified in full.
    else if (k === 3) rules.push(rule(match.tcp.dport(80).and(match.tcp.dport(i % 2 ? 80 : 81))).drop());
    else if (k === 4) rules.push(rule(match.ip6.src('2001:db8::1').and(match.ip4.src(ip(i)))).drop());
    else if (k === 5) rules.push(rule(match.ip4.src(ip(i)).and(match.tcp.dport(range(1000, 1000 + i)))).drop());
    else if (k === 6) rules.push(rule(match.ip4.src([ip(i), ip(i + 1)]).and(match.udp.dport(i))).accept());
    else if (k === 7) rules.push(rule(match.ip4.src(ip(i)).and(match.tcp.dport(i))).mark(i).accept());
    else if (k === 8) rules.push(rule(match.ip4.src(ip(i)).and(match.ip.proto(i % 2 ? 6 : 17)).and(match.l4.dport(i))).drop());
    else rules.push(rule(match.ip4.src('0.0.0.0/0').and(match.tcp.dport(i))).accept());
  }
  const defs = rules.map(ruleDef);
  const fast = classifyRules(defs);
  defs.forEach((d, i) => {
    const { tupleIds: _ids, ...got } = fast[i]!;
    assert.equal(got, classifyRule(d), `rule ${i}`);
  });
});

test('isPlainValidRule is true only for rules validateDefinition finds nothing wrong with', () => {
  const bad = (r: RuleDef, patch: Partial<RuleDef>) => ({ ...r, ...patch }) as RuleDef;
  const r0 = ruleDef(rule(match.ip4.src('10.1.2.3').and(match.tcp.dport(22))).count().accept().named('ok'));
  const cases: RuleDef[] = [
    r0,
    ruleDef(rule(match.ip4.src('10.0.0.0/8').and(match.udp.dport(range(1, 9)))).drop()),
    bad(r0, { match: { kind: 'addr', field: 'ip4.src', cidrs: ['10.0.0.256'] } }),
    bad(r0, { match: { kind: 'addr', field: 'ip4.src', cidrs: ['2001:db8::1'] } }),
    bad(r0, { match: { kind: 'addr', field: 'ip4.src', cidrs: ['010.0.0.1'] } }),
    bad(r0, { match: { kind: 'addr', field: 'ip4.src', cidrs: ['10.0.0.1/33'] } }),
    bad(r0, { match: { kind: 'num', field: 'l4.dport', ranges: [[70000, 70000]] } }),
    bad(r0, { match: { kind: 'num', field: 'l4.dport', ranges: [[9, 1]] } }),
    bad(r0, { name: 'a\nb' }),
    bad(r0, { actions: [{ kind: 'accept' }, { kind: 'count' }] }),
  ];
  for (const r of cases) {
    const def = filter('t', { hook: 'tc-ingress' }, ({ chain }) => chain('c', {}, [])).toModel();
    const full = validateDefinition({ ...def, chains: [{ ...def.chains[0]!, rules: [{ ...r, id: 0, index: 0, chain: 'c' }] }] });
    if (isPlainValidRule(r)) assert.equal(full, [], `plain but invalid: ${JSON.stringify(r.match)}`);
  }
  assert.ok(isPlainValidRule(r0));
  assert.not.ok(isPlainValidRule(cases[2]!));
});

test.run();
