/**
 * Where the services program runs: the XDP variant (`hook: 'xdp'`) on a
 * router's interfaces with real traffic, in generic and in driver mode on
 * veth; and the tc program with `verdict: 'continue'`, which lets a filter
 * at a later priority on the same hook see the packets it passed (and
 * without which that filter sees none).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { nsExec } from '../net/topology.js';
import { compileC } from '../../codegen/clang.js';
import { load } from '../../runtime/load.js';
import { loadServices, type LoadedServices } from '../../runtime/services.js';
import { services } from '../../sdk/services.js';
import { createLbTopology, namedServer, spread, transfer, type LbTopology, type NsProcess } from './net.js';

const PORT = 8080;

interface Ctx {
  topo: LbTopology;
  servers: NsProcess[];
}

const ctx = {} as Ctx;
const t = suite<Ctx>('services program hooks', ctx);

function definition(topo: LbTopology) {
  return services('hk', { conntrack: { maxEntries: 16384 } }, (s) => {
    s.service('web', { vip: topo.vip(1), port: 80, backends: topo.backends.map((b) => ({ addr: b.ipv4, port: PORT })) });
    s.service('web6', { vip: topo.vip6(1), port: 80, backends: topo.backends.map((b) => ({ addr: b.ipv6, port: PORT })) });
  });
}

/** A tc program that counts the packets it sees (slot 0) and lets them go on. */
const COUNTER_C = `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); } seen SEC(".maps");
SEC("tc") int count_after(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&seen, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
`;

async function traffic(lb: LoadedServices, label: string): Promise<void> {
  const { topo } = ctx;
  for (const [vip, fam] of [
    [topo.vip(1), 4],
    [topo.vip6(1), 6],
  ] as const) {
    const r = await spread(topo.client.ns, vip, 80, 'tcp', 24);
    assert.is(r.failed, 0, `${label}: IPv${fam} connections through the VIP all answered (${JSON.stringify(r)})`);
    assert.equal(Object.keys(r.counts).sort(), ['b0', 'b1'], `${label}: IPv${fam} connections reached both backends`);
    // The client sees the VIP, not the backend: the replies were translated back.
    const peers = Object.keys(r.peers);
    assert.ok(peers.length > 0 && peers.every((p) => p.startsWith(vip)), `${label}: the client talked to the VIP only (${peers.join(', ')})`);
  }
  const x = transfer(topo.client.ns, topo.vip(1), 80, 1 << 20);
  assert.ok(x.ok, `${label}: 1 MB through DNAT and back verified (${JSON.stringify(x)})`);
  const st = lb.stats();
  assert.ok(st.translated > 0n && st.lbNew >= 48n, `${label}: counted ${st.lbNew} new connections and ${st.translated} translated packets`);
}

if (requireKernel('stateful: services program at XDP and with the continue verdict')) {
  t.before(async () => {
    ctx.topo = createLbTopology(2, 'tsh');
    ctx.servers = [];
    try {
      // XDP sees bytes: a CHECKSUM_PARTIAL skb from a local socket over veth holds a partial L4
      // checksum it cannot tell apart. Full checksums from the peers make the receivers verify them.
      for (const h of [ctx.topo.client, ...ctx.topo.backends]) nsExec(h.ns, 'ethtool', ['-K', h.ifname, 'tx', 'off']);
      for (const [i, b] of ctx.topo.backends.entries()) {
        ctx.servers.push(await namedServer(b.ns, `b${i}`, PORT, 'tcp', 6));
      }
    } catch (e) {
      for (const s of ctx.servers) s.stop();
      ctx.topo.destroy();
      throw e;
    }
  });

  t.after(() => {
    for (const s of ctx.servers) s.stop();
    ctx.topo.destroy();
  });

  for (const mode of ['generic', 'driver'] as const) {
    t(`XDP (${mode} mode on veth): connections to a VIP reach every backend, replies come back from the VIP, bytes verify`, async () => {
      const { topo } = ctx;
      const lb = loadServices(definition(topo), { hook: 'xdp' });
      try {
        assert.equal(
          lb.compiled.programs.map((p) => p.hook),
          ['xdp'],
        );
        for (const h of [topo.router.toClient, ...topo.router.toBackends]) {
          const [a] = lb.attach({ ifname: h.ifname, netns: topo.router.ns, mode });
          assert.is(a!.mode, mode);
        }
        await traffic(lb, `XDP ${mode}`);
        const conns = lb.conntrack({ dport: 80 });
        assert.ok(conns.filter((c) => c.flags.includes('dnat')).length >= 48, `conntrack holds the DNAT connections (${conns.length})`);
      } finally {
        lb.close();
      }
    });
  }

  t("tc verdict 'continue': a filter at a later priority on the same hook sees the packets the services program passed", async () => {
    const { topo } = ctx;
    const counter = load(compileC(COUNTER_C), { name: 'hkcount' });
    try {
      const seen = () => (counter.map<number, bigint>('seen').get(0) ?? 0n) as bigint;
      for (const verdict of ['ok', 'continue'] as const) {
        const lb = loadServices(definition(topo), { verdict });
        const before = seen();
        try {
          for (const h of [topo.router.toClient, ...topo.router.toBackends]) lb.attach({ ifname: h.ifname, netns: topo.router.ns, priority: 1 });
          const after = counter.attach({ program: 'count_after', hook: 'tc-ingress', ifname: topo.router.toClient.ifname, netns: topo.router.ns, priority: 2 });
          try {
            await traffic(lb, `tc verdict ${verdict}`);
          } finally {
            after.detach();
          }
        } finally {
          lb.close();
        }
        const n = seen() - before;
        if (verdict === 'ok') assert.is(n, 0n, 'TC_ACT_OK ends the chain: the filter after it saw nothing');
        else assert.ok(n >= 100n, `TC_ACT_UNSPEC: the filter after it saw ${n} packets`);
      }
    } finally {
      counter.close();
    }
  });
}

t.run();
