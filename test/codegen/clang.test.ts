/**
 * Compiling C to BPF: same input, same bytes; a content-hash cache that skips
 * clang when nothing changed; clear errors when clang is missing or fails.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cacheKey, compileC } from '../../codegen/clang.js';
import { compile } from '../../codegen/compile.js';
import { TsbpfError } from '../../sdk/errors.js';
import { smallDefinition } from './defs.js';

const dirs: string[] = [];
function freshDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-cg-cache-'));
  dirs.push(d);
  return d;
}

/** A clang wrapper that records each invocation, to see when clang really runs. */
function recordingClang(dir: string): { clang: string; calls: () => string[] } {
  const log = path.join(dir, 'calls.log');
  const clang = path.join(dir, 'clang-wrapper.sh');
  writeFileSync(clang, `#!/bin/sh\necho "$*" >> '${log}'\nexec clang "$@"\n`);
  chmodSync(clang, 0o755);
  return { clang, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []) };
}

test('the same definition compiles to the same bytes, in any cache directory', () => {
  const a = compile(smallDefinition(), { cacheDir: freshDir() });
  const b = compile(smallDefinition(), { cacheDir: freshDir() });
  assert.is(a.cached, false);
  assert.is(b.cached, false);
  assert.is(a.key, b.key);
  assert.ok(a.object.bytes.equals(b.object.bytes), 'identical ELF bytes');
  assert.is(a.object.bytes.readUInt32BE(0), 0x7f454c46, 'an ELF object');
});

test('a cache hit returns the stored object without running clang again', () => {
  const dir = freshDir();
  const rec = recordingClang(dir);
  const first = compile(smallDefinition(), { cacheDir: dir, clang: rec.clang });
  const compilesAfterFirst = rec.calls().filter((c) => c.includes(' -c ')).length;
  assert.is(compilesAfterFirst, 1, 'clang compiled once');
  const second = compile(smallDefinition(), { cacheDir: dir, clang: rec.clang });
  assert.is(second.cached, true);
  assert.is(second.object.path, first.object.path);
  assert.ok(second.object.bytes.equals(first.object.bytes));
  assert.is(rec.calls().filter((c) => c.includes(' -c ')).length, 1, 'no second compilation');
});

test('the cache key covers the source and the flags', () => {
  const k1 = cacheKey('int x;');
  assert.is(cacheKey('int x;'), k1);
  assert.is.not(cacheKey('int y;'), k1);
  assert.is.not(cacheKey('int x;', { extraFlags: ['-DX=1'] }), k1);
  assert.match(k1, /^[0-9a-f]{64}$/);
});

test('a missing clang is CLANG_MISSING with the setup hint', () => {
  try {
    compileC('int x;', { cacheDir: freshDir(), clang: '/nonexistent/clang-14' });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, TsbpfError);
    const err = e as TsbpfError;
    assert.is(err.code, 'CLANG_MISSING');
    assert.is(err.hint, 'npx tsbpf setup');
  }
});

test("clang's diagnostics come back as COMPILE_FAILED", () => {
  try {
    compileC('int broken(void) { return 1 +; }\n', { cacheDir: freshDir() });
    assert.unreachable('should throw');
  } catch (e) {
    const err = e as TsbpfError;
    assert.is(err.code, 'COMPILE_FAILED');
    assert.match(err.message, /generated\.c:1:\d+: error: expected expression/);
    assert.match(String(err.info.diagnostics), /expected expression/);
  }
});

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test.run();
