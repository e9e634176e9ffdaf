/**
 * Failures a user meets, each a clear TsbpfError that changes nothing: a
 * program the verifier rejects (named, with the reason and the whole log),
 * and no file descriptor left behind by any of them, nor by many
 * open/load/attach/close cycles.
 */
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError, VerifierError } from '../../sdk/errors.js';
import { packet } from '../../sdk/packet.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { createPair, ping, withTopology } from '../net/topology.js';
import { bpffsDir, fdCount, fixture, fixtureBytes, hasClsact, tcFilters, xdpProgId } from './helpers.js';

function programsNamed(name: string): number {
  const list = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'list'], { encoding: 'utf8' })) as Array<{ name?: string }>;
  return list.filter((p) => p.name === name).length;
}

if (requireKernel('runtime errors and leaks')) {
  test('a program the verifier rejects: the error names it, gives the reason, carries the log', () => {
    const fds = fdCount();
    const loadedBefore = programsNamed('fine');
    let err: unknown;
    try {
      load(fixture('rt_rejected'));
    } catch (e) {
      err = e;
    }
    assert.instance(err, VerifierError);
    const v = err as VerifierError;
    assert.is(v.code, 'VERIFIER_REJECTED');
    assert.is(v.program, 'reads_past_end');
    assert.match(v.message, /reads_past_end/);
    assert.match(v.message, /invalid access to packet/);
    assert.match(v.log, /processed \d+ insns/);
    assert.ok(v.errno === 13 || v.errno === 22, `errno ${v.errno}`);
    // 'fine' was loaded before 'reads_past_end' failed: it is gone again.
    assert.is(programsNamed('fine'), loadedBefore);
    assert.is(fdCount(), fds);
  });

  test('logLevel 2 gives the verbose verifier log', () => {
    let err: unknown;
    try {
      load(fixture('rt_rejected'), { logLevel: 2 });
    } catch (e) {
      err = e;
    }
    assert.instance(err, VerifierError);
    assert.is((err as VerifierError).program, 'reads_past_end');
    assert.match((err as VerifierError).log, /invalid access to packet/);
  });

  test('no fd is leaked by load/attach/test-run/ring-buffer/pin/close cycles, nor by failures', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const cycle = (i: number) => {
        const obj = load(i % 2 ? fixture('rt_counter') : fixtureBytes('rt_counter'));
        const events = load(fixture('rt_events'));
        try {
          obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
          obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic' });
          obj.testRun('xdp_count', { data: packet().eth().ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).udp({ sport: 1, dport: 2 }).build() });
          obj.maps.by_source!.lookupBatch();
          const rb = events.ringBuffer('events', () => undefined);
          rb.consume();
          const dir = bpffsDir('leak');
          obj.pin(dir);
          obj.unpin();
          try {
            load(fixture('rt_rejected'));
          } catch {
            /* expected */
          }
          try {
            obj.attach({ program: 'tc_count', hook: 'tc-egress', ifname: 'nope0', netns: b.ns });
          } catch {
            /* expected */
          }
          try {
            obj.attach({ program: 'tc_count', hook: 'tc-egress', ifname: b.ifname, netns: 'tsbpf-no-such-netns' });
          } catch {
            /* expected */
          }
        } finally {
          events.close();
          obj.close();
        }
      };
      cycle(0); // warm-up: the first use may open long-lived fds (libuv, libbpf probes)
      const before = fdCount();
      for (let i = 1; i <= 6; i++) cycle(i);
      assert.is(fdCount(), before);
      assert.is(ping(a.ns, b.ipv4, 1), 1);
      assert.is(tcFilters(b.ns, b.ifname, 'ingress'), '');
      assert.not.ok(hasClsact(b.ns, b.ifname));
      assert.is(xdpProgId(b.ns, b.ifname), 0);
    });
  });

  test('errors carry errno and a hint where there is one', () => {
    const obj = load(fixture('rt_counter'));
    let err: unknown;
    try {
      obj.attach({ hook: 'tc-ingress', program: 'tc_count', ifname: 'eth0', netns: 'tsbpf-no-such-netns' });
    } catch (e) {
      err = e;
    } finally {
      obj.close();
    }
    assert.instance(err, TsbpfError);
    const e = err as TsbpfError;
    assert.is(e.code, 'NETNS_NOT_FOUND');
    assert.is(e.errno, 2);
    assert.match(e.hint ?? '', /ip netns add/);
    assert.match(e.describe(), /hint:/);
  });
}

test.run();
