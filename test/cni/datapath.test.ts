/**
 * The Datapath seam: the agent embedded in-process with the placeholder
 * CountingDatapath (a DSL filter with one counting rule, compiled and loaded
 * with the runtime) attaches a program to every endpoint's host-side veth
 * when the plugin ADDs a pod, counts the pods' packets, and removes it on
 * DEL. The real policy/services datapath plugs in through the same interface.
 */
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent } from '../../cni/agent/agent.js';
import { CountingDatapath } from '../../cni/agent/counting-datapath.js';
import { close, listen } from '../../cni/agent/server.js';
import { requireKernel } from '../kernel.js';
import { nsExec, ping } from '../net/topology.js';
import { cniAsync, createNode, hostLinks } from './harness.js';

if (requireKernel('cni: datapath attach')) {
  test('CountingDatapath: a program on each endpoint, counting pod traffic; DEL removes it with the endpoint', async () => {
    const node = createNode();
    const datapath = new CountingDatapath();
    const agent = new Agent({ stateDir: join(node.dir, 'state'), nodeNetns: node.ns, podCidr4: node.podCidr4, datapath });
    const socket = join(node.dir, 'agent.sock');
    let server: Awaited<ReturnType<typeof listen>> | undefined;
    try {
      await agent.start();
      server = await listen(agent, socket);
      const conf = { cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket };
      const pa = node.pod('a');
      const pb = node.pod('b');
      // The plugin runs as a separate process while this process serves: run it without blocking the event loop.
      const a = await cniAsync({ command: 'ADD', containerId: 'a', netns: pa, ifname: 'eth0', config: conf });
      const b = await cniAsync({ command: 'ADD', containerId: 'b', netns: pb, ifname: 'eth0', config: conf });
      assert.is(a.code, 0, a.stdout);
      assert.is(b.code, 0, b.stdout);
      const hosts = hostLinks(node.ns);
      assert.is(hosts.length, 2);
      for (const h of hosts) assert.match(nsExec(node.ns, 'tc', ['filter', 'show', 'dev', h, 'ingress']), 'tsbpf', `program on ${h}`);
      const before = datapath.packets();
      const bIp = String((b.json!.ips as Array<{ address: string }>)[0]!.address).split('/')[0]!;
      assert.is(ping(pa.split('/').pop()!, bIp, 3), 3);
      assert.ok(datapath.packets() - before >= 6n, `counted ${datapath.packets() - before} packets from the pods`);
      const st = datapath.status();
      assert.equal(st.programs.map((p) => p.attachedTo).sort(), hosts.sort());
      await cniAsync({ command: 'DEL', containerId: 'a', netns: pa, ifname: 'eth0', config: conf });
      await cniAsync({ command: 'DEL', containerId: 'b', netns: pb, ifname: 'eth0', config: conf });
      assert.equal(hostLinks(node.ns), []);
      assert.equal(datapath.status().programs, []);
    } finally {
      if (server) await close(server);
      await agent.stop();
      node.destroy();
    }
  });
}

test.run();
