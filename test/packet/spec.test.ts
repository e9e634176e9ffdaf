/**
 * The `--packet SPEC` syntax: each spec equals the builder call it stands
 * for, and each mistake is an INVALID_ARGUMENT error that underlines the bad
 * token.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { packet } from '../../sdk/packet.js';
import { PACKET_SPEC_SYNTAX, parsePacketSpec } from '../../sdk/packet-spec.js';
import { checkFrame } from './verify.js';

const v4 = { src: '10.0.0.1', dst: '10.0.0.2' };

function same(spec: string, expected: Buffer) {
  const { data } = parsePacketSpec(spec);
  assert.equal(data.toString('hex'), expected.toString('hex'), spec);
}

test('tcp with ports and flags', () => {
  same('tcp 10.0.0.1:1234 -> 10.0.0.2:80 flags=S', packet().ipv4(v4).tcp({ sport: 1234, dport: 80, flags: 'S' }).build());
  same('tcp 10.0.0.1:1234->10.0.0.2:80 flags=syn,ack seq=7 ack=9 win=512', packet().ipv4(v4).tcp({ sport: 1234, dport: 80, flags: 0x12, seq: 7, ack: 9, window: 512 }).build());
  same('tcp 10.0.0.1:1 -> 10.0.0.2:2 flags=0x11', packet().ipv4(v4).tcp({ sport: 1, dport: 2, flags: 'FA' }).build());
});

test('the source port defaults to 40000', () => {
  same('tcp 10.0.0.1 -> 10.0.0.2:443', packet().ipv4(v4).tcp({ sport: 40000, dport: 443 }).build());
});

test('udp over IPv6 with len= as the whole frame length', () => {
  const { data } = parsePacketSpec('udp [fd00::1]:53 -> [fd00::2]:5353 len=600');
  assert.is(data.length, 600);
  assert.equal(checkFrame(data), { problems: [], layers: ['eth', 'ipv6', 'udp'] });
  assert.is(data.readUInt16BE(54 + 2), 5353);
});

test('icmp and icmp6 with type and code names or numbers', () => {
  same('icmp 10.0.0.1 -> 10.0.0.2 type=echo-request', packet().ipv4(v4).icmp({ type: 'echo-request' }).build());
  same('icmp 10.0.0.1 -> 10.0.0.2', packet().ipv4(v4).icmp({ type: 'echo-request' }).build());
  same('icmp 10.0.0.1 -> 10.0.0.2 type=3 code=port-unreachable id=5 seq=6', packet().ipv4(v4).icmp({ type: 3, code: 3, id: 5, seq: 6 }).build());
  same('icmp6 fd00::1 -> fd00::2 type=neighbor-solicitation', packet().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).icmpv6({ type: 135 }).build());
  same('icmpv6 fd00::1 -> fd00::2', packet().ipv6({ src: 'fd00::1', dst: 'fd00::2' }).icmpv6({ type: 'echo-request' }).build());
});

test('L2 and L3 keys: vlan (QinQ), pcp, MACs, ttl, dscp, ecn, ipid, df, mf, frag', () => {
  same(
    'udp 10.0.0.1:1 -> 10.0.0.2:2 vlan=10 pcp=3 ttl=1 dscp=46 ecn=1 ipid=9 df smac=02:aa:00:00:00:01 dmac=02:bb:00:00:00:02',
    packet().eth({ src: '02:aa:00:00:00:01', dst: '02:bb:00:00:00:02' }).vlan({ id: 10, pcp: 3 }).ipv4({ ...v4, ttl: 1, dscp: 46, ecn: 1, id: 9, df: true }).udp({ sport: 1, dport: 2 }).build(),
  );
  same(
    'udp 10.0.0.1:1 -> 10.0.0.2:2 vlan=100,10',
    packet().vlan({ id: 100, tpid: 0x88a8 }).vlan({ id: 10 }).ipv4(v4).udp({ sport: 1, dport: 2 }).build(),
  );
  same('ip 10.0.0.1 -> 10.0.0.2 proto=17 frag=3 mf payload=8', packet().ipv4({ ...v4, proto: 17, fragOffset: 3, mf: true }).payload(8).build());
  same('ip6 fd00::1 -> fd00::2 hlim=255 tclass=0xb8 flowlabel=5', packet().ipv6({ src: 'fd00::1', dst: 'fd00::2', hopLimit: 255, trafficClass: 0xb8, flowLabel: 5 }).build());
});

test('IPv6 extension headers and fragments', () => {
  same(
    'tcp [fd00::1]:1 -> [fd00::2]:2 ext=hop-by-hop,fragment mf',
    packet().ipv6({ src: 'fd00::1', dst: 'fd00::2', extensions: [{ type: 'hop-by-hop' }, { type: 'fragment', mf: true }] }).tcp({ sport: 1, dport: 2 }).build(),
  );
});

test('payload as a count, text (quoted, with spaces) or hex', () => {
  same('udp 10.0.0.1:1 -> 10.0.0.2:2 payload=3', packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(3).build());
  same('udp 10.0.0.1:1 -> 10.0.0.2:2 payload="GET / -> x"', packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload('GET / -> x').build());
  same('udp 10.0.0.1:1 -> 10.0.0.2:2 payload=0xdeadbeef', packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(Buffer.from('deadbeef', 'hex')).build());
  same('udp 10.0.0.1:1 -> 10.0.0.2:2 payload=2 len=60', packet().ipv4(v4).udp({ sport: 1, dport: 2 }).payload(2).payload(16).build());
});

test('eth frames, corrupt= and truncate=', () => {
  same('eth ethertype=0x0806 payload=28', packet().eth({ type: 0x0806 }).payload(28).build());
  same('tcp 10.0.0.1:1 -> 10.0.0.2:2 corrupt=ipv4-ihl:3', packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).corrupt('ipv4-ihl', 3).build());
  same('udp 10.0.0.1:1 -> 10.0.0.2:2 corrupt=ip-length:-4', packet().ipv4(v4).udp({ sport: 1, dport: 2 }).corrupt('ip-length', -4).build());
  same('tcp 10.0.0.1:1 -> 10.0.0.2:2 truncate=40', packet().ipv4(v4).tcp({ sport: 1, dport: 2 }).build().subarray(0, 40));
});

test('hex= gives the whole frame; context keys come back beside it', () => {
  const r = parsePacketSpec('hex=02:00:00:00:00:02:02:00:00:00:00:01:08:00 iface=eth0 mark=0x10');
  assert.is(r.data.toString('hex'), '0200000000020200000000010800');
  assert.equal(r.context, { ifname: 'eth0', mark: 16 });
  assert.equal(parsePacketSpec('hex=0x0011223344556677889900112233 truncate=4 ifindex=3').context, { ifindex: 3 });
  assert.is(parsePacketSpec('hex=0x0011223344556677889900112233 truncate=4').data.length, 4);
  assert.equal(parsePacketSpec('tcp 10.0.0.1:1 -> 10.0.0.2:2 iface=7').context, { ifindex: 7 });
});

test('the syntax summary lists every protocol word', () => {
  for (const w of ['tcp', 'udp', 'sctp', 'icmp', 'icmp6', 'ip6', 'eth', 'hex=', 'iface=', 'mark=', 'len=']) assert.ok(PACKET_SPEC_SYNTAX.includes(w), w);
});

// --- errors ------------------------------------------------------------------------

/** Asserts the error message and that the caret line underlines `token`. */
function bad(spec: string, message: RegExp, token?: string) {
  try {
    parsePacketSpec(spec);
  } catch (e) {
    assert.instance(e, TsbpfError);
    const err = e as TsbpfError;
    assert.is(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, message);
    const [first, quoted, carets] = err.message.split('\n');
    assert.ok(first!.startsWith('packet spec: '), first);
    assert.is(quoted, `  ${spec}`);
    if (token !== undefined) {
      const at = spec.indexOf(token);
      assert.is(carets, `  ${' '.repeat(at)}${'^'.repeat(token.length)}`, `caret under '${token}'`);
      assert.is(err.info.token, token);
      assert.is(err.info.offset, at);
    }
    assert.ok(err.hint, 'has a hint');
    return;
  }
  assert.unreachable(`expected '${spec}' to fail`);
}

test('address and port mistakes point at the endpoint', () => {
  bad('tcp 10.0.0.1:70000 -> 10.0.0.2:80', /port 70000 is out of range 0\.\.65535/, '10.0.0.1:70000');
  bad('tcp 10.0.0.300:1 -> 10.0.0.2:80', /invalid IPv4 address '10\.0\.0\.300'/, '10.0.0.300:1');
  bad('udp 10.0.0.1:53 -> fd00::1', /destination is IPv6 but source is IPv4/, 'fd00::1');
  bad('udp [fd00::1:53 -> [fd00::2]:53', /missing '\]'/, '[fd00::1:53');
  bad('udp [fd00::zz]:1 -> [fd00::2]:53', /invalid IPv6 address 'fd00::zz'/, '[fd00::zz]:1');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2', /tcp needs a destination port/, '10.0.0.2');
  bad('icmp 10.0.0.1:5 -> 10.0.0.2', /icmp has no ports/, '10.0.0.1:5');
  bad('tcp 10.0.0.1:1 10.0.0.2:2', /expected '->' after the source '10\.0\.0\.1:1'/, '10.0.0.2:2');
  bad('tcp 10.0.0.1:1 ->', /missing destination after ->/, '->');
  bad('tcp', /tcp needs endpoints/, 'tcp');
});

test('protocol mistakes', () => {
  bad('icmp fd00::1 -> fd00::2', /icmp is IPv4; use icmp6/, 'icmp');
  bad('icmp6 10.0.0.1 -> 10.0.0.2', /icmp6 is IPv6; use icmp/, 'icmp6');
  bad('ip6 10.0.0.1 -> 10.0.0.2', /'ip6' needs IPv6 addresses/, '10.0.0.1');
  bad('udp 10.0.0.1:1 -> 10.0.0.2:2 flags=S', /'flags' applies to tcp packets, not udp/, 'flags=S');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 flags=SX', /unknown tcp flag letter 'X'/, 'flags=SX');
  bad('icmp 10.0.0.1 -> 10.0.0.2 type=echo', /unknown icmp type 'echo'/, 'type=echo');
  bad('icmp 10.0.0.1 -> 10.0.0.2 code=port-unreachable', /unknown icmp code 'port-unreachable' for type 8/, 'code=port-unreachable');
  bad('icmp6 fd00::1 -> fd00::2 type=echo-request ipid=3', /'ipid' is an IPv4 field/, 'ipid=3');
  bad('udp 10.0.0.1:1 -> 10.0.0.2:2 ext=routing', /'ext' is an IPv6 field/, 'ext=routing');
  bad('udp [fd00::1]:1 -> [fd00::2]:2 ext=hop,routing', /unknown extension header 'hop'/, 'ext=hop,routing');
  bad('udp [fd00::1]:1 -> [fd00::2]:2 mf', /'mf' on IPv6 needs ext=fragment/, 'mf');
  bad('10.0.0.1 -> 10.0.0.2 tcp', /the protocol 'tcp' must come first/, 'tcp');
});

test('key and value mistakes', () => {
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 colour=red', /unknown key 'colour'/, 'colour=red');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 ttl=300', /ttl=300 is out of range 0\.\.255/, 'ttl=300');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 ttl=x', /ttl= needs a number, got 'x'/, 'ttl=x');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 ttl', /'ttl' needs a value/, 'ttl');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 ttl=1 ttl=2', /'ttl' given twice/, 'ttl=2');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 vlan=4096', /vlan=4096 is out of range 0\.\.4095/, 'vlan=4096');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 vlan=1,2,3', /at most two VLAN tags/, 'vlan=1,2,3');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 len=20', /len=20 is shorter than the 54 bytes the headers need/, 'len=20');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 tos=1 dscp=2', /give tos= or dscp=\/ecn=, not both/, 'tos=1');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 corrupt=udp-length', /needs a udp layer/, 'corrupt=udp-length');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 smac=02:00', /invalid MAC address '02:00'/, 'smac=02:00');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 iface=a/b', /invalid interface name 'a\/b'/, 'iface=a/b');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 df=maybe', /df is a flag/, 'df=maybe');
});

test('hex= mistakes', () => {
  bad('hex=abc', /hex= needs an even number of hex digits/, 'hex=abc');
  bad('hex=zz', /hex= needs an even number of hex digits/, 'hex=zz');
  bad('tcp 10.0.0.1:1 -> 10.0.0.2:2 hex=00', /hex= gives the whole frame/, 'tcp');
  bad('hex=0011 ttl=3', /'ttl' cannot be combined with hex=/, 'ttl=3');
  bad('', /empty packet spec/);
  bad('ttl=3', /needs a protocol and endpoints, or hex=/, 'ttl=3');
});

test.run();
