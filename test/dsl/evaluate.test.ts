/**
 * The reference semantics, as a table of small cases: rule order, non-terminal
 * actions, jump/goto/return and policies, marks, limits over (explicit) time,
 * sets updated at run time, IPv4 and IPv6, absent fields and malformed packets,
 * reject replies, and the explanation trace.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EvalState, evaluate, filter, match, range, rule, type Hook } from '../../sdk/index.js';
import { packet } from '../../sdk/packet.js';

const tcp4 = (dport: number, o: { src?: string; sport?: number; flags?: string } = {}) =>
  packet().ipv4({ src: o.src ?? '10.0.0.1', dst: '10.0.0.2' }).tcp({ sport: o.sport ?? 40000, dport, flags: o.flags ?? 'S' }).build();
const udp4 = (dport: number, src = '10.0.0.1') => packet().ipv4({ src, dst: '10.0.0.2' }).udp({ sport: 5353, dport }).build();
const tcp6 = (dport: number, src = 'fd00::1') => packet().ipv6({ src, dst: 'fd00::2' }).tcp({ sport: 40000, dport }).build();
const ping4 = (src = '10.0.0.1') => packet().ipv4({ src, dst: '10.0.0.2' }).icmp({ type: 'echo-request' }).build();
const ping6 = () => packet().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).icmpv6({ type: 'echo-request' }).build();

test('the first terminal rule whose match holds decides', () => {
  const f = filter('order', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.tcp.dport(22)).drop(),
      rule(match.tcp.dport([22, 80])).accept(),
      rule(match.tcp).reject(),
    ]),
  );
  const r22 = evaluate(f, tcp4(22));
  assert.equal([r22.verdict, r22.ruleId, r22.decidedBy], ['drop', 0, 'rule']);
  const r80 = evaluate(f, tcp4(80));
  assert.equal([r80.verdict, r80.rule], ['accept', 'input#1']);
  assert.equal(r80.trace.map((t) => [t.rule, t.matched]), [['input#0', false], ['input#1', true]]);
  const u = evaluate(f, udp4(53));
  assert.equal([u.verdict, u.ruleId, u.decidedBy, u.policyChain], ['drop', undefined, 'policy', 'input']);
});

test('non-terminal actions run and evaluation continues; counters accumulate in the state', () => {
  const f = filter('nonterm', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'accept' }, [
      rule(match.tcp).count().log('tcp'),
      rule(match.tcp.dport(80)).count().mark(7),
      rule(match.mark(7)).count().drop(),
    ]),
  );
  const state = new EvalState(f);
  const r = evaluate(f, tcp4(80), { state });
  assert.is(r.verdict, 'drop');
  assert.is(r.ruleId, 2);
  assert.is(r.mark, 7);
  assert.equal(r.counters.map((c) => c.ruleId), [0, 1, 2]);
  assert.equal(r.logs, [{ ruleId: 0, rule: 'input#0', prefix: 'tcp', tuple: { family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 40000, dport: 80 } }]);
  evaluate(f, tcp4(443), { state });
  assert.equal(state.counters.get(0), { packets: 2, bytes: 108 });
  assert.equal(state.counters.get(1), { packets: 1, bytes: 54 });
  const other = evaluate(f, tcp4(443), { state });
  assert.equal([other.verdict, other.decidedBy], ['accept', 'policy']);
});

test('jump returns to the next rule when the chain ends without a verdict', () => {
  const f = filter('jump', { hook: 'tc-ingress' }, ({ chain }) => {
    const web = chain('web', {}, [rule(match.tcp.dport(80)).accept(), rule(match.tcp.dport(81)).return(), rule(match.tcp.dport(81)).drop()]);
    return chain('input', { policy: 'drop' }, [rule(match.tcp).jump(web), rule(match.tcp.dport([81, 82])).accept()]);
  });
  const r80 = evaluate(f, tcp4(80));
  assert.equal([r80.verdict, r80.rule, r80.chainPath], ['accept', 'web#0', ['input', 'web']]);
  // 81: `return` leaves web before its drop rule; back in input, rule 1 accepts.
  const r81 = evaluate(f, tcp4(81));
  assert.equal([r81.verdict, r81.rule, r81.chainPath], ['accept', 'input#1', ['input']]);
  assert.equal(r81.trace.map((t) => t.rule), ['input#0', 'web#0', 'web#1', 'input#1']);
  // 82: web ends (policy return), input#1 accepts.
  assert.is(evaluate(f, tcp4(82)).rule, 'input#1');
  // 83: nothing: the entry policy.
  const r83 = evaluate(f, tcp4(83));
  assert.equal([r83.verdict, r83.decidedBy, r83.policyChain], ['drop', 'policy', 'input']);
});

test("a sub-chain's own verdict policy decides when it ends", () => {
  const f = filter('subpol', { hook: 'tc-ingress' }, ({ chain }) => {
    const ssh = chain('ssh', { policy: 'drop' }, [rule(match.ip4.src('10.9.0.0/16')).accept()]);
    return chain('input', { policy: 'accept' }, [rule(match.tcp.dport(22)).jump(ssh), rule().reject()]);
  });
  const denied = evaluate(f, tcp4(22));
  assert.equal([denied.verdict, denied.decidedBy, denied.policyChain, denied.chainPath], ['drop', 'policy', 'ssh', ['input', 'ssh']]);
  assert.is(evaluate(f, tcp4(22, { src: '10.9.1.1' })).verdict, 'accept');
});

test('goto does not return: the end of the target goes back past the goto', () => {
  const f = filter('goto', { hook: 'tc-ingress' }, ({ chain }) => {
    const leaf = chain('leaf', {}, [rule(match.udp.dport(1)).drop()]);
    const mid = chain('mid', {}, [rule(match.udp).goto(leaf), rule().drop()]);
    return chain('input', { policy: 'accept' }, [rule(match.udp).jump(mid), rule(match.udp.dport(2)).reject()]);
  });
  // input -jump-> mid -goto-> leaf; leaf ends: back to input (mid is skipped), next rule rejects.
  const r = evaluate(f, udp4(2));
  assert.equal([r.verdict, r.rule], ['reject', 'input#1']);
  assert.equal(r.trace.map((t) => t.rule), ['input#0', 'mid#0', 'leaf#0', 'input#1']);
  const d = evaluate(f, udp4(1));
  assert.equal([d.verdict, d.rule, d.chainPath], ['drop', 'leaf#0', ['input', 'leaf']]);
  // goto from the entry chain: the target's end is the entry chain's end.
  const g = filter('goto2', { hook: 'xdp' }, ({ chain }) => {
    const sub = chain('sub', {}, [rule(match.tcp.dport(1)).accept()]);
    return chain('input', { policy: 'drop' }, [rule().goto(sub), rule().accept()]);
  });
  const e = evaluate(g, tcp4(2));
  assert.equal([e.verdict, e.decidedBy, e.policyChain], ['drop', 'policy', 'input']);
});

test('return in the entry chain applies its policy', () => {
  const f = filter('ret', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'reject' }, [rule(match.udp).return(), rule().accept()]),
  );
  const r = evaluate(f, udp4(53));
  assert.equal([r.verdict, r.decidedBy], ['reject', 'policy']);
  assert.is(evaluate(f, tcp4(1)).verdict, 'accept');
});

test('marks: the entry mark at TC, always 0 at XDP; mark with a mask', () => {
  const f = filter('marks', { hook: ['tc-ingress', 'xdp'] }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [rule().mark(0x10, 0xf0), rule(match.mark.bits(0x15, 0xff)).accept(), rule(match.mark(0x10)).accept()]),
  );
  const tc = evaluate(f, tcp4(1), { mark: 0x5, hook: 'tc-ingress' });
  assert.equal([tc.verdict, tc.rule, tc.mark], ['accept', 'input#1', 0x15]);
  const xdp = evaluate(f, tcp4(1), { mark: 0x5, hook: 'xdp' });
  assert.equal([xdp.verdict, xdp.rule, xdp.mark, xdp.program], ['accept', 'input#2', 0x10, 'marks_xdp']);
});

test('limit: a token bucket over explicit time (rate 10/s = 100 ms a token, burst 2)', () => {
  const f = filter('lim', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [rule(match.icmp.type('echo-request')).limit({ rate: 10, burst: 2 }).accept()]),
  );
  const state = new EvalState(f);
  const at = (ms: number) => evaluate(f, ping4(), { state, now: BigInt(ms) * 1_000_000n }).verdict;
  // Starts full: two pass at once, the third is over the limit (the rule stops; the policy drops).
  assert.equal([at(0), at(0), at(0)], ['accept', 'accept', 'drop']);
  assert.equal([at(50), at(100), at(150)], ['drop', 'accept', 'drop']);
  // A long pause refills to the burst only.
  assert.equal([at(10_000), at(10_000), at(10_000)], ['accept', 'accept', 'drop']);
  const stopped = evaluate(f, ping4(), { state, now: 10_000_000_000n });
  assert.equal([stopped.trace[0]!.matched, stopped.trace[0]!.limited], [true, true]);
  // A clock that goes backwards adds nothing.
  assert.is(at(5_000), 'drop');
});

test('limit over: matches only while the rate is exceeded; per-source buckets', () => {
  const f = filter('over', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'accept' }, [rule(match.icmp).limit({ rate: 1, burst: 1, over: true, by: 'src' }).drop()]),
  );
  const state = new EvalState(f);
  const v = (src: string, s: number) => evaluate(f, ping4(src), { state, now: BigInt(s) * 1_000_000_000n }).verdict;
  assert.equal([v('10.0.0.1', 0), v('10.0.0.1', 0), v('10.0.0.2', 0), v('10.0.0.1', 1)], ['accept', 'drop', 'accept', 'accept']);
  assert.equal([...state.buckets.keys()], ['0/4:10.0.0.1', '0/4:10.0.0.2']);
});

test('sets: initial elements, run-time updates, IPv4/IPv6 prefixes and ports', () => {
  const f = filter('sets', { hook: 'tc-ingress' }, ({ chain, set }) => {
    const bad4 = set.ipv4('bad4', { elements: ['192.0.2.0/24'] });
    const bad6 = set.ipv6('bad6');
    const open = set.port('open', { elements: [80] });
    return chain('input', { policy: 'drop' }, [
      rule(match.ip4.src.in(bad4)).drop(),
      rule(match.ip6.src.in(bad6)).drop(),
      rule(match.l4.dport.in(open)).accept(),
    ]);
  });
  const state = new EvalState(f);
  assert.is(evaluate(f, tcp4(80, { src: '192.0.2.9' }), { state }).rule, 'input#0');
  assert.is(evaluate(f, tcp4(80), { state }).rule, 'input#2');
  assert.is(evaluate(f, tcp4(443), { state }).decidedBy, 'policy');
  state.setAdd('open', 443);
  state.setAdd('bad6', 'fd00::/64');
  assert.is(evaluate(f, tcp4(443), { state }).rule, 'input#2');
  assert.is(evaluate(f, tcp6(443), { state }).rule, 'input#1');
  assert.is(evaluate(f, tcp6(443, 'fd00:1::1'), { state }).rule, 'input#2');
  state.setDelete('bad4', '192.0.2.0/24');
  assert.is(evaluate(f, tcp4(80, { src: '192.0.2.9' }), { state }).rule, 'input#2');
  assert.equal(state.setElements('open'), [80, 443]);
});

test('IPv4 and IPv6: family-agnostic fields see both, family fields only theirs', () => {
  const f = filter('fam', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.ip4.proto('icmp')).named('v4-icmp').accept(),
      rule(match.ip6.proto('icmpv6')).named('v6-icmp').accept(),
      rule(match.ip.ttl.lt(2)).named('low-ttl').reject(),
      rule(match.tcp.dport(22).and(match.ip6)).named('ssh6').accept(),
      rule(match.ip.proto('tcp')).named('tcp-any').drop(),
    ]),
  );
  assert.is(evaluate(f, ping4()).rule, 'v4-icmp');
  assert.is(evaluate(f, ping6()).rule, 'v6-icmp');
  assert.is(evaluate(f, tcp6(22)).rule, 'ssh6');
  assert.is(evaluate(f, tcp4(22)).rule, 'tcp-any');
  const hop1 = packet().ipv6({ src: 'fd00::1', dst: 'fd00::2', hopLimit: 1 }).udp({ sport: 1, dport: 2 }).build();
  assert.is(evaluate(f, hop1).rule, 'low-ttl');
});

test('IPv6 extension headers: proto is the upper layer; ports after them', () => {
  const f = filter('ext', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [rule(match.udp.dport(53).and(match.ip6.proto('udp'))).accept()]),
  );
  const p = packet().ipv6({ src: 'fd00::1', dst: 'fd00::2', extensions: [{ type: 'hop-by-hop' }, { type: 'dest-opts' }] }).udp({ sport: 1, dport: 53 }).build();
  assert.is(evaluate(f, p).verdict, 'accept');
});

test('absent fields: a match on them is false, so its negation is true', () => {
  const f = filter('absent', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.tcp.dport(80)).named('http').accept(),
      rule(match.l4.dport.ne(80)).named('not-80').reject(),
      rule(match.not(match.tcp.dport(80))).named('negated').accept(),
    ]),
  );
  const r = evaluate(f, ping4());
  assert.is(r.rule, 'negated');
  assert.equal(r.trace.map((t) => t.why), [
    'tcp absent: no and l4.dport in 80: not evaluated',
    'l4.dport absent: no',
    'not (tcp absent: no and l4.dport in 80: not evaluated)',
  ]);
  assert.is(evaluate(f, udp4(81)).rule, 'not-80');
});

test('malformed packets: what is not whole is absent', () => {
  const f = filter('bad', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'accept' }, [
      rule(match.tcp.dport(80)).named('port').drop(),
      rule(match.ip4.src('10.0.0.0/8')).named('addr').reject(),
      rule(match.len.lt(14)).named('runt').drop(),
      rule(match.frag).named('frag').drop(),
    ]),
  );
  const full = tcp4(80);
  // TCP header cut: no ports, the IPv4 header is still whole.
  assert.is(evaluate(f, full.subarray(0, 14 + 20 + 19)).rule, 'addr');
  // IPv4 header cut: nothing above Ethernet.
  assert.equal([evaluate(f, full.subarray(0, 14 + 19)).decidedBy], ['policy']);
  // No whole Ethernet header: only the length is known.
  assert.is(evaluate(f, full.subarray(0, 13)).rule, 'runt');
  // A bad IP version: not IPv4.
  const v5 = Buffer.from(full);
  v5[14] = 0x55;
  assert.is(evaluate(f, v5).decidedBy, 'policy');
  // A non-first fragment has no L4 header, but is a fragment.
  const frag = packet().ipv4({ src: '192.168.0.1', dst: '10.0.0.2', fragOffset: 100 }).tcp({ sport: 1, dport: 80 }).build();
  assert.is(evaluate(f, frag).rule, 'frag');
  // Empty frame.
  assert.is(evaluate(f, Buffer.alloc(0)).rule, 'runt');
});

test('VLAN: the outer id, and the ethertype after the tags', () => {
  const f = filter('vlan', { hook: 'xdp' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [rule(match.vlan.id(10).and(match.eth.type('ipv4'), match.udp.dport(range(50, 60)))).accept()]),
  );
  const p = packet().eth().vlan({ id: 10 }).vlan({ id: 20 }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 53 }).build();
  assert.is(evaluate(f, p).verdict, 'accept');
  const inner = packet().eth().vlan({ id: 20 }).vlan({ id: 10 }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 53 }).build();
  assert.is(evaluate(f, inner).verdict, 'drop');
});

test('TCP flags, ICMP types, DSCP, MAC addresses, interfaces', () => {
  const f = filter('misc', { hook: 'tc-ingress' }, ({ chain }) =>
    chain('input', { policy: 'drop' }, [
      rule(match.tcp.flags(['syn'], ['syn', 'ack'])).named('new-syn').accept(),
      rule(match.icmp.type('echo-request').and(match.ip.dscp(46))).named('ef-ping').accept(),
      rule(match.eth.src('02:00:00:00:00:99')).named('mac').accept(),
      rule(match.iface('eth0')).named('eth0').accept(),
      rule(match.ifindex(7)).named('if7').accept(),
    ]),
  );
  assert.is(evaluate(f, tcp4(1, { flags: 'S' })).rule, 'new-syn');
  assert.is(evaluate(f, tcp4(1, { flags: 'SA' })).decidedBy, 'policy');
  const ef = packet().ipv4({ src: '10.0.0.1', dst: '10.0.0.2', dscp: 46 }).icmp({ type: 'echo-request' }).build();
  assert.is(evaluate(f, ef).rule, 'ef-ping');
  const mac = packet().eth({ src: '02:00:00:00:00:99' }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 2 }).build();
  assert.is(evaluate(f, mac).rule, 'mac');
  assert.is(evaluate(f, udp4(1), { ifname: 'eth0' }).rule, 'eth0');
  assert.is(evaluate(f, udp4(1), { ifindex: 3, interfaces: { eth0: 3 } }).rule, 'eth0');
  assert.is(evaluate(f, udp4(1), { ifindex: 7 }).rule, 'if7');
});

test('reject: a TCP RST for TCP, ICMP port unreachable otherwise, nothing for broadcast', () => {
  const f = filter('rej', { hook: 'tc-ingress' }, ({ chain }) => chain('input', { policy: 'reject' }));
  const rst = evaluate(f, tcp4(80));
  assert.equal([rst.verdict, rst.rejectKind], ['reject', 'tcp-rst']);
  assert.is(rst.data!.length, 54);
  const icmp = evaluate(f, udp4(53));
  assert.is(icmp.rejectKind, 'icmp-port-unreachable');
  assert.is(evaluate(f, tcp6(80)).rejectKind, 'tcp-rst');
  const bcast = packet().eth({ dst: 'ff:ff:ff:ff:ff:ff' }).ipv4({ src: '10.0.0.1', dst: '10.0.0.255' }).udp({ sport: 1, dport: 2 }).build();
  const b = evaluate(f, bcast);
  assert.equal([b.verdict, b.data, b.rejectSuppressed], ['reject', undefined, 'Ethernet destination is multicast or broadcast']);
});

test('redirect carries its target', () => {
  const f = filter('redir', { hook: 'tc-egress' }, ({ chain }) => chain('out', { policy: 'accept' }, [rule(match.udp).redirect('veth1'), rule().redirect(4)]));
  assert.equal(evaluate(f, udp4(1)).redirect, { ifname: 'veth1' });
  const r = evaluate(f, tcp4(1));
  assert.equal([r.verdict, r.redirect, r.hook], ['redirect', { ifindex: 4 }, 'tc-egress']);
});

test('the program is chosen by hook', () => {
  const f = filter('hooks', ({ chain }) => ({ 'tc-ingress': chain('in', { policy: 'drop' }), 'tc-egress': chain('out', { policy: 'accept' }) }));
  const v = (hook: Hook) => evaluate(f, udp4(1), { hook }).verdict;
  assert.equal([v('tc-ingress'), v('tc-egress')], ['drop', 'accept']);
  assert.throws(() => v('xdp'), /has no program for hook 'xdp'/);
});

test.run();
