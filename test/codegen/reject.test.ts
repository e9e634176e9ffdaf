/**
 * `reject` sends the same bytes from TS (sdk/reject.ts, the evaluator's
 * oracle) and from C (codegen/include/tsbpf/reject.h, run in the kernel at XDP
 * and TC): a TCP RST per RFC 793 or an ICMP/ICMPv6 port unreachable quoting
 * the original, MACs, addresses and ports swapped, checksums right.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileC } from '../../codegen/clang.js';
import { ipv4PseudoHeaderSum, ipv6PseudoHeaderSum, onesSum } from '../../sdk/checksum.js';
import { packet } from '../../sdk/packet.js';
import { parsePacket, TCP_ACK, TCP_RST } from '../../sdk/parse.js';
import { rejectReply, rejectSuppressed, REJECT_QUOTE_MAX } from '../../sdk/reject.js';
import { requireKernel } from '../kernel.js';
import { baseCorpus, mutants, truncations, type Sample } from './corpus.js';
import { cacheDir, tcTestRunRefuses, withObject } from './helpers.js';

const REJECT_PROGRAM = `
#include <tsbpf/reject.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_pkt);
} pkt SEC(".maps");

SEC("xdp")
int reject_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct tsbpf_pkt *p = bpf_map_lookup_elem(&pkt, &k);
	if (!p)
		return XDP_ABORTED;
	tsbpf_parse(ctx, TSBPF_HOOK_XDP, p);
	return tsbpf_reject(ctx, TSBPF_HOOK_XDP, 0, p);
}

SEC("tc")
int reject_tc(struct __sk_buff *ctx)
{
	__u32 k = 0;
	struct tsbpf_pkt *p = bpf_map_lookup_elem(&pkt, &k);
	if (!p)
		return 2;
	tsbpf_parse(ctx, TSBPF_HOOK_TC, p);
	return tsbpf_reject(ctx, TSBPF_HOOK_TC, 0, p);
}

char LICENSE[] SEC("license") = "GPL";
`;

const v4 = { src: '10.0.0.1', dst: '10.0.0.2' };
const v6 = { src: 'fd00::1', dst: 'fd00::2' };

/** The reply's checksums verify (IPv4 header; TCP/ICMPv6 with pseudo-header; ICMP). */
function checksumsVerify(reply: Buffer): void {
  const v = parsePacket(reply);
  const l3 = v.l3Offset!;
  const l4 = v.l4Offset!;
  const seg = reply.subarray(l4);
  if (v.ipv4) {
    assert.is(onesSum(reply.subarray(l3, l4)), 0xffff, 'IPv4 header checksum');
    const src = reply.subarray(l3 + 12, l3 + 16);
    const dst = reply.subarray(l3 + 16, l3 + 20);
    const pseudo = v.proto === 6 ? ipv4PseudoHeaderSum(src, dst, 6, seg.length) : 0;
    assert.is(onesSum(seg, pseudo), 0xffff, 'L4 checksum');
  } else {
    const pseudo = ipv6PseudoHeaderSum(reply.subarray(l3 + 8, l3 + 24), reply.subarray(l3 + 24, l3 + 40), v.proto!, seg.length);
    assert.is(onesSum(seg, pseudo), 0xffff, 'L4 checksum');
  }
}

test('TCP SYN: RST|ACK acknowledging the SYN, ports and addresses swapped', () => {
  const data = packet().eth({ src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }).ipv4(v4).tcp({ sport: 40000, dport: 25, flags: 'S', seq: 1000 }).build();
  const r = rejectReply(data)!;
  assert.is(r.kind, 'tcp-rst');
  const v = parsePacket(r.data);
  assert.is(v.eth!.src, 0x020000000002);
  assert.is(v.eth!.dst, 0x020000000001);
  assert.is(v.ipv4!.src, 0x0a000002);
  assert.is(v.ipv4!.dst, 0x0a000001);
  assert.is(v.ipv4!.ttl, 64);
  assert.ok(v.ipv4!.df);
  assert.equal([v.tcp!.sport, v.tcp!.dport], [25, 40000]);
  assert.is(v.tcp!.flags, TCP_RST | TCP_ACK);
  assert.is(v.tcp!.seq, 0);
  assert.is(v.tcp!.ack, 1001, 'SYN counts as one');
  assert.is(r.data.length, 14 + 20 + 20);
  checksumsVerify(r.data);
});

test('TCP with ACK: RST with seq = its ack; payload counts, Ethernet padding does not', () => {
  const acked = packet().eth().ipv4(v4).tcp({ sport: 1, dport: 2, flags: 'PA', seq: 5, ack: 0xfffffff0 }).payload(10).build();
  const a = parsePacket(rejectReply(acked)!.data);
  assert.is(a.tcp!.flags, TCP_RST);
  assert.is(a.tcp!.seq, 0xfffffff0);
  assert.is(a.tcp!.ack, 0);
  const fin = packet().eth().ipv4(v4).tcp({ sport: 1, dport: 2, flags: 'F', seq: 0xffffffff }).payload(3).pad(80).build();
  const f = parsePacket(rejectReply(fin)!.data);
  assert.is(f.tcp!.ack, 3, '0xffffffff + 3 payload + 1 FIN wraps to 3');
});

test('UDP over IPv6: ICMPv6 port unreachable quoting the original', () => {
  const data = packet().eth().ipv6(v6).udp({ sport: 5000, dport: 53 }).payload(200).build();
  const r = rejectReply(data)!;
  assert.is(r.kind, 'icmpv6-port-unreachable');
  const v = parsePacket(r.data);
  assert.equal([v.icmpv6!.type, v.icmpv6!.code], [1, 4]);
  assert.is(r.data.length, 14 + 40 + 8 + REJECT_QUOTE_MAX);
  assert.equal(r.data.subarray(14 + 48), data.subarray(14, 14 + REJECT_QUOTE_MAX));
  checksumsVerify(r.data);
});

test('no reply for RST, ICMP errors, later fragments, multicast, non-IP', () => {
  const cases: Array<[string, Buffer]> = [
    ['RST', packet().eth().ipv4(v4).tcp({ sport: 1, dport: 2, flags: 'R' }).build()],
    ['ICMP error', packet().eth().ipv4(v4).icmp({ type: 3, code: 1 }).build()],
    ['ICMPv6 error', packet().eth().ipv6(v6).icmpv6({ type: 1, code: 4 }).build()],
    ['later fragment', packet().eth().ipv4({ ...v4, fragOffset: 3 }).udp({ sport: 1, dport: 2 }).build()],
    ['multicast IPv4', packet().eth().ipv4({ src: '10.0.0.1', dst: '224.0.0.5' }).udp({ sport: 1, dport: 2 }).build()],
    ['multicast IPv6', packet().eth().ipv6({ src: 'fd00::1', dst: 'ff02::1' }).udp({ sport: 1, dport: 2 }).build()],
    ['broadcast MAC', packet().eth({ dst: 'ff:ff:ff:ff:ff:ff' }).ipv4(v4).udp({ sport: 1, dport: 2 }).build()],
    ['ARP', packet().eth({ type: 0x0806 }).payload(28).build()],
  ];
  for (const [name, data] of cases) {
    assert.is(rejectReply(data), undefined, name);
    assert.type(rejectSuppressed(parsePacket(data)), 'string', name);
  }
});

if (requireKernel('codegen: reject.h writes the bytes sdk/reject.ts builds')) {
  test('reject.h and reject.ts give identical replies at XDP and TC', () => {
    const obj = compileC(REJECT_PROGRAM, { cacheDir: cacheDir() });
    const base: Sample[] = [
      ...baseCorpus(),
      { name: 'vlan tcp', data: packet().eth().vlan({ id: 5 }).ipv4(v4).tcp({ sport: 3, dport: 4, flags: 'S' }).build() },
      { name: 'qinq udp6', data: packet().eth().vlan({ id: 5, tpid: 0x88a8 }).vlan({ id: 6 }).ipv6(v6).udp({ sport: 3, dport: 4 }).payload(300).build() },
      { name: 'ipv4 options tcp', data: packet().eth().ipv4({ ...v4, options: new Uint8Array(12).fill(1) }).tcp({ sport: 3, dport: 4, flags: 'S' }).payload(7).build() },
      { name: 'ipv6 ext tcp', data: packet().eth().ipv6({ ...v6, extensions: [{ type: 'hop-by-hop' }, { type: 'routing' }] }).tcp({ sport: 3, dport: 4, flags: 'SE' }).payload(20).build() },
      { name: 'big udp', data: packet().eth().ipv4(v4).udp({ sport: 3, dport: 4 }).payload(1200).build() },
    ];
    const samples = [...base, ...truncations(base, 30), ...mutants(base, 300, 11)];
    let replies = 0;
    withObject(obj.path, (o) => {
      for (const s of samples) {
        const want = rejectReply(s.data);
        for (const [prog, tx, drop] of [['reject_xdp', 3, 1], ['reject_tc', 7, 2]] as const) {
          if (prog === 'reject_tc' && tcTestRunRefuses(s.data)) continue;
          const r = o.run(prog, Buffer.from(s.data));
          const what = `${prog} on '${s.name}' (${s.data.toString('hex')})`;
          if (!want) {
            assert.is(r.retval, drop, `${what}: no reply, dropped`);
            continue;
          }
          assert.is(r.retval, tx, `${what}: sends the reply`);
          if (!r.data.equals(want.data)) assert.is(r.data.toString('hex'), want.data.toString('hex'), what);
          replies++;
        }
        if (want) checksumsVerify(want.data);
      }
    });
    assert.ok(replies > 500, `${replies} replies compared`);
  });
}

test.run();
