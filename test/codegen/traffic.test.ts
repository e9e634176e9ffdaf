/**
 * `reject` on real traffic, at each hook: the reply built in place reaches the
 * sender's socket. A TCP connect gets ECONNREFUSED from the RST, a UDP socket
 * gets ECONNREFUSED from the ICMP port unreachable; IPv4 and IPv6; the filter
 * at tc-ingress and XDP (generic) of the server's interface, and at tc-egress
 * of the client's (the reply is delivered back into the client's stack).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from '../../codegen/compile.js';
import { filter } from '../../sdk/dsl/filter.js';
import { match } from '../../sdk/dsl/match.js';
import { rule } from '../../sdk/dsl/rule.js';
import type { Hook } from '../../sdk/model.js';
import { native } from '../../runtime/native.js';
import { requireKernel } from '../kernel.js';
import type { ChildProcess } from 'node:child_process';
import { createPair, nsSpawn, nsTry, type Host } from '../net/topology.js';
import { cacheDir, loadObject } from './helpers.js';

const fw = filter('rej', { hook: ['xdp', 'tc-ingress', 'tc-egress'] }, ({ chain }) =>
  chain('input', { policy: 'accept' }, [
    rule(match.tcp.dport(25)).reject(),
    rule(match.udp.dport(53)).reject(),
  ]),
);

/** Python: what a client sees for TCP connect and for a UDP request (prints one word each). */
const CLIENT = `
import socket, sys
host, fam = sys.argv[1], socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
def tcp():
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
    try:
        s.connect((host, 25)); return 'connected'
    except ConnectionRefusedError: return 'refused'
    except OSError as e: return 'error:' + type(e).__name__
def udp():
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2); s.connect((host, 53))
    try:
        s.send(b'q'); s.recv(10); return 'answered'
    except ConnectionRefusedError: return 'refused'
    except OSError as e: return 'error:' + type(e).__name__
print(tcp(), udp())
`;

/** Python: listen on TCP 25 and answer UDP 53, dual-stack, until killed. */
const SERVER = `
import socket, threading
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('::', 25)); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); u.bind(('::', 53))
def accept():
    while True:
        c, _ = t.accept(); c.close()
threading.Thread(target=accept, daemon=True).start()
print('ready', flush=True)
while True:
    d, a = u.recvfrom(100); u.sendto(d, a)
`;

async function startServer(ns: string): Promise<ChildProcess> {
  const p = nsSpawn(ns, 'python3', ['-c', SERVER]);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    p.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return p;
}

function client(from: Host, to: string): string {
  const r = nsTry(from.ns, 'python3', ['-c', CLIENT, to], 15_000);
  return r.stdout.trim() || r.stderr.trim();
}

if (requireKernel('codegen: reject replies reach the sender')) {
  const cases: Array<{ hook: Hook; on: 'server' | 'client' }> = [
    { hook: 'tc-ingress', on: 'server' },
    { hook: 'xdp', on: 'server' },
    { hook: 'tc-egress', on: 'client' },
  ];
  for (const c of cases) {
    test(`${c.hook} on the ${c.on}: TCP refused by RST, UDP refused by ICMP, IPv4 and IPv6`, async () => {
      const r = compile(fw, { cacheDir: cacheDir() });
      const prog = r.programs.find((p) => p.hook === c.hook && p.entry)!;
      const topo = createPair({ prefix: 'cg' });
      const o = loadObject(r.object.path);
      const n = native();
      let server: ChildProcess | undefined;
      try {
        server = await startServer(topo.b.ns);
        assert.is(client(topo.a, topo.b.ipv4), 'connected answered', 'without the filter the server answers');
        const host = c.on === 'server' ? topo.b : topo.a;
        const fd = o.programs.get(prog.name)!.fd;
        if (c.hook === 'xdp') n.xdpAttach({ ifname: host.ifname, netns: host.ns, progFd: fd, mode: 'generic' });
        else n.tcAttach({ ifname: host.ifname, netns: host.ns, progFd: fd, direction: c.hook === 'tc-ingress' ? 'ingress' : 'egress' });
        assert.is(client(topo.a, topo.b.ipv4), 'refused refused', 'IPv4');
        assert.is(client(topo.a, topo.b.ipv6), 'refused refused', 'IPv6');
      } finally {
        server?.kill('SIGKILL');
        topo.destroy(); // the namespaces take the attachments and qdiscs with them
        o.close();
      }
    });
  }
}

test.run();
