/**
 * The two packet parsers agree: codegen/include/tsbpf/parse.h, run in the
 * kernel by BPF_PROG_TEST_RUN at XDP and at TC, writes its struct tsbpf_pkt
 * into a map; sdk/parse.ts's view of the same frame, as that struct
 * (pktRecordOf), must be identical, field for field, on crafted, truncated
 * and mutated frames.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileC } from '../../codegen/clang.js';
import { PKT, HAS, pktRecordOf } from '../../codegen/layouts.js';
import { decode } from '../../sdk/layout.js';
import { parsePacket } from '../../sdk/parse.js';
import { requireKernel } from '../kernel.js';
import { baseCorpus, mutants, truncations, type Sample } from './corpus.js';
import { cacheDir, tcTestRunRefuses, u32key, withObject } from './helpers.js';

const PARSE_PROGRAM = `
#include <tsbpf/parse.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_pkt);
} out SEC(".maps");

SEC("xdp")
int parse_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct tsbpf_pkt *p = bpf_map_lookup_elem(&out, &k);
	if (!p)
		return XDP_ABORTED;
	tsbpf_parse(ctx, TSBPF_HOOK_XDP, p);
	return XDP_PASS;
}

SEC("tc")
int parse_tc(struct __sk_buff *ctx)
{
	__u32 k = 0;
	struct tsbpf_pkt *p = bpf_map_lookup_elem(&out, &k);
	if (!p)
		return 2;
	tsbpf_parse(ctx, TSBPF_HOOK_TC, p);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`;

test('the TS parser: an empty or short frame has only a length', () => {
  for (const n of [0, 1, 13]) {
    const v = parsePacket(new Uint8Array(n));
    assert.equal(v, { len: n, vlan: [] });
    assert.is(pktRecordOf(v).present, 0);
  }
});

test('the TS parser: layers of a VLAN-tagged IPv4 TCP frame', () => {
  const data = baseCorpus().find((s) => s.name === 'vlan ipv4 udp')!.data;
  const v = parsePacket(data);
  assert.is(v.vlan.length, 1);
  assert.is(v.vlan[0]!.id, 100);
  assert.is(v.vlan[0]!.pcp, 5);
  assert.is(v.ethertype, 0x0800);
  assert.is(v.l3Offset, 18);
  assert.is(v.l4Offset, 38);
  assert.is(v.udp!.dport, 53);
  assert.is(pktRecordOf(v).present, HAS.ETH | HAS.L3 | HAS.IPV4 | HAS.PROTO | HAS.L4OFF | HAS.UDP);
});

test('the TS parser: a later fragment has no L4, a 7th extension header stops the walk', () => {
  const c = baseCorpus();
  const later = parsePacket(c.find((s) => s.name === 'ipv4 later fragment')!.data);
  assert.is(later.fragment!.offset, 10);
  assert.is(later.tcp, undefined);
  assert.is(later.proto, 6);
  const six = parsePacket(c.find((s) => s.name === 'ipv6 six ext')!.data);
  assert.is(six.ipv6!.extHeaders, 6);
  assert.ok(six.udp);
  const seven = parsePacket(c.find((s) => s.name === 'ipv6 seven ext')!.data);
  assert.is(seven.ipv6!.extHeaders, 6);
  assert.is(seven.proto, 60);
  assert.is(seven.udp, undefined);
  assert.is(seven.l4Offset, undefined);
});

if (requireKernel('codegen: parse.h agrees with sdk/parse.ts')) {
  test('parse.h and parse.ts agree at XDP and TC on crafted, truncated and mutated frames', () => {
    const obj = compileC(PARSE_PROGRAM, { cacheDir: cacheDir() });
    const base = baseCorpus();
    const samples: Sample[] = [...base, ...truncations(base), ...mutants(base, 400, 7)];
    withObject(obj.path, (o) => {
      assert.is(o.maps.get('out')!.valueSize, PKT.size, 'struct tsbpf_pkt and the PKT layout have the same size');
      let compared = 0;
      for (const s of samples) {
        const want = pktRecordOf(parsePacket(s.data));
        for (const prog of ['parse_xdp', 'parse_tc']) {
          o.update('out', u32key(0), Buffer.alloc(PKT.size, 0xaa));
          if (prog === 'parse_tc' && tcTestRunRefuses(s.data)) continue;
          const r = o.run(prog, s.data);
          assert.is(r.retval, prog === 'parse_xdp' ? 2 : 0, `${prog} ran on '${s.name}'`);
          const got = decode(PKT, o.lookup('out', u32key(0))!);
          if (JSON.stringify(got, big) !== JSON.stringify(want, big)) {
            assert.equal(got, want, `${prog} on '${s.name}' (${s.data.toString('hex')})`);
          }
          compared++;
        }
      }
      assert.ok(compared > 2000, `compared ${compared} parses`);
    });
  });
}

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

test.run();
