/**
 * A real container runtime drives tsbpf-cni: Debian's containerd and runc,
 * `ctr run --cni`, a locally built image (a static busybox as an OCI image
 * layout, imported with `ctr images import`; no registry).
 *
 * Everything is private to the test: containerd runs with its own root,
 * state and socket under the test node's directory; ctr (which runs the CNI
 * plugins itself and only reads /etc/cni/net.d and /opt/cni/bin) runs in a
 * private mount namespace where those two directories come from an overlay
 * and a tmpfs, so nothing is written to the host's /etc or /opt.
 *
 * Skipped (with the line saying what to install) when containerd, ctr, runc
 * or a static busybox is missing: `apt-get install -y containerd runc
 * busybox-static`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { tcpServer } from '../net/traffic.js';
import { cni, createNode, ctl, PLUGIN, startAgent, type AgentProcess, type TestNode } from './harness.js';

const BUSYBOX = '/bin/busybox';

/** What is missing to run a container here (empty: everything is there). */
function missingTools(): string[] {
  const missing = ['containerd', 'ctr', 'runc', 'unshare', 'tar'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  // A dynamically linked busybox would need a libc in the image: only a static one will do.
  if (!existsSync(BUSYBOX) || readFileSync(BUSYBOX).includes('/lib64/ld-linux')) missing.push('a static busybox (busybox-static)');
  return missing;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** An OCI image layout (one layer: busybox and a few applet links) as a tar for `ctr images import`. */
function buildImage(dir: string, name: string): string {
  const rootfs = join(dir, 'rootfs');
  const layout = join(dir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(rootfs, 'bin', 'busybox'), readFileSync(BUSYBOX), { mode: 0o755 });
  for (const applet of ['sh', 'ip', 'nc', 'ping', 'sleep', 'cat', 'echo']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const layerTar = join(dir, 'layer.tar');
  const t = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-C', rootfs, '-cf', layerTar, '.'], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  const blob = (data: Buffer | string) => {
    const digest = sha256(data);
    writeFileSync(join(blobs, digest), data);
    return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
  };
  const layer = blob(readFileSync(layerTar));
  const config = blob(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [layer.digest] } }));
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    }),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': '1' } }] }),
  );
  const out = join(dir, 'image.tar');
  const t2 = spawnSync('tar', ['-C', layout, '-cf', out, '.'], { encoding: 'utf8' });
  if (t2.status !== 0) throw new Error(`tar: ${t2.stderr}`);
  return out;
}

interface Containerd {
  dir: string;
  socket: string;
  namespace: string;
  proc: ChildProcess;
  ctr(args: string[], timeoutMs?: number): { code: number; stdout: string; stderr: string };
  stop(): Promise<void>;
}

/** containerd with everything (root, state, sockets, the opt plugin's directory) under `dir`; the CRI plugin off. */
async function startContainerd(dir: string, namespace: string): Promise<Containerd> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, 'containerd.sock');
  writeFileSync(
    join(dir, 'config.toml'),
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
`,
  );
  let log = '';
  const proc = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ctr = (args: string[], timeoutMs = 60_000) => {
    const r = spawnSync('ctr', ['-a', socket, '-n', namespace, ...args], { encoding: 'utf8', timeout: timeoutMs });
    return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  for (let i = 0; i < 200; i++) {
    if (existsSync(socket) && ctr(['version'], 5000).code === 0) return { dir, socket, namespace, proc, ctr, stop };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`containerd did not start: ${log}`);
}

/**
 * `ctr run --rm --cni IMAGE ID CMD...` in a private mount namespace whose
 * /etc/cni/net.d holds our network config and /opt/cni/bin our plugin.
 */
function ctrRunWithCni(c: Containerd, image: string, id: string, conflist: object, cmd: string[]): { code: number; stdout: string; stderr: string; ms: number } {
  const priv = join(c.dir, 'mnt');
  for (const d of ['etc-upper', 'etc-work']) mkdirSync(join(priv, d), { recursive: true });
  writeFileSync(join(priv, 'net.conflist'), JSON.stringify(conflist));
  const script = `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /opt
mkdir -p /opt/cni/bin
ln -s "$PLUGIN" /opt/cni/bin/tsbpf-cni
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$PRIV/etc-upper,workdir=$PRIV/etc-work" /etc
mkdir -p /etc/cni/net.d
cp "$PRIV/net.conflist" /etc/cni/net.d/10-tsbpf.conflist
exec ctr -a "$SOCK" -n "$NS" run --rm --cni --fifo-dir "$PRIV/fifo" --runc-root "$PRIV/runc" "$@"`;
  const started = performance.now();
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'ctr-run', image, id, ...cmd], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PLUGIN, PRIV: priv, SOCK: c.socket, NS: c.namespace },
  });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: performance.now() - started };
}

/** Remove what containerd and runc leave outside the test directory: the namespace's (empty) cgroups. */
function removeCgroups(namespace: string): void {
  const root = '/sys/fs/cgroup';
  const candidates = [join(root, namespace), ...readdirSync(root).map((c) => join(root, c, namespace))];
  for (const d of candidates) {
    try {
      if (statSync(d).isDirectory()) rmdirSync(d);
    } catch {
      /* absent, or not ours to remove */
    }
  }
}

/**
 * containerd 1.6 puts shim sockets in /run/containerd/s whatever its config
 * says: when the test made /run/containerd, it removes what is left there
 * (empty directories only).
 */
function removeRunDir(hadIt: boolean): void {
  if (hadIt) return;
  for (const d of ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc', '/run/containerd']) {
    try {
      rmdirSync(d);
    } catch {
      /* absent, or not empty: not ours alone */
    }
  }
}

/** Unmount whatever is still mounted under `dir` (snapshots of a container that did not exit). */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

if (requireKernel('cni: a real container runtime (containerd + runc)')) {
  const missing = missingTools();
  // CI installs them (.ci/run): there a skip would hide a broken runtime path.
  if (missing.length > 0 && process.env.CI) throw new Error(`containerd test cannot run in CI: ${missing.join(', ')} missing`);
  if (missing.length > 0) {
    console.log(`# skip: cni containerd test: ${missing.join(', ')} not installed (apt-get install -y containerd runc busybox-static)`);
    test.skip('ctr run --cni: a container gets its address from tsbpf-cni and reaches a pod, a ClusterIP and the outside', () => {});
  } else {
    test('ctr run --cni: a container gets its address from tsbpf-cni and reaches a pod, a ClusterIP and the outside', async () => {
      const hostHad = { etc: existsSync('/etc/cni'), opt: existsSync('/opt/cni'), run: existsSync('/run/containerd') };
      let node: TestNode | undefined;
      let agent: AgentProcess | undefined;
      let ctrd: Containerd | undefined;
      const servers: Array<{ stop(): void }> = [];
      const namespace = `tsbpf-cni-test-${process.pid}`;
      const containerId = `tsbpf-c-${process.pid}`;
      try {
        node = createNode();
        const n = node;
        // Another pod, made through the plugin as the other tests do, with an echo server.
        const objects = join(n.dir, 'objects.yaml');
        writeFileSync(objects, '');
        agent = await startAgent(n.dir, ['--node-netns', n.ns, '--pod-cidr', n.podCidr4, '--pin-dir', n.pinDir, '--objects', objects]);
        const conf = { cniVersion: '1.0.0', name: 'tsbpf', type: 'tsbpf-cni', socket: agent.socket };
        const pb = n.pod('b');
        const rb = cni({ command: 'ADD', containerId: 'b', netns: pb, ifname: 'eth0', args: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=b', config: conf });
        assert.is(rb.code, 0, rb.stdout);
        const b = String((rb.json!.ips as Array<{ address: string }>)[0]!.address).split('/')[0]!;
        servers.push(await tcpServer(pb.split('/').pop()!, 8080));
        servers.push(await tcpServer(n.outside, 8443));
        // A ClusterIP in front of pod b.
        const vip = `10.96.${parseInt(n.id.slice(0, 2), 16)}.20`;
        writeFileSync(
          objects,
          `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec: { clusterIP: ${vip}, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: echo-1, namespace: default, labels: { kubernetes.io/service-name: echo } }
addressType: IPv4
ports: [{ port: 8080 }]
endpoints: [{ addresses: [${b}] }]
`,
        );
        for (let i = 0; i < 300 && JSON.parse(ctl(['services', '--socket', agent.socket, '--json']).stdout).length === 0; i++) await new Promise((r) => setTimeout(r, 10));

        ctrd = await startContainerd(join(n.dir, 'containerd'), namespace);
        const image = `localhost/tsbpf-cni-test:${process.pid}`;
        const imp = ctrd.ctr(['images', 'import', buildImage(join(n.dir, 'image'), image)]);
        assert.is(imp.code, 0, imp.stderr);

        const probe = [
          'ip -4 -o addr show eth0',
          `ping -c 1 -W 2 ${b} >/dev/null && echo ping-ok`,
          `echo to-pod | nc -w 2 ${b} 8080`,
          `echo to-clusterip | nc -w 2 ${vip} 80`,
          `echo to-outside | nc -w 2 ${n.outsideIp} 8443`,
          'true',
        ].join('; ');
        const run = ctrRunWithCni(ctrd, image, containerId, { cniVersion: '1.0.0', name: 'tsbpf', plugins: [{ type: 'tsbpf-cni', socket: agent.socket }] }, ['sh', '-c', probe]);
        assert.is(run.code, 0, `ctr run: ${run.stderr}\n${run.stdout}`);
        console.log(`# cni timing: ctr run --rm --cni (container create, CNI ADD, run, CNI DEL, delete): ${run.ms.toFixed(0)} ms`);
        const addr = /inet (\d+\.\d+\.\d+\.\d+)\/32/.exec(run.stdout)?.[1];
        assert.ok(addr, `the container has an address on eth0: ${run.stdout}`);
        assert.ok(addr!.startsWith(n.podCidr4.replace(/0\/24$/, '')), `${addr} is from the pod CIDR ${n.podCidr4}`);
        assert.is.not(addr, b);
        assert.match(run.stdout, 'ping-ok');
        assert.match(run.stdout, 'to-pod', 'TCP to the other pod, echoed back');
        assert.match(run.stdout, 'to-clusterip', 'TCP through the ClusterIP, echoed back');
        assert.match(run.stdout, 'to-outside', 'TCP to the outside through masquerade, echoed back');
        // ctr --rm ran CNI DEL: the agent holds only pod b again.
        const eps = JSON.parse(ctl(['endpoints', '--socket', agent.socket, '--json']).stdout) as Array<{ containerId: string }>;
        assert.equal(
          eps.map((e) => e.containerId),
          ['b'],
        );
        const alloc = JSON.parse(ctl(['ipam', '--socket', agent.socket, '--json']).stdout) as { allocations: Array<{ ip: string }> };
        assert.not.ok(alloc.allocations.some((a) => a.ip === addr), 'the container\'s address was released');
        assert.is(existsSync('/etc/cni'), hostHad.etc, 'nothing written to the host\'s /etc/cni');
        assert.is(existsSync('/opt/cni'), hostHad.opt, 'nothing written to the host\'s /opt/cni');
      } finally {
        for (const s of servers) s.stop();
        if (ctrd) {
          // A container left by a failure: kill and delete it before containerd goes.
          ctrd.ctr(['tasks', 'kill', '-s', 'SIGKILL', containerId], 10_000);
          ctrd.ctr(['tasks', 'delete', '-f', containerId], 10_000);
          ctrd.ctr(['containers', 'delete', containerId], 10_000);
          await ctrd.stop();
          unmountUnder(ctrd.dir);
          rmSync(ctrd.dir, { recursive: true, force: true });
        }
        removeCgroups(namespace);
        removeRunDir(hostHad.run);
        await agent?.stop();
        node?.destroy();
      }
    });
  }
}

test.run();
