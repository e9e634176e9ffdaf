/**
 * compileFunctions: a TypeScript file's function programs become one
 * readable C translation unit and one BPF object (clang, cached by content),
 * with the maps' layouts. No kernel needed; clang is.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileFunctions, compileProgram } from '../../codegen/fn/index.js';
import { DslError } from '../../sdk/errors.js';
import { shapeOf, struct as layoutStruct, u32 as layoutU32, u64 as layoutU64 } from '../../sdk/layout.js';
import { dnsGuard } from '../../examples/fn/dns-guard.js';
import { examplePath, repoRoot } from './harness.js';

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-fn-cache-'));
process.on('exit', () => rmSync(cacheDir, { recursive: true, force: true }));

test('the DNS guard becomes an XDP program with its maps', () => {
  const r = compileFunctions(examplePath('dns-guard.ts'), { clang: { cacheDir } });
  assert.equal(r.programs, [{ name: 'dnsGuard', hook: 'xdp', section: 'xdp' }]);
  assert.equal(r.maps.map((m) => [m.name, m.kind, m.maxEntries]), [
    ['stats', 'percpu_array', 4],
    ['resolvers', 'lru_hash', 16384],
  ]);
  assert.match(r.c, /SEC\("xdp"\)\nint dnsGuard\(struct xdp_md \*ctx\)/);
  assert.match(r.c, /__uint\(type, BPF_MAP_TYPE_LRU_HASH\);\n\t__uint\(max_entries, 16384\);\n\t__type\(key, __u32\);\n\t__type\(value, __u64\);\n\} resolvers SEC\("\.maps"\);/);
  // every statement carries the TypeScript line it came from
  assert.match(r.c, /\/\* 35: if \(!pkt\.udp \|\| pkt\.udp\.sport !== 53\) return XDP_PASS; \*\//);
  assert.ok(r.object!.bytes.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])), 'an ELF object');
  assert.is(r.layouts.resolvers!.key, layoutU32);
});

test('the same file compiles to the same bytes, the second time from the cache', () => {
  const a = compileFunctions(examplePath('syn-limiter.ts'), { clang: { cacheDir } });
  const b = compileFunctions(examplePath('syn-limiter.ts'), { clang: { cacheDir } });
  assert.ok(a.object!.bytes.equals(b.object!.bytes));
  assert.is(b.object!.cached, true);
  assert.is(a.c, b.c);
});

test('struct keys and values get C structs laid out like the layouts', () => {
  const r = compileFunctions(examplePath('syn-limiter.ts'), { emitOnly: true });
  assert.match(r.c, /struct sources_key \{\n\t__u64 hi;\n\t__u64 lo;\n\};/);
  assert.match(r.c, /struct sources_value \{\n\t__u32 syns;\n\t__u64 windowStart;\n\};/);
  assert.is(shapeOf(r.layouts.sources!.value!), shapeOf(layoutStruct({ syns: layoutU32, windowStart: layoutU64 })));
  // the helper became an inline C function
  assert.match(r.c, /static __always_inline __u64 fn_mappedIpv4\(__u32 src\)/);
});

test('two programs of one file share their maps in one object', () => {
  const r = compileFunctions(examplePath('port-redirect.ts'), { clang: { cacheDir } });
  assert.equal(r.programs.map((p) => [p.name, p.hook, p.section]), [
    ['toBackend', 'tc-egress', 'tc'],
    ['fromBackend', 'tc-ingress', 'tc'],
  ]);
  assert.is(r.maps.length, 1);
  // writes go through fn_write, which fixes the checksums
  assert.match(r.c, /fn_write\(ctx, TSBPF_HOOK_TC, &p, p\.l4_off \+ 2, 2, 0, 0xffff, __w\d+, 0, p\.l4_off \+ 16, 0, 0\);/);
  assert.match(r.c, /fn_write\(ctx, TSBPF_HOOK_TC, &p, p\.l3_off \+ 0, 2, 2, 0x3f, __w\d+, p\.l3_off \+ 10, 0, 0, 0\);/);
});

test('exports picks programs by name', () => {
  const r = compileFunctions(examplePath('port-redirect.ts'), { exports: ['fromBackend'], emitOnly: true });
  assert.equal(r.programs.map((p) => p.name), ['fromBackend']);
  assert.throws(() => compileFunctions(examplePath('port-redirect.ts'), { exports: ['nope'], emitOnly: true }), /no function program named 'nope'/);
});

test('compileProgram finds the file a program value was declared in', () => {
  assert.ok(dnsGuard.source?.file.endsWith(path.join('examples', 'fn', 'dns-guard.ts')), dnsGuard.source?.file);
  const r = compileProgram(dnsGuard, { emitOnly: true });
  assert.equal(r.programs.map((p) => p.name), ['dnsGuard']);
});

test('type errors are reported with their position, or skipped without type checking', () => {
  const dir = mkdtempSync(path.join(repoRoot, 'test/fn/.tmp-'));
  try {
    const file = path.join(dir, 'typo.ts');
    writeFileSync(
      file,
      `import { xdp, XDP_PASS } from '../../../sdk/fn/index.js';\nexport const p = xdp((pkt) => {\n  if (pkt.ipv4 && pkt.ipv4.tll > 1) return XDP_PASS;\n  return XDP_PASS;\n});\n`,
    );
    try {
      compileFunctions(file, { emitOnly: true });
      assert.unreachable('compiled');
    } catch (e) {
      assert.instance(e, DslError);
      const err = e as DslError;
      assert.equal([err.source?.line, err.source?.column], [3, 28]);
      assert.match(err.message, /TS2339: Property 'tll' does not exist on type 'Ipv4Header'/);
    }
    // without type checking the subset rules still catch it (their own message)
    assert.throws(() => compileFunctions(file, { emitOnly: true, typeCheck: false }), /the ipv4 header has no field 'tll'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('helpers and constants can come from other files', () => {
  const text = `import { xdp, XDP_DROP, XDP_PASS } from '../../../sdk/fn/index.js';
import { MAX_SYNS } from '../../../examples/fn/syn-limiter.js';
import { clampTo } from '../fixtures/semantics.js';
export const p = xdp((pkt) => (clampTo(pkt.len, 0, MAX_SYNS) === MAX_SYNS ? XDP_DROP : XDP_PASS));
`;
  const r = compileFunctions(path.join(repoRoot, 'test/fn/__virtual__/imports.ts'), { text, emitOnly: true });
  assert.match(r.c, /static __always_inline __u32 fn_clampTo\(__u32 x, __u32 lo, __u32 hi\)/);
  assert.match(r.c, /fn_clampTo\(p\.len, 0, 8\) == 8/);
});

test('a file without programs says so', () => {
  assert.throws(() => compileFunctions(path.join(repoRoot, 'sdk/fn/csum.ts'), { emitOnly: true }), /exports no function program/);
});

test('timings are reported for each step', () => {
  const r = compileFunctions(examplePath('dns-guard.ts'), { clang: { cacheDir } });
  for (const k of ['parseMs', 'typeCheckMs', 'lowerMs', 'clangMs', 'totalMs'] as const) assert.type(r.timings[k], 'number');
  assert.ok(r.timings.typeCheckMs > 0);
  const fast = compileFunctions(examplePath('dns-guard.ts'), { clang: { cacheDir }, typeCheck: false });
  assert.is(fast.timings.typeCheckMs, 0);
});

test('runChain of a filter with conntrack is refused at the call (its ct stage is a program of its own)', async () => {
  const { sfw } = await import('./fixtures/ct.js');
  const text = `import { runChain, tcIngress } from '../../../sdk/fn/index.js';
import { sfw } from '../fixtures/ct.js';
export const gate = tcIngress((pkt) => runChain(sfw, pkt));
`;
  try {
    compileFunctions(path.join(repoRoot, 'test/fn/__virtual__/ct-gate.ts'), { text, emitOnly: true, typeCheck: false, filters: [sfw] });
    assert.unreachable('compiled');
  } catch (e) {
    assert.instance(e, DslError);
    assert.match((e as DslError).message, /filter 'sfw' uses conntrack .* which runChain and tailChain cannot run yet/, (e as Error).message);
    assert.equal([(e as DslError).source?.line, (e as DslError).source?.column], [3, 40], 'at the runChain call');
  }
});

test.run();
