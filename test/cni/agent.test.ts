/**
 * The plugin executed exactly as a container runtime executes it
 * (environment, stdin, stdout, exit code) against a real tsbpf-agent
 * process. The agent's node is a network namespace the test makes (with an
 * "outside" namespace behind its uplink), pods are namespaces the test makes:
 * nothing touches the host's own interfaces or routes.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parsePrefix, parseIp, prefixContains } from '../../cni/addr.js';
import { createEndpoint, endpointSteps, removeHostLink } from '../../cni/agent/endpoint.js';
import { netlinkStats, type NetlinkMode } from '../../cni/agent/netlink.js';
import { requireKernel } from '../kernel.js';
import { ip, listNetns, nsExec, nsTry, ping } from '../net/topology.js';
import { tcpConnect, tcpServer } from '../net/traffic.js';
import { cni, cniAsync, createNode, ctl, echoClient, hostLinks, routes, startAgent, type AgentProcess, type CniOutcome, type TestNode } from './harness.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const timings: string[] = [];

if (requireKernel('cni: plugin and agent')) {
  let node: TestNode;
  let agent: AgentProcess;
  let objectsFile: string;
  const conf = (extra: Record<string, unknown> = {}, version = '1.1.0') => ({ cniVersion: version, name: 'tsbpf', type: 'tsbpf-cni', socket: agent.socket, ...extra });
  const add = (id: string, netns: string, extra: Partial<Parameters<typeof cni>[0]> = {}) =>
    cni({ command: 'ADD', containerId: id, netns, ifname: 'eth0', args: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${id}`, config: conf(), ...extra });
  const del = (id: string, netns?: string, extra: Partial<Parameters<typeof cni>[0]> = {}) => cni({ command: 'DEL', containerId: id, netns, ifname: 'eth0', config: conf(), ...extra });
  const v4 = (r: CniOutcome) => String((r.json!.ips as Array<{ address: string }>).find((i) => !i.address.includes(':'))!.address).split('/')[0]!;
  const v6 = (r: CniOutcome) => String((r.json!.ips as Array<{ address: string }>).find((i) => i.address.includes(':'))!.address).split('/')[0]!;
  const nsName = (path: string) => path.split('/').pop()!;
  const allocations = () => (JSON.parse(readFileSync(join(agent.stateDir, 'ipam.json'), 'utf8')) as { allocations: Array<{ ip: string; containerId: string }> }).allocations;

  test.before(async () => {
    node = createNode();
    objectsFile = join(node.dir, 'objects.yaml');
    writeFileSync(objectsFile, '');
    agent = await startAgent(node.dir, ['--node-netns', node.ns, '--pod-cidr', node.podCidr4, '--pod-cidr6', node.podCidr6, '--objects', objectsFile, '--pin-dir', node.pinDir]);
  });

  test.after(async () => {
    await agent?.stop();
    node?.destroy();
    if (timings.length > 0) console.log(timings.map((t) => `# cni timing: ${t}`).join('\n'));
  });

  test('20 pods: unique addresses from the pod CIDR; ping and TCP between pods, to the node, and out through masquerade; DEL leaves nothing', async () => {
    const pods = Array.from({ length: 20 }, (_, i) => ({ id: `pod${i}`, netns: node.pod(String(i)) }));
    const results = pods.map((p) => add(p.id, p.netns));
    for (const [i, r] of results.entries()) assert.is(r.code, 0, `ADD ${i}: ${r.stdout}`);
    timings.push(`ADD end to end (plugin process + agent + netlink), median of 20 sequential: ${median(results.map((r) => r.ms)).toFixed(1)} ms`);
    const a4 = results.map(v4);
    const a6 = results.map(v6);
    assert.is(new Set(a4).size, 20);
    assert.is(new Set(a6).size, 20);
    const p4 = parsePrefix(node.podCidr4)!;
    const gw4 = node.podCidr4.replace(/0\/24$/, '1');
    for (const a of a4) {
      assert.ok(prefixContains(p4, parseIp(a)!), a);
      assert.ok(!a.endsWith('.0') && a !== gw4 && !a.endsWith('.255'), `reserved address ${a} handed out`);
    }
    // What the pod sees: its address, the MTU, a default route via the gateway.
    const p0 = nsName(pods[0]!.netns);
    const link = JSON.parse(ip(['-j', 'addr', 'show', 'eth0'], p0))[0] as { mtu: number; addr_info: Array<{ local: string }> };
    assert.is(link.mtu, 1500);
    assert.ok(link.addr_info.some((x) => x.local === a4[0]));
    assert.ok(routes(p0, 4).includes(`default via ${gw4} dev eth0 `) || routes(p0, 4).some((r) => r.startsWith(`default via ${gw4} dev eth0`)));
    // Pod to pod (a ring, both families), pod to node.
    for (let i = 0; i < 20; i++) assert.is(ping(nsName(pods[i]!.netns), a4[(i + 1) % 20]!, 1), 1, `pod${i} -> pod${(i + 1) % 20}`);
    for (let i = 0; i < 20; i += 5) assert.is(ping(nsName(pods[i]!.netns), a6[(i + 7) % 20]!, 1), 1, `pod${i} -> pod${(i + 7) % 20} over IPv6`);
    assert.is(ping(p0, gw4, 1), 1, 'pod -> node gateway');
    assert.is(ping(p0, node.uplinkIp, 1), 1, 'pod -> node uplink address');
    // TCP between pods.
    const srv = await tcpServer(nsName(pods[0]!.netns), 8080);
    try {
      for (let i = 1; i < 20; i++) assert.is(tcpConnect(nsName(pods[i]!.netns), a4[0]!, 8080, { payload: `hello${i}` }), 'connected', `pod${i} -> pod0:8080`);
      for (let i = 0; i < 100 && srv.received() < 19; i++) await new Promise((r) => setTimeout(r, 10));
      assert.is(srv.received(), 19);
    } finally {
      srv.stop();
    }
    // Out of the node: the outside has no route to the pod CIDR, so only masquerade makes this work.
    assert.is(ping(p0, node.outsideIp, 1), 1, 'pod -> outside (masquerade)');
    const out = await tcpServer(node.outside, 8443);
    try {
      assert.is(tcpConnect(nsName(pods[3]!.netns), node.outsideIp, 8443, { payload: 'out' }), 'connected');
    } finally {
      out.stop();
    }
    // Masquerade is the BPF datapath's (the default), at the uplink; no iptables rule.
    assert.not.match(nsExec(node.ns, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING']), 'MASQUERADE');
    assert.match(nsExec(node.ns, 'tc', ['filter', 'show', 'dev', 'uplink', 'egress']), 'tsbmasq_eg');

    // The CLI sees them.
    const st = ctl(['status', '--socket', agent.socket]);
    assert.is(st.code, 0, st.stderr);
    assert.match(st.stdout, 'endpoints:  20');
    const eps = JSON.parse(ctl(['endpoints', '--socket', agent.socket, '--json']).stdout) as Array<{ addresses: string[]; pod: { name: string } }>;
    assert.is(eps.length, 20);
    assert.equal(eps.find((e) => e.pod.name === 'pod5')!.addresses, [a4[5], a6[5]]);

    // DEL: no interface, address, route or allocation left; DEL again is fine.
    for (const p of pods) assert.is(del(p.id, p.netns).code, 0);
    assert.equal(hostLinks(node.ns), []);
    const left = [...routes(node.ns, 4), ...routes(node.ns, 6)].filter((r) => a4.some((a) => r.startsWith(`${a} `)) || a6.some((a) => r.startsWith(`${a} `)));
    assert.equal(left, []);
    for (const p of pods) assert.not.match(ip(['-j', 'link', 'show'], nsName(p.netns)), '"eth0"');
    assert.equal(allocations(), []);
    const again = del('pod0', pods[0]!.netns);
    assert.equal([again.code, again.stdout], [0, ''], 'DEL is idempotent');
    assert.is(del('never-added').code, 0, 'DEL of an unknown container succeeds');
  });

  test('ADD twice for the same container and interface gives the same result and allocates once; a second interface gets its own', () => {
    const netns = node.pod('twice');
    const a = add('twice', netns);
    const b = add('twice', netns);
    assert.is(a.code, 0);
    assert.equal(b.json, a.json);
    assert.is(allocations().filter((x) => x.containerId === 'twice').length, 2, 'one IPv4 + one IPv6');
    const c = add('twice', netns, { ifname: 'net1' });
    assert.is(c.code, 0, c.stdout);
    assert.is.not(v4(c), v4(a));
    assert.is(del('twice', netns, { ifname: 'net1' }).code, 0);
    assert.is(del('twice', netns).code, 0);
    assert.equal(allocations(), []);
  });

  test('50 concurrent ADDs: no address twice; 50 concurrent DELs leave nothing', async () => {
    const pods = Array.from({ length: 50 }, (_, i) => ({ id: `many${i}`, netns: node.pod(`m${i}`) }));
    const started = performance.now();
    const results = await Promise.all(pods.map((p) => cniAsync({ command: 'ADD', containerId: p.id, netns: p.netns, ifname: 'eth0', config: conf() })));
    const ms = performance.now() - started;
    for (const [i, r] of results.entries()) assert.is(r.code, 0, `ADD ${i}: ${r.stdout}`);
    timings.push(`50 concurrent ADDs: ${ms.toFixed(0)} ms in all (${(ms / 50).toFixed(1)} ms per pod)`);
    assert.is(new Set(results.map(v4)).size, 50);
    assert.is(new Set(results.map(v6)).size, 50);
    assert.is(hostLinks(node.ns).length, 50);
    assert.is(ping(nsName(pods[0]!.netns), v4(results[49]!), 1), 1);
    const dels = await Promise.all(pods.map((p) => cniAsync({ command: 'DEL', containerId: p.id, netns: p.netns, ifname: 'eth0', config: conf() })));
    assert.ok(dels.every((d) => d.code === 0));
    assert.equal(hostLinks(node.ns), []);
    assert.equal(allocations(), []);
  });

  test('version negotiation: ADD answered in each version; CHECK (0.4.0+) and DEL with prevResult', () => {
    for (const version of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const id = `v${version.replace(/\./g, '')}`;
      const netns = node.pod(id);
      const r = cni({ command: 'ADD', containerId: id, netns, ifname: 'eth0', config: conf({}, version) });
      assert.is(r.code, 0, `${version}: ${r.stdout}`);
      assert.is(r.json!.cniVersion, version);
      const ips = r.json!.ips as Array<Record<string, unknown>>;
      const legacy = version.startsWith('0.');
      assert.is(ips[0]!.version, legacy ? '4' : undefined, version);
      assert.is((r.json!.interfaces as Array<Record<string, unknown>>)[1]!.sandbox, netns);
      assert.is((r.json!.interfaces as Array<Record<string, unknown>>)[1]!.mtu, version === '1.1.0' ? 1500 : undefined);
      if (version !== '0.3.1') {
        const chk = cni({ command: 'CHECK', containerId: id, netns, ifname: 'eth0', config: conf({ prevResult: r.json }, version) });
        assert.equal([chk.code, chk.stdout], [0, ''], `CHECK ${version}`);
      } else {
        const chk = cni({ command: 'CHECK', containerId: id, netns, ifname: 'eth0', config: conf({ prevResult: r.json }, version) });
        assert.equal([chk.code, chk.json!.code], [1, 1], 'no CHECK before 0.4.0');
      }
      assert.is(cni({ command: 'DEL', containerId: id, netns, ifname: 'eth0', config: conf({ prevResult: r.json }, version) }).code, 0);
    }
    const v = cni({ command: 'VERSION', config: { cniVersion: '1.0.0' } });
    assert.equal(v.json, { cniVersion: '1.0.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    assert.equal(allocations(), []);
  });

  test('MTU from the network config, on both sides of the pair', () => {
    const netns = node.pod('mtu');
    const r = add('mtu', netns, { config: conf({ mtu: 1400 }) });
    assert.is(r.code, 0, r.stdout);
    assert.is((JSON.parse(ip(['-j', 'link', 'show', 'eth0'], nsName(netns)))[0] as { mtu: number }).mtu, 1400);
    const host = (r.json!.interfaces as Array<{ name: string }>)[0]!.name;
    assert.is((JSON.parse(ip(['-j', 'link', 'show', host], node.ns))[0] as { mtu: number }).mtu, 1400);
    assert.is(del('mtu', netns).code, 0);
  });

  test('error paths against the real agent, each with its CNI code, leaving nothing behind', () => {
    const netns = node.pod('err');
    // CHECK of a container never added: 3 (unknown container).
    const unknown = cni({ command: 'CHECK', containerId: 'nobody', netns, ifname: 'eth0', config: conf({ prevResult: { cniVersion: '1.1.0', interfaces: [], ips: [] } }) });
    assert.equal([unknown.code, unknown.json!.code], [1, 3]);
    // CHECK after someone removed the pod's address: 102 (check failed), naming the address.
    const r = add('err', netns);
    ip(['addr', 'del', `${v4(r)}/32`, 'dev', 'eth0'], nsName(netns));
    const bad = cni({ command: 'CHECK', containerId: 'err', netns, ifname: 'eth0', config: conf({ prevResult: r.json }) });
    assert.equal([bad.code, bad.json!.code], [1, 102]);
    assert.match(String(bad.json!.msg), v4(r));
    // ADD repairs a damaged endpoint with the same addresses.
    const fixed = add('err', netns);
    assert.equal(fixed.json!.ips, r.json!.ips);
    assert.is(cni({ command: 'CHECK', containerId: 'err', netns, ifname: 'eth0', config: conf({ prevResult: fixed.json }) }).code, 0);
    assert.is(del('err', netns).code, 0);
    // CHECK with a vanished netns: 3.
    const gone = cni({ command: 'CHECK', containerId: 'err', netns: '/var/run/netns/tsbpf-gone', ifname: 'eth0', config: conf({ prevResult: r.json }) });
    assert.is(gone.json!.code, 3);
    // ADD when CNI_IFNAME already exists in the pod: plugin error 100, and no address or host link kept.
    ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0'], nsName(netns));
    const clash = add('clash', netns);
    assert.equal([clash.code, clash.json!.code], [1, 100]);
    assert.match(String(clash.json!.msg), 'eth0 already exists');
    assert.equal(allocations(), []);
    assert.equal(hostLinks(node.ns), []);
    // ADD with a netns path that does not exist: 4.
    assert.is(add('nons', '/var/run/netns/tsbpf-does-not-exist').json!.code, 4);
    // STATUS: ready.
    const st = cni({ command: 'STATUS', config: conf() });
    assert.equal([st.code, st.stdout], [0, '']);
  });

  test('GC: attachments the runtime no longer lists lose their interfaces and addresses; listed ones stay', () => {
    const keep = node.pod('keep');
    const drop = node.pod('drop');
    const k = add('keep', keep);
    add('drop', drop);
    assert.is(hostLinks(node.ns).length, 2);
    const gc = cni({ command: 'GC', config: conf({ 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] }) });
    assert.equal([gc.code, gc.stdout], [0, '']);
    assert.equal(allocations().map((a) => a.containerId), ['keep', 'keep']);
    assert.is(hostLinks(node.ns).length, 1);
    assert.is(ping(nsName(keep), node.podCidr4.replace(/0\/24$/, '1'), 1), 1, 'the kept pod still works');
    assert.equal(k.code, 0);
    assert.is(del('keep', keep).code, 0);
  });

  test('pool exhausted: ADD fails with 101 and STATUS says 50 (not available)', async () => {
    const small = createNode();
    const a = await startAgent(small.dir, ['--node-netns', small.ns, '--pod-cidr', small.podCidr4.replace(/\/24$/, '/29'), '--pin-dir', small.pinDir]);
    try {
      const c = (id: string) => ({ cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket: a.socket, id });
      for (let i = 0; i < 5; i++) assert.is(cni({ command: 'ADD', containerId: `s${i}`, netns: small.pod(`s${i}`), ifname: 'eth0', config: c(`s${i}`) }).code, 0);
      const sixth = cni({ command: 'ADD', containerId: 's5', netns: small.pod('s5'), ifname: 'eth0', config: c('s5') });
      assert.equal([sixth.code, sixth.json!.code], [1, 101]);
      const st = cni({ command: 'STATUS', config: c('x') });
      assert.equal([st.code, st.json!.code], [1, 50]);
      assert.is(cni({ command: 'DEL', containerId: 's0', ifname: 'eth0', config: c('s0') }).code, 0, 'DEL without CNI_NETNS');
      assert.is(cni({ command: 'STATUS', config: c('x') }).code, 0, 'a free address again: available');
    } finally {
      await a.stop();
      small.destroy();
    }
  });

  test('agent restart (even a crash): traffic and an open TCP connection keep going; state comes back', async () => {
    const pa = node.pod('ra');
    const pb = node.pod('rb');
    const ra = add('ra', pa);
    const rb = add('rb', pb);
    const srv = await tcpServer(nsName(pb), 9100);
    // A client that keeps one connection open and echoes a message on each line it reads from stdin.
    const client = echoClient(nsName(pa), v4(rb), 9100);
    try {
      await client.waitFor('open');
      client.send('before');
      await client.waitFor('echo before');
      await agent.kill();
      client.send('during');
      await client.waitFor('echo during');
      assert.is(ping(nsName(pa), v4(rb), 1), 1, 'pod to pod while the agent is down');
      agent = await startAgent(node.dir, ['--node-netns', node.ns, '--pod-cidr', node.podCidr4, '--pod-cidr6', node.podCidr6, '--objects', objectsFile, '--pin-dir', node.pinDir]);
      client.send('after');
      await client.waitFor('echo after');
      assert.not.match(client.output(), 'closed');
      assert.is(JSON.parse(ctl(['endpoints', '--socket', agent.socket, '--json']).stdout).length, 2);
      const again = add('ra', pa);
      assert.equal(again.json!.ips, ra.json!.ips, 'ADD after restart: same endpoint');
      const pc = node.pod('rc');
      const rc = add('rc', pc);
      assert.not.ok([v4(ra)].includes(v4(rc)));
      for (const [id, ns] of [['ra', pa], ['rb', pb], ['rc', pc]] as const) assert.is(del(id, ns).code, 0);
      assert.equal(allocations(), []);
    } finally {
      client.kill();
      srv.stop();
    }
  });

  test('an agent killed in the middle of ADDs: after restart, DEL of each container leaves no address, interface or record', async () => {
    const pods = Array.from({ length: 12 }, (_, i) => ({ id: `crash${i}`, netns: node.pod(`c${i}`) }));
    let done = 0;
    const pending = pods.map((p) => cniAsync({ command: 'ADD', containerId: p.id, netns: p.netns, ifname: 'eth0', config: conf() }).then((r) => (done++, r)));
    // Kill once a few have finished, so some are done, some in flight and some not started.
    for (let i = 0; i < 500 && done < 3; i++) await new Promise((r) => setTimeout(r, 2));
    await agent.kill();
    const results = await Promise.all(pending);
    const ok = results.filter((r) => r.code === 0);
    for (const r of results.filter((x) => x.code !== 0)) assert.ok([11, 5].includes(Number(r.json?.code)), `a failed ADD says try again or I/O: ${r.stdout}`);
    agent = await startAgent(node.dir, ['--node-netns', node.ns, '--pod-cidr', node.podCidr4, '--pod-cidr6', node.podCidr6, '--objects', objectsFile, '--pin-dir', node.pinDir]);
    const held = allocations();
    assert.is(new Set(held.map((a) => a.ip)).size, held.length, 'no address twice');
    for (const r of ok) assert.ok(held.some((a) => a.ip === v4(r)), `a successful ADD's address ${v4(r)} survived the crash`);
    timings.push(`crash test: ${ok.length} of 12 ADDs had completed when the agent was killed`);
    // The runtime retries: ADD again gives the same address to those that had one.
    const retried = pods.map((p) => add(p.id, p.netns));
    for (const [i, r] of retried.entries()) {
      assert.is(r.code, 0, r.stdout);
      const before = results[i]!;
      if (before.code === 0) assert.is(v4(r), v4(before));
    }
    assert.is(new Set(retried.map(v4)).size, 12);
    for (const p of pods) assert.is(del(p.id, p.netns).code, 0);
    assert.equal(allocations(), []);
    assert.equal(hostLinks(node.ns), []);
    assert.equal(JSON.parse(readFileSync(join(agent.stateDir, 'endpoints.json'), 'utf8')).endpoints, []);
  });

  test('objects file: identities, policy and services for the node endpoints follow the file', async () => {
    const pw = node.pod('web');
    const pd = node.pod('db');
    const w = cni({ command: 'ADD', containerId: 'cw', netns: pw, ifname: 'eth0', args: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web', config: conf() });
    const d = cni({ command: 'ADD', containerId: 'cd', netns: pd, ifname: 'eth0', args: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db', config: conf() });
    const yaml = (extra: string) => `
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
---
apiVersion: v1
kind: Pod
metadata: { name: db, namespace: shop, labels: { app: db } }
spec: { containers: [{ name: pg, ports: [{ name: pg, containerPort: 5432 }] }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.5.5, ports: [{ port: 5432, targetPort: pg }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: db-x, namespace: shop, labels: { kubernetes.io/service-name: db } }
addressType: IPv4
ports: [{ port: 5432 }]
endpoints: [{ addresses: [${v4(d)}] }]
${extra}`;
    const policy = `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-from-web, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: web } } }], ports: [{ port: pg }] }]
`;
    const waitFor = async (pred: () => boolean, what: string) => {
      for (let i = 0; i < 300 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(pred(), what);
    };
    const pol = () => JSON.parse(ctl(['policy', 'shop/db', '--socket', agent.socket, '--json']).stdout) as Array<{ policy: { identity: number; ingress: { isolated: boolean; rules: Array<{ peer: { identity?: number }; portFrom: number }> } } }>;
    writeFileSync(objectsFile, yaml(''));
    await waitFor(() => JSON.parse(ctl(['services', '--socket', agent.socket, '--json']).stdout).length === 1, 'the service shows up');
    const svc = JSON.parse(ctl(['services', '--socket', agent.socket, '--json']).stdout)[0];
    assert.equal([svc.vip, svc.port, svc.backends], ['10.96.5.5', 5432, [{ addr: v4(d), port: 5432 }]]);
    assert.is(pol()[0]!.policy.ingress.isolated, false);
    writeFileSync(objectsFile, yaml(policy));
    await waitFor(() => pol()[0]!.policy.ingress.isolated, 'the policy isolates db');
    const webId = (JSON.parse(ctl(['endpoints', '--socket', agent.socket, '--json']).stdout) as Array<{ id: string; containerId: string; identity: number }>).find((e) => e.containerId === 'cw')!.identity;
    assert.ok(pol()[0]!.policy.ingress.rules.some((r) => r.peer.identity === webId && r.portFrom === 5432), 'web may reach db on the named port pg = 5432');
    const text = ctl(['policy', 'shop/db', '--socket', agent.socket]).stdout;
    assert.match(text, 'isolated by shop/db-from-web');
    assert.match(text, `identity ${webId}`);
    writeFileSync(objectsFile, yaml(''));
    await waitFor(() => !pol()[0]!.policy.ingress.isolated, 'removing the policy lifts the isolation');
    assert.is(w.code + d.code, 0);
    assert.is(del('cw', pw).code, 0);
    assert.is(del('cd', pd).code, 0);
  });

  test('netlink: one ip -batch per namespace vs one ip process per step, for the same endpoint', async () => {
    const rounds = 8;
    const ms: Record<NetlinkMode, number[]> = { batch: [], exec: [] };
    const procs: Record<NetlinkMode, number> = { batch: 0, exec: 0 };
    let plan0!: Parameters<typeof endpointSteps>[0];
    for (let i = 0; i < rounds; i++) {
      for (const mode of ['batch', 'exec'] as const) {
        const netns = node.pod(`nl${mode[0]}${i}`);
        const plan = {
          nodeNetns: node.ns,
          podNetns: netns,
          hostIfname: `tsbnl${mode[0]}${i}`,
          podIfname: 'eth0',
          hostMac: '02:00:00:00:10:01',
          podMac: '02:00:00:00:10:02',
          mtu: 1500,
          addresses: [
            { ip: node.podCidr4.replace(/0\/24$/, `${200 + i}`), family: 4 as const, poolLen: 24, gateway: node.podCidr4.replace(/0\/24$/, '1') },
            { ip: node.podCidr6.replace(/::\/64$/, `::${200 + i}`), family: 6 as const, poolLen: 64, gateway: node.podCidr6.replace(/::\/64$/, '::1') },
          ],
        };
        plan0 = plan;
        const before = netlinkStats.processes;
        const t = performance.now();
        await createEndpoint(mode, plan);
        ms[mode].push(performance.now() - t);
        procs[mode] = netlinkStats.processes - before;
        assert.ok(ping(nsName(netns), plan.addresses[0]!.gateway, 3) >= 1, `${mode} endpoint works`);
        await removeHostLink(node.ns, plan.hostIfname);
      }
    }
    timings.push(`netlink for one dual-stack endpoint: batch ${median(ms.batch).toFixed(1)} ms (${procs.batch} processes), exec ${median(ms.exec).toFixed(1)} ms (${procs.exec} processes), median of ${rounds}`);
    assert.is(procs.batch, 2, 'one ip -batch in the node namespace, one in the pod namespace');
    assert.is(procs.exec, endpointSteps({ ...plan0, addresses: plan0.addresses }).node.length + endpointSteps(plan0).pod.length);
  });

  test('the plugin process alone: start to exit for VERSION', () => {
    const runs = Array.from({ length: 10 }, () => cni({ command: 'VERSION', config: { cniVersion: '1.1.0' } }).ms);
    timings.push(`plugin process alone (VERSION, node start to exit): median ${median(runs).toFixed(1)} ms`);
    assert.ok(median(runs) < 1000);
  });

  test('the agent socket is root-only (0600) and the state directory 0700', () => {
    assert.is(statSync(agent.socket).mode & 0o777, 0o600);
    assert.is(statSync(agent.stateDir).mode & 0o777, 0o700);
  });

  test('nothing left behind but the test node; the BPF datapath (the default) pins only in the test\'s --pin-dir', () => {
    assert.ok(listNetns().filter((n) => n.endsWith(node.id)).every((n) => n === node.ns || n === node.outside || node.pods.includes(n)));
    const st = JSON.parse(ctl(['status', '--socket', agent.socket, '--json']).stdout) as { datapath: { name: string; pinDir: string } };
    assert.equal([st.datapath.name, st.datapath.pinDir], ['bpf', join(node.pinDir, 'cni', node.ns)]);
    assert.ok(existsSync(join(node.pinDir, 'cni', node.ns, 'cni_ipcache')));
    assert.not.ok(existsSync(join('/sys/fs/bpf/tsbpf/cni', node.ns)), 'nothing under the default pin dir');
    assert.is(nsTry(node.ns, 'ip', ['link', 'show', 'tsbpf0']).status, 0, 'the gateway device is the agent\'s node set-up');
  });
}

test.run();
