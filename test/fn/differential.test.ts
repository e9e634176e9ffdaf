/**
 * The examples as their own oracle: each example function runs in Node
 * (runInNode) and, compiled, in the kernel (BPF_PROG_TEST_RUN), on at least
 * 1,000 generated packets (valid, malformed and truncated, biased toward the
 * ports and addresses the example cares about). Verdicts, rewritten bytes
 * and map contents must agree.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileFunctions, type FnCompileResult } from '../../codegen/fn/index.js';
import { load, type BpfObject } from '../../runtime/index.js';
import { packet } from '../../sdk/packet.js';
import { randomPacketCase, rng, type PacketBias, type SeededRng } from '../../sdk/packet-gen.js';
import { dnsGuard, MAX_ANSWER } from '../../examples/fn/dns-guard.js';
import { MAX_SYNS, synLimiter } from '../../examples/fn/syn-limiter.js';
import { BACK_PORT, FRONT_PORT, fromBackend, toBackend } from '../../examples/fn/port-redirect.js';
import { requireKernel } from '../kernel.js';
import { compareMaps, examplePath, explain, runBoth } from './harness.js';

type Case = { data: Buffer; description: string };

function generated(r: SeededRng, n: number, bias: PacketBias): Case[] {
  return Array.from({ length: n }, () => {
    const c = randomPacketCase(r, bias);
    return { data: c.data, description: c.description };
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

if (requireKernel('fn examples differential')) {
  test('DNS guard: 1,300 packets, answers of every size from a few resolvers', () => {
    const r = rng('dns-guard');
    const cases = generated(r, 1000, { ports: [53], protos: [17, 17, 6], ipv4: ['10.53.0.0/29'], ipv6: ['fd53::/125'] });
    for (let i = 0; i < 300; i++) {
      const size = r.range(0, 1400);
      const resolver = `10.53.0.${r.range(1, 6)}`;
      const b = packet().eth().ipv4({ src: resolver, dst: '10.0.0.1', ...(r.bool(0.2) ? { mf: true } : {}) }).udp({ sport: 53, dport: r.range(1024, 65535) }).payload(size);
      cases.push({ data: r.bool(0.1) ? b.truncate(r.range(14, 60)).build() : b.build(), description: `answer of ${size} bytes from ${resolver}` });
    }
    const result = compileFunctions(examplePath('dns-guard.ts'));
    withObject(result, (obj) => {
      const jsMaps = {};
      const run = runBoth(obj, dnsGuard, 'dnsGuard', cases, jsMaps, result);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.drop! > 50 && run.verdicts.pass! > 500, JSON.stringify(run.verdicts));
      assert.equal(compareMaps(obj, result, jsMaps), []);
      // the guard did what it says: every large answer it saw was dropped
      const stats = [...obj.maps.stats!.entries()].map(([, v]) => (v as bigint[]).reduce((a, b) => a + b, 0n));
      assert.ok(stats[1]! > 0n && stats[2]! > 0n, `stats ${stats}`);
      void MAX_ANSWER;
    });
  });

  test('SYN limiter: 1,400 packets, SYN bursts from a few sources of both families', () => {
    const r = rng('syn-limiter');
    const cases = generated(r, 800, { ports: [80, 443], protos: [6], ipv4: ['10.7.0.0/30'], ipv6: ['fd07::/126'] });
    const sources = ['10.7.0.1', '10.7.0.2', '10.7.0.3', 'fd07::1', 'fd07::2'];
    for (let i = 0; i < 600; i++) {
      const src = r.pick(sources);
      const flags = r.bool(0.85) ? 'syn' : r.pick(['syn,ack', 'ack', 'rst']);
      const base = packet().eth();
      const ip = src.includes(':') ? base.ipv6({ src, dst: 'fd07::ff' }) : base.ipv4({ src, dst: '10.7.0.254' });
      cases.push({ data: ip.tcp({ sport: r.range(1024, 65535), dport: 80, flags }).build(), description: `${flags} from ${src}` });
    }
    r.shuffle(cases);
    const result = compileFunctions(examplePath('syn-limiter.ts'));
    withObject(result, (obj) => {
      const jsMaps = {};
      const run = runBoth(obj, synLimiter, 'synLimiter', cases, jsMaps, result);
      assert.is(run.mismatches.length, 0, explain(run.mismatches));
      assert.ok(run.verdicts.drop! > 300, `the limiter dropped: ${JSON.stringify(run.verdicts)}`);
      // windowStart is the clock at each side's run: a moment apart, the same window
      assert.equal(compareMaps(obj, result, jsMaps, { tolerance: { sources: { windowStart: 200_000_000n } } }), []);
      const counts = [...obj.maps.sources!.values()].map((v) => (v as { syns: number }).syns);
      assert.ok(counts.every((c) => c <= MAX_SYNS), `counts ${counts}`);
    });
  });

  test('port redirect: 1,200 packets each way, rewritten with checksums fixed', () => {
    const r = rng('port-redirect');
    const cases = generated(r, 1000, { ports: [FRONT_PORT, BACK_PORT], protos: [6, 17] });
    for (let i = 0; i < 200; i++) {
      const udp = r.bool(0.4);
      const v6 = r.bool(0.3);
      const base = packet().eth();
      const ip = v6 ? base.ipv6({ src: 'fd01::2', dst: 'fd02::2' }) : base.ipv4({ src: '10.1.0.2', dst: '10.2.0.2' });
      const sport = r.pick([FRONT_PORT, BACK_PORT, r.range(1024, 65535)]);
      const dport = r.pick([FRONT_PORT, BACK_PORT, 22]);
      const b = udp ? ip.udp({ sport, dport, ...(r.bool(0.3) && !v6 ? { checksum: 0 } : {}) }) : ip.tcp({ sport, dport, flags: 'ack' });
      cases.push({ data: b.payload(r.range(0, 200)).build(), description: `${udp ? 'udp' : 'tcp'}${v6 ? '6' : '4'} ${sport} -> ${dport}` });
    }
    const result = compileFunctions(examplePath('port-redirect.ts'));
    withObject(result, (obj) => {
      const jsMaps = {};
      for (const [name, program] of [['toBackend', toBackend], ['fromBackend', fromBackend]] as const) {
        const run = runBoth(obj, program, name, cases, jsMaps, result);
        assert.is(run.mismatches.length, 0, `${name}:\n${explain(run.mismatches)}`);
        assert.ok(run.rewritten > 150, `${name} rewrote ${run.rewritten}`);
      }
      assert.equal(compareMaps(obj, result, jsMaps), []);
    });
  });
}

test.run();
