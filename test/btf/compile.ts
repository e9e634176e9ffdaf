/**
 * Compiles C test fixtures with clang -target bpf into a temporary directory
 * that is removed when the process exits.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** test/fixtures in the source tree (tests run from dist/test/...). */
export const fixturesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');
export const repoRoot = path.resolve(fixturesDir, '../..');

let tmp: string | undefined;
function tmpDir(): string {
  if (!tmp) {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-btf-'));
    const dir = tmp;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return tmp;
}

function includeFlags(): string[] {
  // <linux/types.h> needs <asm/types.h> from the host's multiarch include directory.
  const r = spawnSync('clang', ['-print-multiarch'], { encoding: 'utf8' });
  const multiarch = r.status === 0 ? r.stdout.trim() : `${os.arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  const dir = `/usr/include/${multiarch}`;
  return existsSync(dir) ? [`-I${dir}`] : [];
}

const cache = new Map<string, { path: string; bytes: Buffer }>();

/** Compiles a C file (absolute, or relative to test/fixtures) to a BPF object; `debug: false` leaves out -g (no BTF). */
export function compileFixture(file: string, options: { debug?: boolean } = {}): { path: string; bytes: Buffer } {
  const src = path.isAbsolute(file) ? file : path.join(fixturesDir, file);
  const debug = options.debug !== false;
  const cacheKey = `${src}:${debug}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const out = path.join(tmpDir(), `${path.basename(src, '.c')}-${cache.size}.o`);
  const args = ['-O2', ...(debug ? ['-g'] : []), '-target', 'bpf', ...includeFlags(), '-c', src, '-o', out];
  const r = spawnSync('clang', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`clang is needed for this test: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`clang failed on ${src}:\n${r.stderr}`);
  const res = { path: out, bytes: readFileSync(out) };
  cache.set(cacheKey, res);
  return res;
}

/** Compiles C source text. */
export function compileC(source: string, name: string): { path: string; bytes: Buffer } {
  const file = path.join(tmpDir(), `${name}.c`);
  writeFileSync(file, source);
  return compileFixture(file);
}

/** A file path in the temporary directory. */
export function tmpPath(name: string): string {
  return path.join(tmpDir(), name);
}
