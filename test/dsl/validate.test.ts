/**
 * Every way a definition can be wrong is caught before codegen, with a
 * DslError that names the rule and where it was written in this file. The
 * expected position is found by a marker comment on the offending line, so
 * the assertions check the real file:line:col of `rule(` (or `chain(`, `set.`).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import {
  DslError,
  filter,
  match,
  range,
  rule,
  validateDefinition,
  type Definition,
  type FilterContext,
  type BuildResult,
} from '../../sdk/index.js';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/dsl/validate.test.ts');
const lines = readFileSync(SOURCE, 'utf8').split('\n');

/** Line and column (1-based) of `token` on the line that carries `// @marker`. */
function at(marker: string, token: string): { line: number; column: number } {
  const i = lines.findIndex((l) => l.includes(`// @${marker}`) && l.includes(token));
  if (i < 0) throw new Error(`marker @${marker} with '${token}' not found`);
  return { line: i + 1, column: lines[i]!.indexOf(token) + 1 };
}

function failure(build: (ctx: FilterContext) => BuildResult, hook: 'xdp' | 'tc-ingress' = 'tc-ingress'): DslError {
  try {
    filter('t', { hook }, build);
  } catch (e) {
    if (e instanceof DslError) return e;
    throw e;
  }
  throw new Error('expected a DslError');
}

/** The error names `rule`, says `message`, and points at `marker`'s token in this file. */
function expectError(e: DslError, want: { message: string; rule?: string; marker: string; token?: string }) {
  const pos = at(want.marker, want.token ?? 'rule(');
  assert.is(e.code, 'DSL_INVALID');
  assert.is(e.rule, want.rule);
  assert.ok(e.source, 'has a source position');
  assert.ok(e.source!.file.endsWith(path.join('test', 'dsl', 'validate.test.ts')), e.source!.file);
  assert.equal({ line: e.source!.line, column: e.source!.column }, pos);
  const where = `${e.source!.file}:${pos.line}:${pos.column}: `;
  assert.is(e.message, `${where}${want.rule ? `rule '${want.rule}': ` : ''}${want.message}`);
}

test('a port of 70000', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(match.tcp.dport(70000)).accept(), // @port
  ]));
  expectError(e, { marker: 'port', rule: 'input#0', message: 'port 70000 is out of range (0..65535)' });
});

test('a port range out of order and a negative port', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(), rule(match.udp.sport(range(2000, 1000))).drop(), // @range
  ]));
  expectError(e, { marker: 'range', rule: 'input#1', message: 'port range 2000..1000 is empty (from > to)', token: 'rule(match' });
  const neg = failure(({ chain }) => chain('input', {}, [rule(match.l4.dport([-1])).drop()])); // @neg
  expectError(neg, { marker: 'neg', rule: 'input#0', message: 'port -1 is out of range (0..65535)' });
});

test('an IPv4 CIDR given to an IPv6 field (and the reverse)', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(match.ip6.src('10.0.0.0/8' as never)).drop(), // @v4in6
  ]));
  expectError(e, { marker: 'v4in6', rule: 'input#0', message: "'10.0.0.0/8' is an IPv4 CIDR, but ip6.src needs an IPv6 address or CIDR" });
  assert.is(e.hint, 'use match.ip4.src for IPv4');
  const r = failure(({ chain }) => chain('input', {}, [rule(match.ip4.dst('2001:db8::1' as never)).drop()])); // @v6in4
  expectError(r, { marker: 'v6in4', rule: 'input#0', message: "'2001:db8::1' is an IPv6 address, but ip4.dst needs an IPv4 address or CIDR" });
});

test('bad CIDRs', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(match.ip4.src('10.0.0.300/8')).drop(), // @badcidr
  ]));
  expectError(e, { marker: 'badcidr', rule: 'input#0', message: "'10.0.0.300/8' is not a valid IPv4 address or CIDR" });
  const long = failure(({ chain }) => chain('input', {}, [rule(match.ip4.src('10.0.0.0/33')).drop()])); // @long
  expectError(long, { marker: 'long', rule: 'input#0', message: "prefix length /33 is too long for an IPv4 address in '10.0.0.0/33' (at most /32)" });
  const v6 = failure(({ chain }) => chain('input', {}, [rule(match.ip6.dst('2001:db8:::1/64')).drop()])); // @bad6
  expectError(v6, { marker: 'bad6', rule: 'input#0', message: "'2001:db8:::1/64' is not a valid IPv6 address or CIDR" });
});

test('a jump to an unknown chain', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(match.tcp).jump('nosuch'), // @unknown
  ]));
  expectError(e, { marker: 'unknown', rule: 'input#0', message: "jump to unknown chain 'nosuch'" });
  assert.is(e.hint, 'known chains: input');
});

test('a jump cycle, named at the rule that closes it', () => {
  const e = failure(({ chain }) => {
    const a = chain('a');
    const b = chain('b');
    a.add(rule(match.udp).jump(b));
    b.add(rule(match.tcp).goto(a)); // @cycle
    return chain('input', {}, [rule().jump(a)]);
  });
  expectError(e, { marker: 'cycle', rule: 'b#0', message: 'goto cycle: a -> b -> a' });
  const self = failure(({ chain }) => {
    const s = chain('s');
    s.add(rule().jump(s)); // @self
    return chain('input', {}, [rule().jump(s)]);
  });
  expectError(self, { marker: 'self', rule: 's#0', message: 'jump cycle: s -> s' });
});

test('jumps nested deeper than the return stack', () => {
  const e = failure(({ chain }) => {
    const cs = Array.from({ length: 10 }, (_, i) => chain(`c${i}`));
    for (let i = 0; i < 9; i++) cs[i]!.add(rule().named(`hop${i}`).jump(cs[i + 1]!)); // @deep
    return chain('input', {}, [rule().named('start').jump(cs[0]!)]);
  });
  expectError(e, { marker: 'deep', rule: 'hop7', message: 'jumps nest 10 deep (at most 8): input -> c0 -> c1 -> c2 -> c3 -> c4 -> c5 -> c6 -> c7 -> c8 -> c9' });
});

test('duplicate chain, rule and set names', () => {
  const chains = failure(({ chain }) => {
    chain('input'); // @dupchain1
    return chain('input', { policy: 'drop' }); // @dupchain2
  });
  const first = at('dupchain1', 'chain(');
  assert.is(chains.source!.line, at('dupchain2', 'chain(').line);
  assert.ok(chains.message.endsWith(`duplicate chain name 'input' (at ${chains.source!.file}:${first.line}:${first.column})`), chains.message);

  const rules = failure(({ chain }) => chain('input', {}, [
    rule(match.tcp, { name: 'web' }).accept(), // @duprule1
    rule(match.udp, { name: 'web' }).accept(), // @duprule2
  ]));
  const r1 = at('duprule1', 'rule(');
  expectError(rules, { marker: 'duprule2', rule: 'web', message: `duplicate rule name 'web' (at ${rules.source!.file}:${r1.line}:${r1.column})` });

  const sets = failure(({ chain, set }) => {
    set.ipv4('s');
    set.port('s'); // @dupset
    return chain('input');
  });
  assert.equal({ line: sets.source!.line, column: sets.source!.column }, at('dupset', 'port('));
  assert.match(sets.message, "duplicate set or map name 's'");
});

test('an entry chain cannot have policy return, and cannot be jumped to', () => {
  const ret = failure(({ chain }) => chain('input', { policy: 'return' })); // @entryret
  assert.equal({ line: ret.source!.line, column: ret.source!.column }, at('entryret', 'chain('));
  assert.match(ret.message, "chain 'input' is the entry chain of tc-ingress and cannot have policy 'return'");
  const jump = failure(({ chain }) => {
    const sub = chain('sub', {}, [rule().jump('input')]); // @toentry
    return chain('input', {}, [rule().jump(sub)]);
  });
  expectError(jump, { marker: 'toentry', rule: 'sub#0', message: "cannot jump to 'input': it is a program's entry chain" });
});

test('a set of the wrong family, and an unknown set', () => {
  const e = failure(({ chain, set }) => {
    const v6 = set.ipv6('v6');
    return chain('input', {}, [rule(match.ip4.src.in(v6 as never)).drop()]); // @setfam
  });
  expectError(e, { marker: 'setfam', rule: 'input#0', message: "set 'v6' holds ipv6 addresses, but ip4.src is an ipv4 address" });
  const bad = failure(({ chain, set }) => {
    set.ipv4('s', { elements: ['10.0.0.0/8', '300.1.1.1' as never] }); // @setelem
    return chain('input');
  });
  assert.equal({ line: bad.source!.line, column: bad.source!.column }, at('setelem', 'ipv4('));
  assert.match(bad.message, "set 's': '300.1.1.1' is not a valid IPv4 address or CIDR");
});

test('unknown names, bad values of other fields', () => {
  const cases: Array<[string, DslError, string]> = [
    ['proto', failure(({ chain }) => chain('input', {}, [rule(match.ip.proto('tpc' as never)).drop()])), "unknown name 'tpc' for ip.proto; known names: icmp, igmp, tcp, udp, gre, esp, ah, icmpv6, sctp, udplite"], // @proto
    ['vlan', failure(({ chain }) => chain('input', {}, [rule(match.vlan.id(5000)).drop()])), 'VLAN id 5000 is out of range (0..4095)'], // @vlan
    ['dscp', failure(({ chain }) => chain('input', {}, [rule(match.ip.dscp(64)).drop()])), 'DSCP 64 is out of range (0..63)'], // @dscp
    ['mac', failure(({ chain }) => chain('input', {}, [rule(match.eth.src('aa:bb:cc:dd:ee' as never)).drop()])), "'aa:bb:cc:dd:ee' is not a valid MAC address (use 'aa:bb:cc:dd:ee:ff')"], // @mac
    ['flag', failure(({ chain }) => chain('input', {}, [rule(match.tcp.flags('sin' as never)).drop()])), "unknown TCP flag 'sin' (known: fin, syn, rst, psh, ack, urg, ece, cwr)"], // @flag
    ['ct', failure(({ chain }) => chain('input', {}, [rule(match.ct.state('establishd' as never)).accept()])), "unknown conntrack state 'establishd' (known: new, established, related, invalid, untracked)"], // @ct
    ['frac', failure(({ chain }) => chain('input', {}, [rule(match.len(1.5)).drop()])), 'packet length 1.5 is not an integer'], // @frac
  ];
  for (const [marker, e, message] of cases) expectError(e, { marker, rule: 'input#0', message });
});

test('bad actions: limit, mark, redirect', () => {
  const cases: Array<[string, DslError, string]> = [
    ['rate', failure(({ chain }) => chain('input', {}, [rule().limit({ rate: 0 }).accept()])), 'limit rate must be a positive integer, got 0'], // @rate
    ['burst', failure(({ chain }) => chain('input', {}, [rule().limit({ rate: 1, burst: 0 }).accept()])), 'limit burst must be a positive integer (at most 1e9), got 0'], // @burst
    ['markbits', failure(({ chain }) => chain('input', {}, [rule().mark(0x100, 0xff).accept()])), 'mark value 0x100 has bits outside the mask 0xff'], // @markbits
    ['redir', failure(({ chain }) => chain('input', {}, [rule().redirect('a-very-long-interface-name')])), "'a-very-long-interface-name' is not a valid interface name (1 to 15 characters)"], // @redir
  ];
  for (const [marker, e, message] of cases) expectError(e, { marker, rule: 'input#0', message });
});

test('several problems: the first is thrown, all are listed', () => {
  const e = failure(({ chain }) => chain('input', {}, [
    rule(match.tcp.dport(70000)).accept(), // @many1
    rule(match.udp.dport(80000)).accept(), // @many2
  ]));
  expectError(e, { marker: 'many1', rule: 'input#0', message: 'port 70000 is out of range (0..65535) (and 1 more problem)' });
  const all = e.info.problems as string[];
  assert.is(all.length, 2);
  const p2 = at('many2', 'rule(');
  assert.is(all[1], `${e.source!.file}:${p2.line}:${p2.column}: rule 'input#1': port 80000 is out of range (0..65535)`);
});

test('the filter itself: no hook, no entry chain, something that is not a rule', () => {
  let e: DslError | undefined;
  try {
    filter('nohook', ({ chain }) => chain('input')); // @nohook
  } catch (x) {
    e = x as DslError;
  }
  assert.instance(e, DslError);
  assert.equal({ line: e!.source!.line, column: e!.source!.column }, at('nohook', 'filter('));
  assert.match(e!.message, "no hook given: use filter(name, { hook: 'tc-ingress' }, ...)");

  const none = failure((() => undefined) as never);
  assert.match(none.message, 'the build function must return the entry chain (or one per hook)');

  const notRule = failure(({ chain }) => chain('input', {}, [{} as never])); // @notrule
  expectError(notRule, { marker: 'notrule', rule: 'input#0', message: "rule 0 of chain 'input' is not a rule() (got object)", token: 'chain(' });
});

test('chains and sets cannot change after the filter is built', () => {
  let later: import('../../sdk/index.js').Chain | undefined;
  let ctxLater: FilterContext | undefined;
  filter('sealed', { hook: 'xdp' }, (ctx) => {
    ctxLater = ctx;
    return (later = ctx.chain('main'));
  });
  let e: DslError | undefined;
  try {
    later!.add(rule().drop()); // @sealed
  } catch (x) {
    e = x as DslError;
  }
  assert.instance(e, DslError);
  assert.equal({ line: e!.source!.line, column: e!.source!.column }, at('sealed', 'add('));
  assert.match(e!.message, "rules can only be added to chain 'main' while the filter's build function runs");
  assert.throws(() => ctxLater!.set.ipv4('late'), /a set can only be declared while the filter's build function runs/);
});

test('validateDefinition checks hand-written models too', () => {
  const def: Definition = {
    version: 1,
    name: 'hand',
    programs: [{ name: 'hand_xdp', hook: 'xdp', entry: 'main' }],
    chains: [
      {
        name: 'main',
        policy: 'drop',
        rules: [
          { id: 0, name: 'a', chain: 'main', index: 0, match: { kind: 'all' }, actions: [{ kind: 'accept' }, { kind: 'count' }] },
          { id: 5, name: 'b', chain: 'main', index: 1, match: { kind: 'num', field: 'l4.dport', ranges: [[1, 65536]] }, actions: [{ kind: 'drop' }] },
        ],
      },
    ],
    sets: [],
    maps: [],
  };
  assert.equal(validateDefinition(def).map((p) => [p.rule, p.message]), [
    ['a', "'accept' must be the rule's last action (found 'count' after it)"],
    ['b', 'rule id 5 should be 1 (ids are 0-based in definition order)'],
    ['b', 'port 65536 is out of range (0..65535)'],
  ]);
});

// Mistakes the editor refuses (checked by tsc when this file compiles; never run).
export function typeErrors(): void {
  filter('types', { hook: 'xdp' }, ({ chain, set }) => {
    const v4 = set.ipv4('v4');
    const ports = set.port('ports');
    return chain('main', {}, [
      // @ts-expect-error an IPv6 CIDR for an IPv4 field
      rule(match.ip4.src('2001:db8::/32')).drop(),
      // @ts-expect-error an IPv4 CIDR for an IPv6 field
      rule(match.ip6.dst('10.0.0.0/8')).drop(),
      // @ts-expect-error an IPv4 set for an IPv6 field
      rule(match.ip6.src.in(v4)).drop(),
      // @ts-expect-error a port set for an address field
      rule(match.ip4.src.in(ports)).drop(),
      // @ts-expect-error nothing may follow a verdict
      rule(match.tcp).accept().drop(),
      // @ts-expect-error unknown protocol name
      rule(match.ip.proto('tpc')).drop(),
      // @ts-expect-error unknown ICMP type name
      rule(match.icmp.type('echo')).drop(),
    ]);
  });
}

test.run();
