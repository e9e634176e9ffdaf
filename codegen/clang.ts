/**
 * C source -> BPF ELF object with clang, behind a content-hash cache.
 *
 * The cache key is sha256(source, clang version, flags, the support headers),
 * so the same input gives the same bytes without running clang again, and a
 * change to any header under codegen/include invalidates old entries.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsbpfError } from '../sdk/errors.js';

export interface ClangOptions {
  /** Cache directory; default $TSBPF_CACHE_DIR or ~/.cache/tsbpf. */
  cacheDir?: string;
  /** The clang binary; default $TSBPF_CLANG or `clang`. */
  clang?: string;
  /** Extra flags appended after the standard ones (part of the cache key). */
  extraFlags?: string[];
}

export interface ClangResult {
  /** Path of the object in the cache. */
  path: string;
  bytes: Buffer;
  /** sha256 key of the cache entry. */
  key: string;
  /** True when the object came from the cache and clang did not run. */
  cached: boolean;
}

/** The directory of the support headers (codegen/include), in the source tree or next to dist/. */
export function includeDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'include'), path.resolve(here, '../../codegen/include')];
  for (const c of candidates) if (existsSync(path.join(c, 'tsbpf', 'parse.h'))) return c;
  throw new TsbpfError('INTERNAL', `codegen support headers not found (looked in ${candidates.join(', ')})`);
}

export function defaultCacheDir(): string {
  return process.env.TSBPF_CACHE_DIR || path.join(homedir(), '.cache', 'tsbpf');
}

export function standardFlags(): string[] {
  // -g gives BTF (maps and typed accessors need it); fixed flags keep output stable.
  const flags = ['-O2', '-g', '-target', 'bpf', '-mcpu=v3', '-Wall', '-Wno-unused-function', '-Wno-unused-variable', '-I', includeDir()];
  // <linux/types.h> needs <asm/types.h>, which Debian keeps under the multiarch dir.
  const multiarch = `/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  if (existsSync(path.join(multiarch, 'asm'))) flags.push('-I', multiarch);
  return flags;
}

const versionCache = new Map<string, string>();

/** `clang --version` first line; throws CLANG_MISSING when clang cannot run. */
export function clangVersion(clang = defaultClang()): string {
  const known = versionCache.get(clang);
  if (known) return known;
  const r = spawnSync(clang, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new TsbpfError('CLANG_MISSING', `clang is needed to compile BPF programs and '${clang}' could not be run`, {
      hint: 'npx tsbpf setup',
      cause: r.error,
    });
  }
  const v = r.stdout.split('\n')[0]!.trim();
  versionCache.set(clang, v);
  return v;
}

function defaultClang(): string {
  return process.env.TSBPF_CLANG || 'clang';
}

let headersHash: string | undefined;

/** Hash of every file under the include dir: headers are part of what is compiled. */
function hashHeaders(): string {
  if (headersHash) return headersHash;
  const h = createHash('sha256');
  const root = includeDir();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(path.relative(root, p)).update('\0').update(readFileSync(p)).update('\0');
    }
  };
  walk(root);
  headersHash = h.digest('hex');
  return headersHash;
}

/** The cache key of a compilation. */
export function cacheKey(source: string, options: ClangOptions = {}): string {
  const clang = options.clang ?? defaultClang();
  // The include path itself is left out of the key so a moved checkout still hits.
  const flags = [...standardFlags().filter((f) => f !== includeDir()), ...(options.extraFlags ?? [])];
  return createHash('sha256')
    .update(source)
    .update('\0')
    .update(clangVersion(clang))
    .update('\0')
    .update(flags.join(' '))
    .update('\0')
    .update(hashHeaders())
    .digest('hex');
}

/** Compile `source` to a BPF object (or take it from the cache). */
export function compileC(source: string, options: ClangOptions = {}): ClangResult {
  const clang = options.clang ?? defaultClang();
  const key = cacheKey(source, options);
  const dir = options.cacheDir ?? defaultCacheDir();
  const objPath = path.join(dir, `${key}.o`);
  if (existsSync(objPath)) {
    return { path: objPath, bytes: readFileSync(objPath), key, cached: true };
  }
  mkdirSync(dir, { recursive: true });
  const tmpBase = path.join(dir, `.${key}.${process.pid}.${Math.random().toString(16).slice(2)}`);
  const tmpObj = `${tmpBase}.o`;
  try {
    // Source on stdin and fixed debug paths: the bytes depend on neither the cache dir nor the checkout.
    const args = [
      ...standardFlags(),
      ...(options.extraFlags ?? []),
      '-fdebug-compilation-dir=.',
      `-fdebug-prefix-map=${includeDir()}=/tsbpf/include`,
      '-c', '-x', 'c', '-', '-o', tmpObj,
    ];
    const r = spawnSync(clang, args, {
      input: source,
      encoding: 'utf8',
      cwd: dir,
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) {
      throw new TsbpfError('CLANG_MISSING', `clang is needed to compile BPF programs and '${clang}' could not be run`, {
        hint: 'npx tsbpf setup',
        cause: r.error,
      });
    }
    if (r.status !== 0) {
      const diagnostics = r.stderr.replace(/<stdin>/g, 'generated.c');
      throw new TsbpfError('COMPILE_FAILED', `clang failed to compile the generated C:\n${firstLines(diagnostics, 30)}`, {
        hint: 'this is a bug in tsbpf codegen or in hand-written C; the whole diagnostics are in error.info.diagnostics',
        details: { diagnostics, source },
      });
    }
    // Atomic publish: concurrent builds of the same key write the same bytes.
    renameSync(tmpObj, objPath);
  } finally {
    rmSync(tmpObj, { force: true });
  }
  return { path: objPath, bytes: readFileSync(objPath), key, cached: false };
}

function firstLines(s: string, n: number): string {
  const lines = s.split('\n');
  return lines.length > n ? [...lines.slice(0, n), `... (${lines.length - n} more lines)`].join('\n') : s;
}
