/**
 * Shared by the runtime's kernel tests: C fixtures compiled with clang into
 * a temporary directory (removed at exit), and probes of what is attached
 * where, so each test can prove it left nothing behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** test/fixtures in the source tree (tests run from dist/test/runtime). */
export const fixturesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');
export const repoRoot = path.resolve(fixturesDir, '../..');

let tmp: string | undefined;
/** A temporary directory for this process, removed when it exits. */
export function tmpDir(): string {
  if (!tmp) {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-rt-'));
    const dir = tmp;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return tmp;
}

const compiled = new Map<string, string>();

/** Compiles test/fixtures/<name>.c with clang -O2 -g -target bpf; returns the object's path. */
export function fixture(name: string): string {
  const hit = compiled.get(name);
  if (hit) return hit;
  const src = path.join(fixturesDir, `${name}.c`);
  const out = path.join(tmpDir(), `${name}.o`);
  const multiarch = spawnSync('clang', ['-print-multiarch'], { encoding: 'utf8' }).stdout?.trim() || 'x86_64-linux-gnu';
  const inc = existsSync(`/usr/include/${multiarch}`) ? [`-I/usr/include/${multiarch}`] : [];
  const r = spawnSync('clang', ['-O2', '-g', '-target', 'bpf', ...inc, '-c', src, '-o', out], { encoding: 'utf8' });
  if (r.error) throw new Error(`clang is needed for the runtime tests: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`clang failed on ${src}:\n${r.stderr}`);
  compiled.set(name, out);
  return out;
}

export function fixtureBytes(name: string): Buffer {
  return readFileSync(fixture(name));
}

/** Open fds of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

function tc(netns: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', netns, 'tc', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The tc filters at a clsact direction ('' when none or no qdisc). */
export function tcFilters(netns: string, ifname: string, direction: 'ingress' | 'egress'): string {
  try {
    return tc(netns, ['filter', 'show', 'dev', ifname, direction]).trim();
  } catch {
    return '';
  }
}

export function hasClsact(netns: string, ifname: string): boolean {
  return /qdisc clsact/.test(tc(netns, ['qdisc', 'show', 'dev', ifname]));
}

/** The id of the XDP program on an interface, 0 when none. */
export function xdpProgId(netns: string, ifname: string): number {
  const out = execFileSync('ip', ['-n', netns, '-j', '-d', 'link', 'show', ifname], { encoding: 'utf8' });
  const link = (JSON.parse(out) as Array<{ xdp?: { prog?: { id: number }; attached?: Array<{ prog?: { id: number } }> } }>)[0];
  return link?.xdp?.prog?.id ?? link?.xdp?.attached?.[0]?.prog?.id ?? 0;
}

/** A unique directory name under /sys/fs/bpf for one test (not created). */
export function bpffsDir(tag: string): string {
  return `/sys/fs/bpf/tsbpf-test-${tag}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
}
