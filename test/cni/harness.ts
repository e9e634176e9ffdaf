/**
 * Test helpers for the CNI: run the plugin executable the way a container
 * runtime does (environment, stdin, stdout, exit code), start a real agent
 * process with its socket and state in a temporary directory, and build a
 * throwaway "node" network namespace (with an "outside" namespace behind it
 * for masquerade) and pod namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { ip, listNetns, nsExec, uniqueId } from '../net/topology.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The built executables (dist/cni/...), marked executable as npm's bin linking would. */
export const PLUGIN = resolve(here, '../../cni/plugin/main.js');
export const AGENT = resolve(here, '../../cni/agent/main.js');
chmodSync(PLUGIN, 0o755);
chmodSync(AGENT, 0o755);

export interface CniCall {
  command: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  config: Record<string, unknown>;
  /** Extra or overriding environment. */
  env?: Record<string, string | undefined>;
}

export interface CniOutcome {
  code: number;
  stdout: string;
  /** stdout parsed, when it is JSON. */
  json: Record<string, unknown> | undefined;
  ms: number;
}

function envOf(c: CniCall): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { PATH: process.env.PATH, CNI_COMMAND: c.command, CNI_PATH: '/opt/cni/bin' };
  if (c.containerId !== undefined) e.CNI_CONTAINERID = c.containerId;
  if (c.netns !== undefined) e.CNI_NETNS = c.netns;
  if (c.ifname !== undefined) e.CNI_IFNAME = c.ifname;
  if (c.args !== undefined) e.CNI_ARGS = c.args;
  for (const [k, v] of Object.entries(c.env ?? {})) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return e;
}

function outcome(status: number | null, stdout: string, started: number): CniOutcome {
  let json: Record<string, unknown> | undefined;
  try {
    json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { code: status ?? -1, stdout, json, ms: performance.now() - started };
}

/** Execute the plugin once, synchronously. */
export function cni(c: CniCall): CniOutcome {
  const started = performance.now();
  const r = spawnSync(PLUGIN, [], { env: envOf(c), input: JSON.stringify(c.config), encoding: 'utf8', timeout: 60_000 });
  return outcome(r.status, r.stdout, started);
}

/** Execute the plugin without blocking (for concurrent ADDs). */
export function cniAsync(c: CniCall): Promise<CniOutcome> {
  const started = performance.now();
  return new Promise((resolvePromise) => {
    const p = spawn(PLUGIN, [], { env: envOf(c), stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('close', (code) => resolvePromise(outcome(code, out, started)));
    p.stdin.end(JSON.stringify(c.config));
  });
}

/** Run `tsbpf-cni <args>` as the CLI. */
export function ctl(args: string[]): { code: number; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.CNI_COMMAND;
  const r = spawnSync(PLUGIN, args, { env, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface AgentProcess {
  socket: string;
  stateDir: string;
  proc: ChildProcess;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash) and wait for exit. */
  kill(): Promise<void>;
  stderr(): string;
}

/**
 * Start `tsbpf-agent` and wait for its 'ready' line. The BPF datapath is the
 * agent's default: a test gives it a --pin-dir of its own (TestNode.pinDir) or
 * says --datapath none, so nothing is pinned under /sys/fs/bpf/tsbpf.
 */
export async function startAgent(dir: string, args: string[]): Promise<AgentProcess> {
  if (!args.includes('--pin-dir') && !(args.includes('--datapath') && args[args.indexOf('--datapath') + 1] !== 'bpf')) {
    throw new Error('startAgent: give the agent a --pin-dir of the test (or --datapath none|count)');
  }
  const socket = join(dir, 'agent.sock');
  const stateDir = join(dir, 'state');
  const proc = spawn(process.execPath, [AGENT, '--socket', socket, '--state-dir', stateDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  live.add(proc);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`agent did not start: ${err}`)), 20_000);
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready ')) {
        clearTimeout(timer);
        ok();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`agent exited (${code}): ${err}`));
    });
  });
  const end = async (signal: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
    live.delete(proc);
  };
  return { socket, stateDir, proc, stop: () => end('SIGTERM'), kill: () => end('SIGKILL'), stderr: () => err };
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export interface TestNode {
  id: string;
  /** The node's netns name. */
  ns: string;
  /** A namespace behind the node's uplink: "the outside world" for masquerade tests. */
  outside: string;
  uplinkIp: string;
  outsideIp: string;
  podCidr4: string;
  podCidr6: string;
  /** A temporary directory (agent socket and state). */
  dir: string;
  /** The agent's bpffs pin directory (--pin-dir), removed by destroy(). */
  pinDir: string;
  pods: string[];
  /** Make a pod netns (lo up); returns its path. */
  pod(name: string): string;
  destroy(): void;
}

/** A node netns with an uplink to an outside netns, pod CIDRs unique to this run. */
export function createNode(): TestNode {
  const id = uniqueId();
  const x = (parseInt(id.slice(0, 2), 16) % 200) + 20;
  const y = parseInt(id.slice(2, 4), 16);
  const ns = `tsN-${id}`;
  const outside = `tsO-${id}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-cni-'));
  const made: string[] = [];
  const pods: string[] = [];
  const node: TestNode = {
    id,
    ns,
    outside,
    uplinkIp: `172.16.${y}.1`,
    outsideIp: `172.16.${y}.2`,
    podCidr4: `10.${x}.${y}.0/24`,
    podCidr6: `fd${x.toString(16).padStart(2, '0')}:${y.toString(16)}::/64`,
    dir,
    pinDir: `/sys/fs/bpf/tsbpf-cni-test-${id}`,
    pods,
    pod(name: string) {
      const p = `tsP${name}-${id}`;
      ip(['netns', 'add', p]);
      pods.push(p);
      ip(['link', 'set', 'lo', 'up'], p);
      return `/var/run/netns/${p}`;
    },
    destroy() {
      for (const n of [...pods, ...made].reverse()) spawnSync('ip', ['netns', 'del', n]);
      pods.length = 0;
      made.length = 0;
      rmSync(dir, { recursive: true, force: true });
      rmSync(node.pinDir, { recursive: true, force: true });
    },
  };
  try {
    for (const n of [ns, outside]) {
      ip(['netns', 'add', n]);
      made.push(n);
      ip(['link', 'set', 'lo', 'up'], n);
    }
    ip(['link', 'add', 'uplink', 'netns', ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside]);
    ip(['addr', 'add', `${node.uplinkIp}/24`, 'dev', 'uplink'], ns);
    ip(['addr', 'add', `${node.outsideIp}/24`, 'dev', 'eth0'], outside);
    ip(['link', 'set', 'uplink', 'up'], ns);
    ip(['link', 'set', 'eth0', 'up'], outside);
    ip(['route', 'add', 'default', 'via', node.outsideIp], ns);
    return node;
  } catch (e) {
    node.destroy();
    throw e;
  }
}

/** Links in a netns whose names start with `tsb` + hex (the agent's host sides). */
export function hostLinks(ns: string): string[] {
  return (JSON.parse(ip(['-j', 'link', 'show'], ns)) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => /^tsb[0-9a-f]{11}$/.test(n));
}

export function routes(ns: string, family: 4 | 6): string[] {
  return nsExec(ns, 'ip', [`-${family}`, 'route', 'show'])
    .split('\n')
    .filter((l) => l.trim() !== '');
}

export { listNetns };

/** A TCP client in a netns that keeps one connection open (see echoClient). */
export interface EchoClient {
  /** Send a line on the connection (the server echoes it). */
  send(line: string): void;
  /** Wait (up to 3 s) until the client has printed `s`: 'open', 'echo <line>' or 'closed'; asserts it did. */
  waitFor(s: string): Promise<void>;
  /** Everything it printed so far. */
  output(): string;
  kill(): void;
}

/** A client in netns `ns` that connects to host:port, prints what happens and sends each line it is given. */
export function echoClient(ns: string, host: string, port: number): EchoClient {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', `
      const s = require('node:net').connect({ host: process.argv[1], port: ${port} });
      s.on('connect', () => console.log('open'));
      s.on('data', (d) => console.log('echo ' + d));
      s.on('close', () => console.log('closed'));
      process.stdin.on('data', (d) => s.write(d.toString().trim()));
    `, host], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return {
    send: (line) => void child.stdin!.write(`${line}\n`),
    async waitFor(s) {
      for (let i = 0; i < 300 && !out.includes(s); i++) await new Promise((r) => setTimeout(r, 10));
      assert.match(out, s);
    },
    output: () => out,
    kill: () => void child.kill(),
  };
}
