/**
 * A definition that cannot compile fails before clang runs, with a DslError
 * that names the rule and where it was written (file:line:col).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from '../../codegen/compile.js';
import { DslError } from '../../sdk/errors.js';
import type { Definition, RuleDef } from '../../sdk/model.js';
import { smallDefinition } from './defs.js';

/** The small definition with rule `index` of chain `chain` replaced. */
function withRule(chain: string, index: number, change: Partial<RuleDef>): Definition {
  const def = structuredClone(smallDefinition());
  const c = def.chains.find((x) => x.name === chain)!;
  c.rules[index] = { ...c.rules[index]!, ...change };
  return def;
}

function expectDslError(def: Definition, message: RegExp, rule?: string): DslError {
  try {
    // clang would fail loudly if it ran: a bogus path proves it is never reached.
    compile(def, { clang: '/nonexistent/clang' });
  } catch (e) {
    assert.instance(e, DslError, `a DslError, got ${String(e)}`);
    const err = e as DslError;
    assert.match(err.message, message);
    if (rule) {
      assert.is(err.rule, rule);
      assert.match(err.message, /^fw\.ts:\d+:\d+: /, 'the message starts with the source position');
    }
    return err;
  }
  assert.unreachable('compile should have thrown');
  throw new Error('unreachable');
}

test('a jump cycle', () => {
  // v6 jumps to loop, loop jumps back to v6.
  const def = withRule('v6', 1, { actions: [{ kind: 'jump', chain: 'loop' }] });
  def.chains.push({
    name: 'loop',
    policy: 'return',
    rules: [{ id: 8, name: 'loop#0', chain: 'loop', index: 0, match: { kind: 'all' }, actions: [{ kind: 'jump', chain: 'v6' }], source: { file: 'fw.ts', line: 30, column: 5 } }],
  });
  const err = expectDslError(def, /cycle/i);
  assert.ok(err.source, 'the error points at a rule of the cycle');
});

test('a jump to an unknown chain', () => {
  expectDslError(withRule('input', 2, { actions: [{ kind: 'jump', chain: 'nowhere' }] }), /nowhere/, 'input#2');
});

test('a port of 70000', () => {
  const err = expectDslError(withRule('input', 3, { match: { kind: 'num', field: 'l4.dport', ranges: [[70000, 70000]] } }), /70000/, 'smtp');
  assert.equal(err.source, { file: 'fw.ts', line: 13, column: 5 });
});

test('an IPv4 CIDR given to an IPv6 field', () => {
  expectDslError(withRule('v6', 1, { match: { kind: 'addr', field: 'ip6.src', cidrs: ['10.0.0.0/8'] } }), /10\.0\.0\.0\/8/, 'v6#1');
});

test('an unknown set, and a set of the wrong family', () => {
  expectDslError(withRule('input', 0, { match: { kind: 'addrSet', field: 'ip4.src', set: 'nope' } }), /nope/, 'blocked');
  expectDslError(withRule('input', 0, { match: { kind: 'addrSet', field: 'ip6.src', set: 'blocklist' } }), /blocklist/, 'blocked');
});

test('a conntrack match in a definition without a conntrack table', () => {
  expectDslError(withRule('input', 4, { match: { kind: 'ct', states: ['established'] } }), /uses conntrack.*no conntrack table/, 'input#4');
});

test('a token bucket too large for 62 bits', () => {
  const limit = { kind: 'limit' as const, limitId: 0, rate: 1, interval: 'day' as const, burst: 1_000_000, costNs: 86_400_000_000_000, mode: 'under' as const };
  expectDslError(withRule('input', 1, { actions: [limit, { kind: 'accept' }] }), /62-bit|burst/, 'ssh');
});

test('a set named like one of tsbpf\'s own maps', () => {
  const def = structuredClone(smallDefinition());
  def.sets[1]!.name = 'tsbpf_counters';
  def.chains[1]!.rules[2]!.match = { kind: 'numSet', field: 'l4.dport', set: 'tsbpf_counters' };
  expectDslError(def, /tsbpf_/);
});

test('a valid definition passes the same checks', () => {
  const r = compile(smallDefinition(), { emitOnly: true });
  assert.ok(r.c.length > 1000);
  assert.is(r.ruleTable.length, 8);
  assert.equal(r.ifnames, ['veth1']);
});

test.run();
