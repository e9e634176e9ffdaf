/**
 * Socket-level load balancing: the services program's cgroup programs
 * (connect, sendmsg, recvmsg, getpeername) on a cgroup v2 directory made for
 * the test. Clients in that cgroup reach backends through a VIP that no
 * route knows and no TC program translates: the address is chosen once, at
 * connect or sendmsg, and the application still sees the VIP as its peer.
 */
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { uniqueId } from '../net/topology.js';
import { services } from '../../sdk/services.js';
import { loadServices } from '../../runtime/services.js';
import { createLbTopology, namedServer, spread, type LbTopology, type NsProcess } from './net.js';

const CGROUP2 = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((d) => existsSync(path.join(d, 'cgroup.procs')) && existsSync(path.join(d, 'cgroup.subtree_control')));

const ctx = {} as { topo: LbTopology; servers: NsProcess[]; cgroup: string };
const t = suite('socket-level load balancing', ctx);

if (requireKernel('stateful: socket-level load balancing') && CGROUP2) {
  t.before(async () => {
    ctx.topo = createLbTopology(3);
    ctx.servers = [];
    ctx.cgroup = path.join(CGROUP2, `tsbpf-test-${uniqueId()}`);
    try {
      mkdirSync(ctx.cgroup);
      for (const [i, b] of ctx.topo.backends.entries()) {
        ctx.servers.push(await namedServer(b.ns, `b${i}`, 8080, 'tcp'));
        ctx.servers.push(await namedServer(b.ns, `b${i}`, 5353, 'udp'));
      }
    } catch (e) {
      for (const s of ctx.servers) s.stop();
      ctx.topo.destroy();
      if (existsSync(ctx.cgroup)) rmdirSync(ctx.cgroup);
      throw e;
    }
  });

  t.after(() => {
    for (const s of ctx.servers ?? []) s.stop();
    ctx.topo?.destroy();
    // The clients have exited; an empty cgroup can go.
    for (let i = 0; i < 20 && ctx.cgroup && existsSync(ctx.cgroup); i++) {
      try {
        rmdirSync(ctx.cgroup);
      } catch {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    }
  });

  t('connect() to a VIP gets a backend, getpeername() still says VIP; sendmsg/recvmsg do the same for UDP', async () => {
    const vip = ctx.topo.vip(1);
    const bs = ctx.topo.backends.map((b) => b.ipv4);
    const def = services('sock', { socketLb: true }, (s) => {
      s.service('web', { vip, port: 80, backends: bs.map((addr) => ({ addr, port: 8080 })) });
      s.service('dns', { vip, port: 53, protocol: 'udp', mode: 'random', backends: bs.map((addr) => ({ addr, port: 5353 })) });
    });
    const lb = loadServices(def);
    try {
      lb.attachCgroup(ctx.cgroup);
      const tcp = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 60, { cgroup: ctx.cgroup });
      assert.is(tcp.failed, 0, 'connections to a VIP nothing routes succeed: translated at connect()');
      assert.is(Object.keys(tcp.counts).length, 3, `every backend: ${JSON.stringify(tcp.counts)}`);
      assert.equal(Object.keys(tcp.peers), [`${vip}:80`], 'getpeername() shows the VIP');
      const udp = await spread(ctx.topo.client.ns, vip, 53, 'udp', 60, { cgroup: ctx.cgroup });
      assert.is(udp.failed, 0);
      assert.is(Object.keys(udp.counts).length, 3, `every backend: ${JSON.stringify(udp.counts)}`);
      assert.equal(Object.keys(udp.peers), [`${vip}:53`], 'replies arrive from the VIP (recvmsg)');
      assert.is(lb.stats().lbNew, 0n, 'the per-packet path never saw a VIP');
      // Outside the cgroup nothing translates: the VIP is unreachable.
      const outside = await spread(ctx.topo.client.ns, vip, 80, 'tcp', 1, { timeoutMs: 500 });
      assert.is(outside.failed, 1);
    } finally {
      lb.close();
    }
  });
}

t.run();
