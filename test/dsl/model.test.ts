/**
 * The DSL builds the model codegen and the evaluator consume: rule ids in
 * definition order, default names, normalised ranges, canonical CIDRs, limit
 * ids, default policies, and the source position of every rule.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DslError, filter, match, range, rule, allRules, type Definition } from '../../sdk/index.js';
import { struct, u16, u32, u64, ipv4 } from '../../sdk/layout.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

// Expected positions are found in this file's TypeScript source by a marker comment.
const lines = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/dsl/model.test.ts'), 'utf8').split('\n');
function at(marker: string, token: string): [number, number] {
  const i = lines.findIndex((l) => l.includes(`// @${marker}`));
  return [i + 1, lines[i]!.indexOf(token) + 1];
}

const fw = filter('web', { hook: 'tc-ingress' }, ({ chain, set }) => {
  const blocked = set.ipv4('blocked', { maxEntries: 1024, elements: ['192.0.2.77', '198.51.100.0/24'] });
  const admin = set.port('admin', { elements: [22, 2222] });
  const ssh = chain('ssh', { policy: 'drop' }, [ // @ssh
    rule(match.ip4.src('10.1.2.3/8')).accept(), // @r0
  ]);
  return chain('input', { policy: 'drop' }, [
    rule(match.ip4.src.in(blocked)).drop(), // @r1
    rule(match.tcp.dport(22)).jump(ssh),
    rule(match.tcp.dport.in(admin)).goto(ssh),
    rule(match.tcp.dport([443, 80, 81, range(8000, 8080)]), { name: 'web' }).count().accept(),
    rule(match.icmp.type('echo-request')).limit({ rate: 10, burst: 20 }).accept(),
    rule(match.ip6.dst('2001:DB8::1/32').and(match.udp.dport.ge(1024))).log('v6').drop(), // @r6
  ]);
});

test('chains in declaration order, rules numbered globally in that order', () => {
  const d: Definition = fw.toModel();
  assert.equal(d.chains.map((c) => c.name), ['ssh', 'input']);
  assert.equal(allRules(d).map((r) => [r.id, r.name, r.chain, r.index]), [
    [0, 'ssh#0', 'ssh', 0],
    [1, 'input#0', 'input', 0],
    [2, 'input#1', 'input', 1],
    [3, 'input#2', 'input', 2],
    [4, 'web', 'input', 3],
    [5, 'input#4', 'input', 4],
    [6, 'input#5', 'input', 5],
  ]);
  assert.equal(d.programs, [{ name: 'web_tc_ingress', hook: 'tc-ingress', entry: 'input' }]);
});

test('matches become predicate trees with canonical values', () => {
  const [ssh, input] = fw.toModel().chains;
  assert.equal(ssh!.rules[0]!.match, { kind: 'addr', field: 'ip4.src', cidrs: ['10.0.0.0/8'] });
  assert.equal(input!.rules[0]!.match, { kind: 'addrSet', field: 'ip4.src', set: 'blocked' });
  assert.equal(input!.rules[1]!.match, {
    kind: 'and',
    args: [{ kind: 'has', layer: 'tcp' }, { kind: 'num', field: 'l4.dport', ranges: [[22, 22]] }],
  });
  assert.equal(input!.rules[2]!.match, {
    kind: 'and',
    args: [{ kind: 'has', layer: 'tcp' }, { kind: 'numSet', field: 'l4.dport', set: 'admin' }],
  });
  // Sorted and merged: 80,81 become one range.
  assert.equal((input!.rules[3]!.match as { args: unknown[] }).args[1], { kind: 'num', field: 'l4.dport', ranges: [[80, 81], [443, 443], [8000, 8080]] });
  assert.equal(input!.rules[4]!.match, { kind: 'num', field: 'icmp.type', ranges: [[8, 8]] });
  assert.equal(input!.rules[5]!.match, {
    kind: 'and',
    args: [
      { kind: 'addr', field: 'ip6.dst', cidrs: ['2001:db8::/32'] },
      { kind: 'has', layer: 'udp' },
      { kind: 'num', field: 'l4.dport', ranges: [[1024, 65535]] },
    ],
  });
});

test('actions in order, the control action last; limits numbered', () => {
  const input = fw.toModel().chains[1]!;
  assert.equal(input.rules[1]!.actions, [{ kind: 'jump', chain: 'ssh' }]);
  assert.equal(input.rules[2]!.actions, [{ kind: 'goto', chain: 'ssh' }]);
  assert.equal(input.rules[3]!.actions, [{ kind: 'count' }, { kind: 'accept' }]);
  assert.equal(input.rules[4]!.actions, [
    { kind: 'limit', rate: 10, interval: 'second', burst: 20, costNs: 100_000_000, mode: 'under', limitId: 0 },
    { kind: 'accept' },
  ]);
  assert.equal(input.rules[5]!.actions, [{ kind: 'log', prefix: 'v6' }, { kind: 'drop' }]);
});

test('sets carry canonical initial elements', () => {
  assert.equal(fw.toModel().sets, [
    { name: 'blocked', type: 'ipv4', maxEntries: 1024, elements: ['192.0.2.77/32', '198.51.100.0/24'], source: fw.toModel().sets[0]!.source! },
    { name: 'admin', type: 'port', maxEntries: 1024, elements: [22, 2222], source: fw.toModel().sets[1]!.source! },
  ]);
});

test('every rule records where it was written (this file, line and column of rule()) ', () => {
  const r = allRules(fw.toModel());
  assert.ok(r[0]!.source!.file.endsWith('test/dsl/model.test.ts'), r[0]!.source!.file);
  assert.equal([r[0]!.source!.line, r[0]!.source!.column], at('r0', 'rule('));
  assert.equal([r[1]!.source!.line, r[1]!.source!.column], at('r1', 'rule('));
  assert.equal([r[6]!.source!.line, r[6]!.source!.column], at('r6', 'rule('));
  const chains = fw.toModel().chains;
  assert.equal([chains[0]!.source!.line, chains[0]!.source!.column], at('ssh', 'chain('));
});

test('policies: entry chain defaults to accept, other chains to return', () => {
  const f = filter('p', { hook: 'xdp' }, ({ chain }) => {
    chain('sub');
    return chain('main', {}, [rule().jump('sub')]);
  });
  assert.equal(f.toModel().chains.map((c) => [c.name, c.policy]), [['sub', 'return'], ['main', 'accept']]);
});

test('one program per hook; a per-hook record gives each hook its entry chain', () => {
  const both = filter('both', { hook: ['xdp', 'tc-egress'] }, ({ chain }) => chain('main', { policy: 'accept' }));
  assert.equal(both.toModel().programs.map((p) => [p.name, p.hook, p.entry]), [['both_xdp', 'xdp', 'main'], ['both_tc_egress', 'tc-egress', 'main']]);
  const split = filter('split', ({ chain }) => ({ 'tc-ingress': chain('in', { policy: 'drop' }), 'tc-egress': chain('out') }));
  assert.equal(split.toModel().programs.map((p) => [p.hook, p.entry]), [['tc-ingress', 'in'], ['tc-egress', 'out']]);
});

test('the model is plain data: a JSON round trip gives the same definition', () => {
  const d = fw.toModel();
  assert.equal(JSON.parse(JSON.stringify(d)), d);
});

test('match combinators flatten and negate', () => {
  const m = match.tcp.dport(80).and(match.ip4.src('10.0.0.0/8')).and(match.ip4.ttl.lt(5));
  assert.equal(m.expr.kind, 'and');
  assert.is((m.expr as { args: unknown[] }).args.length, 5);
  assert.equal(match.not(match.not(match.udp)).expr, { kind: 'has', layer: 'udp' });
  assert.equal(match.udp.or(match.tcp).expr, { kind: 'or', args: [{ kind: 'has', layer: 'udp' }, { kind: 'has', layer: 'tcp' }] });
  assert.equal(match.len.ne(100).expr, { kind: 'num', field: 'pkt.len', ranges: [[0, 99], [101, 0xffffffff]] });
  assert.equal(match.len({ ge: 100, lt: 200 }).expr, { kind: 'num', field: 'pkt.len', ranges: [[100, 199]] });
  assert.equal(match.tcp.flags(['syn'], ['syn', 'ack']).expr, {
    kind: 'and',
    args: [{ kind: 'has', layer: 'tcp' }, { kind: 'bits', field: 'tcp.flags', mask: 0x12, value: 0x02 }],
  });
  assert.equal(match.mark.bits(1, 0xff).expr, { kind: 'bits', field: 'meta.mark', mask: 0xff, value: 1 });
  assert.equal(match.iface(['eth0', 7]).expr, {
    kind: 'or',
    args: [{ kind: 'ifname', names: ['eth0'] }, { kind: 'num', field: 'meta.ifindex', ranges: [[7, 7]] }],
  });
  assert.equal(match.ip.proto('sctp').expr, { kind: 'num', field: 'ip.proto', ranges: [[132, 132]] });
  assert.equal(match.eth.src('AA-BB-CC-DD-EE-FF').expr, { kind: 'mac', field: 'eth.src', addrs: ['aa:bb:cc:dd:ee:ff'] });
});

test('builders are immutable: a prefix can be reused', () => {
  const base = rule(match.tcp).count();
  const f = filter('imm', { hook: 'xdp' }, ({ chain }) => chain('main', { policy: 'drop' }, [base.accept(), base.drop()]));
  assert.equal(f.toModel().chains[0]!.rules.map((r) => r.actions.map((a) => a.kind)), [['count', 'accept'], ['count', 'drop']]);
});

test('typed user maps are declared with their layouts', () => {
  const key = struct({ addr: ipv4, port: u16 });
  const f = filter('maps', { hook: 'xdp' }, ({ chain, map }) => {
    map('flows', { kind: 'lru_hash', key, value: u64, maxEntries: 4096 });
    map('events', { kind: 'ringbuf', maxEntries: 1 << 16 });
    return chain('main');
  });
  const [flows, events] = f.toModel().maps;
  assert.equal([flows!.name, flows!.kind, flows!.maxEntries, flows!.key, flows!.value], ['flows', 'lru_hash', 4096, key, u64]);
  assert.equal([events!.name, events!.kind, events!.key, events!.value], ['events', 'ringbuf', undefined, undefined]);
  assert.is(f.maps.flows!.name, 'flows');
  const bad = (build: () => void) => {
    try {
      build();
    } catch (e) {
      return (e as DslError).message;
    }
    return '';
  };
  assert.match(bad(() => filter('m', { hook: 'xdp' }, ({ chain, map }) => (map('a', { kind: 'array', key: u64, value: u32, maxEntries: 4 }), chain('main')))), "map 'a': an array's key must be 4 bytes (u32), got 8");
  assert.match(bad(() => filter('m', { hook: 'xdp' }, ({ chain, map }) => (map('r', { kind: 'ringbuf', maxEntries: 5000 }), chain('main')))), "map 'r': a ring buffer's size must be a power of 2 of at least 4096 bytes, got 5000");
  assert.match(bad(() => filter('m', { hook: 'xdp' }, ({ chain, map }) => (map('h', { kind: 'hash', maxEntries: 5 }), chain('main')))), "map 'h' needs a key and a value layout");
});

test('a rule made inside a helper function is placed where the helper built it', () => {
  const allowPort = (p: number) => rule(match.tcp.dport(p)).accept(); // @helper: the first frame outside sdk/
  const f = filter('helper', { hook: 'xdp' }, ({ chain }) => chain('main', {}, [allowPort(1)]));
  const src = f.toModel().chains[0]!.rules[0]!.source!;
  assert.equal([src.line, src.column], at('helper', 'rule('));
  assert.is(f.toModel().chains[0]!.rules[0]!.comment, undefined);
  const c = filter('comment', { hook: 'xdp' }, ({ chain }) => chain('main', {}, [rule(match.udp).comment('dns').accept()]));
  assert.is(c.toModel().chains[0]!.rules[0]!.comment, 'dns');
});

test.run();
