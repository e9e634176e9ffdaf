/**
 * Lookup tables: Maglev balance and disruption (replacing one backend of N
 * moves at most 1.2/N of flows), weights, and the same measurement through
 * the kernel: thousands of first packets run through the services program
 * before and after a backend is replaced, counting how many flows changed
 * backend.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { Rng } from '../../sdk/generate.js';
import { isPrime, maglevTable, tableDisruption, weightedTable } from '../../sdk/maglev.js';
import { packet } from '../../sdk/packet.js';
import { parsePacket, formatIpv4 } from '../../sdk/parse.js';
import { serviceDef, services } from '../../sdk/services.js';
import { loadServices } from '../../runtime/services.js';

const names = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `10.1.${(i + from) >> 8}.${(i + from) & 0xff}:8080`);
const counts = (t: Int32Array, n: number) => {
  const c = new Array<number>(n).fill(0);
  for (const x of t) c[x]!++;
  return c;
};

test('Maglev fills every slot and balances equal backends to within one slot', () => {
  for (const [n, m] of [
    [3, 251],
    [10, 1021],
    [37, 4099],
  ] as const) {
    const t = maglevTable(
      names(n).map((name) => ({ name, weight: 1 })),
      m,
    );
    assert.ok(t.every((x) => x >= 0 && x < n));
    const c = counts(t, n);
    assert.ok(Math.max(...c) - Math.min(...c) <= 1, `n=${n} m=${m}: ${Math.min(...c)}..${Math.max(...c)}`);
  }
});

test('Maglev: replacing, removing or adding one backend of N moves at most 1.2/N of flows', () => {
  const worst: string[] = [];
  for (const n of [3, 5, 10, 20, 50]) {
    for (const m of [1021, 4099]) {
      if (m < 20 * n) continue;
      for (let trial = 0; trial < 5; trial++) {
        const before = names(n, trial * 100);
        const t0 = maglevTable(before.map((name) => ({ name, weight: 1 })), m);
        const victim = trial % n;
        const replaced = before.map((b, i) => (i === victim ? `10.9.9.${trial}:8080` : b));
        const removed = before.filter((_, i) => i !== victim);
        const added = [...before, `10.9.8.${trial}:8080`];
        const cases: Array<[string, string[], number]> = [
          ['replace', replaced, n],
          ['remove', removed, n],
          ['add', added, n + 1],
        ];
        for (const [what, after, denom] of cases) {
          const t1 = maglevTable(after.map((name) => ({ name, weight: 1 })), m, { table: t0, names: before });
          const d = tableDisruption(t0, before, t1, after);
          worst.push(`${what} n=${n} m=${m}: ${(d * n).toFixed(2)}/N`);
          assert.ok(d <= 1.2 / Math.min(n, denom) + 1e-9, `${what} one of ${n} (M=${m}) moved ${(d * 100).toFixed(1)}% of flows, more than 1.2/N`);
        }
      }
    }
  }
});

test('weights: Maglev and the random table give slots in proportion to weight', () => {
  const m = 1021;
  const bs = [
    { name: 'a', weight: 1 },
    { name: 'b', weight: 2 },
    { name: 'c', weight: 5 },
    { name: 'd', weight: 0 },
  ];
  for (const t of [maglevTable(bs, m), weightedTable(bs, m)]) {
    const c = counts(t, 4);
    assert.is(c[3], 0, 'weight 0 takes no slots');
    assert.ok(Math.abs(c[0]! / m - 1 / 8) < 0.01 && Math.abs(c[1]! / m - 2 / 8) < 0.01 && Math.abs(c[2]! / m - 5 / 8) < 0.01, JSON.stringify(c));
  }
  assert.ok(maglevTable([], m).every((x) => x === -1), 'no backend: every slot empty');
  assert.ok(isPrime(1021) && !isPrime(1024));
  assert.throws(() => maglevTable(bs, 1024), /prime/);
});

if (requireKernel('stateful: Maglev through the kernel')) {
  test('through the kernel: replacing one of 10 backends moves about 1/10 of 4000 flows (at most 1.2/N)', () => {
    const n = 10;
    const backends = Array.from({ length: n }, (_, i) => ({ addr: `10.1.0.${i + 1}`, port: 8080 }));
    const def = services('mgv', { hashSeed: 99 }, (s) => s.service('web', { vip: '10.96.0.1', port: 80, backends }));
    const lb = loadServices(def);
    try {
      const rng = new Rng(7);
      const syns = Array.from({ length: 4000 }, () =>
        packet()
          .ipv4({ src: `10.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}`, dst: '10.96.0.1' })
          .tcp({ sport: rng.int(1024, 65535), dport: 80, flags: 'S' })
          .build(),
      );
      const chosen = () => {
        lb.ctFlush();
        return syns.map((p) => {
          const r = lb.testRun('tc-ingress', p);
          return formatIpv4(parsePacket(r.data).ipv4!.dst);
        });
      };
      const before = chosen();
      const spreadBefore = new Set(before);
      assert.is(spreadBefore.size, n, 'every backend is chosen');
      // Replace backend 3 with a new address: one service update, no reload.
      lb.upsertService(serviceDef('web', { vip: '10.96.0.1', port: 80, backends: backends.map((b, i) => (i === 3 ? { addr: '10.1.0.99', port: 8080 } : b)) }));
      const after = chosen();
      const moved = before.filter((b, i) => b !== after[i]).length / before.length;
      assert.ok(!after.includes('10.1.0.4'), 'the replaced backend gets nothing');
      assert.ok(moved <= 1.2 / n, `moved ${(moved * 100).toFixed(1)}% of flows (limit ${(120 / n).toFixed(0)}%)`);
      assert.ok(moved >= 0.05, `moved ${(moved * 100).toFixed(1)}%: the new backend took a share`);
    } finally {
      lb.close();
    }
  });
}

test.run();
