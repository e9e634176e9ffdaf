/**
 * VLAN tags held in skb metadata. At TC the kernel often keeps the outer tag
 * in the skb (`vlan_present`, `vlan_proto`, `vlan_tci`) instead of in the
 * packet bytes: the receive path moves it there before tc-ingress runs, and a
 * VLAN device over a NIC or veth with tx VLAN offload puts it there on the way
 * out. The filter sees the frame as it is on the wire, as `evaluate()` does on
 * the wire bytes: the metadata tag is the outer tag, tags still in the bytes
 * come after it, and the frame length counts its 4 bytes. A reject reply is
 * written into the bytes and keeps the metadata tag, so on the wire it is the
 * evaluator's reply, tag included.
 *
 * BPF_PROG_TEST_RUN cannot set VLAN metadata, so this is real traffic over a
 * veth pair: tagged frames written raw (AF_PACKET) by the peer, and at egress
 * a metadata tag pushed by a small tc program (test/fixtures/vlan_push.c)
 * standing in for a VLAN device, which the test kernel may not have
 * (CONFIG_VLAN_8021Q).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluate, EvalState, filter, match, packet, rule, type Filter, type Hook } from '../../sdk/index.js';
import { load, type LoadedFilter } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { createPair, ip, nsExec } from '../net/topology.js';
import { fixture } from '../runtime/helpers.js';
import { cacheDir } from './helpers.js';

/** Python: write each hex frame out of an interface; prints 'sent' or 'dropped' (ENOBUFS: a qdisc/tc drop) per frame. */
const SEND = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
out = []
for h in sys.argv[2:]:
    try:
        s.send(bytes.fromhex(h)); out.append('sent')
    except OSError as e:
        out.append('dropped' if e.errno == 105 else 'error:%d' % e.errno)
print(' '.join(out))
`;

/** Python: write one frame, then wait for an ICMP echo reply from an IPv4 address (hex); prints 'reply' or 'none'. */
const ECHO = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
frame, src = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s.send(frame)
end = time.time() + 1.0
while True:
    left = end - time.time()
    if left <= 0:
        print('none'); break
    s.settimeout(left)
    try:
        d, addr = s.recvfrom(2048)
    except socket.timeout:
        print('none'); break
    if addr[2] != socket.PACKET_OUTGOING and d[12:14] == b'\\x08\\x00' and d[23] == 1 and d[34] == 0 and d[26:30] == src:
        print('reply'); break
`;

/**
 * Python: write one frame, then print the first VLAN-tagged frame that comes
 * back (hex, 'none' after a second). A packet socket gets the tag in
 * PACKET_AUXDATA, not in the bytes: it is put back where it was on the wire.
 */
const TAGGED_REPLY = `
import socket, sys, time, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
end = time.time() + 1.0
while True:
    left = end - time.time()
    if left <= 0:
        print('none'); break
    s.settimeout(left)
    try:
        d, anc, flags, addr = s.recvmsg(2048, 256)
    except socket.timeout:
        print('none'); break
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    for level, kind, aux in anc:
        status, _, _, _, _, tci, tpid = struct.unpack('IIIHHHH', aux[:20])
        if level == 263 and kind == 8 and status & 0x10:  # TP_STATUS_VLAN_VALID
            print((d[:12] + struct.pack('!HH', tpid if status & 0x40 else 0x8100, tci) + d[12:]).hex()); sys.exit(0)
`;

/** Python: send UDP datagrams of n bytes to host:9 from the stack. */
const UDP = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b'x' * int(sys.argv[3]), (sys.argv[1], 9))
`;

function send(ns: string, frames: Buffer[]): string[] {
  return nsExec(ns, 'python3', ['-c', SEND, 'eth0', ...frames.map((f) => f.toString('hex'))]).trim().split(' ');
}

const hexIp = (a: string) => Buffer.from(a.split('.').map(Number)).toString('hex');

/** Wait until the rule counters stop at `total` packets (delivery to the peer is asynchronous). */
async function settle(f: LoadedFilter, total: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const n = f.counters().reduce((s, c) => s + Number(c.packets), 0);
    if (n >= total) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The kernel's counters equal the evaluator's over the same wire frames. */
function assertCounters(f: LoadedFilter, fw: Filter, hook: Hook, wire: Buffer[]): void {
  const state = new EvalState(fw);
  for (const w of wire) evaluate(fw, w, { hook, state });
  for (const c of f.counters()) {
    const want = state.counters.get(c.id) ?? { packets: 0, bytes: 0 };
    assert.equal([Number(c.packets), Number(c.bytes)], [want.packets, want.bytes], `rule ${c.name}: packets, bytes`);
  }
}

if (requireKernel('codegen: VLAN tags in skb metadata')) {
  test('tc-ingress: the tag the receive path moved into metadata is the outer tag, and its bytes count', async () => {
    const fw = filter('vlin', { hook: 'tc-ingress' }, ({ chain }) =>
      chain('input', { policy: 'accept' }, [
        rule(match.vlan.id(10).and(match.icmp.type('echo-request'))).count().drop(),
        // QinQ: the outer 802.1ad tag in metadata, the inner 802.1Q tag still in the bytes.
        rule(match.vlan.id(10).and(match.eth.type('ipv4')).and(match.udp.dport(9))).count(),
        rule(match.vlan.id(11).and(match.ip6).and(match.tcp.dport(80))).count(),
        // 100 bytes on the wire, 96 in the skb.
        rule(match.vlan.and(match.len.ge(100))).count(),
        rule(match.vlan.not().and(match.udp.dport(9))).count(),
        rule(match.vlan).count(),
      ]),
    );
    const topo = createPair({ prefix: 'vl' });
    const f = load(fw, { cacheDir: cacheDir() });
    try {
      const { a, b } = topo;
      const eth = { src: a.mac, dst: b.mac };
      const wire = [
        packet().eth(eth).vlan({ id: 10 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).icmp({ type: 'echo-request', id: 1, seq: 1 }).payload(16).build(),
        packet().eth(eth).vlan({ id: 10, tpid: 0x88a8 }).vlan({ id: 20 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).udp({ sport: 1000, dport: 9 }).payload(12).build(),
        packet().eth(eth).vlan({ id: 11, pcp: 5 }).ipv6({ src: a.ipv6, dst: b.ipv6 }).tcp({ sport: 1000, dport: 80, flags: 'S' }).build(),
        packet().eth(eth).vlan({ id: 12 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).udp({ sport: 1000, dport: 7 }).payload(54).build(),
        packet().eth(eth).ipv4({ src: a.ipv4, dst: b.ipv4 }).udp({ sport: 1000, dport: 9 }).build(),
      ];
      assert.is(wire[3]!.length, 100);
      f.attach({ hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
      assert.equal(send(a.ns, wire), ['sent', 'sent', 'sent', 'sent', 'sent']);
      await settle(f, 8);
      assertCounters(f, fw, 'tc-ingress', wire);
      const byName = Object.fromEntries(f.counters().map((c) => [c.name, Number(c.packets)]));
      assert.equal(byName, { 'input#0': 1, 'input#1': 1, 'input#2': 1, 'input#3': 1, 'input#4': 1, 'input#5': 3 });
    } finally {
      f.close();
      topo.destroy();
    }
  });

  test('tc-ingress: a priority-tagged (VLAN 0) echo request is answered, until a vlan.id(0) rule drops it', () => {
    const fw = filter('vlprio', { hook: 'tc-ingress' }, ({ chain }) =>
      chain('input', { policy: 'accept' }, [rule(match.vlan.id(0).and(match.icmp.type('echo-request'))).count().drop()]),
    );
    const topo = createPair({ prefix: 'vl' });
    const f = load(fw, { cacheDir: cacheDir() });
    try {
      const { a, b } = topo;
      ip(['neigh', 'replace', a.ipv4, 'lladdr', a.mac, 'dev', b.ifname, 'nud', 'permanent'], b.ns);
      const echo = packet().eth({ src: a.mac, dst: b.mac }).vlan({ id: 0 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).icmp({ type: 'echo-request', id: 7, seq: 1 }).payload(8).build();
      const ask = () => nsExec(a.ns, 'python3', ['-c', ECHO, a.ifname, echo.toString('hex'), hexIp(b.ipv4)]).trim();
      assert.is(ask(), 'reply', 'the stack answers a priority-tagged request');
      f.attach({ hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
      assert.is(ask(), 'none', 'the filter drops it');
      assertCounters(f, fw, 'tc-ingress', [echo]);
    } finally {
      f.close();
      topo.destroy();
    }
  });

  test('tc-ingress reject: the reply keeps the tag in metadata and is, on the wire, exactly the evaluator\'s', () => {
    const fw = filter('vlrej', { hook: 'tc-ingress' }, ({ chain }) =>
      chain('input', { policy: 'accept' }, [rule(match.vlan.id(10).and(match.tcp.dport(25))).reject()]),
    );
    const topo = createPair({ prefix: 'vl' });
    const f = load(fw, { cacheDir: cacheDir() });
    try {
      const { a, b } = topo;
      const syn = packet().eth({ src: a.mac, dst: b.mac }).vlan({ id: 10, pcp: 3 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).tcp({ sport: 40000, dport: 25, flags: 'S', seq: 1000 }).build();
      const want = evaluate(fw, syn, { hook: 'tc-ingress' });
      assert.is(want.rejectKind, 'tcp-rst');
      f.attach({ hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
      const got = nsExec(a.ns, 'python3', ['-c', TAGGED_REPLY, a.ifname, syn.toString('hex')]).trim();
      assert.is(got, want.data!.toString('hex'), 'the RST on the wire, VLAN 10 tag included');
    } finally {
      f.close();
      topo.destroy();
    }
  });

  test('tc-egress: a tag pushed into metadata and a tag in the bytes give the same match and length', () => {
    const fw = filter('vlout', { hook: 'tc-egress' }, ({ chain }) =>
      chain('output', { policy: 'accept' }, [
        rule(match.vlan.id(10).and(match.udp.dport(9)).and(match.len(76))).count().drop(),
        rule(match.vlan.id(10)).count(),
      ]),
    );
    const topo = createPair({ prefix: 'vl' });
    const f = load(fw, { cacheDir: cacheDir() });
    const pusher = load(fixture('vlan_push'));
    try {
      const { a, b } = topo;
      ip(['neigh', 'replace', b.ipv4, 'lladdr', b.mac, 'dev', a.ifname, 'nud', 'permanent'], a.ns);
      pusher.attach({ hook: 'tc-egress', ifname: a.ifname, netns: a.ns, program: 'vlan_push', priority: 1 });
      f.attach({ hook: 'tc-egress', ifname: a.ifname, netns: a.ns, priority: 2 });
      // Three datagrams from the stack: tagged in metadata by the pusher.
      nsExec(a.ns, 'python3', ['-c', UDP, b.ipv4, '3', '30']);
      // One frame tagged in its bytes, of the same size on the wire: 14 + 4 + 20 + 8 + 30.
      const tagged = packet().eth({ src: a.mac, dst: b.mac }).vlan({ id: 10 }).ipv4({ src: a.ipv4, dst: b.ipv4 }).udp({ sport: 1000, dport: 9 }).payload(30).build();
      assert.is(tagged.length, 76);
      assert.equal(send(a.ns, [tagged]), ['dropped'], 'the tc drop reaches the sender as ENOBUFS');
      assertCounters(f, fw, 'tc-egress', [tagged, tagged, tagged, tagged]);
    } finally {
      f.close();
      pusher.close();
      topo.destroy();
    }
  });
}

test.run();
