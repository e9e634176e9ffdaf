/**
 * Ring buffers: records written by a program reach a JS callback from the
 * event loop, in order, decoded with the struct from the object's BTF.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { packet } from '../../sdk/packet.js';
import { bytes, struct, u64 } from '../../sdk/layout.js';
import { load, ringBuffer } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { createPair, ping, withTopology } from '../net/topology.js';
import { fixture } from './helpers.js';

interface Event {
  seq: bigint;
  saddr: string;
  daddr: string;
  len: number;
  protocol: number;
  src_mac: string;
}

/** Resolves once `n` items are in `list`, or rejects after `ms`. */
function waitFor<T>(list: T[], n: number, ms = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (list.length >= n) resolve();
      else if (Date.now() - started > ms) reject(new Error(`only ${list.length} of ${n} events after ${ms} ms`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

if (requireKernel('runtime ring buffers')) {
  test('events arrive in order on the event loop, with typed fields from BTF', async () => {
    const obj = load(fixture('rt_events'));
    const events: Event[] = [];
    const rb = obj.ringBuffer<Event>('events', (e) => events.push(e), { type: 'event' });
    try {
      for (let i = 1; i <= 20; i++) {
        const data = packet()
          .eth({ src: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}` })
          .ipv4({ src: `10.1.0.${i}`, dst: '10.2.0.1' })
          .udp({ sport: 1000, dport: 2000 })
          .payload(i)
          .build();
        obj.testRun({ data });
      }
      // Not delivered synchronously: the event loop brings them.
      assert.is(events.length, 0);
      await waitFor(events, 20);
      assert.equal(
        events.map((e) => e.seq),
        Array.from({ length: 20 }, (_, i) => BigInt(i + 1)),
      );
      const e5 = events[4]!;
      assert.is(e5.saddr, '10.1.0.5');
      assert.is(e5.daddr, '10.2.0.1');
      assert.is(e5.protocol, 17);
      assert.is(e5.len, 14 + 20 + 8 + 5);
      assert.is(e5.src_mac, '02:00:00:00:00:05');
    } finally {
      rb.close();
      obj.close();
    }
  });

  test('events from real traffic, a given layout, consume() and close()', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const obj = load(fixture('rt_events'));
      try {
        const seen: Array<{ seq: bigint; rest: Buffer }> = [];
        const layout = struct({ seq: u64, rest: bytes(24) });
        const rb = ringBuffer(obj.maps.events!, (e: { seq: bigint; rest: Buffer }, raw) => {
          assert.is(raw.length, 32);
          seen.push(e);
        }, { layout });
        obj.attach({ hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
        assert.is(ping(a.ns, b.ipv4, 3), 3);
        // consume() delivers what is there now, synchronously
        rb.consume();
        assert.ok(seen.length >= 3, `${seen.length} events`);
        assert.equal(
          seen.map((e) => e.seq),
          seen.map((_, i) => BigInt(i + 1)),
        );
        rb.close();
        assert.ok(rb.closed);
        assert.throws(() => rb.consume(), (e: unknown) => e instanceof TsbpfError && e.code === 'CLOSED');
      } finally {
        obj.close();
      }
    });
  });

  test('closing the object closes its ring buffers; a ringbuf map has no keys', () => {
    const obj = load(fixture('rt_events'));
    const rb = obj.ringBuffer('events', () => undefined);
    const events = obj.maps.events!;
    try {
      assert.throws(() => events.get(0), (e: unknown) => e instanceof TsbpfError && /ringBuffer/.test(e.hint ?? ''));
      assert.throws(() => obj.ringBuffer('next_seq', () => undefined), /not a ringbuf/);
    } finally {
      obj.close();
    }
    assert.ok(rb.closed);
  });
}

test.run();
