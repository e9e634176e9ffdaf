/**
 * Conntrack and NAT in the rule DSL, without a kernel: what the builders
 * put in the model, which hooks allow what (DslError naming the rule and
 * where it was written), and the reference semantics over packet sequences
 * (replies accepted before the rules, related ICMP errors, invalid TCP,
 * ct marks, DNAT/SNAT/masquerade with their replies translated back, port
 * exhaustion).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DslError } from '../../sdk/errors.js';
import { EvalState, evaluate, evaluateSequence, filter, match, rule } from '../../sdk/index.js';
import { packet } from '../../sdk/packet.js';
import { parsePacket } from '../../sdk/parse.js';
import { compile } from '../../codegen/compile.js';
import { checkFrame } from '../packet/verify.js';

const tcp = (src: string, sport: number, dst: string, dport: number, flags: string) => packet().ipv4({ src, dst }).tcp({ sport, dport, flags }).build();
const udp = (src: string, sport: number, dst: string, dport: number, checksum?: number) =>
  packet().ipv4({ src, dst }).udp({ sport, dport, ...(checksum !== undefined ? { checksum } : {}) }).payload(8).build();

/** The stateful firewall of the README: established/related in, new web connections, nothing else. */
function firewall() {
  return filter('sfw', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.ct.state('established', 'related')).accept(),
      rule(match.ct.state('new').and(match.tcp.dport(80))).accept(),
    ]),
  );
}

function failure(build: () => unknown): DslError {
  try {
    build();
  } catch (e) {
    assert.instance(e, DslError);
    return e as DslError;
  }
  assert.unreachable('filter() should have thrown');
  throw new Error('unreachable');
}

test('the builders: ct states (list or array), ct.mark forms, ctMark and the NAT actions in the model', () => {
  const f = filter('m', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => ({
    'tc-ingress': chain('in', {}, [
      rule(match.ct.state(['established', 'related'])).accept(),
      rule(match.ct.mark({ value: 0x10, mask: 0xf0 })).ctMark(3, 0x0f),
      rule(match.ct.mark(7).or(match.ct.mark.bits(1, 1))).dnat({ to: '10.0.0.2', port: [8080, 8081] }),
    ]),
    'tc-egress': chain('out', {}, [rule(match.ip4.src('10.0.0.0/8')).snat({ to: '192.0.2.1-192.0.2.4', ports: [1024, 2047] }), rule().masquerade()]),
  }));
  const d = f.definition;
  assert.equal(d.conntrack, { maxEntries: 65536 });
  const [r0, r1, r2, r3, r4] = d.chains.flatMap((c) => c.rules);
  assert.equal(r0!.match, { kind: 'ct', states: ['established', 'related'] });
  assert.equal(r1!.match, { kind: 'bits', field: 'ct.mark', mask: 0xf0, value: 0x10 });
  assert.equal(r1!.actions, [{ kind: 'ctMark', value: 3, mask: 0x0f }]);
  assert.equal(r2!.actions, [{ kind: 'dnat', to: ['10.0.0.2', '10.0.0.2'], port: [8080, 8081] }]);
  assert.equal(r3!.actions, [{ kind: 'snat', to: ['192.0.2.1', '192.0.2.4'], ports: [1024, 2047] }]);
  assert.equal(r4!.actions, [{ kind: 'masquerade' }]);
  const plain = filter('p', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule(match.tcp.dport(80)).accept()]));
  assert.is(plain.definition.conntrack, undefined, 'no ct rule, no table');
  const asked = filter('a', { hook: 'tc-ingress', conntrack: { maxEntries: 1024, timeouts: { udp: 5 } } }, ({ chain }) => chain('in'));
  assert.equal(asked.definition.conntrack, { maxEntries: 1024, timeouts: { udp: 5 } });
});

test('misuse is a DslError naming the rule and where it was written', () => {
  const cases: Array<[DslError, RegExp, string]> = [
    [failure(() => filter('x', { hook: 'tc-egress' }, ({ chain }) => chain('out', {}, [rule(match.tcp).dnat({ to: '10.0.0.1' }).named('fwd')]))), /dnat is allowed at tc-ingress only.*tc-egress/, 'fwd'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().snat({ to: '10.0.0.1' }).named('src')]))), /snat is allowed at tc-egress only/, 'src'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().masquerade().named('m')]))), /masquerade is allowed at tc-egress only/, 'm'],
    [failure(() => filter('x', { hook: 'xdp' }, ({ chain }) => chain('in', {}, [rule(match.ct.state('new')).accept().named('c')]))), /conntrack, which runs at tc hooks only/, 'c'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().dnat({ to: '10.0.0.300' }).named('a')]))), /'10\.0\.0\.300' is not an IPv4 or IPv6 address/, 'a'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().dnat({ to: '10.0.0.9-10.0.0.1' }).named('r')]))), /range 10\.0\.0\.9-10\.0\.0\.1 is empty/, 'r'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().dnat({ to: 'fd00::1-fd00::1:0:0:1' }).named('w')]))), /last 32 bits/, 'w'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().dnat({ to: '10.0.0.1', port: [90, 80] }).named('p')]))), /port range 90-80 is empty/, 'p'],
    [failure(() => filter('x', { hook: 'tc-egress' }, ({ chain }) => chain('out', {}, [rule().snat({ to: ['10.0.0.1', 'fd00::1'] }).named('f')]))), /mixes IPv4 and IPv6/, 'f'],
    [failure(() => filter('x', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule().ctMark(0x100, 0xff).accept().named('k')]))), /ctMark value 0x100 has bits outside the mask/, 'k'],
  ];
  for (const [e, message, ruleName] of cases) {
    assert.match(e.message, message);
    assert.is(e.rule, ruleName);
    assert.ok(e.source && e.source.file.endsWith('conntrack.test.ts'), `source ${JSON.stringify(e.source)}`);
  }
  // A chain reached from a hook through a jump counts too.
  const viaJump = failure(() =>
    filter('j', { hook: 'tc-egress' }, ({ chain }) => {
      const fwd = chain('fwd', {}, [rule().dnat({ to: '10.0.0.1' }).named('deep')]);
      return chain('out', {}, [rule(match.tcp).jump(fwd)]);
    }),
  );
  assert.is(viaJump.rule, 'deep');
  const refused = failure(() => filter('n', { hook: 'tc-ingress', conntrack: false }, ({ chain }) => chain('in', {}, [rule(match.ct.state('new')).accept()])));
  assert.match(refused.message, /conntrack: false/);
});

test('codegen: only filters with conntrack get the ct steps; NAT parameters are constants in the rule', () => {
  const plain = compile(filter('p', { hook: 'tc-ingress' }, ({ chain }) => chain('in', {}, [rule(match.tcp.dport(80)).accept()])), { emitOnly: true });
  assert.not.match(plain.c, /tsbpf_fct|ctfilter\.h/);
  assert.not.ok(plain.maps.some((m) => m.name === 'tsbpf_ct'));
  const ct = compile(
    filter('c', { hook: ['tc-ingress', 'xdp'], conntrack: { maxEntries: 4096 } }, ({ chain }) => ({
      'tc-ingress': chain('in', {}, [rule(match.tcp.dport(8080)).dnat({ to: '10.1.0.9', port: 80 })]),
      xdp: chain('x', {}, [rule(match.udp).drop()]),
    })),
    { emitOnly: true },
  );
  assert.match(ct.c, /#define TSBPF_CT_MAX 4096/);
  assert.match(ct.c, /tsbpf_fct_pre\(ctx, &st->pkt, cs, TSBPF_CT_HOOK_INGRESS\)/);
  assert.match(ct.c, /tsbpf_fct_set_nat\(cs, 3, 4, 0x0a010009u, .*80, 80, 0\)/);
  assert.equal(ct.maps.find((m) => m.name === 'tsbpf_ct')!.maxEntries, 4096);
  const xdp = ct.programs.filter((p) => p.hook === 'xdp').map((p) => p.name);
  assert.ok(xdp.length > 0 && !xdp.some((n) => n.endsWith('__ct')), 'the xdp program has no ct stage');
});

test('stateful firewall: a reply is accepted before the rules; unsolicited and invalid packets are dropped', () => {
  const f = firewall();
  const { results } = evaluateSequence(f, [
    { data: tcp('10.0.0.1', 40000, '10.0.0.2', 80, 'S'), now: 1 },
    { data: tcp('10.0.0.2', 80, '10.0.0.1', 40000, 'SA'), now: 2 },
    { data: tcp('10.0.0.1', 40000, '10.0.0.2', 80, 'A'), now: 3 },
    { data: tcp('10.0.0.9', 5555, '10.0.0.1', 22, 'S'), now: 4 },
    { data: tcp('10.0.0.9', 5555, '10.0.0.1', 80, 'A'), now: 5 },
    { data: tcp('10.0.0.9', 5556, '10.0.0.1', 80, 'SF'), now: 6 },
  ]);
  const seen = results.map((r) => [r.verdict, r.decidedBy, r.ct?.state]);
  assert.equal(seen, [
    ['accept', 'rule', 'new'],
    ['accept', 'conntrack', 'established'],
    ['accept', 'rule', 'established'],
    ['drop', 'policy', 'new'],
    // Without an entry, only a SYN opens a TCP connection: an ACK is invalid (strict, unless tcpLoose).
    ['drop', 'policy', 'invalid'],
    ['drop', 'policy', 'invalid'],
  ]);
  assert.is(results[2]!.ct!.entry!.state, 3, 'tcp-established after the handshake');
  assert.equal(results[1]!.trace, [], 'the rules did not run for the reply');
});

test('tcpLoose: a TCP connection may then be picked up mid-stream', () => {
  const f = filter('loose', { hook: 'tc-ingress', conntrack: { tcpLoose: true } }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [rule(match.ct.state('new').and(match.tcp.dport(80))).accept()]),
  );
  const r = evaluate(f, tcp('10.0.0.9', 5555, '10.0.0.1', 80, 'A'), { now: 1 });
  assert.equal([r.verdict, r.ct?.state, r.ct?.entry?.state], ['accept', 'new', 3]);
});

test('related: an ICMP error about a tracked connection; about nothing tracked it is invalid', () => {
  const f = firewall();
  const state = new EvalState(f);
  const syn = tcp('10.0.0.1', 40000, '10.0.0.2', 80, 'S');
  evaluate(f, syn, { state, now: 1 });
  const err = packet().ipv4({ src: '10.0.0.254', dst: '10.0.0.1' }).icmp({ type: 'dest-unreachable', code: 'port-unreachable', payload: syn.subarray(14) }).build();
  const r = evaluate(f, err, { state, now: 2 });
  assert.equal([r.verdict, r.ct?.state], ['accept', 'related']);
  const stray = packet().ipv4({ src: '10.0.0.254', dst: '10.0.0.1' }).icmp({ type: 'dest-unreachable', code: 'port-unreachable', payload: tcp('10.0.0.1', 1, '10.0.0.2', 2, 'S').subarray(14) }).build();
  assert.equal([evaluate(f, stray, { state, now: 3 }).ct?.state], ['invalid']);
});

test('ct marks: set when accepted, seen by later packets of the connection; absent for untracked packets', () => {
  const f = filter('marks', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.ct.mark(5).and(match.tcp.dport(80))).drop(),
      rule(match.ct.state('new').and(match.tcp.dport(80))).ctMark(5).accept(),
      rule(match.not(match.ct.mark(0))).accept(),
    ]),
  );
  const state = new EvalState(f);
  const first = evaluate(f, tcp('10.0.0.1', 1000, '10.0.0.2', 80, 'S'), { state, now: 1 });
  assert.equal([first.verdict, first.ct?.mark, first.ct?.entry?.mark], ['accept', 5, 5]);
  const again = evaluate(f, tcp('10.0.0.1', 1000, '10.0.0.2', 80, 'A'), { state, now: 2 });
  assert.equal([again.verdict, again.rule], ['drop', 'input#0']);
  const arp = Buffer.alloc(60);
  arp.writeUInt16BE(0x0806, 12);
  const u = evaluate(f, arp, { state, now: 3 });
  assert.equal([u.ct?.state, u.verdict, u.rule], ['untracked', 'accept', 'input#2'], 'not(ct.mark 0) holds when there is no mark');
});

test('DNAT at ingress and SNAT at egress: translated both ways, checksums right, UDP zero checksum kept zero', () => {
  const f = filter('nat', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => ({
    'tc-ingress': chain('in', { policy: 'accept' }, [rule(match.ip4.dst('203.0.113.1').and(match.tcp.dport(80))).dnat({ to: '10.1.0.2', port: 8080 })]),
    'tc-egress': chain('out', { policy: 'accept' }, [rule(match.ip4.src('10.0.0.0/8').and(match.udp)).snat({ to: '192.0.2.1', ports: [5000, 5001] })]),
  }));
  const state = new EvalState(f);
  const d = evaluate(f, tcp('198.51.100.7', 3333, '203.0.113.1', 80, 'S'), { hook: 'tc-ingress', state, now: 1 });
  const dv = parsePacket(d.packet!);
  assert.equal([dv.ipv4!.dst, dv.tcp!.dport], [0x0a010002, 8080]);
  assert.equal(checkFrame(d.packet!).problems, []);
  const back = evaluate(f, tcp('10.1.0.2', 8080, '198.51.100.7', 3333, 'SA'), { hook: 'tc-ingress', state, now: 2 });
  const bv = parsePacket(back.packet!);
  assert.equal([back.decidedBy, bv.ipv4!.src, bv.tcp!.sport], ['conntrack', 0xcb007101, 80]);
  assert.equal(checkFrame(back.packet!).problems, []);

  const s = evaluate(f, udp('10.0.0.5', 53000, '8.8.8.8', 53, 0), { hook: 'tc-egress', state, now: 3 });
  const sv = parsePacket(s.packet!);
  assert.equal([sv.ipv4!.src, sv.udp!.sport, s.packet!.readUInt16BE(sv.l4Offset! + 6)], [0xc0000201, 5000, 0]);
  // Two ports for the peer 8.8.8.8:53: the third connection finds none and is dropped, with an event.
  evaluate(f, udp('10.0.0.6', 53000, '8.8.8.8', 53), { hook: 'tc-egress', state, now: 4 });
  const third = evaluate(f, udp('10.0.0.7', 53000, '8.8.8.8', 53), { hook: 'tc-egress', state, now: 5 });
  assert.equal([third.verdict, third.ct?.dropped], ['drop', 'nat-exhausted']);
  assert.is(state.conntrack!.events.length, 1);
  assert.is(state.conntrack!.events[0]!.ruleId, 1);
});

test.run();
