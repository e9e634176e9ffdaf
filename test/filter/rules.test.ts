/**
 * `handle.rules`: adding, removing and replacing rules of a loaded filter.
 * Classifiable rules next to a classifier block are map updates; anything
 * else regenerates the program. Either way the kernel agrees with
 * evaluate(handle.definition), rules keep their counters, sets keep their
 * run-time contents, log subscriptions keep delivering, and a bad change
 * changes nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DslError, evaluate, EvalState, filter, match, packet, rule, TsbpfError, type RuleLike } from '../../sdk/index.js';
import { setSourceCapture } from '../../sdk/source.js';
import { load, type FilterLogEvent, type LoadedFilter } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';

type Ip = `${number}.${number}.${number}.${number}`;

function web(n = 300) {
  const was = setSourceCapture(false);
  try {
    return filter('web', { hook: 'tc-ingress' }, ({ chain, set }) => {
      const banned = set.ipv4('banned', { elements: ['192.0.2.0/24'] });
      const rules: RuleLike[] = [rule(match.ip4.src.in(banned)).count().drop().named('banned')];
      for (let i = 0; i < n; i++) rules.push(rule(match.ip4.src(`172.16.${i >> 8}.${i & 255}` as Ip).and(match.tcp.dport(1000 + i))).drop().named(`n${i}`));
      rules.push(rule(match.tcp.dport(80)).count().log('web').accept().named('http'));
      rules.push(rule(match.udp.dport(53)).count().accept().named('dns'));
      return chain('input', { policy: 'drop' }, rules);
    });
  } finally {
    setSourceCapture(was);
  }
}

const tcp = (src: string, dport: number) => packet().ipv4({ src, dst: '10.0.0.1' }).tcp({ sport: 40000, dport }).build();
const udp = (src: string, dport: number) => packet().ipv4({ src, dst: '10.0.0.1' }).udp({ sport: 40000, dport }).build();

/** The kernel and the evaluator on the handle's current definition agree on these packets. */
function agrees(h: LoadedFilter, what: string, packets: Buffer[]): void {
  const def = h.definition;
  const state = new EvalState(def);
  for (const p of packets) {
    const want = evaluate(def, p, { state, trace: false });
    assert.is(h.testRun('tc-ingress', p).filterVerdict, want.verdict, `${what}: evaluator says ${want.verdict} by ${want.rule ?? 'policy'}`);
  }
}

const probe = [tcp('10.1.1.1', 80), tcp('10.1.1.1', 22), udp('10.1.1.1', 53), tcp('192.0.2.9', 80), tcp('10.9.0.1', 8080), udp('10.9.0.1', 5353)];

if (requireKernel('live rules: add, remove, replace')) {
  test('classifiable rules next to a block are map updates, at any position; ids follow order, names stay', () => {
    const h = load(web());
    try {
      agrees(h, 'as loaded', probe);
      let u = h.rules.add(rule(match.ip4.src('10.1.1.1').and(match.tcp.dport(22))).accept().named('ssh'), { position: { before: 'http' } });
      assert.is(u.kind, 'map');
      assert.equal(u.rules, ['ssh']);
      assert.ok(u.ms < 100, `${u.ms} ms`);
      u = h.rules.add(rule(match.ip4.src('10.9.0.0/16').and(match.tcp.dport(8080))).reject(), { position: 1 });
      assert.is(u.kind, 'reload', 'reject needs a reject stage the program did not have');
      u = h.rules.add(rule(match.ip4.src('10.9.0.0/16').and(match.udp.dport(5353))).accept(), { chain: 'input', position: 2 });
      assert.is(u.kind, 'map');
      const names = h.definition.chains[0]!.rules.map((r) => r.name);
      assert.is(names[0], 'banned');
      assert.is(names[3], 'n0');
      assert.ok(/^input#\d+$/.test(names[1]!) && /^input#\d+$/.test(names[2]!) && names[1] !== names[2], `unnamed rules get fresh names: ${names[1]}, ${names[2]}`);
      assert.is(new Set(names).size, names.length, 'names stay unique');
      assert.is(names.indexOf('ssh'), names.indexOf('http') - 1);
      assert.equal(h.definition.chains[0]!.rules.map((r) => r.id), names.map((_, i) => i), 'ids are 0-based in definition order');
      agrees(h, 'after adds', probe);
      assert.is(h.rules.remove('ssh').kind, 'map');
      assert.is(h.rules.replace('dns', rule(match.udp.dport([53, 5353])).count().drop()).kind, 'map');
      assert.ok(h.definition.chains[0]!.rules.some((r) => r.name === 'dns' && r.actions.some((a) => a.kind === 'drop')), 'the replacement keeps the name');
      agrees(h, 'after remove and replace', probe);
    } finally {
      h.close();
    }
  });

  test('rules inserted again and again at one place keep their order (priorities re-spaced locally)', () => {
    const h = load(web(50));
    try {
      // Each new rule goes right before 'http': the first one added stays first.
      for (let i = 0; i < 40; i++) {
        const u = h.rules.add(rule(match.tcp.dport(80)).mark(i + 1).accept().named(`m${i}`), { position: { before: 'http' } });
        assert.is(u.kind, 'map');
      }
      const r = evaluate(h.definition, tcp('10.1.1.1', 80));
      assert.is(r.rule, 'm0');
      agrees(h, 'after 40 inserts', probe);
      h.rules.remove('m0');
      assert.is(evaluate(h.definition, tcp('10.1.1.1', 80)).rule, 'm1');
      agrees(h, 'm1 first', probe);
    } finally {
      h.close();
    }
  });

  test('addMany: 50,000 rules in one call; once regenerated with room for them, then as one map update', () => {
    const h = load(web());
    const was = setSourceCapture(false);
    // Rule i: 10.x.y.z (from i) to a port from i, accepted; the middle one drops port 80, ahead of 'http'.
    const src = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` as Ip;
    const port = (i: number) => 2000 + (i % 50_000);
    const batch = (tag: string, from: number, n: number) => {
      const rules: RuleLike[] = [];
      for (let i = from; i < from + n; i++) {
        rules.push(
          i === from + n / 2
            ? rule(match.ip4.src(src(i)).and(match.tcp.dport(80))).drop().named(`${tag}${i}`)
            : rule(match.ip4.src(src(i)).and(match.tcp.dport(port(i)))).accept().named(`${tag}${i}`),
        );
      }
      return rules;
    };
    const decide = (tag: string, from: number, n: number) => {
      const def = h.definition;
      const cases: Array<[string, Buffer]> = [
        [`${tag}${from}`, tcp(src(from), port(from))],
        [`${tag}${from + n / 2}`, tcp(src(from + n / 2), 80)],
        [`${tag}${from + n - 1}`, tcp(src(from + n - 1), port(from + n - 1))],
      ];
      for (const [name, p] of cases) {
        const want = evaluate(def, p, { trace: false });
        assert.is(want.rule, name, `the evaluator picks ${name}`);
        assert.is(h.testRun('tc-ingress', p).filterVerdict, want.verdict, `${name} decides in the kernel`);
      }
    };
    try {
      const first = h.rules.addMany(batch('a', 0, 50_000), { position: { before: 'http' } });
      assert.is(first.kind, 'reload', 'the loaded filter had slots for far fewer rules');
      assert.match(first.why ?? '', /rule slots/);
      assert.is(first.rules.length, 50_000);
      assert.is(h.rules.size, 50_303);
      decide('a', 0, 50_000);
      const second = h.rules.addMany(batch('b', 50_000, 50_000), { position: { before: 'http' } });
      assert.is(second.kind, 'map', second.why);
      assert.equal(second.rules.slice(0, 2), ['b50000', 'b50001']);
      decide('b', 50_000, 50_000);
      decide('a', 0, 50_000);
      const names = h.definition.chains[0]!.rules.map((r) => r.name);
      assert.is(names.indexOf('b50000'), names.indexOf('a49999') + 1, 'the batch keeps its order, at its place');
      assert.is(names.indexOf('http'), names.indexOf('b99999') + 1);
      agrees(h, 'after two batches', probe);
      // At the end of the chain (after the block's last rule) there is room: no renumbering.
      const tail = h.rules.addMany([rule(match.udp.dport(7000)).accept().named('t0'), rule(match.udp.dport([7000, 7001])).drop().named('t1')]);
      assert.is(tail.kind, 'map', tail.why);
      assert.is(evaluate(h.definition, udp('10.1.1.1', 7001)).rule, 't1');
      agrees(h, 'after a tail batch', [udp('10.1.1.1', 7000), udp('10.1.1.1', 7001), udp('10.1.1.1', 53)]);
    } finally {
      setSourceCapture(was);
      h.close();
    }
  });

  test('a bad change changes nothing', () => {
    const h = load(web());
    try {
      const before = JSON.stringify(h.definition.chains);
      assert.throws(() => h.rules.remove('nope'), (e: unknown) => e instanceof TsbpfError && /no rule 'nope'/.test(e.message));
      assert.throws(() => h.rules.add(rule(match.tcp.dport(70000)).drop()), (e: unknown) => e instanceof DslError && /70000/.test(e.message));
      assert.throws(() => h.rules.add(rule(match.tcp.dport(81)).drop().named('http')), (e: unknown) => e instanceof DslError && /named 'http' already/.test(e.message));
      assert.throws(() => h.rules.add(rule(match.tcp.dport(81)).drop(), { position: 9999 }), (e: unknown) => e instanceof TsbpfError && /outside chain/.test(e.message));
      assert.throws(() => h.rules.add(rule(match.tcp.dport(81)).jump('nowhere')), (e: unknown) => e instanceof DslError && /nowhere/.test(e.message));
      assert.throws(
        () => h.rules.update([{ op: 'add', rule: rule(match.tcp.dport(81)).drop().named('ok') }, { op: 'remove', rule: 'missing' }]),
        (e: unknown) => e instanceof TsbpfError,
      );
      // addMany: one bad rule among plain ones (the fast validation must not let it through), named with where it was written.
      const plain = (i: number) => rule(match.ip4.src(`10.7.${i >> 8}.${i & 255}` as Ip).and(match.tcp.dport(1000 + i))).accept().named(`p${i}`);
      const bads: Array<[RuleLike, RegExp, string]> = [
        [rule(match.ip4.src('10.7.0.1').and(match.tcp.dport(70000))).accept().named('bad'), /70000/, 'bad'],
        [rule(match.ip4.src('10.7.0.256' as Ip).and(match.tcp.dport(80))).accept().named('bad'), /10\.7\.0\.256/, 'bad'],
        [rule(match.ip4.src('2001:db8::1' as Ip).and(match.tcp.dport(80))).accept().named('bad'), /IPv6/, 'bad'],
        [rule(match.tcp.dport(80)).drop().named('p3'), /named 'p3' already/, 'p3'],
      ];
      for (const [bad, message, name] of bads) {
        const batch = [...Array.from({ length: 300 }, (_, i) => plain(i)), bad, plain(300)];
        assert.throws(
          () => h.rules.addMany(batch, { position: { before: 'http' } }),
          (e: unknown) => e instanceof DslError && message.test(e.message) && e.rule === name && e.source !== undefined,
          `${message}`,
        );
        assert.is(h.rules.size, 303, 'no rule of the batch was added');
      }
      assert.is(JSON.stringify(h.definition.chains), before);
      agrees(h, 'unchanged', probe);
    } finally {
      h.close();
    }
  });

  test('a batch is one switch; a shape change regenerates the program and keeps counters, set contents and log subscriptions', () => {
    const h = load(web());
    const events: FilterLogEvent[] = [];
    const logs = h.onLog((e) => events.push(e));
    try {
      h.sets['banned']!.add('198.51.100.0/24');
      for (let i = 0; i < 5; i++) h.testRun('tc-ingress', tcp('10.1.1.1', 80));
      h.testRun('tc-ingress', tcp('198.51.100.1', 80));
      const count = (name: string) => h.counters().find((c) => c.name === name)!.packets;
      assert.is(count('http'), 5n);
      assert.is(count('banned'), 1n);

      const batch = h.rules.update([
        { op: 'add', rule: rule(match.udp.dport(5353)).drop().named('mdns'), place: { position: { after: 'dns' } } },
        { op: 'replace', rule: 'n0', with: rule(match.ip4.src('172.16.0.0').and(match.tcp.dport(999))).drop() },
        { op: 'remove', rule: 'n1' },
      ]);
      assert.is(batch.kind, 'map');
      assert.equal(batch.rules, ['mdns', 'n0']);

      // A TTL test is not classifiable: the program is regenerated and swapped.
      const u = h.rules.add(rule(match.ip.ttl.lt(2)).drop().named('ttl'), { position: 1 });
      assert.is(u.kind, 'reload');
      assert.match(u.why ?? '', /not classifiable/);
      assert.is(count('http'), 5n, 'counters survive the swap');
      assert.ok(h.sets['banned']!.has('198.51.100.0/24'), 'a set keeps what was added at run time');
      h.testRun('tc-ingress', tcp('198.51.100.1', 80));
      assert.is(count('banned'), 2n, 'the set and its rule still work');
      h.testRun('tc-ingress', tcp('10.1.1.1', 80));
      assert.is(count('http'), 6n);
      agrees(h, 'after the swap', [...probe, udp('10.1.1.1', 5353)]);

      // After the swap, rules near the new linear one are still map updates.
      assert.is(h.rules.add(rule(match.tcp.dport(443)).accept().named('https'), { position: { after: 'http' } }).kind, 'map');
      assert.is(h.rules.remove('ttl').kind, 'reload');
      agrees(h, 'after removing it', probe);

      logs.consume();
      assert.ok(events.length >= 6, `${events.length} log events`);
      assert.ok(events.every((e) => e.rule === 'http' && e.prefix === 'web' && e.verdict === 'accept'), 'events name their rule across swaps');
      assert.ok(!logs.closed);
    } finally {
      logs.close();
      h.close();
    }
  });
}

test.run();
