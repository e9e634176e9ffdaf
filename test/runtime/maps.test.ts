/**
 * Loading objects and using their maps through the real kernel: programs
 * and maps as the kernel reports them, maps typed from BTF, every map
 * operation, per-CPU values, batches (and their fallback), raw access.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { be16, ipv4, struct, u32, u8 } from '../../sdk/layout.js';
import { load, possibleCpus } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { fixture, fixtureBytes } from './helpers.js';

function thrown(fn: () => unknown): TsbpfError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError, `expected a TsbpfError, got ${String(e)}`);
    return e as TsbpfError;
  }
  throw new Error("expected an error");
}

if (requireKernel('runtime maps')) {
  test('load lists programs with name, type, section, id and tag, and maps with their shapes', () => {
    const obj = load(fixture('rt_counter'));
    try {
      const tc = obj.programs.tc_count!;
      assert.is(tc.type, 'sched_cls');
      assert.is(tc.section, 'tc');
      assert.ok(tc.id > 0);
      assert.match(tc.tag, /^[0-9a-f]{16}$/);
      assert.equal(tc.hooks, ['tc-ingress', 'tc-egress']);
      assert.is(obj.programs.xdp_count!.type, 'xdp');
      const m = obj.maps.by_source!;
      assert.is(m.type, 'hash');
      assert.is(m.keySize, 4);
      assert.is(m.valueSize, 8);
      assert.is(m.maxEntries, 64);
      assert.ok(m.id > 0);
    } finally {
      obj.close();
    }
  });

  test('maps are typed from BTF: a struct value, an ipv4 key, a u64 value', () => {
    const obj = load(fixture('rt_counter'));
    try {
      assert.equal(obj.maps.tc_stats!.get(0), { packets: 0n, bytes: 0n });
      const bySource = obj.map<string, bigint>('by_source');
      bySource.set('10.1.2.3', 5n);
      assert.is(bySource.get('10.1.2.3'), 5n);
      assert.equal([...bySource], [['10.1.2.3', 5n]]);
      // the key is the address in network order, as in iphdr.saddr
      assert.equal([...bySource.raw.keys()], [Buffer.from([10, 1, 2, 3])]);
    } finally {
      obj.close();
    }
  });

  test('get/set/delete/has with update flags, and iteration over a struct-keyed hash', () => {
    const obj = load(fixture('rt_maps'));
    try {
      type Key = { saddr: string; daddr: string; sport: number; dport: number; protocol: number };
      type Stats = { packets: bigint; last_len: number; flags: Buffer };
      const flows = obj.map<Key, Stats>('flows');
      const k1: Key = { saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 80, protocol: 6 };
      const k2: Key = { ...k1, dport: 443 };
      const v = (n: bigint): Stats => ({ packets: n, last_len: 60, flags: Buffer.from([1, 2, 3]) });
      assert.is(flows.get(k1), undefined);
      assert.not.ok(flows.has(k1));
      flows.set(k1, v(1n));
      flows.set(k2, v(2n), 'noexist');
      assert.equal(flows.get(k1), v(1n));
      assert.ok(flows.has(k2));
      // 'noexist' on a present key and 'exist' on an absent one are refused by the kernel
      assert.is(thrown(() => flows.set(k1, v(9n), 'noexist')).code, 'MAP_OP_FAILED');
      assert.is(thrown(() => flows.set({ ...k1, sport: 1 }, v(9n), 'exist')).code, 'MAP_OP_FAILED');
      flows.set(k1, v(7n), 'exist');
      assert.is(flows.get(k1)!.packets, 7n);
      const seen = [...flows.keys()].map((k) => k.dport).sort((a, b) => a - b);
      assert.equal(seen, [80, 443]);
      assert.is([...flows.values()].length, 2);
      assert.ok(flows.delete(k1));
      assert.not.ok(flows.delete(k1));
      assert.is(flows.clear(), 1);
      assert.is([...flows].length, 0);
    } finally {
      obj.close();
    }
  });

  test('per-CPU maps take and return one value per possible CPU', () => {
    const obj = load(fixture('rt_maps'));
    try {
      const cpus = possibleCpus();
      const perCpu = obj.map<number, number[]>('per_cpu');
      assert.ok(perCpu.perCpu);
      assert.is(perCpu.valueBytes, 8 * cpus); // 4-byte values rounded up to 8 per CPU
      const values = Array.from({ length: cpus }, (_, i) => i * 10 + 1);
      perCpu.set(3, values);
      assert.equal(perCpu.get(3), values);
      assert.is(thrown(() => perCpu.set(4, [1])).code, 'LAYOUT_INVALID');
    } finally {
      obj.close();
    }
  });

  test('batch update and lookup, with a fallback where the map type has no batch ops', () => {
    const obj = load(fixture('rt_maps'));
    try {
      const flows = obj.map<{ saddr: string; daddr: string; sport: number; dport: number; protocol: number }, { packets: bigint; last_len: number; flags: Buffer }>('flows');
      const entries = Array.from({ length: 300 }, (_, i) => [
        { saddr: `10.0.${i >> 8}.${i & 255}`, daddr: '10.9.9.9', sport: 1000 + i, dport: 53, protocol: 17 },
        { packets: BigInt(i), last_len: i, flags: Buffer.from([0, 0, i & 255]) },
      ] as const);
      assert.is(flows.updateBatch(entries), 300);
      const back = flows.lookupBatch({ chunk: 64 });
      assert.is(back.length, 300);
      const byPort = new Map(back.map(([k, v]) => [k.sport, v.packets]));
      assert.is(byPort.get(1000 + 299), 299n);

      // LPM tries have no batch ops: the same calls still work, one element at a time.
      const prefixes = obj.map<{ prefixlen: number; addr: string }, number>('prefixes');
      assert.is(prefixes.updateBatch([[{ prefixlen: 8, addr: '10.0.0.0' }, 1], [{ prefixlen: 16, addr: '10.1.0.0' }, 2]]), 2);
      assert.is(prefixes.get({ prefixlen: 32, addr: '10.1.2.3' }), 2); // longest prefix match
      assert.is(prefixes.get({ prefixlen: 32, addr: '10.2.0.1' }), 1);
      assert.is(prefixes.lookupBatch().length, 2);

      // Arrays: batch ops over struct values.
      const slots = obj.map<number, { packets: bigint; last_len: number; flags: Buffer }>('slots');
      slots.updateBatch([[2, { packets: 5n, last_len: 1, flags: Buffer.alloc(3) }]]);
      const all = slots.lookupBatch();
      assert.is(all.length, 8);
      assert.is(all[2]![1].packets, 5n);
    } finally {
      obj.close();
    }
  });

  test('raw Buffer access is always there, and a wrong key size is refused before any syscall', () => {
    const obj = load(fixture('rt_maps'));
    try {
      const slots = obj.maps.slots!;
      const key = Buffer.alloc(4);
      key.writeUInt32LE(1);
      const value = Buffer.alloc(16, 0); // u64 + u32 + u8[3], padded to 8
      value.writeBigUInt64LE(9n, 0);
      slots.raw.set(key, value);
      assert.equal(slots.raw.get(key), value);
      const e = thrown(() => slots.raw.get(Buffer.alloc(3)));
      assert.is(e.code, 'MAP_KEY_SIZE');
      assert.match(e.message, /'slots'/);
      assert.match(e.message, /3 bytes/);
      assert.match(e.message, /4 bytes/);
      assert.is(thrown(() => slots.raw.set(key, Buffer.alloc(5))).code, 'MAP_VALUE_SIZE');
    } finally {
      obj.close();
    }
  });

  test('layouts given at load win over BTF, and a layout of the wrong size is refused at load', () => {
    const path = fixture('rt_maps');
    const key = struct({ saddr: ipv4, daddr: ipv4, sport: be16, dport: be16, protocol: u8 });
    const obj = load(path, { layouts: { per_cpu: { key: u32 } , flows: { key } } });
    try {
      assert.is(obj.maps.flows!.keyLayout, key);
    } finally {
      obj.close();
    }
    const e = thrown(() => load(path, { layouts: { flows: { key: u32 } } }));
    assert.is(e.code, 'MAP_KEY_SIZE');
    assert.match(e.message, /'flows'/);
    assert.match(e.message, /16 bytes/);
    assert.match(e.message, /4/);
    assert.is(thrown(() => load(path, { layouts: { nosuch: { key: u32 } } })).code, 'MAP_NOT_FOUND');
  });

  test('an object loads from a Buffer too, and maxEntries resizes a map before creation', () => {
    const obj = load(fixtureBytes('rt_maps'), { name: 'from_mem', maxEntries: { flows: 77 } });
    try {
      assert.is(obj.name, 'from_mem');
      assert.is(obj.maps.flows!.maxEntries, 77);
    } finally {
      obj.close();
    }
  });

  test('a missing object file, and bytes that are not an object, give clear errors', () => {
    const e = thrown(() => load('/nonexistent/prog.o'));
    assert.is(e.code, 'OBJECT_NOT_FOUND');
    assert.match(e.message, /\/nonexistent\/prog\.o/);
    const bad = thrown(() => load(Buffer.from('not an ELF object at all')));
    assert.is(bad.code, 'OBJECT_INVALID');
  });

  test('a closed object refuses further use', () => {
    const obj = load(fixture('rt_counter'));
    const map = obj.maps.tc_stats!;
    obj.close();
    obj.close(); // twice is fine
    assert.is(thrown(() => map.get(0)).code, 'CLOSED');
    assert.is(thrown(() => obj.program('tc_count')).code, 'CLOSED');
  });
}

test.run();
