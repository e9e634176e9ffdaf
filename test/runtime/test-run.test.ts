/**
 * BPF_PROG_TEST_RUN through the real kernel: crafted packets in, verdicts
 * and rewritten packets out; the __sk_buff context of TC programs; a tail
 * call through a prog_array.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { packet } from '../../sdk/packet.js';
import { load, type SkbContext } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { fixture } from './helpers.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.1' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.2' };

const udp = (dport: number) =>
  packet().eth({ src: A.mac, dst: B.mac }).ipv4({ src: A.ip, dst: B.ip }).udp({ sport: 5000, dport }).payload('ping').build();
const tcp = (dport: number) =>
  packet().eth({ src: A.mac, dst: B.mac }).ipv4({ src: A.ip, dst: B.ip }).tcp({ sport: 5000, dport }).build();

if (requireKernel('runtime test runs')) {
  test('XDP verdicts for crafted packets: pass, drop, aborted', () => {
    const obj = load(fixture('rt_verdicts'));
    try {
      assert.is(obj.testRun('xdp_filter', { data: udp(53) }).verdict, 'pass');
      assert.is(obj.testRun('xdp_filter', { data: tcp(80) }).verdict, 'pass');
      const drop = obj.testRun('xdp_filter', { data: udp(9) });
      assert.is(drop.verdict, 'drop');
      assert.is(drop.retval, 1);
      const withOptions = packet().eth().ipv4({ src: A.ip, dst: B.ip, options: Buffer.from([1, 1, 1, 1]) }).udp({ sport: 1, dport: 2 }).build();
      assert.is(obj.testRun('xdp_filter', { data: withOptions }).verdict, 'aborted');
    } finally {
      obj.close();
    }
  });

  test('a rewritten packet comes back in data (XDP_TX with addresses and ports swapped)', () => {
    const obj = load(fixture('rt_verdicts'));
    try {
      const r = obj.testRun('xdp_filter', { data: udp(7) });
      assert.is(r.verdict, 'tx');
      const expected = packet().eth({ src: B.mac, dst: A.mac }).ipv4({ src: B.ip, dst: A.ip }).udp({ sport: 7, dport: 5000 }).payload('ping').build();
      // Swapping fields keeps both checksums valid, so the packet equals a freshly built one.
      assert.equal(r.data, expected);
      assert.ok(r.durationNs >= 0);
    } finally {
      obj.close();
    }
  });

  test('TC verdicts by name, and the __sk_buff context in and out', () => {
    const obj = load(fixture('rt_verdicts'));
    try {
      assert.is(obj.testRun('tc_filter', { data: tcp(80) }).verdict, 'ok');
      const shot = obj.testRun('tc_filter', { data: tcp(23) });
      assert.is(shot.verdict, 'shot');
      assert.is(shot.retval, 2);
      // mark 7 in the context is dropped; UDP leaves with mark 42
      assert.is(obj.testRun('tc_filter', { data: tcp(80), ctx: { mark: 7 } }).verdict, 'shot');
      const marked = obj.testRun('tc_filter', { data: udp(53), ctx: { mark: 1, priority: 3 } });
      assert.is(marked.verdict, 'ok');
      const ctx = marked.ctx as Required<SkbContext>;
      assert.is(ctx.mark, 42);
      assert.is(ctx.priority, 3);
    } finally {
      obj.close();
    }
  });

  test('repeat runs the program many times and reports the average duration', () => {
    const obj = load(fixture('rt_verdicts'));
    try {
      const r = obj.testRun(obj.programs.xdp_filter, { data: udp(53), repeat: 1000 });
      assert.is(r.verdict, 'pass');
      assert.ok(r.durationNs > 0 && r.durationNs < 1_000_000, `duration ${r.durationNs} ns`);
    } finally {
      obj.close();
    }
  });

  test('bad test-run input is a clear error', () => {
    const obj = load(fixture('rt_verdicts'));
    try {
      const tooShort = (() => {
        try {
          obj.testRun('tc_filter', { data: Buffer.alloc(4) });
        } catch (e) {
          return e as TsbpfError;
        }
        return undefined;
      })();
      assert.instance(tooShort, TsbpfError);
      assert.is(tooShort!.code, 'INVALID_ARGUMENT');
      // two programs: which one must be said
      assert.throws(() => obj.testRun({ data: udp(1) }), (e: unknown) => e instanceof TsbpfError && e.code === 'PROGRAM_NOT_FOUND');
    } finally {
      obj.close();
    }
  });

  test('a tail call through a prog_array reaches the second program', () => {
    const obj = load(fixture('rt_tailcall'));
    try {
      const data = tcp(80);
      // slot 0 empty: the tail call falls through and 'entry' returns OK
      assert.is(obj.testRun('entry', { data }).verdict, 'ok');
      const jump = obj.maps.jump!;
      jump.setProgram(0, obj.programs.second!);
      assert.is(jump.get(0), obj.programs.second!.id); // the kernel reports the program id
      assert.is(obj.testRun('entry', { data }).verdict, 'shot');
      assert.is(obj.testRun('entry', { data }).verdict, 'shot');
      assert.is(obj.maps.second_runs!.get(0), 2n);
      jump.setProgram(0, null);
      assert.is(obj.testRun('entry', { data }).verdict, 'ok');
      assert.throws(() => jump.setProgram(9, obj.programs.second!), /outside prog_array/);
      assert.throws(() => obj.maps.second_runs!.setProgram(0, obj.programs.second!), /needs a prog_array/);
    } finally {
      obj.close();
    }
  });
}

test.run();
