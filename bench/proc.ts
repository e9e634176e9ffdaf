/**
 * Child processes of the benchmark. Everything runs asynchronously (so Ctrl-C
 * is handled while a long ruleset load or iperf3 run is going on) and every
 * child is tracked until it exits, so that cleanup can kill whatever is still
 * running, on failure and on a signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface RunOptions {
  /** Run inside this netns (`ip netns exec NS cmd ...`). */
  netns?: string;
  /** Written to the child's stdin, then stdin is closed. */
  stdin?: string;
  /** Kill the child (SIGKILL) after this long. Default 120 s. */
  timeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms. */
  ms: number;
}

const live = new Set<ChildProcess>();

function argv(cmd: string, args: string[], netns?: string): [string, string[]] {
  // `ip netns exec` execs the command, so the child's pid is the command's own.
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
}

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
}

/** Run a command to completion; never throws for a non-zero exit (see `check`). */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, fileArgs] = argv(cmd, args, options.netns);
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(file, fileArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
    track(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n(killed by ${signal})` : ''),
        ms,
      });
    });
    // A child that dies early closes stdin under us; its exit code tells the story.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** Throw a readable error when a command failed. */
export function check(what: string, r: RunResult): RunResult {
  if (r.code !== 0) {
    const detail = (r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n');
    throw new Error(`${what} failed (exit ${r.code})${detail ? `: ${detail}` : ''}`);
  }
  return r;
}

/** Run and throw on a non-zero exit. */
export async function runOk(what: string, cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return check(what, await run(cmd, args, options));
}

export interface Daemon {
  readonly pid: number;
  /** Resolves once a line of its stdout matches `pattern` (rejects when it exits first or after timeoutMs). */
  ready(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; resolves when it has exited. */
  stop(): Promise<void>;
}

/** Start a long-running process (a server), tracked until it exits. */
export function startDaemon(cmd: string, args: string[], options: { netns?: string } = {}): Daemon {
  const [file, fileArgs] = argv(cmd, args, options.netns);
  const child = spawn(file, fileArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let exited = child.exitCode !== null;
  const exitedP = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', () => {
      exited = true;
      resolve();
    });
  });
  let seen = '';
  child.stdout?.on('data', (b: Buffer) => {
    seen = (seen + b.toString('utf8')).slice(-4096);
  });
  child.stderr?.on('data', (b: Buffer) => {
    seen = (seen + b.toString('utf8')).slice(-4096);
  });
  return {
    pid: child.pid ?? -1,
    ready(pattern, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const started = Date.now();
        const poll = () => {
          if (pattern.test(seen)) return resolve();
          if (exited) return reject(new Error(`${cmd} exited before it was ready: ${seen.trim()}`));
          if (Date.now() - started > timeoutMs) return reject(new Error(`${cmd} not ready after ${timeoutMs} ms: ${seen.trim()}`));
          setTimeout(poll, 20);
        };
        poll();
      });
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const grace = setTimeout(() => child.kill('SIGKILL'), 1000);
      await exitedP;
      clearTimeout(grace);
    },
  };
}

/** SIGKILL every child still running (synchronous: usable from an exit handler). */
export function killAllChildren(): number {
  let n = 0;
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      n++;
    }
  }
  live.clear();
  return n;
}

/** How many tracked children are still running. */
export function liveChildren(): number {
  let n = 0;
  for (const child of live) if (child.exitCode === null && child.signalCode === null) n++;
  return n;
}
