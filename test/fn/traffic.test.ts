/**
 * Real traffic through function programs attached to veths in throwaway
 * namespaces:
 * - the port redirect (examples/fn/port-redirect.ts) on a router between a
 *   client and a backend: a TCP connection to FRONT_PORT reaches the backend
 *   on BACK_PORT and echoes 256 KiB back intact, over IPv4 and IPv6. Checksum
 *   offloads are off on every interface, so both ends verify every checksum
 *   in software; a control run with the same rewrite but no checksum fix-up
 *   fails, and the backend counts checksum errors.
 * - the DNS guard (examples/fn/dns-guard.ts) at XDP: small answers from port
 *   53 arrive, large ones do not.
 * - VLAN id rewriting at TC (test/fn/fixtures/vlan.ts), where the kernel holds
 *   the tag in skb metadata: VLAN 10 on one side talks to VLAN 20 on the other
 *   only through the programs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { compileC } from '../../codegen/clang.js';
import { compileFunctions } from '../../codegen/fn/index.js';
import { load } from '../../runtime/index.js';
import { BACK_PORT, FRONT_PORT } from '../../examples/fn/port-redirect.js';
import { requireKernel } from '../kernel.js';
import { createPair, createRouter, nsSpawn, nsTry, withTopology } from '../net/topology.js';
import { examplePath, repoRoot } from './harness.js';
import path from 'node:path';
import { ip, ping } from '../net/topology.js';

const ECHO_SERVER = `
const net = require('net');
const [host, port] = process.argv.slice(1);
net.createServer((c) => c.pipe(c)).listen(Number(port), host, () => console.log('listening'));
`;

const ECHO_CLIENT = `
const net = require('net');
const crypto = require('crypto');
const [host, port, size, ms] = process.argv.slice(1);
const data = crypto.randomBytes(Number(size));
const got = [];
const c = net.connect({ host, port: Number(port), timeout: Number(ms) });
c.on('connect', () => c.end(data));
c.on('data', (d) => got.push(d));
c.on('end', () => { const out = Buffer.concat(got); console.log(out.equals(data) ? 'ok' : 'mismatch ' + out.length); process.exit(0); });
c.on('timeout', () => { console.log('timeout'); process.exit(2); });
c.on('error', (e) => { console.log('error ' + e.code); process.exit(3); });
`;

/** Checksum offloads off: the stack computes and verifies every checksum itself. */
function offloadsOff(ns: string, ifname: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'ethtool', '-K', ifname, 'tx', 'off', 'rx', 'off', 'gso', 'off', 'tso', 'off', 'gro', 'off'], { stdio: 'ignore' });
}

/** TCP InCsumErrors of a namespace (/proc/net/snmp). */
function tcpCsumErrors(ns: string): number {
  const snmp = nsTry(ns, 'cat', ['/proc/net/snmp']).stdout.split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = snmp[0]!.split(/\s+/);
  const values = snmp[1]!.split(/\s+/);
  return Number(values[names.indexOf('InCsumErrors')]);
}

async function startEcho(ns: string, host: string, port: number): Promise<{ stop(): void }> {
  const proc = nsSpawn(ns, process.execPath, ['-e', ECHO_SERVER, host, String(port)]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo server did not start')), 5000);
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  return { stop: () => proc.kill('SIGKILL') };
}

function echo(ns: string, host: string, port: number, size: number, timeoutMs: number): string {
  return nsTry(ns, process.execPath, ['-e', ECHO_CLIENT, host, String(port), String(size), String(timeoutMs)], timeoutMs + 10_000).stdout.trim();
}

/** The control: the same port rewrite in plain C, without fixing the checksum. */
const BROKEN_REWRITE = `
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <tsbpf/parse.h>
#include <tsbpf/csum.h>
SEC("tc")
int broken(struct __sk_buff *skb)
{
	struct tsbpf_pkt p;
	__u8 port[2];

	tsbpf_parse(skb, TSBPF_HOOK_TC, &p);
	if ((p.present & TSBPF_HAS_TCP) && p.dport == ${FRONT_PORT}) {
		tsbpf_put16(port, ${BACK_PORT});
		bpf_skb_store_bytes(skb, p.l4_off + 2, port, 2, 0);
	}
	return TC_ACT_OK;
}
char LICENSE[] SEC("license") = "GPL";
`;

if (requireKernel('fn real traffic')) {
  test('TCP through the port redirect: data intact over IPv4 and IPv6, no checksum errors', async () => {
    const result = compileFunctions(examplePath('port-redirect.ts'));
    await withTopology(createRouter, async (t) => {
      for (const [ns, dev] of [[t.client.ns, t.client.ifname], [t.router.ns, t.router.toClient.ifname], [t.router.ns, t.router.toServer.ifname], [t.server.ns, t.server.ifname]] as const) {
        offloadsOff(ns, dev);
      }
      const obj = load(result.object!, { layouts: result.layouts });
      const servers: Array<{ stop(): void }> = [];
      try {
        obj.attach({ program: 'toBackend', hook: 'tc-egress', ifname: t.router.toServer.ifname, netns: t.router.ns });
        obj.attach({ program: 'fromBackend', hook: 'tc-ingress', ifname: t.router.toServer.ifname, netns: t.router.ns });
        servers.push(await startEcho(t.server.ns, '::', BACK_PORT));
        assert.is(echo(t.client.ns, t.server.ipv4, FRONT_PORT, 256 * 1024, 10_000), 'ok');
        assert.is(echo(t.client.ns, t.server.ipv6, FRONT_PORT, 256 * 1024, 10_000), 'ok');
        const counts = [...obj.maps.rewritten!.entries()].map(([, v]) => (v as bigint[]).reduce((a, b) => a + b, 0n));
        assert.ok(counts[0]! > 100n && counts[1]! > 100n, `rewritten ${counts}`);
        assert.is(tcpCsumErrors(t.server.ns), 0);
        assert.is(tcpCsumErrors(t.client.ns), 0);
      } finally {
        for (const s of servers) s.stop();
        obj.close();
      }
    });
  });

  test('control: the same rewrite without the checksum fix-up breaks the connection', async () => {
    const broken = compileC(BROKEN_REWRITE);
    await withTopology(createRouter, async (t) => {
      for (const [ns, dev] of [[t.client.ns, t.client.ifname], [t.router.ns, t.router.toClient.ifname], [t.router.ns, t.router.toServer.ifname], [t.server.ns, t.server.ifname]] as const) {
        offloadsOff(ns, dev);
      }
      const obj = load(broken);
      const server = await startEcho(t.server.ns, '::', BACK_PORT);
      try {
        obj.attach({ hook: 'tc-egress', ifname: t.router.toServer.ifname, netns: t.router.ns });
        assert.is(echo(t.client.ns, t.server.ipv4, FRONT_PORT, 1024, 1500), 'timeout');
        assert.ok(tcpCsumErrors(t.server.ns) > 0, 'the backend saw bad checksums');
      } finally {
        server.stop();
        obj.close();
      }
    });
  });

  test('the DNS guard at XDP lets small answers through and drops large ones', async () => {
    const result = compileFunctions(examplePath('dns-guard.ts'));
    await withTopology(createPair, async (t) => {
      const obj = load(result.object!, { layouts: result.layouts });
      const receiver = nsSpawn(t.b.ns, process.execPath, [
        '-e',
        `const s = require('dgram').createSocket('udp4'); const sizes = [];
         s.on('message', (m) => sizes.push(m.length));
         s.bind(5300, '${t.b.ipv4}', () => console.log('listening'));
         process.on('SIGTERM', () => { console.log(JSON.stringify(sizes)); process.exit(0); });`,
      ]);
      let out = '';
      receiver.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await new Promise<void>((resolve) => receiver.stdout!.once('data', () => resolve()));
        obj.attach({ hook: 'xdp', ifname: t.b.ifname, netns: t.b.ns });
        const sender = `const s = require('dgram').createSocket('udp4');
          s.bind(53, '${t.a.ipv4}', async () => {
            for (const n of [100, 1200, 200, 900, 300]) await new Promise((r) => s.send(Buffer.alloc(n), 5300, '${t.b.ipv4}', r));
            setTimeout(() => process.exit(0), 200);
          });`;
        assert.is(nsTry(t.a.ns, process.execPath, ['-e', sender]).status, 0);
        await new Promise((r) => setTimeout(r, 300));
        const done = new Promise<void>((resolve) => receiver.once('exit', () => resolve()));
        receiver.kill('SIGTERM');
        await done;
        assert.equal(JSON.parse(out.split('\n').filter((l) => l.startsWith('['))[0] ?? '[]'), [100, 200, 300]);
        const stats = [...obj.maps.stats!.entries()].map(([, v]) => (v as bigint[]).reduce((a, b) => a + b, 0n));
        assert.equal(stats.slice(0, 2), [5n, 2n]);
      } finally {
        if (receiver.exitCode === null) receiver.kill('SIGKILL');
        obj.close();
      }
    });
  });
}

/**
 * Stand-ins for VLAN devices (this kernel has no 8021q): push a tag into skb
 * metadata on egress, and on ingress let through only frames whose metadata
 * tag has the expected id (popped), dropping the rest.
 */
const VLAN_ENDS = `
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
static __always_inline int push(struct __sk_buff *skb, __u16 id)
{
	if (!skb->vlan_present)
		bpf_skb_vlan_push(skb, bpf_htons(0x8100), id);
	return TC_ACT_UNSPEC; /* on to the next filter */
}
static __always_inline int pop(struct __sk_buff *skb, __u16 id)
{
	if (!skb->vlan_present || (skb->vlan_tci & 0xfff) != id)
		return TC_ACT_SHOT;
	bpf_skb_vlan_pop(skb);
	return TC_ACT_OK;
}
SEC("tc") int push10(struct __sk_buff *skb) { return push(skb, 10); }
SEC("tc") int push20(struct __sk_buff *skb) { return push(skb, 20); }
SEC("tc") int pop10(struct __sk_buff *skb) { return pop(skb, 10); }
SEC("tc") int pop20(struct __sk_buff *skb) { return pop(skb, 20); }
char LICENSE[] SEC("license") = "GPL";
`;

if (requireKernel('fn VLAN rewrite traffic')) {
  test('VLAN ids rewritten at TC with the tag in skb metadata: VLAN 10 reaches VLAN 20 only through the programs', async () => {
    const result = compileFunctions(path.join(repoRoot, 'test/fn/fixtures/vlan.ts'));
    const ends = load(compileC(VLAN_ENDS));
    try {
      await withTopology(createPair, async (t) => {
        // a sends on VLAN 10 and takes VLAN 10; b sends on VLAN 20 and takes VLAN 20 (tags in skb metadata on the veth).
        ends.attach({ program: 'push10', hook: 'tc-egress', ifname: t.a.ifname, netns: t.a.ns, priority: 1 });
        ends.attach({ program: 'pop10', hook: 'tc-ingress', ifname: t.a.ifname, netns: t.a.ns, priority: 2 });
        ends.attach({ program: 'push20', hook: 'tc-egress', ifname: t.b.ifname, netns: t.b.ns, priority: 1 });
        ends.attach({ program: 'pop20', hook: 'tc-ingress', ifname: t.b.ifname, netns: t.b.ns, priority: 1 });
        assert.is(ping(t.a.ns, t.b.ipv4, 2, { timeoutS: 1 }), 0, 'VLAN 10 and VLAN 20 do not talk without the programs');
        // Forget the failed neighbour resolution of the control.
        for (const h of [t.a, t.b]) ip(['neigh', 'flush', 'dev', h.ifname], h.ns);
        const obj = load(result.object!, { layouts: result.layouts });
        try {
          obj.attach({ program: 'vlanOut', hook: 'tc-egress', ifname: t.a.ifname, netns: t.a.ns, priority: 2 });
          obj.attach({ program: 'vlanIn', hook: 'tc-ingress', ifname: t.a.ifname, netns: t.a.ns, priority: 1 });
          assert.ok(ping(t.a.ns, t.b.ipv4, 3) >= 2, 'VLAN 10 reaches VLAN 20 through the rewrites');
        } finally {
          obj.close();
        }
      });
    } finally {
      ends.close();
    }
  });
}

test.run();
