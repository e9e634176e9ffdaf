#!/usr/bin/env node
/**
 * `npm run demo:node`: the CNI on one throwaway node. Starts an agent with
 * the BPF datapath on a fresh node network namespace, feeds it a sample YAML
 * (two namespaces, four pods, a Service, a NetworkPolicy), creates the pods
 * through the plugin executable exactly as a container runtime would, then
 * measures who reaches whom with real TCP and ICMP and prints the matrix
 * next to what the NetworkPolicy evaluator expects. Everything it made is
 * removed at the end (also on failure or Ctrl-C).
 *
 * Needs root (network namespaces, BPF).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsbpfError } from '../sdk/errors.js';
import { Agent } from './agent/agent.js';
import { close, listen } from './agent/server.js';
import { BpfDatapath } from './datapath/bpf-datapath.js';
import { buildContext } from './policy/context.js';
import { isAllowed } from './policy/evaluate.js';
import { echoServer, probeAll, type EchoServer, type ProbeTarget } from './probe.js';

const VIP = '10.96.0.20';
const here = dirname(fileURLToPath(import.meta.url));
const PLUGIN = join(here, 'plugin', 'main.js');

const PODS = [
  { ns: 'shop', name: 'web', labels: 'app: web' },
  { ns: 'shop', name: 'db', labels: 'app: db', ports: '[{ name: pg, containerPort: 5432 }]' },
  { ns: 'shop', name: 'batch', labels: 'app: batch' },
  { ns: 'tools', name: 'debug', labels: 'app: debug' },
];

const YAML = (dbIp: string | undefined) => `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { team: shop } }
---
apiVersion: v1
kind: Namespace
metadata: { name: tools, labels: { team: tools } }
${PODS.map(
  (p) => `---
apiVersion: v1
kind: Pod
metadata: { namespace: ${p.ns}, name: ${p.name}, labels: { ${p.labels} } }
spec: { containers: [{ name: main, ports: ${p.ports ?? '[]'} }] }`,
).join('\n')}
---
apiVersion: v1
kind: Service
metadata: { namespace: shop, name: db }
spec: { clusterIP: 10.96.0.20, selector: { app: db }, ports: [{ name: pg, port: 5432, targetPort: pg }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { namespace: shop, name: db-1, labels: { kubernetes.io/service-name: db } }
addressType: IPv4
endpoints: ${dbIp ? `[{ addresses: ["${dbIp}"], conditions: { ready: true } }]` : '[]'}
ports: [{ name: pg, port: 5432, protocol: TCP }]
---
# Only web may talk to the database, and only on its named port.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { namespace: shop, name: db-from-web }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ podSelector: { matchLabels: { app: web } } }]
      ports: [{ port: pg }]
`;

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new TsbpfError('INTERNAL', `ip ${args.join(' ')}: ${r.stderr}`);
}

function plugin(env: Record<string, string>, config: object): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [PLUGIN], { env: { PATH: process.env.PATH, CNI_PATH: '/opt/cni/bin', ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
    p.stdin.end(JSON.stringify(config));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo:node needs root (network namespaces and BPF)\n');
    process.exitCode = 1;
    return;
  }
  const id = randomBytes(3).toString('hex');
  const octet = randomBytes(1)[0]!;
  const podCidr = `10.244.${octet}.0/24`;
  const nodeNs = `tsbpf-demo-${id}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-demo-'));
  const pinDir = `/sys/fs/bpf/tsbpf-cni-demo-${id}`;
  const podNs = PODS.map((p) => `tsbpf-demo-${id}-${p.name}`);
  const objectsFile = join(dir, 'objects.yaml');
  const datapath = new BpfDatapath({ pinDir });
  const servers: EchoServer[] = [];
  let agent: Agent | undefined;
  let server: Awaited<ReturnType<typeof listen>> | undefined;
  const cleanup = async () => {
    for (const s of servers) s.stop();
    if (server) await close(server).catch(() => undefined);
    await agent?.stop({ cleanupNode: true }).catch(() => undefined);
    await datapath.destroy().catch(() => undefined);
    for (const n of [...podNs, nodeNs]) spawnSync('ip', ['netns', 'del', n]);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say(`node netns ${nodeNs}, pod CIDR ${podCidr}, maps pinned at ${pinDir}`);
    for (const n of [nodeNs, ...podNs]) {
      ip(['netns', 'add', n]);
      ip(['-n', n, 'link', 'set', 'lo', 'up']);
    }
    writeFileSync(objectsFile, YAML(undefined));
    agent = new Agent({ stateDir: join(dir, 'state'), nodeNetns: nodeNs, podCidr4: podCidr, masquerade: 'off', datapath, objects: objectsFile });
    await agent.start();
    const socket = join(dir, 'agent.sock');
    server = await listen(agent, socket);
    const conf = { cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket };
    const ips = new Map<string, string>();
    for (const [i, p] of PODS.entries()) {
      const started = performance.now();
      const r = await plugin(
        { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `demo-${p.name}`, CNI_NETNS: `/var/run/netns/${podNs[i]}`, CNI_IFNAME: 'eth0', CNI_ARGS: `K8S_POD_NAMESPACE=${p.ns};K8S_POD_NAME=${p.name}` },
        conf,
      );
      if (r.code !== 0) throw new TsbpfError('INTERNAL', `ADD ${p.ns}/${p.name} failed: ${r.out}`);
      const addr = (JSON.parse(r.out) as { ips: Array<{ address: string }> }).ips[0]!.address.split('/')[0]!;
      ips.set(`${p.ns}/${p.name}`, addr);
      say(`ADD ${p.ns}/${p.name} -> ${addr} (${(performance.now() - started).toFixed(0)} ms through the plugin)`);
    }
    // The EndpointSlice names the db pod's address, known only now: the watched file is updated.
    writeFileSync(objectsFile, YAML(ips.get('shop/db')!));
    for (let i = 0; i < 50 && !agent.services().some((s) => s.backends.length > 0); i++) await new Promise((r) => setTimeout(r, 100));
    await agent.settled();
    for (const n of podNs) servers.push(await echoServer(n, ['tcp:80', 'tcp:5432']));

    const keys = PODS.map((p) => `${p.ns}/${p.name}`);
    const gateway = podCidr.replace(/\.0\/24$/, '.1');
    const { ctx } = buildContext(agent.objects, agent.identities, { local: keys.map((k) => ({ namespace: k.split('/')[0]!, name: k.split('/')[1]!, ips: [ips.get(k)!] })), hostIps: [gateway] });
    const info = (k: string) => ctx.pods.find((p) => `${p.namespace}/${p.name}` === k)!;
    const PROBES: Array<Omit<ProbeTarget, 'host'>> = [{ protocol: 'TCP', port: 5432 }, { protocol: 'TCP', port: 80 }, { protocol: 'ICMP' }];
    const rows = await Promise.all(
      keys.map(async (src) => {
        const dsts = keys.filter((d) => d !== src);
        const targets = [...dsts.flatMap((d) => PROBES.map((p) => ({ ...p, host: ips.get(d)! }))), { protocol: 'TCP' as const, port: 5432, host: VIP }];
        const got = await probeAll(podNs[keys.indexOf(src)]!, targets);
        const want = (d: string, p: Omit<ProbeTarget, 'host'>) => isAllowed(ctx, { src: { pod: info(src), ip: ips.get(src)! }, dst: { pod: info(d), ip: ips.get(d)! }, protocol: p.protocol, port: p.port });
        const cells = dsts.map((d, j) => ({ dst: d, got: got.slice(j * PROBES.length, (j + 1) * PROBES.length), want: PROBES.map((p) => want(d, p)) }));
        // The Service's only backend is shop/db: through the ClusterIP, the db's policy decides (and shop/db reaches itself: hairpin).
        cells.push({ dst: 'svc shop/db', got: [got[got.length - 1]!], want: [want('shop/db', { protocol: 'TCP', port: 5432 })] });
        return { src, cells };
      }),
    );
    say('\nPolicy shop/db-from-web: only app=web may reach app=db, on its named port pg (5432).');
    say('Reachability measured with real traffic (pods: tcp/5432 tcp/80 icmp; the Service: tcp/5432 to its ClusterIP;');
    say('o = open, x = closed, ! = differs from the evaluator):\n');
    const w = 16;
    const columns = [...keys, 'svc shop/db'];
    say(`${'from \\ to'.padEnd(w)}${columns.map((k) => k.padEnd(w)).join('')}`);
    let mismatches = 0;
    for (const r of rows) {
      let line = r.src.padEnd(w);
      for (const k of columns) {
        const c = r.cells.find((x) => x.dst === k);
        if (!c) {
          line += '-'.padEnd(w);
          continue;
        }
        const text = c.got.map((g, i) => (g ? 'o' : 'x') + (g !== c.want[i] ? '!' : '')).join(' ');
        mismatches += c.got.filter((g, i) => g !== c.want[i]).length;
        line += text.padEnd(w);
      }
      say(line);
    }
    say(`\n${mismatches === 0 ? 'The datapath agrees with the evaluator on every probe.' : `${mismatches} probes differ from the evaluator.`}`);
    const st = datapath.status();
    const policyProgs = st.programs.filter((p) => p.name.startsWith('cni_')).length;
    say(`Datapath: policy programs on ${policyProgs / 2} host veths, services programs on ${(st.programs.length - policyProgs) / 2} pod interfaces; maps ${st.maps.map((m) => `${m.name} ${m.entries}/${m.maxEntries}`).join(', ')}`);
    for (const s of agent.services()) say(`Service ${s.key}: ${s.vip}:${s.port} -> ${s.backends.map((b) => `${b.addr}:${b.port}`).join(', ')} (ClusterIP ${VIP}:5432 balanced as connections leave the client pod)`);
    for (const [i, p] of PODS.entries()) {
      await plugin({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: `demo-${p.name}`, CNI_NETNS: `/var/run/netns/${podNs[i]}`, CNI_IFNAME: 'eth0' }, conf);
    }
    say('Pods deleted through the plugin; cleaning up.');
    if (mismatches > 0) process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`demo:node: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
