/**
 * Real traffic between test namespaces: small TCP/UDP servers and clients run
 * as `ip netns exec NS node -e ...` child processes, so the test process itself
 * never changes namespace. Every server is killed by `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export type ConnectResult = 'connected' | 'refused' | 'timeout' | 'error';

export interface Server {
  port: number;
  /** Connections (TCP) or datagrams (UDP) received so far. */
  received(): number;
  stop(): void;
}

function nodeIn(netns: string, script: string, args: string[] = []): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

const TCP_SERVER = `
const net = require('node:net');
const [port, family] = process.argv.slice(1);
const s = net.createServer((c) => { process.stdout.write('c\\n'); c.on('data', (d) => c.write(d)); c.on('error', () => {}); });
s.listen(Number(port), family === '6' ? '::' : '0.0.0.0', () => process.stdout.write('ready\\n'));
`;

const UDP_SERVER = `
const dgram = require('node:dgram');
const [port, family] = process.argv.slice(1);
const s = dgram.createSocket(family === '6' ? 'udp6' : 'udp4');
s.on('message', (m, r) => { process.stdout.write('d\\n'); s.send(m, r.port, r.address); });
s.bind(Number(port), () => process.stdout.write('ready\\n'));
`;

async function startServer(netns: string, script: string, port: number, family: 4 | 6): Promise<Server> {
  const proc = nodeIn(netns, script, [String(port), String(family)]);
  let count = 0;
  let ready = false;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server on port ${port} in ${netns} did not start`)), 10_000);
    proc.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (line === 'ready' && !ready) {
          ready = true;
          clearTimeout(timer);
          resolve();
        } else if (line === 'c' || line === 'd') count++;
      }
    });
    proc.on('exit', (code) => {
      if (!ready) {
        clearTimeout(timer);
        reject(new Error(`server on port ${port} in ${netns} exited (${code})`));
      }
    });
  });
  return {
    port,
    received: () => count,
    stop: () => {
      proc.kill('SIGKILL');
    },
  };
}

export function tcpServer(netns: string, port: number, family: 4 | 6 = 4): Promise<Server> {
  return startServer(netns, TCP_SERVER, port, family);
}

export function udpServer(netns: string, port: number, family: 4 | 6 = 4): Promise<Server> {
  return startServer(netns, UDP_SERVER, port, family);
}

const TCP_CONNECT = `
const net = require('node:net');
const [host, port, ms, payload] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
const t = setTimeout(() => { console.log('timeout'); process.exit(0); }, Number(ms));
s.on('connect', () => {
  if (!payload) { console.log('connected'); process.exit(0); }
  s.write(payload); let got = '';
  s.on('data', (d) => { got += d; if (got.length >= payload.length) { console.log(got === payload ? 'connected' : 'error'); process.exit(0); } });
});
s.on('error', (e) => { clearTimeout(t); console.log(e.code === 'ECONNREFUSED' ? 'refused' : 'error'); process.exit(0); });
`;

/** Open a TCP connection from `netns` (and echo `payload` when given). */
export function tcpConnect(netns: string, host: string, port: number, options: { timeoutMs?: number; payload?: string } = {}): ConnectResult {
  const ms = options.timeoutMs ?? 2000;
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', TCP_CONNECT, host, String(port), String(ms), options.payload ?? ''], {
    encoding: 'utf8',
    timeout: ms + 10_000,
  });
  const out = (r.stdout ?? '').trim();
  return (['connected', 'refused', 'timeout'] as const).find((x) => x === out) ?? 'error';
}

const UDP_SEND = `
const dgram = require('node:dgram');
const [host, port, count, ms] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let replies = 0; let refused = false;
s.on('message', () => { replies++; });
s.on('error', (e) => { if (e.code === 'ECONNREFUSED') refused = true; });
s.connect(Number(port), host, () => {
  for (let i = 0; i < Number(count); i++) s.send('x' + i);
  setTimeout(() => { console.log(JSON.stringify({ replies, refused })); process.exit(0); }, Number(ms));
});
`;

/** Send `count` datagrams from `netns` and count echoed replies. */
export function udpSend(netns: string, host: string, port: number, count = 5, waitMs = 500): { replies: number; refused: boolean } {
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', UDP_SEND, host, String(port), String(count), String(waitMs)], {
    encoding: 'utf8',
    timeout: waitMs + 10_000,
  });
  try {
    return JSON.parse((r.stdout ?? '').trim()) as { replies: number; refused: boolean };
  } catch {
    return { replies: 0, refused: false };
  }
}
