/**
 * Link, address and route changes through iproute2. Two modes with the same
 * steps: `batch` feeds all steps for one namespace to a single `ip -batch -`
 * process; `exec` runs one `ip` process per step (the simple way, measured
 * against batch in test/cni/agent.test.ts). Namespaces are entered with
 * nsenter by path, so any CNI_NETNS works (/var/run/netns/X, /proc/PID/ns/net).
 */
import { execFile, spawn } from 'node:child_process';
import { CNI_ERR, CniError } from '../errors.js';

export type NetlinkMode = 'batch' | 'exec';

/** A network namespace: a path, a name under /var/run/netns, or undefined for the agent's own. */
export type NetnsRef = string | undefined;

export function netnsPath(ns: string): string {
  return ns.includes('/') ? ns : `/var/run/netns/${ns}`;
}

function command(ns: NetnsRef, argv: string[]): [string, string[]] {
  if (ns === undefined) return [argv[0]!, argv.slice(1)];
  return ['nsenter', [`--net=${netnsPath(ns)}`, ...argv]];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Run a program inside `ns`; never throws for a non-zero exit. */
export function run(ns: NetnsRef, argv: string[], input?: string): Promise<ExecResult> {
  const [file, args] = command(ns, argv);
  return new Promise((resolve) => {
    if (input === undefined) {
      execFile(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
        resolve({ stdout, stderr: stderr || (err && code === 127 ? err.message : ''), code });
      });
      return;
    }
    const p = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', (e) => resolve({ stdout, stderr: e.message, code: 127 }));
    p.on('close', (code) => resolve({ stdout, stderr, code: code ?? 1 }));
    p.stdin.end(input);
  });
}

/** Run a program inside `ns`; a non-zero exit is a CniError (I/O failure). */
export async function runOk(ns: NetnsRef, argv: string[], input?: string): Promise<string> {
  const r = await run(ns, argv, input);
  if (r.code !== 0) {
    throw new CniError(CNI_ERR.AGENT_FAILURE, `${argv.join(' ')} failed: ${r.stderr.trim() || `exit ${r.code}`}`, {
      cniDetails: ns === undefined ? undefined : `in netns ${ns}`,
      details: { argv, netns: ns, stderr: r.stderr },
    });
  }
  return r.stdout;
}

/** Counts `ip` processes started, for the batch-vs-exec measurement. */
export const netlinkStats = { processes: 0 };

/**
 * One `ip` command line without the leading `ip`. `mayExist`: finding the
 * object already there ("File exists") is fine (a second interface in a pod
 * finds the default route of the first).
 */
export type IpStep = string[] | { argv: string[]; mayExist: true };

function argvOf(s: IpStep): string[] {
  return Array.isArray(s) ? s : s.argv;
}

function mayExist(s: IpStep | undefined): boolean {
  return s !== undefined && !Array.isArray(s) && s.mayExist;
}

/**
 * The failures `ip -force -batch` reported, by step index: each message line
 * is followed by 'Command failed -:N' (N is the 1-based line of the batch).
 */
function batchFailures(stderr: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  let pending: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)/.exec(line);
    if (m) {
      out.set(Number(m[1]) - 1, pending);
      pending = [];
    } else if (line.trim() !== '') pending.push(line);
  }
  if (pending.length > 0) out.set(-1, pending);
  return out;
}

/** Apply `steps` in `ns`, in order; any failure not allowed by its step is a CniError. */
export async function ipSteps(mode: NetlinkMode, ns: NetnsRef, steps: IpStep[]): Promise<void> {
  if (steps.length === 0) return;
  if (mode === 'batch') {
    netlinkStats.processes++;
    const tolerant = steps.some(mayExist);
    const r = await run(ns, ['ip', ...(tolerant ? ['-force'] : []), '-batch', '-'], steps.map((s) => argvOf(s).join(' ')).join('\n') + '\n');
    if (r.code === 0) return;
    const failures = batchFailures(r.stderr);
    const fatal = [...failures].filter(([i, msgs]) => !(mayExist(steps[i]) && msgs.every((m) => /File exists/.test(m))));
    if (fatal.length > 0 || failures.size === 0) {
      throw new CniError(CNI_ERR.AGENT_FAILURE, `ip -batch failed: ${r.stderr.trim()}`, { details: { steps, netns: ns } });
    }
    return;
  }
  for (const s of steps) {
    netlinkStats.processes++;
    const r = await run(ns, ['ip', ...argvOf(s)]);
    if (r.code !== 0 && !(mayExist(s) && /File exists/.test(r.stderr))) {
      throw new CniError(CNI_ERR.AGENT_FAILURE, `ip ${argvOf(s).join(' ')} failed: ${r.stderr.trim() || `exit ${r.code}`}`, { details: { argv: argvOf(s), netns: ns } });
    }
  }
}

export interface LinkInfo {
  ifname: string;
  ifindex: number;
  address?: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
  link_netnsid?: number;
}

/** The links of a namespace (`ip -j link show`). */
export async function listLinks(ns: NetnsRef): Promise<LinkInfo[]> {
  return JSON.parse(await runOk(ns, ['ip', '-j', 'link', 'show'])) as LinkInfo[];
}

export interface AddrInfo {
  ifname: string;
  addr_info: Array<{ family: string; local: string; prefixlen: number }>;
}

export async function listAddrs(ns: NetnsRef, ifname?: string): Promise<AddrInfo[]> {
  return JSON.parse(await runOk(ns, ['ip', '-j', 'addr', 'show', ...(ifname ? ['dev', ifname] : [])])) as AddrInfo[];
}

export async function sysctl(ns: NetnsRef, settings: Record<string, string | number>): Promise<void> {
  await runOk(ns, ['sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
}
