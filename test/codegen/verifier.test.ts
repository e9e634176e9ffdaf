/**
 * Every object codegen makes passes the kernel's verifier, at every hook and
 * in every inlining mode; and when the verifier does say no, its log is traced
 * back to the stage, chain and rule the code came from.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileC } from '../../codegen/clang.js';
import { compile, type CompileResult } from '../../codegen/compile.js';
import { explainVerifierError, verifierError } from '../../codegen/verifier.js';
import { VerifierError } from '../../sdk/errors.js';
import { filter } from '../../sdk/dsl/filter.js';
import { match } from '../../sdk/dsl/match.js';
import { rule } from '../../sdk/dsl/rule.js';
import { evaluate } from '../../sdk/evaluate.js';
import { packet } from '../../sdk/packet.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { richFilter, smallDefinition } from './defs.js';
import { cacheDir, loadObject } from './helpers.js';

function expectLoads(r: CompileResult): void {
  const o = loadObject(r.object.path);
  try {
    for (const p of r.programs) assert.ok(o.programs.get(p.name)!.fd > 0, `${p.name} (${p.hook}, ${p.stage}) loaded`);
    for (const m of r.maps) {
      const k = o.maps.get(m.name);
      assert.ok(k, `map ${m.name}`);
      // The layouts compile() reports are the kernel's sizes (prog_arrays hold fds).
      if (m.key) assert.is(k!.keySize, m.key.size, `${m.name} key size`);
      if (m.value && m.kind !== 'prog_array') assert.is(k!.valueSize, m.value.size, `${m.name} value size`);
      assert.is(k!.maxEntries, m.maxEntries, `${m.name} max entries`);
    }
  } finally {
    o.close();
  }
}

test('the program table names every stage, slot and rule', () => {
  const r = compile(smallDefinition(['xdp', 'tc-egress']), { emitOnly: true, inline: 'none' });
  const xdp = r.programs.filter((p) => p.hook === 'xdp');
  assert.equal(
    xdp.map((p) => [p.name, p.stage, p.tailCallSlot, p.chain ?? null]),
    [
      ['host_xdp', 'parse', null, null],
      ['host_xdp__input', 'chain', 1, 'input'],
      ['host_xdp__v6', 'chain', 2, 'v6'],
      ['host_xdp__act', 'act', 0, null],
    ],
  );
  assert.equal(xdp.find((p) => p.chain === 'v6')!.rules, [5, 6, 7]);
  assert.equal(r.progArrays, { host_xdp: 'tsbpf_jmp_xdp', host_tc_egress: 'tsbpf_jmp_tc_eg' });
  const inl = compile(smallDefinition(['xdp']), { emitOnly: true });
  assert.equal(inl.programs.find((p) => p.chain === 'input')!.rules, [0, 1, 2, 3, 4, 5, 6, 7], 'inlined v6 rules run in input');
});

test('a verifier log line in a rule maps back to that rule (synthetic log)', () => {
  const r = compile(smallDefinition(), { emitOnly: true, inline: 'none' });
  const smtp = r.ruleTable.find((x) => x.name === 'smtp')!;
  const [start] = smtp.code[0]!.lines;
  const log = `0: R1=ctx() R10=fp0\n; if (...) @ <stdin>:${start + 2}\n12: (61) r0 = *(u32 *)(r1 +20)\ninvalid access to packet\n`;
  const ex = explainVerifierError(r, 'host_tc_ingress__input', log);
  assert.is(ex.stage, 'chain');
  assert.is(ex.chain, 'input');
  assert.is(ex.rule!.name, 'smtp');
  assert.equal(ex.rule!.source, { file: 'fw.ts', line: 13, column: 5 });
  assert.match(ex.message, /rule 'smtp' \(id 3, fw\.ts:13:5\)/);
  const parse = explainVerifierError(r, 'host_tc_ingress', 'R1 invalid mem access\n');
  assert.is(parse.stage, 'parse');
  assert.match(parse.message, /parse stage/);
  assert.is(explainVerifierError(r, 'host_tc_ingres', '').modelProgram, undefined, 'an unknown program is said to be unknown');
});

if (requireKernel('codegen: generated objects pass the verifier')) {
  for (const inline of ['auto', 'none'] as const) {
    test(`every feature at every hook passes the verifier (inline ${inline})`, () => {
      const r = compile(richFilter(), { cacheDir: cacheDir(), inline });
      assert.equal(new Set(r.programs.map((p) => p.hook)), new Set(['xdp', 'tc-ingress', 'tc-egress']));
      for (const n of Object.values(r.tailCalls)) assert.ok(n <= 33, `at most 33 tail calls (${n})`);
      expectLoads(r);
    });
  }

  test('every chain inlined (inline all) passes the verifier', () => {
    const r = compile(smallDefinition(['xdp', 'tc-egress']), { cacheDir: cacheDir(), inline: 'all' });
    assert.equal(r.programs.filter((p) => p.stage === 'chain').map((p) => p.chain), ['input', 'input']);
    expectLoads(r);
  });

  // Reduced from random ruleset 10179: with mark actions inlined from several
  // chains, clang kept &skb->mark (ctx + 8) in a register and stored through
  // it, which the verifier refuses ("dereference of modified ctx ptr").
  test('mark actions from inlined chains store skb->mark as ctx + 8 (verifier) and carry the mark on', () => {
    const fw = filter('marks', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => {
      const tagged = chain('tagged', { policy: 'accept' }, [rule().mark(1, 1).drop()]);
      const v6 = chain('v6', { policy: 'accept' }, [rule(match.ip6.src(['fd00::/24', 'fd00::/16'])).jump(tagged)]);
      return chain('main', { policy: 'accept' }, [
        rule(match.eth.type('ipv4').and(match.ip6.dst('fd00:3::/120').or(match.vlan)).and(match.ip4.dst('10.2.0.166'))).mark(0, 1).goto(v6),
      ]);
    });
    const data = packet().vlan({ id: 1 }).ipv4({ src: '10.0.0.1', dst: '10.2.0.166' }).udp({ sport: 1, dport: 2 }).build();
    for (const inline of ['auto', 'all', 'none'] as const) {
      const f = load(fw, { inline, cacheDir: cacheDir() });
      try {
        for (const hook of ['tc-ingress', 'tc-egress'] as const) {
          const want = evaluate(fw, data, { hook, mark: 7 });
          const got = f.testRun(hook, data, { mark: 7 });
          assert.is(got.filterVerdict, want.verdict, `${inline} ${hook}`);
          assert.is((got.ctx as { mark: number }).mark, want.mark, `${inline} ${hook}: skb->mark`);
          assert.is(want.mark, 6);
        }
      } finally {
        f.close();
      }
    }
  });

  test('a real verifier rejection is traced to its rule', () => {
    const r = compile(smallDefinition(), { emitOnly: true, inline: 'none' });
    // Break the code of rule 'smtp' on the same line count: an unchecked packet write.
    const lines = r.c.split('\n');
    const at = lines.findIndex((l) => l.includes('tsbpf_log(&tsbpf_events, st, 3,'));
    assert.ok(at > 0);
    lines[at] = '\t\t*(volatile __u8 *)(long)ctx->data = 0;';
    const obj = compileC(lines.join('\n'), { cacheDir: cacheDir() });
    let err: unknown;
    try {
      loadObject(obj.path).close();
    } catch (e) {
      err = e;
    }
    const e = err as { program?: string; verifierLog?: string };
    assert.ok(e && e.verifierLog, 'the load failed with a verifier log');
    const program = e.program ?? 'host_tc_ingress__input';
    const ex = explainVerifierError(r, program, e.verifierLog!);
    assert.is(ex.chain, 'input');
    assert.is(ex.rule?.name, 'smtp', ex.message);
    assert.is(ex.line!.number, at + 1);
    const ve = verifierError(r, program, e.verifierLog!);
    assert.instance(ve, VerifierError);
    assert.match(ve.hint ?? '', /rule 'smtp'/);
  });
}

test.run();
