/**
 * Every construct outside the restricted subset is refused at build time,
 * before clang, with a DslError at the construct's exact file:line:col, a
 * sentence saying what is wrong, and a hint saying what to write instead.
 *
 * Each case is a small program; `@@` marks where the error must point (the
 * marker is removed before compiling). The sources are compiled from memory
 * under test/fn/__virtual__/, importing the real sdk/fn.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { compileFunctions } from '../../codegen/fn/index.js';
import { DslError } from '../../sdk/errors.js';
import { repoRoot } from './harness.js';

const FILE = path.join(repoRoot, 'test/fn/__virtual__/diag.ts');
const PRELUDE = `import {
  xdp, tcIngress, hash, array, lruHash, ringBuf, struct, u8, u16, u32, u64, ktimeNs,
  XDP_PASS, XDP_DROP, TC_ACT_OK,
} from '../../../sdk/fn/index.js';
const maps = { counts: hash(u32, u64, { maxEntries: 64 }), flows: lruHash(u32, struct({ n: u32, at: u64 }), { maxEntries: 64 }) };
`;

interface Expect {
  message: RegExp;
  hint?: RegExp;
}

/** Compiles `body` (after the prelude) and returns the error, checking it points at @@. */
function refused(body: string, options: { typeCheck?: boolean } = {}): DslError {
  const full = PRELUDE + body;
  const at = full.indexOf('@@');
  if (at < 0) throw new Error('no @@ marker');
  const text = full.slice(0, at) + full.slice(at + 2);
  const before = text.slice(0, at).split('\n');
  const line = before.length;
  const column = before[before.length - 1]!.length + 1;
  try {
    compileFunctions(FILE, { text, emitOnly: true, typeCheck: options.typeCheck ?? false });
  } catch (e) {
    assert.instance(e, DslError, String(e));
    const err = e as DslError;
    assert.is(err.source?.file.endsWith(path.join('__virtual__', 'diag.ts')), true, `file: ${err.source?.file}`);
    assert.equal({ line: err.source?.line, column: err.source?.column }, { line, column }, `position of: ${err.message}`);
    return err;
  }
  throw new Error('compiled without an error');
}

function rejects(name: string, body: string, expect: Expect, options: { typeCheck?: boolean } = {}): void {
  test(name, () => {
    const err = refused(body, options);
    assert.match(err.message.split('\n')[0]!, expect.message);
    if (expect.hint) assert.match(err.hint ?? '', expect.hint);
  });
}

const prog = (inner: string) => `export const p = xdp({ maps }, (pkt, { counts, flows }) => {\n${inner}\n  return XDP_PASS;\n});\n`;

// --- functions and closures
rejects('a closure inside a program', prog('  const f = @@(x: u32) => x + 1;'), { message: /closures/, hint: /top level/ });
rejects('a function declared inside a program', prog('  @@function f(x: u32) { return x; }'), { message: /would be closures/, hint: /top level/ });
rejects('recursion through helper functions', `function fact(n: u32): u32 { return n === 0 ? 1 : u32(n * @@fact(u32(n - 1))); }\n` + prog('  if (fact(3) === 6) return XDP_DROP;'), { message: /calls itself.*recursion/, hint: /for loop/ });
rejects('an async program', `export const p = xdp(@@async (pkt) => XDP_PASS);\n`, { message: /cannot be async/, hint: /remove async/ });
rejects('a helper without parameter types', `function twice(@@x) { return x; }\n` + prog('  if (twice(2) === 4) return XDP_DROP;'), { message: /needs a fixed-width type/, hint: /u32/ });
rejects('capturing a module-level let', `let hits = 0;\n` + prog('  if (@@hits > 3) return XDP_DROP;'), { message: /module-level let/, hint: /map/ });
rejects('calling an unknown function', prog('  @@console.log(pkt.len);'), { message: /console output/, hint: /ringBuf/ });
rejects('Math functions', prog('  const m = @@Math.max(pkt.len, 60);'), { message: /floating point/, hint: /a \? b : c/ });
rejects('Date', prog('  const t = @@Date.now();'), { message: /Date is not available/, hint: /ktimeNs/ });

// --- values the kernel does not have
rejects('strings', prog("  const s = @@'hello';"), { message: /strings do not exist/, hint: /ip4/ });
rejects('template literals', prog('  const s = @@`len ${pkt.len}`;'), { message: /strings do not exist/ });
rejects('object literals as values', prog('  const o = @@{ a: 1 };'), { message: /objects exist only as map keys/ });
rejects('arrays', prog('  const a = @@[1, 2, 3];'), { message: /arrays are not supported/ });
rejects('element access', prog('  const x = @@pkt["len"];'), { message: /arrays are not supported/ });
rejects('new', prog('  const m = @@new Map();'), { message: /new creates objects/ });
rejects('null', prog('  const x = @@null;'), { message: /null is not supported/, hint: /undefined/ });
rejects('fractions', prog('  const x = @@1.5;'), { message: /integers only/ });
rejects('numbers beyond 2^53', prog('  const x = @@9007199254740993;'), { message: /beyond 2\^53/, hint: /bigint/ });
rejects('typeof', prog('  const t = @@typeof pkt;'), { message: /typeof is not supported/ });
rejects('the delete operator', prog('  @@delete (pkt as any).x;'), { message: /delete is not supported/, hint: /map\.delete/ });
rejects('regular expressions', prog('  const r = @@/a+/;'), { message: /regular expressions/ });

// --- control flow
rejects('while loops', prog('  @@while (pkt.len > 0) { break; }'), { message: /while loops have no bound/, hint: /constant bound/ });
rejects('do-while loops', prog('  @@do { break; } while (true);'), { message: /do\.\.\.while loops/ });
rejects('for...of', prog('  @@for (const x of [1, 2]) { }'), { message: /for\.\.\.of/ });
rejects('a for loop with a run-time bound', prog('  for (let i = 0; i < @@pkt.len; i++) { }'), { message: /loop bound must be a constant/ });
rejects('a for loop that changes its counter', prog('  for (let i = 0; i < 8; i++) { @@i = 2; }'), { message: /changed in the body/ });
rejects('a loop beyond the iteration limit', prog('  @@for (let i = 0; i < 100000; i++) { }'), { message: /more than 1024 times/ });
rejects('throw', prog("  if (pkt.len < 14) @@throw new Error('short');"), { message: /exceptions do not exist/, hint: /return a verdict/ });
rejects('try/catch', prog('  @@try { } catch { }'), { message: /try\/catch is not supported/ });
rejects('labels', prog('  @@outer: for (let i = 0; i < 2; i++) { }'), { message: /labels are not supported/ });
rejects('a path that returns no verdict', `export const p = xdp((pkt) => {\n  if (pkt.len > 60) return XDP_DROP;\n@@});\n`, { message: /reach its end without returning/, hint: /XDP_PASS/ });
rejects('await', `export const p = xdp((pkt) => {\n  @@await 1;\n  return XDP_PASS;\n});\n`, { message: /await is not supported/ });

// --- variables and integers
rejects('var', prog('  @@var x = 1;'), { message: /var is not supported/, hint: /const/ });
rejects('a let without a fixed width', prog('  let @@n = 0;\n  n = 1;'), { message: /needs a fixed width/, hint: /let n: u32/ });
rejects('a value that may overflow its width', prog('  let n: u8 = 0;\n  n = @@n + 1;'), { message: /takes u8, but this value can be 1\.\.256/, hint: /u8\(\.\.\.\)/ });
rejects('x++ inside an expression', prog('  let n: u8 = 0;\n  const m = @@n++;'), { message: /inside an expression/ });
rejects('`as` instead of a conversion', prog('  const x = @@pkt.len as number;'), { message: /`as` changes only the TypeScript type/, hint: /u32\(x\)/ });
rejects('division of numbers', prog('  const x = @@pkt.len / 2;'), { message: /fractions/, hint: />>/ });
rejects('mixing number and bigint', prog('  const x = @@ktimeNs() > pkt.len;'), { message: /mixes a number and a bigint/, hint: /u64\(x\)/ });
rejects('a bigint that can go negative', prog('  const t = ktimeNs();\n  if (@@t - 5n > 10n) return XDP_DROP;'), { message: /can leave 0\.\.2\^64-1/, hint: /u64\(a - b\)/ });
rejects('a product beyond 2^53', prog('  const x = @@pkt.len * pkt.len * pkt.len;'), { message: /beyond 2\^53/, hint: /u64/ });
rejects('== instead of ===', prog('  if (pkt.len @@== 60) return XDP_DROP;'), { message: /converts types/, hint: /===/ });
rejects('&& giving a non-boolean value', prog('  const x = @@pkt.udp && pkt.udp.dport;'), { message: /gives one of its operands/ });

rejects('two state changes in one expression', prog('  if (@@counts.update(1, 1n) === counts.delete(2)) return XDP_DROP;'), { message: /C does not fix their order/, hint: /separate statements/ });

// --- the packet
rejects('a header read without a presence check', prog('  if (@@pkt.tcp.dport === 22) return XDP_DROP;'), { message: /may be absent here/, hint: /if \(!pkt\.tcp\)/ });
rejects('the non-null assertion', prog('  if (@@pkt.tcp!.dport === 22) return XDP_DROP;'), { message: /only silences TypeScript/, hint: /if \(pkt\.tcp\)/ });
rejects('optional chaining', prog('  if (@@pkt.tcp?.dport === 22) return XDP_DROP;'), { message: /optional chaining/ });
rejects('writing a number to an IPv6 address', prog('  if (pkt.ipv6) pkt.ipv6.src = @@5;'), { message: /pkt.ipv6.src takes an IPv6 address, not a number/, hint: /ip6\(/ });
rejects('writing a length', prog('  if (pkt.ipv4) @@pkt.ipv4.totalLength = 40;'), { message: /read-only/, hint: /agree with the bytes of the frame/ });
rejects('a VLAN id out of range', prog('  if (pkt.vlan) pkt.vlan.id = @@4096;'), { message: /4096|fit/ });
rejects('writing a read-only field', prog('  if (pkt.ipv4) @@pkt.ipv4.proto = 17;'), { message: /read-only/, hint: /parses/ });
rejects('the mark at XDP', prog('  if (@@pkt.mark === 1) return XDP_DROP;'), { message: /exists at TC only/, hint: /tcIngress/ });
rejects('a TC verdict from an XDP program', `export const p = xdp((pkt) => @@TC_ACT_OK);\n`, { message: /TC verdict, and this is an XDP program/, hint: /XDP_PASS/ });

// --- maps
rejects('a map not declared', prog('  maps2.x;').replace('maps2.x;', '') + `export const q = xdp({ maps }, (pkt, m) => {\n  @@m.nope.increment(1);\n  return XDP_PASS;\n});\n`, { message: /no map 'nope'/ });
rejects('a lookup used before checking it', prog('  const f = flows.lookup(1);\n  if (@@f.n > 3) return XDP_DROP;'), { message: /may be undefined here/, hint: /v !== undefined/ });
rejects('changing a looked-up value', prog('  const f = flows.lookup(1);\n  if (f !== undefined) @@f.n = 2;'), { message: /is a copy/, hint: /update/ });
rejects('a struct value with a missing field', prog('  flows.update(1, @@{ n: 1 });'), { message: /missing field at/ });
rejects('a map name the generated C needs', `export const p = xdp(@@{ maps: { ctx: hash(u32, u32, { maxEntries: 4 }) } }, () => XDP_PASS);\n`, { message: /'ctx' cannot be a map name/ });
rejects('a map declared from a run-time value', `export const p = xdp({ maps: { m: hash(u32, u32, { maxEntries: @@Date.now() }) } }, () => XDP_PASS);\n`, { message: /must be known at build time/ });

// --- TypeScript's own errors, with type checking on
rejects('a type error in the file', `export const p = xdp((pkt) => {\n  const @@n: u8 = 'x';\n  return XDP_PASS;\n});\n`, { message: /TS2322: Type 'string' is not assignable to type 'number'/ }, { typeCheck: true });

// --- the filter DSL: declared chains and maps
const DSL = `import { declareSet, filter, rule, match } from '../../../sdk/index.js';
import { runChain, tailChain } from '../../../sdk/fn/index.js';
export const blocked = declareSet('blocked', 'ipv4', { elements: ['10.0.0.0/8'] });
export const LIMIT = 3;
`;
rejects('runChain of something that is not a declared chain', DSL + `export const p = xdp((pkt) => runChain(@@LIMIT as never, pkt));\n`, { message: /runChain\(\) runs a declared chain, and LIMIT as never is not one/, hint: /filter\(/ });
rejects('runChain of a filter the build was not given', DSL + `export const fw = filter('fw', { hook: 'xdp' }, ({ chain }) => chain('input', {}, [rule(match.tcp).drop()]));\nexport const p = xdp((pkt) => runChain(@@fw, pkt));\n`, { message: /filter 'fw' is not among the filters this build was given/, hint: /module/ });
rejects('runChain in a helper function', DSL + `export const fw = filter('fw', { hook: 'xdp' }, ({ chain }) => chain('input', {}, [rule(match.tcp).drop()]));\nfunction h(): boolean { return @@runChain(fw, undefined as never) === XDP_PASS; }\nexport const p = xdp((pkt) => (h() ? XDP_PASS : XDP_DROP));\n`, { message: /runChain\(\) belongs in the program function/ });
rejects('tailChain not returned', DSL + `export const fw = filter('fw', { hook: 'xdp' }, ({ chain }) => chain('input', {}, [rule(match.tcp).drop()]));\nexport const p = xdp((pkt) => {\n  const v = @@tailChain(fw, pkt);\n  return v;\n});\n`, { message: /tailChain\(\) hands the packet to the filter for good/, hint: /return tailChain\(fw, pkt\)/ });
rejects('a DSL set asked about the wrong kind of key', DSL + `export const p = xdp({ maps: { blocked } }, (pkt, { blocked }) => {\n  if (pkt.ipv6 && blocked.has(@@pkt.ipv6.src)) return XDP_DROP;\n  return XDP_PASS;\n});\n`, { message: /blocked is a set of IPv4 addresses: ask it about a number/ });
rejects('changing a DSL set from a program', DSL + `export const p = xdp({ maps: { blocked } }, (pkt, { blocked }) => {\n  @@blocked.add(1);\n  return XDP_PASS;\n});\n`, { message: /a set of the filter DSL has has\(key\), not add\(\)/ });
rejects('a DSL map under another name', DSL + `export const p = xdp(@@{ maps: { other: blocked } }, (pkt) => XDP_PASS);\n`, { message: /maps.other is the filter's map 'blocked': it keeps its name/ });

test('all problems of a file are reported together', () => {
  const text = PRELUDE + prog("  const s = 'a';\n  const t = 'b';\n  while (true) { }");
  try {
    compileFunctions(FILE, { text, emitOnly: true, typeCheck: false });
    assert.unreachable('compiled');
  } catch (e) {
    const list = (e as DslError).info.diagnostics as unknown[];
    assert.is(list.length, 3);
    assert.match((e as DslError).message, /strings do not exist[\s\S]*strings do not exist[\s\S]*while loops/);
  }
});

test('the accepted subset compiles (control)', () => {
  const text =
    PRELUDE +
    `function clamp(x: u32, hi: u32): u32 { return x > hi ? hi : x; }
export const p = xdp({ maps }, (pkt, { counts, flows }) => {
  let total: u32 = 0;
  for (let i = 0; i < 4; i++) total = u32(total + clamp(pkt.len, 100));
  switch (pkt.proto) { case 6: counts.increment(6); break; default: break; }
  const f = flows.lookup(total);
  if (f !== undefined && f.n > 3) return XDP_DROP;
  flows.update(total, { n: f === undefined ? 1 : u32(f.n + 1), at: ktimeNs() });
  return pkt.tcp && pkt.tcp.dport === 22 ? XDP_DROP : XDP_PASS;
});
`;
  const r = compileFunctions(FILE, { text, emitOnly: true, typeCheck: true });
  assert.match(r.c, /static __always_inline __u32 fn_clamp\(__u32 x, __u32 hi\)/);
  assert.match(r.c, /SEC\("xdp"\)\nint p\(struct xdp_md \*ctx\)/);
});

test.run();
