/**
 * The lowering against the kernel: fixture programs that stress arithmetic,
 * packet writes, tail calls and redirects run on the same generated packets
 * in Node and in the kernel (BPF_PROG_TEST_RUN), and must agree on every
 * verdict, every byte, every event and every map entry.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { compileFunctions, type FnCompileResult } from '../../codegen/fn/index.js';
import { load, type BpfObject } from '../../runtime/index.js';
import { createMemoryMaps, runInNode } from '../../sdk/fn/index.js';
import { packet } from '../../sdk/packet.js';
import { parsePacket } from '../../sdk/parse.js';
import { randomPacketCase, rng } from '../../sdk/packet-gen.js';
import { requireKernel } from '../kernel.js';
import { checkFrame } from '../packet/verify.js';
import { semantics } from './fixtures/semantics.js';
import { rewriteTc, rewriteXdp } from './fixtures/rewrite.js';
import { rewrite6Tc, rewrite6Xdp } from './fixtures/rewrite6.js';
import { entry, onTcp, onUdp, tailMaps } from './fixtures/tailcall.js';
import { miscTc, miscXdp } from './fixtures/misc.js';
import { compareMaps, explain, repoRoot, runBoth } from './harness.js';

const fixture = (name: string) => path.join(repoRoot, 'test/fn/fixtures', name);

function packets(seed: string, n: number) {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const c = randomPacketCase(r, { ports: [22, 53, 80], ipv6: ['fd00::/126'] });
    return { data: c.data, description: c.description, mark: i * 2654435761 >>> 0, corruption: c.corruption };
  });
}

function withObject<T>(result: FnCompileResult, fn: (obj: BpfObject) => T): T {
  const obj = load(result.object!, { layouts: result.layouts });
  try {
    return fn(obj);
  } finally {
    obj.close();
  }
}

if (requireKernel('fn lowering')) {
  test('arithmetic, loops, helpers and maps: the same events for 1,200 packets', () => {
    const r = compileFunctions(fixture('semantics.ts'));
    withObject(r, (obj) => {
      const jsMaps = {};
      const run = runBoth(obj, semantics, 'semantics', packets('semantics', 1200), jsMaps, r);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.pass! > 100 && run.verdicts.drop! > 10 && run.verdicts.tx! > 10, JSON.stringify(run.verdicts));
      assert.equal(compareMaps(obj, r, jsMaps), []);
    });
  });

  test('every writable field at XDP and TC: the same bytes, and valid checksums stay valid', () => {
    const r = compileFunctions(fixture('rewrite.ts'));
    withObject(r, (obj) => {
      for (const [name, program] of [['rewriteXdp', rewriteXdp], ['rewriteTc', rewriteTc]] as const) {
        const pk = packets(`rewrite-${name}`, 1200);
        const run = runBoth(obj, program, name, pk, {}, r);
        assert.is(run.mismatches.length, 0, `${name}:\n${explain(run.mismatches)}`);
        assert.ok(run.rewritten > 1000, `${name} rewrote ${run.rewritten}`);
        // Independently of both: a frame whose checksums held still holds after the rewrite.
        let checked = 0;
        for (const p of pk) {
          if (p.corruption === 'cross-protocol' || checkFrame(p.data).problems.length > 0) continue;
          const out = runInNode(program, p.data).data;
          assert.equal(checkFrame(out).problems, [], `${name} broke ${p.description}`);
          checked++;
        }
        assert.ok(checked > 700, `checked ${checked}`);
      }
    });
  });

  test('IPv6 addresses and VLAN tags written at XDP and TC: the same bytes, checksums verified independently', () => {
    const r = compileFunctions(fixture('rewrite6.ts'));
    const rr = rng('rewrite6');
    const pk = packets('rewrite6', 1000);
    // Plus valid frames of each kind the writes touch: TCP, UDP (with and without a checksum), ICMPv6, tagged and double-tagged.
    for (let i = 0; i < 300; i++) {
      const tags = rr.pick([0, 1, 2]);
      let b = packet().eth();
      for (let t = 0; t < tags; t++) b = b.vlan({ id: rr.range(0, 4095), pcp: rr.range(0, 7), dei: rr.bool(0.5) });
      const v4 = rr.bool(0.2);
      const ip = v4 ? b.ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }) : b.ipv6({ src: `fd00::${rr.range(1, 0xffff).toString(16)}`, dst: rr.bool(0.1) ? 'fd00:0:0:7::42' : 'fd01::9' });
      const kind = rr.pick(['tcp', 'udp', 'udp0', 'icmp6']);
      const l4 =
        kind === 'tcp' ? ip.tcp({ sport: 1000, dport: 80, flags: 'ack' })
        : kind === 'udp' ? ip.udp({ sport: 53, dport: 5353 })
        : kind === 'udp0' || v4 ? ip.udp({ sport: 53, dport: 5353, ...(v4 ? { checksum: 0 } : {}) })
        : b.ipv6({ src: 'fd00::5', dst: 'fd01::9' }).icmpv6({ type: 128, code: 0 });
      pk.push({ data: l4.payload(rr.range(0, 64)).build(), description: `${tags} tags, ${kind}`, mark: 0, corruption: undefined });
    }
    withObject(r, (obj) => {
      for (const [name, program] of [['rewrite6Xdp', rewrite6Xdp], ['rewrite6Tc', rewrite6Tc]] as const) {
        const run = runBoth(obj, program, name, pk, {}, r);
        assert.is(run.mismatches.length, 0, `${name}:\n${explain(run.mismatches)}`);
        assert.ok(run.rewritten > 500, `${name} rewrote ${run.rewritten}`);
        let checked = 0;
        let v6 = 0;
        let tagged = 0;
        for (const p of pk) {
          if (p.corruption === 'cross-protocol' || checkFrame(p.data).problems.length > 0) continue;
          // An L4 header past the parser's reach (more than 6 IPv6 extension headers) has a checksum no program can fix.
          const view = parsePacket(p.data);
          if (view.ipv6 && !view.tcp && !view.udp && !view.icmpv6 && ['tcp', 'udp', 'icmpv6'].some((l) => checkFrame(p.data).layers.includes(l))) continue;
          const out = runInNode(program, p.data).data;
          assert.equal(checkFrame(out).problems, [], `${name} broke ${p.description}`);
          checked++;
          const layers = checkFrame(p.data).layers;
          if (layers.includes('vlan') && !out.subarray(14, 16).equals(p.data.subarray(14, 16))) tagged++;
          if (layers.includes('ipv6') && !out.subarray(0, p.data.length).equals(p.data)) v6++;
        }
        assert.ok(checked > 700 && v6 > 200 && tagged > 100, `checked ${checked}, IPv6 ${v6}, tagged ${tagged}`);
      }
    });
  });

  test('less common forms (aliases, verdict variables, nested loops, ??, VLAN, IPv6 constants, redirect at TC)', () => {
    const r = compileFunctions(fixture('misc.ts'));
    withObject(r, (obj) => {
      const jsMaps = {};
      const pk = packets('misc', 800);
      const run = runBoth(obj, miscXdp, 'miscXdp', pk, jsMaps, r);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.equal(compareMaps(obj, r, jsMaps), []);
      const tc = runBoth(obj, miscTc, 'miscTc', pk, {}, r);
      assert.is(tc.mismatches.length, 0, explain(tc.mismatches));
      assert.ok(tc.verdicts.redirect! > 0 && tc.verdicts.shot! > 0, JSON.stringify(tc.verdicts));
    });
  });

  test('tail calls land in the same programs; an empty slot falls through; redirect returns XDP_REDIRECT', () => {
    const r = compileFunctions(fixture('tailcall.ts'));
    withObject(r, (obj) => {
      obj.maps.jump!.setProgram(0, obj.program('onTcp'));
      obj.maps.jump!.setProgram(1, obj.program('onUdp'));
      const jsMaps = createMemoryMaps(tailMaps);
      jsMaps.jump!.setProgram(0, onTcp);
      jsMaps.jump!.setProgram(1, onUdp);
      const pk = packets('tailcall', 600);
      pk.push({ data: packet().eth().ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 9 }).build(), description: 'udp to 9', mark: 0, corruption: undefined });
      const run = runBoth(obj, entry, 'entry', pk, jsMaps, r);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.redirect === 1 && run.verdicts.aborted! > 10 && run.verdicts.tx! > 10 && run.verdicts.drop! > 0, JSON.stringify(run.verdicts));
      assert.equal(compareMaps(obj, r, jsMaps), []);
      const k = obj.testRun('entry', { data: pk[pk.length - 1]!.data });
      assert.is(k.verdict, 'redirect');
    });
  });
}

test.run();
