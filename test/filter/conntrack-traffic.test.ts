/**
 * Filters with conntrack and NAT through real traffic, on a router between a
 * client and a server namespace (the examples, loaded as they are):
 *   - the stateful firewall on the router's server-side interface: what the
 *     client opens works (replies come back), unsolicited packets from the
 *     server side are dropped, new connections to the open port get in;
 *   - masquerade on the server-side interface: a 1 MB TCP transfer from the
 *     client to a server that has no route back to the client, bytes checked,
 *     the server sees the router's address;
 *   - a DNAT port forward on the client-side interface: a 1 MB TCP transfer
 *     to the router's address and port reaches the server's port, bytes
 *     checked, the client sees the address it connected to.
 * The conntrack table is read through the TS API and `tsbpf ct list`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { createRouter, ip, ping, uniqueId, type RouterTopology } from '../net/topology.js';
import { tcpConnect, udpSend } from '../net/traffic.js';
import { loadFilter, type LoadedFilter } from '../../runtime/filter.js';
import { ct as ctCommand } from '../../cli/commands/ct.js';
import { statefulFirewall } from '../../examples/stateful-firewall.js';
import { masquerade } from '../../examples/masquerade.js';
import { portForward } from '../../examples/port-forward.js';

/** An echo server that first tells each client the address it sees it coming from. */
const PEER_ECHO = `
const net = require('node:net');
const [port] = process.argv.slice(1);
const s = net.createServer((c) => { c.write(c.remoteAddress.replace(/^::ffff:/, '') + '\\n'); c.on('data', (d) => c.write(d)); c.on('end', () => c.end()); c.on('error', () => {}); });
s.listen(Number(port), '::', () => process.stdout.write('ready\\n'));
`;

/** Send `size` random bytes, read the peer line and the echo; compare the bytes. */
const TRANSFER = `
const net = require('node:net'); const crypto = require('node:crypto');
const [host, port, size] = process.argv.slice(1);
const data = crypto.randomBytes(Number(size));
const s = net.connect({ host, port: Number(port) });
const chunks = []; let len = 0; let seen; let buf = Buffer.alloc(0); let peer; let peerPort;
const t = setTimeout(() => { console.log(JSON.stringify({ ok: false, why: 'timeout', got: len })); process.exit(0); }, 20000);
s.on('connect', () => { peer = s.remoteAddress; peerPort = s.remotePort; s.end(data); });
s.on('data', (d) => {
  if (seen === undefined) { buf = Buffer.concat([buf, d]); const i = buf.indexOf(10); if (i < 0) return; seen = buf.subarray(0, i).toString(); d = buf.subarray(i + 1); }
  chunks.push(d); len += d.length;
  if (len >= data.length) {
    clearTimeout(t);
    const same = Buffer.concat(chunks).equals(data);
    console.log(JSON.stringify({ ok: same, got: len, seenAs: seen, peer, peerPort }));
    process.exit(0);
  }
});
s.on('error', (e) => { console.log(JSON.stringify({ ok: false, why: e.code, got: len })); process.exit(0); });
`;

interface Transfer {
  ok: boolean;
  got: number;
  why?: string;
  /** The client address the server saw. */
  seenAs?: string;
  /** The address and port the client saw the server at. */
  peer?: string;
  peerPort?: number;
}

function transfer(netns: string, host: string, port: number, size: number): Transfer {
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', TRANSFER, host, String(port), String(size)], { encoding: 'utf8', timeout: 30_000 });
  try {
    return JSON.parse((r.stdout ?? '').trim()) as Transfer;
  } catch {
    return { ok: false, got: 0, why: `client failed: ${r.stderr}` };
  }
}

async function peerEchoServer(netns: string, port: number): Promise<ChildProcess> {
  const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', PEER_ECHO, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo server did not start')), 10_000);
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`echo server exited (${code})`)));
  });
  return proc;
}

/** Attach both programs of a two-hook filter on one router interface. */
function attachBoth(lf: LoadedFilter, topo: RouterTopology, ifname: string): void {
  lf.attach({ hook: 'tc-ingress', ifname, netns: topo.router.ns });
  lf.attach({ hook: 'tc-egress', ifname, netns: topo.router.ns });
}

interface Ctx {
  topo: RouterTopology;
  procs: ChildProcess[];
}

const ctx = {} as Ctx;
const t = suite<Ctx>('filters with conntrack and NAT through real traffic', ctx);

if (requireKernel('filter: conntrack and NAT through real traffic')) {
  t.before(async () => {
    ctx.topo = createRouter({ prefix: 'ctdsl' });
    ctx.procs = [];
    try {
      ctx.procs.push(await peerEchoServer(ctx.topo.server.ns, 80));
      ctx.procs.push(await peerEchoServer(ctx.topo.server.ns, 8081));
      ctx.procs.push(await peerEchoServer(ctx.topo.client.ns, 80));
      ctx.procs.push(await peerEchoServer(ctx.topo.client.ns, 8082));
    } catch (e) {
      for (const p of ctx.procs) p.kill('SIGKILL');
      ctx.topo.destroy();
      throw e;
    }
  });

  t.after(() => {
    for (const p of ctx.procs) p.kill('SIGKILL');
    ctx.topo?.destroy();
  });

  t('stateful firewall: replies of what the inside opens come back; unsolicited traffic from outside is dropped', async () => {
    const { topo } = ctx;
    const lf = loadFilter(statefulFirewall({ open: [80] }));
    const pinDir = `/sys/fs/bpf/ctdsl-${uniqueId()}`;
    try {
      attachBoth(lf, topo, topo.router.toServer.ifname);
      // Inside (client) -> outside (server): allowed out, replies accepted by conntrack.
      const out80 = transfer(topo.client.ns, topo.server.ipv4, 80, 256 * 1024);
      assert.ok(out80.ok, `client -> server:80 transfer: ${JSON.stringify(out80)}`);
      assert.is(tcpConnect(topo.client.ns, topo.server.ipv4, 8081), 'connected', 'client -> server:8081 (any port out)');
      assert.is(ping(topo.client.ns, topo.server.ipv4, 2), 2, 'the client pings out and the replies come back');
      assert.is(udpSend(topo.client.ns, topo.server.ipv4, 9, 1, 300).refused, true, 'a UDP datagram out gets its ICMP port unreachable back (related)');
      // Outside -> inside: only new TCP connections to port 80.
      assert.is(tcpConnect(topo.server.ns, topo.client.ipv4, 8082, { timeoutMs: 800 }), 'timeout', 'server -> client:8082 is dropped');
      assert.is(ping(topo.server.ns, topo.client.ipv4, 2, { timeoutS: 0.5 }), 0, 'pings from outside are dropped');
      const in80 = transfer(topo.server.ns, topo.client.ipv4, 80, 64 * 1024);
      assert.ok(in80.ok, `server -> client:80 is open: ${JSON.stringify(in80)}`);

      const conns = lf.conntrack.list();
      assert.ok(conns.some((c) => c.original.dport === 80 && c.original.src === topo.client.ipv4 && c.flags.includes('seen-reply')), 'the outbound connection is tracked');
      assert.ok(conns.some((c) => c.original.dport === 80 && c.original.src === topo.server.ipv4), 'the inbound connection to the open port is tracked');
      assert.not.ok(conns.some((c) => c.original.dport === 8082), 'the dropped connection is not');
      const unsolicited = lf.counters().find((c) => c.name === 'unsolicited')!;
      assert.ok(unsolicited.packets >= 2n, `unsolicited packets counted (${unsolicited.packets})`);
      const stats = lf.conntrackStats();
      assert.ok(stats.reply > 10n && stats.new >= 4n, `conntrack counters ${JSON.stringify(stats, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}`);

      // `tsbpf ct list` reads the same table from the pins.
      lf.pin(pinDir);
      const out: string[] = [];
      const status = await ctCommand.run(['list', '--pin', pinDir, '--dport', '80'], { out: (l) => out.push(l), err: (l) => out.push(l), step: () => () => {} });
      assert.is(status, 0);
      assert.match(out.join('\n'), new RegExp(`tcp\\s+tcp-\\S+\\s+${topo.client.ipv4.replace(/\./g, '\\.')}:\\d+ > ${topo.server.ipv4.replace(/\./g, '\\.')}:80`));
      lf.conntrack.flush();
      assert.is(lf.conntrack.list().length, 0, 'flushed');
    } finally {
      lf.close();
      if (existsSync(pinDir)) rmSync(pinDir, { recursive: true, force: true });
    }
  });

  t('masquerade: 1 MB through the router, the server sees only the router address (IPv4 and IPv6)', () => {
    const { topo } = ctx;
    // The server has no route back to the client's network: only masqueraded connections can work.
    ip(['route', 'del', 'default'], topo.server.ns);
    ip(['-6', 'route', 'del', 'default'], topo.server.ns);
    const inside6 = `${topo.client.ipv6.replace(/::2$/, '::')}/64` as `${string}:${string}`;
    const lf = loadFilter(masquerade({ inside: `${topo.client.ipv4.split('.').slice(0, 3).join('.')}.0/24` as `${number}.${number}.${number}.${number}/${number}`, inside6 }));
    try {
      assert.not.equal(tcpConnect(topo.client.ns, topo.server.ipv4, 80, { timeoutMs: 800 }), 'connected', 'without masquerade the server cannot answer');
      attachBoth(lf, topo, topo.router.toServer.ifname);
      const r = transfer(topo.client.ns, topo.server.ipv4, 80, 1024 * 1024);
      assert.ok(r.ok, `1 MB transfer: ${JSON.stringify(r)}`);
      assert.is(r.got, 1024 * 1024);
      assert.is(r.seenAs, topo.router.toServer.ipv4, 'the server saw the router address');
      assert.is(r.peer, topo.server.ipv4, 'the client saw the server address');
      const conns = lf.conntrack.list({ dport: 80 });
      assert.ok(conns.some((c) => c.flags.includes('snat') && c.translated.src === topo.router.toServer.ipv4), 'the connection is SNATed in conntrack');
      const stats = lf.conntrackStats();
      assert.ok(stats.translated > 10n && stats.reply > 10n, `packets were translated both ways (${stats.translated} translated, ${stats.reply} replies)`);
      const r6 = transfer(topo.client.ns, topo.server.ipv6, 80, 256 * 1024);
      assert.ok(r6.ok, `IPv6 transfer: ${JSON.stringify(r6)}`);
      assert.is(r6.seenAs, topo.router.toServer.ipv6, 'the server saw the router IPv6 address');
    } finally {
      lf.close();
      ip(['route', 'add', 'default', 'via', topo.router.toServer.ipv4], topo.server.ns);
      ip(['-6', 'route', 'add', 'default', 'via', topo.router.toServer.ipv6], topo.server.ns);
    }
  });

  t('port forward (DNAT): 1 MB to the router address and port reaches the server, bytes intact', () => {
    const { topo } = ctx;
    const lf = loadFilter(portForward({ port: 8080, to: topo.server.ipv4, toPort: 80, dst: topo.router.toClient.ipv4 as `${number}.${number}.${number}.${number}` }));
    try {
      attachBoth(lf, topo, topo.router.toClient.ifname);
      const r = transfer(topo.client.ns, topo.router.toClient.ipv4, 8080, 1024 * 1024);
      assert.ok(r.ok, `1 MB transfer: ${JSON.stringify(r)}`);
      assert.is(r.got, 1024 * 1024);
      assert.equal([r.peer, r.peerPort], [topo.router.toClient.ipv4, 8080], 'the client saw the address and port it connected to');
      assert.is(r.seenAs, topo.client.ipv4, 'the server saw the client');
      const conns = lf.conntrack.list({ protocol: 'tcp' });
      assert.ok(conns.some((c) => c.flags.includes('dnat') && c.translated.dst === topo.server.ipv4 && c.translated.dport === 80), 'the connection is DNATed in conntrack');
      // The forward rule decided the translation once; the connection's later packets keep it.
      assert.is(conns.filter((c) => c.flags.includes('dnat')).length, 1, 'one DNATed connection');
      assert.is(conns[0]!.natRule, lf.definition.chains[0]!.rules[0]!.id, 'the rule that decided it');
    } finally {
      lf.close();
    }
  });
}

t.run();
