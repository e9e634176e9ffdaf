/**
 * Function programs with the filter DSL: sets and maps declared in the DSL
 * (declareSet / declareMap / a filter's own), and chains run with runChain.
 * Node (runInNode + evaluate) against the kernel (BPF_PROG_TEST_RUN) on
 * generated packets: verdicts, bytes, the functions' maps, the filter's
 * per-rule counters. And one kernel map shared by a filter and a function,
 * built into one object or loaded apart.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileFunctions, type FnCompileResult } from '../../codegen/fn/index.js';
import { loadFilter, loadFunctions, type BpfObject } from '../../runtime/index.js';
import { EvalState } from '../../sdk/evaluate.js';
import { packet } from '../../sdk/packet.js';
import { randomPacketCase, rng } from '../../sdk/packet-gen.js';
import { runInNode, type MemoryMaps } from '../../sdk/fn/index.js';
import * as edgeModule from '../../examples/fn/edge-guard.js';
import { edge, edgeGuard, MAX_STRIKES } from '../../examples/fn/edge-guard.js';
import * as chainsModule from './fixtures/chains.js';
import { tcFinal, tcGate, xdpFinal } from './fixtures/chains.js';
import * as setsModule from './fixtures/sets.js';
import { setGate } from './fixtures/sets.js';
import { requireKernel } from '../kernel.js';
import path from 'node:path';
import { repoRoot } from './harness.js';
import { compareMaps, examplePath, explain, runBoth, stable } from './harness.js';
import { checkFrame } from '../packet/verify.js';

const ping = (src: string) => packet().eth().ipv4({ src, dst: '10.0.0.1' }).icmp({ type: 8, code: 0 }).build();
const web = (src: string, dport = 443) => packet().eth().ipv4({ src, dst: '10.0.0.1' }).tcp({ sport: 40000, dport, flags: 'syn' }).build();

test('Node: runChain gives the filter verdict as the hook action; sets are the EvalState sets', () => {
  const maps: MemoryMaps = {};
  assert.is(runInNode(edgeGuard, web('10.1.0.1'), { maps }).verdict, 'XDP_PASS');
  assert.is(runInNode(edgeGuard, web('10.1.0.1', 22), { maps }).verdict, 'XDP_DROP'); // policy drop
  const r = runInNode(edgeGuard, web('10.66.3.4'), { maps });
  assert.is(r.verdict, 'XDP_DROP'); // the filter's rule 'blocked'
  assert.equal(r.maps.strikes!.entries(), [[0x0a420304, 1]]);
  // the filter counted what it decided, in the run's EvalState
  const byName = Object.fromEntries(edge.definition.chains[0]!.rules.map((x) => [x.name, r.state.counters.get(x.id)?.packets ?? 0]));
  assert.equal({ blocked: byName.blocked, web: byName.web }, { blocked: 1, web: 1 });
  // the set is the state's: adding an address there blocks it for the function's has() and the chain alike
  r.state.setAdd('blocked', '10.1.0.1');
  assert.is(runInNode(edgeGuard, web('10.1.0.1'), { maps }).verdict, 'XDP_DROP');
  assert.equal(maps.strikes!.lookup(0x0a010001), 1);
  assert.equal(maps.seen!.entries().length, 1);
});

test('Node: a state given up front is the one the run uses', () => {
  const state = new EvalState(edge);
  state.setClear('blocked');
  const r = runInNode(edgeGuard, web('10.66.0.1'), { state });
  assert.is(r.verdict, 'XDP_PASS');
  assert.is(r.state, state);
});

test('build: runChain without the module says how to give it; a non-filter is refused', () => {
  try {
    compileFunctions(examplePath('edge-guard.ts'), { emitOnly: true });
    assert.unreachable('built without the filter');
  } catch (e) {
    const d = (e as { info: { diagnostics: Array<{ message: string; hint?: string }> } }).info.diagnostics;
    assert.ok(d.some((x) => /filter 'edge' is not among the filters this build was given/.test(x.message) && /module/.test(x.hint ?? '')), stable(d));
  }
  const r = compileFunctions(examplePath('edge-guard.ts'), { emitOnly: true, module: edgeModule });
  assert.match(r.c, /static __attribute__\(\(noinline\)\) int fn_chain_edge_xdp\(void \*ctx, const struct tsbpf_pkt \*pk\)/);
  assert.match(r.c, /static __always_inline int edge_xdp__call\(void \*ctx, struct tsbpf_state \*st\)/);
  assert.equal(r.filter?.name, 'edge');
  assert.equal(r.maps.filter((m) => m.dsl).map((m) => [m.name, m.dsl!.kind, m.dsl!.shared]), [['blocked', 'set', true], ['seen', 'map', true], ['web', 'set', true]]);
});

function withObject<T>(result: FnCompileResult, fn: (obj: BpfObject) => T, options: Parameters<typeof loadFunctions>[1] = {}): T {
  const obj = loadFunctions(result, options);
  try {
    return fn(obj);
  } finally {
    obj.close();
  }
}

/** Per-rule packets of the filter in the kernel (per-CPU summed), by rule id. */
function kernelCounters(obj: BpfObject): Record<number, number> {
  const out: Record<number, number> = {};
  for (const [k, v] of obj.maps.tsbpf_counters!.entries()) {
    const n = (v as Array<{ packets: bigint }>).reduce((a, c) => a + Number(c.packets), 0);
    if (n) out[k as number] = n;
  }
  return out;
}

if (requireKernel('fn + DSL (runChain, DSL maps)')) {
  test('differential: 1,400 packets through a function that runs a chain and uses DSL maps', () => {
    const r = rng('edge-guard');
    const cases: Array<{ data: Buffer; description: string }> = [];
    for (let i = 0; i < 1000; i++) {
      const c = randomPacketCase(r, { ports: [80, 443, 53, 22], protos: [6, 17, 1, 58], ipv4: ['10.66.0.0/30', '192.0.2.7/32', '10.1.0.0/30'], ipv6: ['fd66::/126'] });
      cases.push({ data: c.data, description: c.description });
    }
    // Repeat offenders: strikes must reach the limit in both worlds.
    for (let i = 0; i < 400; i++) {
      const src = r.pick(['10.66.0.1', '10.66.0.2', '192.0.2.7', '10.1.0.1', '10.1.0.2']);
      cases.push({ data: r.bool(0.5) ? web(src, r.pick([80, 443, 22])) : ping(src), description: `from ${src}` });
    }
    r.shuffle(cases);
    const result = compileFunctions(examplePath('edge-guard.ts'), { module: edgeModule });
    withObject(result, (obj) => {
      const jsMaps: MemoryMaps = {};
      const run = runBoth(obj, edgeGuard, 'edgeGuard', cases, jsMaps, result);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.drop! > 300 && run.verdicts.pass! > 300, JSON.stringify(run.verdicts));
      // the function's maps (strikes: its own; seen: declared with the DSL) agree entry by entry
      assert.equal(compareMaps(obj, result, jsMaps), []);
      assert.ok(jsMaps.strikes!.entries().some(([, n]) => n === MAX_STRIKES), 'some source reached the limit');
      assert.ok(jsMaps.seen!.size > 3);
      // the filter's per-rule counters: Node's EvalState and the kernel's tsbpf_counters
      const state = runInNode(edgeGuard, Buffer.alloc(14), { maps: jsMaps }).state;
      const node: Record<number, number> = {};
      for (const [id, c] of state.counters) node[id] = c.packets;
      assert.equal(kernelCounters(obj), node);
    });
  });

  test('differential at TC: 1,200 packets, a chain with jumps, marks, redirect and reject after a rewrite', () => {
    const r = rng('chains-tc');
    const cases: Array<{ data: Buffer; description: string; mark: number }> = [];
    for (let i = 0; i < 900; i++) {
      const c = randomPacketCase(r, { ports: [8080, 8081, 9, 80], protos: [6, 17], ipv4: ['10.9.0.0/30', '10.8.0.0/30'], ipv6: ['fd09::/126', 'fd08::/126'] });
      cases.push({ data: c.data, description: c.description, mark: r.pick([0, 0, 0x20, 0x1, 0xffffffff]) });
    }
    for (let i = 0; i < 300; i++) {
      const src = r.pick(['10.9.0.1', '10.8.0.1']);
      const dport = r.pick([8080, 8081, 80, 9]);
      const b = packet().eth().ipv4({ src, dst: '10.0.0.1', ttl: r.pick([1, 64]) });
      const data = r.bool(0.7) ? b.tcp({ sport: 1234, dport, flags: r.pick(['syn', 'ack']) }).build() : b.udp({ sport: 1234, dport }).build();
      cases.push({ data, description: `${src} -> ${dport}`, mark: r.pick([0, 0x20]) });
    }
    const result = compileFunctions(path.join(repoRoot, 'test/fn/fixtures/chains.ts'), { module: chainsModule });
    withObject(result, (obj) => {
      const jsMaps: MemoryMaps = {};
      const run = runBoth(obj, tcGate, 'tcGate', cases, jsMaps, result);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      // every outcome happened: accept, drop (rules, reject, the function's own), redirect; rewrites too
      assert.ok(run.verdicts.ok! > 100 && run.verdicts.shot! > 100 && run.verdicts.redirect! > 10, JSON.stringify(run.verdicts));
      assert.ok(run.rewritten > 20, `rewritten ${run.rewritten}`);
      assert.equal(compareMaps(obj, result, jsMaps), []);
      const state = runInNode(tcGate, Buffer.alloc(14), { maps: jsMaps }).state;
      const node: Record<number, number> = {};
      for (const [id, c] of state.counters) node[id] = c.packets;
      assert.equal(kernelCounters(obj), node);
      assert.ok(Object.keys(node).length >= 5, stable(node));
    });
  });

  test('tailChain at XDP and TC: the filter decides for good, its rejects answered (reply bytes identical)', () => {
    const r = rng('chains-final');
    const cases: Array<{ data: Buffer; description: string; mark: number }> = [];
    for (let i = 0; i < 700; i++) {
      const c = randomPacketCase(r, { ports: [8080, 8081, 9, 7, 80], protos: [6, 17], ipv4: ['10.9.0.0/30', '10.8.0.0/30'], ipv6: ['fd09::/126'] });
      cases.push({ data: c.data, description: c.description, mark: r.pick([0, 0x20]) });
    }
    for (let i = 0; i < 300; i++) {
      const src = r.pick(['10.9.0.1', '10.9.3.3', '10.8.0.1']);
      const b = packet().eth().ipv4({ src, dst: '10.0.0.1' });
      const data = r.bool(0.6) ? b.tcp({ sport: 1234, dport: r.pick([80, 8081, 22]), flags: r.pick(['syn', 'ack']) }).payload(r.range(0, 40)).build() : b.udp({ sport: 1234, dport: r.pick([53, 7, 9]) }).payload(r.range(0, 40)).build();
      cases.push({ data, description: `from ${src}`, mark: 0 });
    }
    const result = compileFunctions(path.join(repoRoot, 'test/fn/fixtures/chains.ts'), { module: chainsModule });
    withObject(result, (obj) => {
      const x = runBoth(obj, xdpFinal, 'xdpFinal', cases, {}, result);
      assert.is(x.mismatches.length, 0, explain(x.mismatches));
      // rejects went back as replies (XDP_TX with the RST / ICMP unreachable in place)
      assert.ok(x.verdicts.tx! > 50 && x.verdicts.drop! > 50 && x.verdicts.pass! > 50, JSON.stringify(x.verdicts));
      const t = runBoth(obj, tcFinal, 'tcFinal', cases, {}, result);
      assert.is(t.mismatches.length, 0, explain(t.mismatches));
      assert.ok(t.verdicts.redirect! > 50 && t.verdicts.shot! > 50 && t.verdicts.ok! > 50, JSON.stringify(t.verdicts));
      // a reply is a valid frame (independent checksums)
      const syn = packet().eth().ipv4({ src: '10.9.0.1', dst: '10.0.0.1' }).tcp({ sport: 1234, dport: 80, flags: 'syn' }).build();
      const k = obj.testRun('xdpFinal', { data: syn });
      assert.is(k.verdict, 'tx');
      assert.equal(checkFrame(k.data).problems, []);
      assert.ok(checkFrame(k.data).layers.includes('tcp'));
    });
  });

  test('DSL sets and a map without a chain: the object\'s own maps, declared elements written, 1,000 packets; shared with a filter loaded apart', () => {
    const r = rng('dsl-sets');
    const cases = Array.from({ length: 1000 }, () => {
      const c = randomPacketCase(r, { ports: [22, 443, 80], ipv4: ['10.20.0.0/30', '10.21.0.0/30', '192.0.2.1/32'], ipv6: ['fd20::/126', 'fd21::/126'] });
      return { data: c.data, description: c.description };
    });
    const result = compileFunctions(path.join(repoRoot, 'test/fn/fixtures/sets.ts'), { module: setsModule });
    assert.is(result.filter, undefined, 'no chain runs: no filter compiled in');
    assert.equal(result.maps.map((m) => [m.name, m.kind, m.dsl?.shared, m.initial?.length ?? 0]), [['allow4', 'lpm_trie', false, 2], ['allow6', 'lpm_trie', false, 1], ['ports', 'hash', false, 2], ['hits', 'array', false, 0]]);
    withObject(result, (obj) => {
      const jsMaps: MemoryMaps = {};
      const run = runBoth(obj, setGate, 'setGate', cases, jsMaps, result);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.pass! > 200 && run.verdicts.drop! > 200, JSON.stringify(run.verdicts));
      assert.equal(compareMaps(obj, result, jsMaps), []);
      assert.ok((jsMaps.hits!.lookup(0) as bigint) > 0n && (jsMaps.hits!.lookup(1) as bigint) > 0n && (jsMaps.hits!.lookup(2) as bigint) > 0n);
    });
    // Loaded apart from the filter that uses the same sets: one kernel map each.
    const gate = loadFilter(setsModule.gate);
    try {
      withObject(result, (obj) => {
        const from = (src: string) => packet().eth().ipv4({ src, dst: '10.0.0.1' }).udp({ sport: 1, dport: 9 }).build();
        assert.is(obj.testRun('setGate', { data: from('10.99.0.1') }).verdict, 'drop');
        gate.sets.allow4!.add('10.99.0.0/16');
        assert.is(obj.testRun('setGate', { data: from('10.99.0.1') }).verdict, 'pass');
        assert.is(gate.testRun('xdp', from('10.99.0.1')).verdict, 'pass');
      }, { shareWith: gate.object });
    } finally {
      gate.close();
    }
  });

  test('one object: the filter program and the function share the set and the counters', () => {
    const result = compileFunctions(examplePath('edge-guard.ts'), { module: edgeModule });
    withObject(result, (obj) => {
      const filterProg = result.filter!.programs.find((p) => p === 'edge_xdp')!;
      assert.is(obj.testRun(filterProg, { data: web('10.1.0.1') }).verdict, 'pass');
      assert.is(obj.testRun('edgeGuard', { data: web('10.1.0.1') }).verdict, 'pass');
      // one kernel map: an address added through the object blocks it for both programs
      const blocked = obj.maps.blocked!;
      blocked.set({ prefixlen: 32, addr: '10.1.0.1' }, 1);
      assert.is(obj.testRun(filterProg, { data: web('10.1.0.1') }).verdict, 'drop');
      assert.is(obj.testRun('edgeGuard', { data: web('10.1.0.1') }).verdict, 'drop');
      assert.equal([...obj.maps.strikes!.entries()], [[0x0a010001, 1]]);
      // both counted on the same rule counter (rule 'blocked' is id 0)
      assert.is(kernelCounters(obj)[0], 2);
      // the DSL map seen is typed from its declaration: u32 -> u64
      assert.equal([...obj.maps.seen!.entries()].map(([k, v]) => [typeof k, typeof v]), [['number', 'bigint']]);
    });
  });

  test('loaded apart: the function takes over the filter\'s maps (shareWith)', () => {
    const filter = loadFilter(edge);
    try {
      const result = compileFunctions(examplePath('edge-guard.ts'), { module: edgeModule });
      withObject(result, (obj) => {
        assert.is(obj.testRun('edgeGuard', { data: web('10.1.0.2') }).verdict, 'pass');
        filter.sets.blocked!.add('10.1.0.0/30');
        assert.is(obj.testRun('edgeGuard', { data: web('10.1.0.2') }).verdict, 'drop');
        assert.is(filter.testRun('xdp', web('10.1.0.2')).verdict, 'drop');
        assert.is(filter.object.maps.seen!.entries().next().done, false, 'the function wrote seen in the filter\'s map');
      }, { shareWith: filter.object });
    } finally {
      filter.close();
    }
  });
}

test.run();
