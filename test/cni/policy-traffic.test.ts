/**
 * NetworkPolicy enforced by the BPF datapath, measured with real traffic.
 *
 * An agent runs in-process with the BpfDatapath on a throwaway node; five
 * dual-stack pods in two namespaces are created through the plugin. For each
 * policy case of the table, the objects are handed to the agent, and every
 * pod probes every other pod (TCP 80, TCP 5432, UDP 5353, ICMP echo over
 * IPv4; TCP 80 and ICMPv6 echo over IPv6) and an outside host (TCP 80, ICMP). The measured reachability matrix must equal
 * the one the reference evaluator (cni/policy/evaluate.ts) computes from the
 * same objects. Replies of allowed connections pass through isolated
 * directions only by the datapath's conntrack, which several cases rely on.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent } from '../../cni/agent/agent.js';
import { close, listen } from '../../cni/agent/server.js';
import { BpfDatapath } from '../../cni/datapath/bpf-datapath.js';
import { StaticObjectSource } from '../../cni/k8s/file-source.js';
import type { KubeObject, NetworkPolicy } from '../../cni/k8s/objects.js';
import { buildContext, type PodInfo } from '../../cni/policy/context.js';
import { isAllowed, type Endpointish } from '../../cni/policy/evaluate.js';
import { requireKernel } from '../kernel.js';
import { nsExec } from '../net/topology.js';
import { cni, cniAsync, createNode, ctl, startAgent, type TestNode } from './harness.js';
import { tcpServer } from '../net/traffic.js';
import { echoServer, probeAll, type EchoServer, type ProbeTarget } from '../../cni/probe.js';

interface PodDef {
  ns: 'alpha' | 'beta';
  name: string;
  labels: Record<string, string>;
  ports?: Array<{ name: string; containerPort: number; protocol?: 'TCP' | 'UDP' }>;
}

const PODS: PodDef[] = [
  { ns: 'alpha', name: 'web', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 80 }] },
  { ns: 'alpha', name: 'db', labels: { app: 'db' }, ports: [{ name: 'pg', containerPort: 5432 }, { name: 'mdns', containerPort: 5353, protocol: 'UDP' }] },
  { ns: 'alpha', name: 'client', labels: { app: 'client' } },
  { ns: 'beta', name: 'web', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 80 }] },
  { ns: 'beta', name: 'client', labels: { app: 'client' } },
];

const POD_PROBES: Array<Omit<ProbeTarget, 'host'>> = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 5432 },
  { protocol: 'UDP', port: 5353 },
  { protocol: 'ICMP' },
];
/** Over IPv6 (the pods are dual stack): TCP 80 and ICMPv6 echo. */
const POD_PROBES6: Array<Omit<ProbeTarget, 'host'>> = [{ protocol: 'TCP', port: 80 }, { protocol: 'ICMP' }];
const OUTSIDE_PROBES: Array<Omit<ProbeTarget, 'host'>> = [{ protocol: 'TCP', port: 80 }, { protocol: 'ICMP' }];

function np(namespace: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec } as NetworkPolicy;
}

function baseObjects(ips: Map<string, string>, ips6: Map<string, string>): KubeObject[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'alpha', labels: { team: 'a' } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'beta', labels: { team: 'b' } } },
    ...PODS.map((p) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { namespace: p.ns, name: p.name, labels: p.labels },
      spec: { containers: [{ name: 'main', ports: p.ports ?? [] }] },
      status: { podIP: ips.get(`${p.ns}/${p.name}`), podIPs: [{ ip: ips.get(`${p.ns}/${p.name}`) }, { ip: ips6.get(`${p.ns}/${p.name}`) }] },
    })),
  ] as KubeObject[];
}

/** The policy table: name and policies, given the pods' addresses and the node. */
function cases(ips: Map<string, string>, ips6: Map<string, string>, node: TestNode): Array<{ name: string; policies: NetworkPolicy[] }> {
  const outsideNet = node.outsideIp.replace(/\.\d+$/, '.0/24');
  return [
    { name: 'no policy: every pod reaches every pod and the outside', policies: [] },
    { name: 'default deny ingress in alpha (egress and replies still flow)', policies: [np('alpha', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })] },
    {
      name: 'podSelector peer with named ports (TCP pg, UDP mdns)',
      policies: [
        np('alpha', 'db-from-web', {
          podSelector: { matchLabels: { app: 'db' } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 'pg' }, { protocol: 'UDP', port: 'mdns' }] }],
        }),
      ],
    },
    {
      name: 'namespaceSelector peer without ports (every protocol, ICMP included)',
      policies: [np('alpha', 'web-from-beta', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'b' } } }] }] })],
    },
    {
      name: 'namespaceSelector and podSelector in one peer, endPort range',
      policies: [
        np('alpha', 'web-from-beta-clients', {
          podSelector: { matchLabels: { app: 'web' } },
          ingress: [
            {
              from: [{ namespaceSelector: { matchLabels: { team: 'b' } }, podSelector: { matchLabels: { app: 'client' } } }],
              ports: [{ protocol: 'TCP', port: 5000, endPort: 6000 }],
            },
          ],
        }),
      ],
    },
    {
      name: 'ipBlocks (IPv4 and IPv6) with except, UDP 5353 and TCP 80',
      policies: [
        np('beta', 'from-pods-but-one', {
          podSelector: {},
          ingress: [
            {
              from: [{ ipBlock: { cidr: node.podCidr4, except: [`${ips.get('alpha/client')}/32`] } }, { ipBlock: { cidr: node.podCidr6, except: [`${ips6.get('alpha/web')}/128`] } }],
              ports: [{ protocol: 'UDP', port: 5353 }, { protocol: 'TCP', port: 80 }],
            },
          ],
        }),
      ],
    },
    {
      name: 'egress by podSelector and port; a server that may send nothing still answers (conntrack)',
      policies: [
        np('alpha', 'client-to-db', {
          podSelector: { matchLabels: { app: 'client' } },
          policyTypes: ['Egress'],
          egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ protocol: 'TCP', port: 5432 }] }],
        }),
        np('alpha', 'db-locked', {
          podSelector: { matchLabels: { app: 'db' } },
          policyTypes: ['Ingress', 'Egress'],
          ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 5432 }] }],
        }),
      ],
    },
    {
      name: 'egress to an ipBlock outside the cluster plus a namespace, Ingress and Egress together',
      policies: [
        np('beta', 'client-out', {
          podSelector: { matchLabels: { app: 'client' } },
          policyTypes: ['Egress', 'Ingress'],
          egress: [
            { to: [{ ipBlock: { cidr: outsideNet } }], ports: [{ protocol: 'TCP', port: 80 }] },
            { to: [{ namespaceSelector: { matchLabels: { team: 'a' } } }], ports: [{ protocol: 'UDP', port: 5353 }] },
          ],
          ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
        }),
      ],
    },
  ];
}

/** The datapath maps `tsbpf-cni status` reports fill levels for. */
const ALL_MAPS = ['cni_ipcache', 'cni_endpoints', 'cni_policy', 'cni_policy_cidr', 'cni_ct', 'tsbpf_ct', 'tsbpf_nat_ifaddr', 'tsbpf_lb_services', 'tsbpf_lb_backends', 'tsbpf_lb_tables', 'tsbpf_lb_affinity'];

if (requireKernel('cni: NetworkPolicy in the BPF datapath')) {
  test('a table of NetworkPolicies, probed with real TCP/UDP/ICMP, matches the evaluator', async () => {
    const started = performance.now();
    const node = createNode();
    const pinDir = `/sys/fs/bpf/tsbpf-cni-test-${node.id}`;
    const datapath = new BpfDatapath({ pinDir });
    const source = new StaticObjectSource([]);
    const stateDir = join(node.dir, 'state');
    let agent = new Agent({ stateDir, nodeNetns: node.ns, podCidr4: node.podCidr4, podCidr6: node.podCidr6, datapath, objects: source });
    const socket = join(node.dir, 'agent.sock');
    let server: Awaited<ReturnType<typeof listen>> | undefined;
    const servers: EchoServer[] = [];
    let datapath2: BpfDatapath | undefined;
    try {
      await agent.start();
      server = await listen(agent, socket);
      const conf = { cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket };
      const netnsOf = new Map<string, string>();
      const ips = new Map<string, string>();
      const ips6 = new Map<string, string>();
      const added = await Promise.all(
        PODS.map(async (p) => {
          const path = node.pod(`${p.ns.slice(0, 1)}${p.name}`);
          const r = await cniAsync({ command: 'ADD', containerId: `${p.ns}-${p.name}`, netns: path, ifname: 'eth0', args: `K8S_POD_NAMESPACE=${p.ns};K8S_POD_NAME=${p.name}`, config: conf });
          return { p, path, r };
        }),
      );
      for (const { p, path, r } of added) {
        assert.is(r.code, 0, r.stdout);
        netnsOf.set(`${p.ns}/${p.name}`, path.split('/').pop()!);
        const addrs = (r.json!.ips as Array<{ address: string }>).map((a) => a.address.split('/')[0]!);
        ips.set(`${p.ns}/${p.name}`, addrs.find((a) => !a.includes(':'))!);
        ips6.set(`${p.ns}/${p.name}`, addrs.find((a) => a.includes(':'))!);
      }
      for (const ns of netnsOf.values()) servers.push(await echoServer(ns, ['tcp:80', 'tcp:5432', 'udp:5353']));
      servers.push(await echoServer(node.outside, ['tcp:80']));

      const keys = PODS.map((p) => `${p.ns}/${p.name}`);
      const gateways = [node.podCidr4.replace(/\.0\/24$/, '.1'), node.podCidr6.replace(/::\/64$/, '::1')];
      const measureAndExpect = async () => {
        const { ctx } = buildContext(agent.objects, agent.identities, { local: keys.map((k) => ({ namespace: k.split('/')[0]!, name: k.split('/')[1]!, ips: [ips.get(k)!, ips6.get(k)!] })), hostIps: gateways });
        const info = (k: string): PodInfo => ctx.pods.find((p) => `${p.namespace}/${p.name}` === k)!;
        const rows = await Promise.all(
          keys.map(async (src) => {
            const targets: Array<{ label: string; t: ProbeTarget; dst: Endpointish }> = [];
            for (const dst of keys) {
              if (dst === src) continue;
              for (const pr of POD_PROBES) targets.push({ label: `${dst} ${pr.protocol}${pr.port ? `/${pr.port}` : ''}`, t: { ...pr, host: ips.get(dst)! }, dst: { pod: info(dst), ip: ips.get(dst)! } });
              for (const pr of POD_PROBES6) targets.push({ label: `${dst} IPv6 ${pr.protocol}${pr.port ? `/${pr.port}` : ''}`, t: { ...pr, host: ips6.get(dst)! }, dst: { pod: info(dst), ip: ips6.get(dst)! } });
            }
            for (const pr of OUTSIDE_PROBES) targets.push({ label: `outside ${pr.protocol}${pr.port ? `/${pr.port}` : ''}`, t: { ...pr, host: node.outsideIp }, dst: { ip: node.outsideIp } });
            const got = await probeAll(netnsOf.get(src)!, targets.map((x) => x.t));
            return targets.map((x, i) => ({
              line: `${src} -> ${x.label}`,
              measured: got[i]!,
              expected: isAllowed(ctx, { src: { pod: info(src), ip: (x.t.host.includes(':') ? ips6 : ips).get(src)! }, dst: x.dst, protocol: x.t.protocol, port: x.t.port }),
            }));
          }),
        );
        return rows.flat();
      };

      let probes = 0;
      let denied = 0;
      for (const c of cases(ips, ips6, node)) {
        source.set([...baseObjects(ips, ips6), ...c.policies]);
        await agent.settled();
        // Each case judges new connections: forget the previous case's.
        datapath.flushConntrack();
        const m = await measureAndExpect();
        probes += m.length;
        denied += m.filter((x) => !x.expected).length;
        const wrong = m.filter((x) => x.measured !== x.expected).map((x) => `${x.line}: measured ${x.measured ? 'open' : 'closed'}, evaluator says ${x.expected ? 'open' : 'closed'}`);
        assert.equal(wrong, [], `${c.name}:\n${wrong.join('\n')}`);
        if (c.policies.length === 0) assert.ok(m.every((x) => x.expected), 'without policies everything is open');
        else assert.ok(m.some((x) => !x.expected), `${c.name}: the case closes something`);
      }
      assert.ok(denied > 40, `the table exercises denials (${denied} of ${probes} probes closed)`);

      // Services: a ClusterIP in front of alpha/web and alpha/db (port 80 -> 8080), load balanced as
      // connections leave the client pod, so policy downstream sees the backend.
      const vip = `10.96.${parseInt(node.id.slice(0, 2), 16)}.10`;
      const backends = { web: await tcpServer(netnsOf.get('alpha/web')!, 8080), db: await tcpServer(netnsOf.get('alpha/db')!, 8080) };
      servers.push(backends.web, backends.db);
      const svcObjects = (ready: { web: boolean; db: boolean }, affinity: boolean): KubeObject[] =>
        [
          {
            apiVersion: 'v1',
            kind: 'Service',
            metadata: { namespace: 'alpha', name: 'echo' },
            spec: { clusterIP: vip, ports: [{ port: 80, targetPort: 8080 }], ...(affinity ? { sessionAffinity: 'ClientIP' } : {}) },
          },
          {
            apiVersion: 'discovery.k8s.io/v1',
            kind: 'EndpointSlice',
            metadata: { namespace: 'alpha', name: 'echo-1', labels: { 'kubernetes.io/service-name': 'echo' } },
            addressType: 'IPv4',
            ports: [{ port: 8080, protocol: 'TCP' }],
            endpoints: (['web', 'db'] as const).map((b) => ({ addresses: [ips.get(`alpha/${b}`)!], conditions: { ready: ready[b] } })),
          },
        ] as KubeObject[];
      const connectVip = async (from: string, n: number) => (await probeAll(netnsOf.get(from)!, Array.from({ length: n }, () => ({ protocol: 'TCP' as const, host: vip, port: 80 })))).filter(Boolean).length;
      const counts = () => ({ web: backends.web.received(), db: backends.db.received() });
      const delta = (a: { web: number; db: number }, b: { web: number; db: number }) => ({ web: b.web - a.web, db: b.db - a.db });
      // The servers report connections over a pipe: wait until `n` have been reported since `from`.
      const served = async (from: { web: number; db: number }, n: number) => {
        for (let i = 0; i < 300; i++) {
          const d = delta(from, counts());
          if (d.web + d.db >= n) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        return delta(from, counts());
      };
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: true }, false)]);
      await agent.settled();
      let before = counts();
      assert.is(await connectVip('beta/client', 16), 16, 'every connection to the ClusterIP is served');
      let got = await served(before, 16);
      assert.ok(got.web > 0 && got.db > 0 && got.web + got.db === 16, `both ready backends serve: ${JSON.stringify(got)}`);
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: false }, false)]);
      await agent.settled();
      before = counts();
      assert.is(await connectVip('beta/client', 8), 8);
      assert.equal(await served(before, 8), { web: 8, db: 0 }, 'a backend made not ready gets no new connections');
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: true }, true)]);
      await agent.settled();
      before = counts();
      assert.is(await connectVip('alpha/client', 8), 8);
      got = await served(before, 8);
      assert.ok(got.web === 8 || got.db === 8, `ClientIP affinity keeps one backend: ${JSON.stringify(got)}`);
      // Hairpin: a pod reaching itself through its own Service (looped back at its own interface).
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: false }, false)]);
      await agent.settled();
      before = counts();
      assert.is(await connectVip('alpha/web', 8), 8, 'alpha/web reaches the ClusterIP whose only ready backend is itself');
      assert.equal(await served(before, 8), { web: 8, db: 0 }, 'served by itself');
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: true }, false)]);
      await agent.settled();
      before = counts();
      assert.is(await connectVip('alpha/web', 16), 16, 'with two backends every connection is served, those landing on itself too');
      got = await served(before, 16);
      assert.ok(got.web > 0 && got.db > 0 && got.web + got.db === 16, `both backends, itself included: ${JSON.stringify(got)}`);
      // ... over UDP too: a DNS-like Service whose only backend is alpha/db (its UDP echo on 5353).
      const vip2 = vip.replace(/\.10$/, '.11');
      const dns: KubeObject[] = [
        { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'alpha', name: 'dns' }, spec: { clusterIP: vip2, ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 }] } },
        {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { namespace: 'alpha', name: 'dns-1', labels: { 'kubernetes.io/service-name': 'dns' } },
          addressType: 'IPv4',
          ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }],
          endpoints: [{ addresses: [ips.get('alpha/db')!] }],
        },
      ] as KubeObject[];
      source.set([...baseObjects(ips, ips6), ...svcObjects({ web: true, db: true }, false), ...dns]);
      await agent.settled();
      const udpVip = (from: string) => probeAll(netnsOf.get(from)!, [1, 2, 3].map(() => ({ protocol: 'UDP' as const, host: vip2, port: 53 })));
      assert.equal(await udpVip('alpha/db'), [true, true, true], 'alpha/db reaches itself through a UDP ClusterIP');
      assert.equal(await udpVip('beta/client'), [true, true, true], 'and so does another pod');
      // Policy applies to the backend behind the VIP: web admits only beta/web, and db is not ready.
      source.set([
        ...baseObjects(ips, ips6),
        ...svcObjects({ web: true, db: false }, false),
        np('alpha', 'web-only-from-beta-web', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'b' } }, podSelector: { matchLabels: { app: 'web' } } }] }] }),
      ]);
      await agent.settled();
      assert.is(await connectVip('beta/client', 4), 0, 'beta/client is not admitted by the backend');
      assert.is(await connectVip('beta/web', 4), 4, 'beta/web is');
      assert.is(await connectVip('alpha/web', 4), 4, 'and alpha/web reaches itself (a pod can always reach itself)');

      // status: both programs on every endpoint, the maps' fill levels.
      const st = datapath.status();
      assert.is(st.programs.filter((p) => p.name.startsWith('cni_')).length, PODS.length * 2, 'policy: both hooks of every host veth');
      assert.is(st.programs.filter((p) => p.name.startsWith('tsbcni_')).length, PODS.length * 2, 'services: both hooks of every pod interface');
      const fill = Object.fromEntries(st.maps.map((m) => [m.name, m.entries]));
      assert.is(fill.cni_ipcache, 2 * PODS.length + 2, 'the pods and the gateways, both families');
      assert.is(fill.cni_endpoints, PODS.length);
      assert.ok(fill.cni_policy! > 0, 'the policy of alpha/web');
      assert.is(fill.tsbpf_lb_services, 1, 'the ClusterIP');

      // The agent goes away: programs and pinned maps stay, policy still holds.
      const last = cases(ips, ips6, node).at(-1)!;
      await close(server);
      server = undefined;
      await agent.stop();
      const during = await measureAndExpect();
      assert.equal(during.filter((x) => x.measured !== x.expected).map((x) => x.line), [], 'while the agent is down');
      // ... and a new agent (a new datapath object) takes over the pinned maps in place.
      datapath2 = new BpfDatapath({ pinDir });
      agent = new Agent({ stateDir, nodeNetns: node.ns, podCidr4: node.podCidr4, podCidr6: node.podCidr6, datapath: datapath2, objects: new StaticObjectSource([...baseObjects(ips, ips6), ...last.policies]) });
      await agent.start();
      await agent.settled();
      assert.is(datapath2.status().programs.length, PODS.length * 4 + 2, 'policy and services on every endpoint, masquerade on the uplink');
      const after = await measureAndExpect();
      assert.equal(after.filter((x) => x.measured !== x.expected).map((x) => x.line), [], 'after the restart');
      const hv = nsExec(node.ns, 'tc', ['filter', 'show', 'dev', datapath2.status().programs[0]!.attachedTo, 'egress']);
      assert.match(hv, 'cni_to_pod');
      const secs = (performance.now() - started) / 1000;
      assert.ok(secs < 60, `took ${secs.toFixed(1)} s`);
    } finally {
      for (const s of servers) s.stop();
      if (server) await close(server);
      await agent.stop().catch(() => undefined);
      await (datapath2 ?? datapath).destroy();
      await datapath.destroy();
      node.destroy();
    }
  });

  test('tsbpf-agent (BPF datapath by default): programs on the endpoint, maps pinned in --pin-dir, status shows fill levels; --cleanup leaves nothing', async () => {
    const node = createNode();
    const pinDir = node.pinDir;
    const agent = await startAgent(node.dir, ['--node-netns', node.ns, '--pod-cidr', node.podCidr4, '--pin-dir', pinDir, '--masquerade', 'off', '--cleanup']);
    try {
      const conf = { cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket: agent.socket };
      const pa = node.pod('x');
      const r = cni({ command: 'ADD', containerId: 'x', netns: pa, ifname: 'eth0', config: conf });
      assert.is(r.code, 0, r.stdout);
      const st = JSON.parse(ctl(['status', '--socket', agent.socket, '--json']).stdout) as { datapath: { name: string; ready: boolean; programs: Array<{ name: string; hook: string }>; maps: Array<{ name: string; entries: number }> } };
      assert.is(st.datapath.name, 'bpf');
      assert.ok(st.datapath.ready);
      assert.equal(st.datapath.programs.map((p) => `${p.name}@${p.hook}`).sort(), ['cni_from_pod@tc-ingress', 'cni_to_pod@tc-egress', 'tsbcni_eg@tc-egress', 'tsbcni_in@tc-ingress']);
      assert.is(st.datapath.maps.find((m) => m.name === 'cni_endpoints')!.entries, 1);
      // Fill levels of every datapath map that fills up: policy (cni_*) and services (tsbpf_*).
      const maps = st.datapath.maps as Array<{ name: string; entries: number; maxEntries: number }>;
      assert.equal(maps.map((m) => m.name).sort(), [...ALL_MAPS].sort());
      for (const m of maps) assert.ok(m.maxEntries > 0 && m.entries >= 0 && m.entries <= m.maxEntries, JSON.stringify(m));
      assert.is(maps.find((m) => m.name === 'cni_ipcache')!.entries, 2, 'the pod and the gateway');
      const text = ctl(['status', '--socket', agent.socket]).stdout;
      assert.match(text, /map\s+entries\s+max\s+fill/);
      assert.match(text, /cni_ipcache\s+2\s+65536\s+<0\.1%/);
      assert.match(text, /tsbpf_lb_affinity\s+0\s+65536\s+0\.0%/);
      // IPAM usage: one address of the /24's 253 (network, gateway and broadcast are never handed out).
      assert.match(text, new RegExp(`${node.podCidr4.replace(/\./g, '\\.')}\\s+\\S+\\s+1\\s+253\\s+0\\.3%`));
      const pinDirOf = join(pinDir, 'cni', node.ns);
      assert.ok(existsSync(join(pinDirOf, 'cni_ipcache')), 'maps pinned under <pin-dir>/cni/<node netns>');
      assert.is(cni({ command: 'DEL', containerId: 'x', netns: pa, ifname: 'eth0', config: conf }).code, 0);
      const after = JSON.parse(ctl(['status', '--socket', agent.socket, '--json']).stdout) as typeof st;
      assert.equal(after.datapath.programs, []);
      assert.is(after.datapath.maps.find((m) => m.name === 'cni_endpoints')!.entries, 0);
      // A pod that stays while the agent uninstalls (--cleanup): its programs go, and every pin.
      const py = node.pod('y');
      const ry = cni({ command: 'ADD', containerId: 'y', netns: py, ifname: 'eth0', config: conf });
      assert.is(ry.code, 0, ry.stdout);
      const hostY = (ry.json!.interfaces as Array<{ name: string }>)[0]!.name;
      assert.match(nsExec(node.ns, 'tc', ['filter', 'show', 'dev', hostY, 'ingress']), 'cni_from_pod');
      assert.match(nsExec(py.split('/').pop()!, 'tc', ['filter', 'show', 'dev', 'eth0', 'egress']), 'tsbcni_eg');
      await agent.stop();
      assert.is(agent.proc.exitCode, 0, agent.stderr());
      assert.not.ok(existsSync(pinDir), `nothing pinned under ${pinDir}`);
      assert.is(nsExec(node.ns, 'tc', ['filter', 'show', 'dev', hostY, 'ingress']).trim(), '', 'the host veth has no program left');
      assert.is(nsExec(py.split('/').pop()!, 'tc', ['filter', 'show', 'dev', 'eth0', 'egress']).trim(), '', 'the pod interface has no program left');
    } finally {
      await agent.stop();
      rmSync(pinDir, { recursive: true, force: true });
      node.destroy();
    }
  });
}

test.run();
