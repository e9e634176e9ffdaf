/**
 * Topologies and traffic for the stateful tests: a client namespace, a
 * router namespace, and one namespace per backend, each joined to the router
 * by its own veth pair; and small node scripts (run with `ip netns exec`)
 * that report which backend answered, move bytes and verify them, and keep
 * connections open on command.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { ip, linkMac, namespaceGroup, nsExec, uniqueId, type Host } from '../net/topology.js';

export interface LbTopology {
  id: string;
  client: Host;
  router: { ns: string; toClient: Host; toBackends: Host[] };
  backends: Host[];
  /** An address that is on no interface: service VIPs go here. */
  vip: (i: number) => string;
  vip6: (i: number) => string;
  namespaces: string[];
  destroy(): void;
}

/**
 * client (10.<x>.1.2) -- router -- backend i (10.<x>.<10+i>.2), IPv4 and
 * IPv6, forwarding on in the router, ICMP redirects off there (a hairpin
 * connection goes out where it came in). VIPs are 10.<x>.250.<i> / fd7a:<x>::<i>.
 */
export function createLbTopology(backends: number, prefix = 'tsl'): LbTopology {
  const id = uniqueId();
  const x = (parseInt(id.slice(0, 2), 16) % 250) + 1;
  const nsC = `${prefix}C-${id}`;
  const nsR = `${prefix}R-${id}`;
  const { namespaces, destroy } = namespaceGroup();
  const host = (ns: string, ifname: string, v4: string, v6: string): Host => ({ ns, ifname, ipv4: v4, ipv6: v6, mac: '' });
  try {
    for (const ns of [nsC, nsR]) {
      ip(['netns', 'add', ns]);
      namespaces.push(ns);
      ip(['link', 'set', 'lo', 'up'], ns);
    }
    ip(['link', 'add', 'eth0', 'netns', nsC, 'type', 'veth', 'peer', 'name', 'rc0', 'netns', nsR]);
    const client = host(nsC, 'eth0', `10.${x}.1.2`, `fd7b:${x}:1::2`);
    const toClient = host(nsR, 'rc0', `10.${x}.1.1`, `fd7b:${x}:1::1`);
    const hosts: Host[] = [client, toClient];
    const bs: Host[] = [];
    const rbs: Host[] = [];
    for (let i = 0; i < backends; i++) {
      const ns = `${prefix}B${i}-${id}`;
      ip(['netns', 'add', ns]);
      namespaces.push(ns);
      ip(['link', 'set', 'lo', 'up'], ns);
      ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `rb${i}`, 'netns', nsR]);
      bs.push(host(ns, 'eth0', `10.${x}.${10 + i}.2`, `fd7b:${x}:${10 + i}::2`));
      rbs.push(host(nsR, `rb${i}`, `10.${x}.${10 + i}.1`, `fd7b:${x}:${10 + i}::1`));
    }
    hosts.push(...bs, ...rbs);
    for (const h of hosts) {
      ip(['addr', 'add', `${h.ipv4}/24`, 'dev', h.ifname], h.ns);
      ip(['-6', 'addr', 'add', `${h.ipv6}/64`, 'dev', h.ifname, 'nodad'], h.ns);
      ip(['link', 'set', h.ifname, 'up'], h.ns);
      h.mac = linkMac(h.ns, h.ifname);
    }
    ip(['route', 'add', 'default', 'via', toClient.ipv4], nsC);
    ip(['-6', 'route', 'add', 'default', 'via', toClient.ipv6], nsC);
    bs.forEach((b, i) => {
      ip(['route', 'add', 'default', 'via', rbs[i]!.ipv4], b.ns);
      ip(['-6', 'route', 'add', 'default', 'via', rbs[i]!.ipv6], b.ns);
    });
    for (const kv of ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.default.send_redirects=0', 'net.ipv4.conf.all.rp_filter=0']) {
      nsExec(nsR, 'sysctl', ['-q', '-w', kv]);
    }
    for (const h of [toClient, ...rbs]) nsExec(nsR, 'sysctl', ['-q', '-w', `net.ipv4.conf.${h.ifname}.send_redirects=0`]);
    return {
      id,
      client,
      router: { ns: nsR, toClient, toBackends: rbs },
      backends: bs,
      vip: (i) => `10.${x}.250.${i}`,
      vip6: (i) => `fd7a:${x}::${i}`,
      namespaces: [...namespaces],
      destroy,
    };
  } catch (e) {
    destroy();
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Servers

const NAMED_SERVER = `
const net = require('node:net'); const dgram = require('node:dgram');
const [name, port, proto, family] = process.argv.slice(1);
const host = family === '6' ? '::' : '0.0.0.0';
if (proto === 'tcp') {
  net.createServer((c) => { c.write(name + '\\n'); c.on('data', (d) => c.write(d)); c.on('error', () => {}); })
    .listen(Number(port), host, () => process.stdout.write('ready\\n'));
} else {
  const s = dgram.createSocket(family === '6' ? 'udp6' : 'udp4');
  s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from(name + ':'), m]), r.port, r.address));
  s.bind(Number(port), host, () => process.stdout.write('ready\\n'));
}
`;

export interface NsProcess {
  proc: ChildProcess;
  stop(): void;
}

function nodeIn(netns: string, script: string, args: string[], cgroup?: string): ChildProcess {
  if (cgroup) {
    // Join the cgroup before exec, so every socket the script opens belongs to it.
    return spawn('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec ip netns exec "$0" "$@"`, netns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  }
  return spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
}

async function waitLine(proc: ChildProcess, want: (line: string) => boolean, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (${buf.trim()})`)), ms);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (want(l)) {
          clearTimeout(timer);
          proc.stdout!.off('data', onData);
          resolve(l);
          return;
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited (${code}) ${buf}`));
    });
  });
}

/** A TCP or UDP server that says its name (TCP: a first line; UDP: a prefix of the echo) and echoes. */
export async function namedServer(netns: string, name: string, port: number, proto: 'tcp' | 'udp', family: 4 | 6 = 4): Promise<NsProcess> {
  const proc = nodeIn(netns, NAMED_SERVER, [name, String(port), proto, String(family)]);
  await waitLine(proc, (l) => l === 'ready', 10_000, `server ${name}`);
  return { proc, stop: () => proc.kill('SIGKILL') };
}

// ---------------------------------------------------------------------------
// Clients

const SPREAD = `
const net = require('node:net'); const dgram = require('node:dgram');
const [host, port, proto, n, conc, ms] = process.argv.slice(1);
const counts = {}; let failed = 0; let done = 0; let started = 0; const peers = {};
const finish = () => { if (++done === Number(n)) { console.log(JSON.stringify({ counts, failed, peers })); process.exit(0); } else next(); };
function tcp() {
  const s = net.connect({ host, port: Number(port) }); let got = '';
  const t = setTimeout(() => { failed++; s.destroy(); finish(); }, Number(ms));
  s.on('connect', () => { peers[s.remoteAddress + ':' + s.remotePort] = (peers[s.remoteAddress + ':' + s.remotePort] || 0) + 1; });
  s.on('data', (d) => { got += d; const i = got.indexOf('\\n'); if (i >= 0) { clearTimeout(t); const name = got.slice(0, i); counts[name] = (counts[name] || 0) + 1; s.end(); finish(); } });
  s.on('error', () => { clearTimeout(t); failed++; finish(); });
}
function udp() {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const t = setTimeout(() => { failed++; s.close(); finish(); }, Number(ms));
  s.on('message', (m, r) => { clearTimeout(t); const name = m.toString().split(':')[0]; counts[name] = (counts[name] || 0) + 1; peers[r.address + ':' + r.port] = (peers[r.address + ':' + r.port] || 0) + 1; s.close(); finish(); });
  s.on('error', () => { clearTimeout(t); failed++; s.close(); finish(); });
  s.send('hello', Number(port), host);
}
function next() { if (started < Number(n)) { started++; proto === 'tcp' ? tcp() : udp(); } }
for (let i = 0; i < Number(conc); i++) next();
`;

export interface SpreadResult {
  /** Answers per backend name. */
  counts: Record<string, number>;
  failed: number;
  /** The peer address the application saw (getpeername / recvfrom), 'addr:port' -> count. */
  peers: Record<string, number>;
}

/** `n` connections (or datagrams from fresh sockets) to host:port; which backend answered each. */
export function spread(netns: string, host: string, port: number, proto: 'tcp' | 'udp', n: number, options: { concurrency?: number; timeoutMs?: number; cgroup?: string } = {}): Promise<SpreadResult> {
  const proc = nodeIn(netns, SPREAD, [host, String(port), proto, String(n), String(options.concurrency ?? 16), String(options.timeoutMs ?? 3000)], options.cgroup);
  return waitLine(proc, (l) => l.startsWith('{'), 60_000, 'spread client').then((l) => JSON.parse(l) as SpreadResult);
}

const TRANSFER = `
const net = require('node:net'); const crypto = require('node:crypto');
const [host, port, size] = process.argv.slice(1);
const data = crypto.randomBytes(Number(size));
const s = net.connect({ host, port: Number(port) });
const chunks = []; let len = 0; let skipped = false;
const t = setTimeout(() => { console.log(JSON.stringify({ ok: false, why: 'timeout', got: len })); process.exit(0); }, 20000);
s.on('connect', () => s.end(data));
s.on('data', (d) => {
  if (!skipped) { const i = d.indexOf(10); if (i < 0) return; d = d.subarray(i + 1); skipped = true; }
  chunks.push(d); len += d.length;
  if (len >= data.length) {
    clearTimeout(t);
    const got = Buffer.concat(chunks);
    const same = crypto.createHash('sha256').update(got).digest('hex') === crypto.createHash('sha256').update(data).digest('hex');
    console.log(JSON.stringify({ ok: same, got: len, peer: s.remoteAddress }));
    process.exit(0);
  }
});
s.on('error', (e) => { console.log(JSON.stringify({ ok: false, why: e.code, got: len })); process.exit(0); });
`;

/** Send `size` random bytes to a named echo server at host:port and check the echo, byte for byte. */
export function transfer(netns: string, host: string, port: number, size: number): { ok: boolean; got: number; why?: string; peer?: string } {
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', TRANSFER, host, String(port), String(size)], { encoding: 'utf8', timeout: 30_000 });
  try {
    return JSON.parse((r.stdout ?? '').trim()) as { ok: boolean; got: number; why?: string };
  } catch {
    return { ok: false, got: 0, why: `client failed: ${r.stderr}` };
  }
}

const HOLD = `
const net = require('node:net');
const [host, port, n, ms] = process.argv.slice(1);
const socks = [];
let answered = 0;
const report = () => console.log(JSON.stringify({ event: 'open', names: socks.map((s) => s.name ?? null) }));
for (let i = 0; i < Number(n); i++) {
  const s = net.connect({ host, port: Number(port) }); const e = { s, name: undefined, buf: '' }; socks.push(e);
  s.on('data', (d) => {
    e.buf += d;
    if (e.name === undefined) { const j = e.buf.indexOf('\\n'); if (j >= 0) { e.name = e.buf.slice(0, j); e.buf = e.buf.slice(j + 1); if (++answered === Number(n)) report(); } }
    if (e.want !== undefined && e.buf.includes(e.want)) { console.log(JSON.stringify({ event: 'echo', i: socks.indexOf(e), ok: true })); e.want = undefined; e.buf = ''; }
  });
  s.on('error', (err) => { e.error = err.code; });
}
setTimeout(() => { if (answered < Number(n)) report(); }, Number(ms));
process.stdin.on('data', (d) => {
  for (const line of d.toString().split('\\n').filter(Boolean)) {
    const [cmd, arg] = line.split(' ');
    if (cmd === 'echo') { const e = socks[Number(arg)]; const msg = 'ping' + Math.random().toString(16).slice(2); e.want = msg; e.s.write(msg);
      setTimeout(() => { if (e.want === msg) console.log(JSON.stringify({ event: 'echo', i: Number(arg), ok: false, error: e.error })); }, 2000); }
    if (cmd === 'close') process.exit(0);
  }
});
`;

/** `n` TCP connections kept open; `names` says which backend each reached (null: none), `echo(i)` checks one still works. */
export async function holdConnections(netns: string, host: string, port: number, n: number, timeoutMs = 2000): Promise<{ names: Array<string | null>; echo(i: number): Promise<boolean>; close(): void }> {
  const proc = nodeIn(netns, HOLD, [host, String(port), String(n), String(timeoutMs)]);
  const first = JSON.parse(await waitLine(proc, (l) => l.includes('"open"'), timeoutMs + 10_000, 'held connections')) as { names: Array<string | null> };
  return {
    names: first.names,
    echo: async (i) => {
      const line = waitLine(proc, (l) => l.includes('"echo"') && (JSON.parse(l) as { i: number }).i === i, 5000, `echo on connection ${i}`);
      proc.stdin!.write(`echo ${i}\n`);
      return (JSON.parse(await line) as { ok: boolean }).ok;
    },
    close: () => {
      proc.kill('SIGKILL');
    },
  };
}
