/**
 * The generated programs decide like the reference evaluator: random filters
 * (sdk/generate.ts: nested chains, jumps, gotos, returns, sets, limits,
 * rejects, marks) and packets aimed at their rules, malformed ones included,
 * run through the kernel at every hook, with chains as tail-called programs
 * ('none') and inlined ('auto'); verdict, reject reply bytes and per-rule
 * counters must equal evaluate()'s. (The full 2,000-case differential suite
 * lives with the DSL tests; this one guards the lowering.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from '../../codegen/compile.js';
import { COUNTER } from '../../codegen/layouts.js';
import { decode } from '../../sdk/layout.js';
import { evaluate, EvalState } from '../../sdk/evaluate.js';
import { generateCase } from '../../sdk/generate.js';
import type { Hook } from '../../sdk/model.js';
import { native } from '../../runtime/native.js';
import type { Ipv4Cidr, Ipv6Cidr } from '../../sdk/addr.js';
import { filter } from '../../sdk/dsl/filter.js';
import { match } from '../../sdk/dsl/match.js';
import { rule } from '../../sdk/dsl/rule.js';
import { packet } from '../../sdk/packet.js';
import { requireKernel } from '../kernel.js';
import { cacheDir, testRunRefuses, u32key } from './helpers.js';
import { expectedRetval, loadFilter } from './kernel-run.js';

const CASES: Array<{ seed: number; hook: Hook; inline: 'none' | 'auto' }> = [
  { seed: 101, hook: 'tc-ingress', inline: 'none' },
  { seed: 102, hook: 'xdp', inline: 'none' },
  { seed: 103, hook: 'tc-egress', inline: 'auto' },
  { seed: 104, hook: 'xdp', inline: 'auto' },
  { seed: 105, hook: 'tc-ingress', inline: 'auto' },
];

if (requireKernel('codegen: kernel verdicts equal evaluate()')) {
  for (const c of CASES) {
    test(`seed ${c.seed} at ${c.hook}, inline ${c.inline}: kernel == evaluate on every packet`, () => {
      const gen = generateCase(c.seed, { hook: c.hook, packets: 60, maxChains: 4 });
      const result = compile(gen.definition, { cacheDir: cacheDir(), inline: c.inline });
      const k = loadFilter(result);
      const state = new EvalState(gen.definition);
      try {
        let ran = 0;
        for (const p of gen.packets) {
          if (testRunRefuses(c.hook, p.data)) continue;
          const want = evaluate(gen.definition, p.data, { ...p.options, state, hook: c.hook });
          const got = k.run(c.hook, Buffer.from(p.data), { mark: p.options.mark });
          const what = `${p.intent} [${p.data.toString('hex')}]: evaluator says ${want.verdict} by ${want.rule ?? `policy of ${want.policyChain}`}`;
          assert.is(got.retval, expectedRetval(c.hook, want.verdict, want.data !== undefined), what);
          if (want.data) assert.is(got.data.toString('hex'), want.data.toString('hex'), `${what}: reject reply`);
          ran++;
        }
        assert.ok(ran > 40, `${ran} packets`);
        // Per-rule counters: the sum over CPUs equals the evaluator's.
        const cpus = native().numPossibleCpus();
        for (const r of result.ruleTable) {
          const raw = k.object.lookup('tsbpf_counters', u32key(r.id))!;
          let packets = 0n;
          const stride = raw.length / cpus;
          for (let i = 0; i < cpus; i++) packets += decode(COUNTER, raw.subarray(i * stride)).packets;
          assert.is(Number(packets), state.counters.get(r.id)?.packets ?? 0, `counter of rule ${r.name}`);
        }
        const errs = k.object.lookup('tsbpf_errors', u32key(0))!;
        let failed = 0n;
        for (let i = 0; i < cpus; i++) failed += errs.readBigUInt64LE(i * 8);
        assert.is(failed, 0n, 'no failed tail call');
      } finally {
        k.close();
      }
    });
  }
}

if (requireKernel('codegen: long lists become maps')) {
  test('long CIDR and port lists become LPM tries and hash sets with the same verdicts', () => {
    const cidrs4 = Array.from({ length: 12 }, (_, i) => `10.${i}.0.0/16`);
    const cidrs6 = Array.from({ length: 10 }, (_, i) => `fd00:${i}::/32`);
    const ports = Array.from({ length: 20 }, (_, i) => 1000 + 3 * i);
    const f = filter('lists', { hook: 'xdp' }, ({ chain }) =>
      chain('input', { policy: 'accept' }, [
        rule(match.ip4.src(cidrs4 as Ipv4Cidr[]).and(match.udp.dport(ports))).count().drop(),
        rule(match.ip6.dst(cidrs6 as Ipv6Cidr[])).count().reject(),
      ]),
    );
    const r = compile(f, { cacheDir: cacheDir() });
    assert.ok(r.c.includes('tsbpf_in_lpm4(&tsbpf_set_0, p->ip4_src)'), 'the IPv4 list is a trie');
    assert.ok(r.c.includes('tsbpf_in_ports(&tsbpf_set_1, p->dport)'), 'the port list is a hash');
    assert.ok(r.c.includes('tsbpf_in_lpm6(&tsbpf_set_2, p->ip6_dst)'), 'the IPv6 list is a trie');
    assert.is(r.maps.find((m) => m.name === 'tsbpf_set_1')!.initial!.length, 20);
    const k = loadFilter(r);
    try {
      const frames: Buffer[] = [];
      for (const a of ['10.0.1.1', '10.11.255.1', '10.12.0.1', '192.168.0.1']) {
        for (const port of [1000, 1003, 1057, 1058, 999]) frames.push(packet().eth().ipv4({ src: a, dst: '10.99.0.1' }).udp({ sport: 1, dport: port }).build());
      }
      for (const a of ['fd00:0::1', 'fd00:9:ffff::1', 'fd00:a::1', 'fe80::1']) frames.push(packet().eth().ipv6({ src: 'fd01::1', dst: a }).udp({ sport: 1, dport: 7 }).build());
      for (const data of frames) {
        const want = evaluate(f, data);
        const got = k.run('xdp', data);
        assert.is(got.retval, expectedRetval('xdp', want.verdict, want.data !== undefined), `${want.verdict} for ${data.toString('hex')}`);
      }
    } finally {
      k.close();
    }
  });
}

test.run();
