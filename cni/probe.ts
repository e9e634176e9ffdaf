/**
 * Reachability probing (policy tests, the demo, diagnostics): one echo server process per
 * namespace (several TCP and UDP ports), and one prober process per source
 * namespace that runs all its probes (TCP connect, UDP echo, ICMP echo) at
 * once, so a whole matrix takes about one timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { TsbpfError } from '../sdk/errors.js';

export type ProbeProtocol = 'TCP' | 'UDP' | 'ICMP';

export interface ProbeTarget {
  host: string;
  protocol: ProbeProtocol;
  port?: number;
}

const SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
const specs = process.argv[1].split(',').filter(Boolean);
let pending = specs.length;
const up = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
for (const s of specs) {
  const [kind, port] = s.split(':');
  if (kind === 'tcp') {
    const srv = net.createServer((c) => { c.on('data', (d) => c.write(d)); c.on('error', () => {}); });
    srv.listen(Number(port), '::', up);
  } else {
    // One dual-stack socket each: IPv4 peers arrive as ::ffff:a.b.c.d.
    const u = dgram.createSocket('udp6');
    u.on('message', (m, r) => u.send(m, r.port, r.address));
    u.bind(Number(port), up);
  }
}
`;

export interface EchoServer {
  stop(): void;
}

/** Echo servers on `ports` (e.g. ['tcp:80', 'udp:5353']) in `netns`. */
export function echoServer(netns: string, ports: string[]): Promise<EchoServer> {
  const proc: ChildProcess = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', SERVER, ports.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new TsbpfError('INTERNAL', `echo server in ${netns} did not start`));
    }, 10_000);
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve({ stop: () => proc.kill('SIGKILL') });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new TsbpfError('INTERNAL', `echo server in ${netns} exited (${code})`));
    });
  });
}

const PROBER = `
const net = require('node:net'), dgram = require('node:dgram'), { execFile } = require('node:child_process');
const probes = JSON.parse(process.argv[1]);
const T = Number(process.argv[2]);
const one = (p) => new Promise((res) => {
  if (p.protocol === 'TCP') {
    const s = net.connect({ host: p.host, port: p.port });
    const t = setTimeout(() => { s.destroy(); res(false); }, T);
    s.on('connect', () => { clearTimeout(t); s.destroy(); res(true); });
    // Refused means a RST came back: the packets got through.
    s.on('error', (e) => { clearTimeout(t); res(e.code === 'ECONNREFUSED'); });
  } else if (p.protocol === 'UDP') {
    const s = dgram.createSocket(p.host.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => { s.close(); res(false); }, T);
    s.on('message', () => { clearTimeout(t); s.close(); res(true); });
    s.on('error', () => {});
    s.send('x', p.port, p.host);
    setTimeout(() => { try { s.send('y', p.port, p.host); } catch {} }, T / 3);
  } else {
    execFile('ping', ['-n', '-q', '-c', '2', '-i', '0.2', '-w', String(Math.ceil(T / 1000)), p.host], (e) => res(!e));
  }
});
Promise.all(probes.map(one)).then((r) => { process.stdout.write(JSON.stringify(r) + '\\n'); process.exit(0); });
`;

/** Run every probe from `netns` concurrently; true = reached. */
export function probeAll(netns: string, targets: ProbeTarget[], timeoutMs = 1000): Promise<boolean[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', PROBER, JSON.stringify(targets), String(timeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    proc.on('close', () => {
      try {
        resolve(JSON.parse(out.trim()) as boolean[]);
      } catch {
        reject(new TsbpfError('INTERNAL', `prober in ${netns} failed: ${err}`));
      }
    });
  });
}
