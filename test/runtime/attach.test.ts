/**
 * Attaching at TC and XDP with real traffic between two network namespaces
 * the test makes: counters see the pings; netns by name or /proc path, the
 * Node thread never moves; bad input changes nothing; detach and close leave
 * no filter, qdisc or XDP program behind; a replace under a ping flood loses
 * no packet.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { readlinkSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { load, type BpfObject } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';
import { createPair, nsSpawn, ping, withTopology } from '../net/topology.js';
import { fixture, hasClsact, repoRoot, tcFilters, xdpProgId } from './helpers.js';

function thrown(fn: () => unknown): TsbpfError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError, `expected a TsbpfError, got ${String(e)}`);
    return e as TsbpfError;
  }
  throw new Error('expected an error');
}

function sumOf(values: bigint[] | undefined): bigint {
  return (values ?? []).reduce((a, b) => a + b, 0n);
}

/** Closes every object even if one throws. */
function closeAll(...objs: Array<BpfObject | undefined>): void {
  for (const o of objs) o?.close();
}

if (requireKernel('runtime attach')) {
  test('a TC program in a test netns counts the pings it sees, and detach removes filter and qdisc', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const obj = load(fixture('rt_counter'));
      try {
        const att = obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
        assert.ok(att.priority! > 0 && att.handle! > 0);
        assert.match(tcFilters(b.ns, b.ifname, 'ingress'), /tc_count/);
        assert.is(ping(a.ns, b.ipv4, 5), 5);
        assert.is(obj.map<string, bigint>('by_source').get(a.ipv4), 5n);
        assert.ok((obj.maps.tc_stats!.get(0) as { packets: bigint }).packets >= 5n);
        att.detach();
        assert.is(tcFilters(b.ns, b.ifname, 'ingress'), '');
        assert.not.ok(hasClsact(b.ns, b.ifname), 'the clsact qdisc this process created is gone');
        assert.is(ping(a.ns, b.ipv4, 2), 2);
        assert.is(obj.map<string, bigint>('by_source').get(a.ipv4), 5n, 'detached: no more counting');
      } finally {
        obj.close();
      }
    });
  });

  test('an XDP program counts pings in generic and driver mode', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const obj = load(fixture('rt_counter'));
      try {
        for (const mode of ['generic', 'driver'] as const) {
          obj.maps.by_source!.clear();
          const att = obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: b.ifname, netns: b.ns, mode });
          assert.is(att.mode, mode);
          assert.is(xdpProgId(b.ns, b.ifname), obj.programs.xdp_count!.id);
          assert.is(ping(a.ns, b.ipv4, 4), 4);
          assert.is(obj.map<string, bigint>('by_source').get(a.ipv4), 4n, `${mode} mode counts`);
          att.detach();
          assert.is(xdpProgId(b.ns, b.ifname), 0);
        }
        assert.ok(sumOf(obj.map<number, bigint[]>('xdp_packets').get(0)) >= 8n, 'per-CPU counts add up');
      } finally {
        obj.close();
      }
    });
  });

  test('a netns given as /proc/PID/ns/net works, and the Node thread never leaves its own netns', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const sleeper = nsSpawn(b.ns, 'sleep', ['10']);
      const obj = load(fixture('rt_counter'));
      const before = readlinkSync('/proc/self/ns/net');
      try {
        const nsPath = `/proc/${sleeper.pid}/ns/net`;
        const target = statSync(`/var/run/netns/${b.ns}`).ino;
        for (let i = 0; i < 100 && statSync(nsPath).ino !== target; i++) await sleep(10);
        const att = obj.attach({ program: 'tc_count', hook: 'tc-egress', ifname: b.ifname, netns: nsPath });
        assert.is(readlinkSync('/proc/self/ns/net'), before);
        assert.is(ping(a.ns, b.ipv4, 3), 3);
        // egress of B sees the replies, from B's address
        assert.is(obj.map<string, bigint>('by_source').get(b.ipv4), 3n);
        att.detach();
        assert.is(tcFilters(b.ns, b.ifname, 'egress'), '');
      } finally {
        sleeper.kill();
        obj.close();
      }
    });
  });

  test('bad input is a clear error and leaves nothing attached', async () => {
    await withTopology(createPair, ({ b }) => {
      const obj = load(fixture('rt_counter'));
      try {
        const noIface = thrown(() => obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: 'nope0', netns: b.ns }));
        assert.is(noIface.code, 'IFACE_NOT_FOUND');
        assert.match(noIface.message, /'nope0'/);
        assert.match(noIface.message, new RegExp(b.ns));
        assert.is(thrown(() => obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: 'nope0', netns: b.ns })).code, 'IFACE_NOT_FOUND');

        const noNs = thrown(() => obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: 'eth0', netns: 'tsbpf-no-such-netns' }));
        assert.is(noNs.code, 'NETNS_NOT_FOUND');
        assert.match(noNs.message, /tsbpf-no-such-netns/);
        assert.is(thrown(() => obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: 'eth0', netns: '/proc/999999999/ns/net' })).code, 'NETNS_NOT_FOUND');

        assert.is(thrown(() => obj.attach({ program: 'xdp_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns })).code, 'ATTACH_FAILED');
        assert.is(thrown(() => obj.attach({ program: 'nope', hook: 'xdp', ifname: b.ifname, netns: b.ns })).code, 'PROGRAM_NOT_FOUND');
        assert.is(thrown(() => obj.attach({ hook: 'tc-sideways' as 'xdp', ifname: b.ifname })).code, 'INVALID_ARGUMENT');

        // The same priority and handle twice without replace: refused, the first one stays.
        const first = obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns, priority: 7, handle: 7 });
        const dup = thrown(() => obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns, priority: 7, handle: 7 }));
        assert.is(dup.code, 'ATTACH_FAILED');
        assert.match(dup.message, /replace/);
        assert.ok(first.attached);
        // XDP: a second program without replace is refused too.
        obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic' });
        assert.is(thrown(() => obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic' })).code, 'ATTACH_FAILED');
        assert.is(obj.attachments.length, 2);
      } finally {
        obj.close();
      }
      assert.is(tcFilters(b.ns, b.ifname, 'ingress'), '');
      assert.not.ok(hasClsact(b.ns, b.ifname));
      assert.is(xdpProgId(b.ns, b.ifname), 0);
    });
  });

  test('a clsact qdisc that others use is kept', async () => {
    await withTopology(createPair, ({ b }) => {
      const obj = load(fixture('rt_counter'));
      try {
        // Someone else's qdisc: ours to use, not to remove.
        execFileSync('ip', ['netns', 'exec', b.ns, 'tc', 'qdisc', 'add', 'dev', b.ifname, 'clsact']);
        obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns }).detach();
        assert.ok(hasClsact(b.ns, b.ifname));
        execFileSync('ip', ['netns', 'exec', b.ns, 'tc', 'qdisc', 'del', 'dev', b.ifname, 'clsact']);

        // Our qdisc, with someone else's filter on it: kept after our detach.
        const att = obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: b.ifname, netns: b.ns });
        execFileSync('ip', ['netns', 'exec', b.ns, 'tc', 'filter', 'add', 'dev', b.ifname, 'egress', 'prio', '100', 'bpf', 'da', 'obj', fixture('rt_verdicts'), 'sec', 'tc']);
        att.detach();
        assert.ok(hasClsact(b.ns, b.ifname));
        assert.match(tcFilters(b.ns, b.ifname, 'egress'), /tc_filter/);
      } finally {
        obj.close();
      }
    });
  });

  test('close() detaches everything; a persistent attachment outlives close until detached', async () => {
    await withTopology(createPair, ({ a, b }) => {
      const obj = load(fixture('rt_counter'));
      let kept;
      try {
        obj.attach({ program: 'tc_count', hook: 'tc-egress', ifname: b.ifname, netns: b.ns });
        kept = obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic', persistent: true });
      } finally {
        obj.close();
      }
      assert.is(tcFilters(b.ns, b.ifname, 'egress'), '');
      assert.not.ok(hasClsact(b.ns, b.ifname));
      assert.ok(xdpProgId(b.ns, b.ifname) > 0, 'the persistent program still runs');
      assert.is(ping(a.ns, b.ipv4, 2), 2);
      kept.detach();
      assert.is(xdpProgId(b.ns, b.ifname), 0);
    });
  });

  test('a process that exits without close() leaves nothing attached', async () => {
    await withTopology(createPair, ({ b }) => {
      for (const ending of ['', 'process.exit(3);']) {
        const script = `
          import { load } from ${JSON.stringify(path.join(repoRoot, 'dist/runtime/index.js'))};
          const obj = load(${JSON.stringify(fixture('rt_counter'))});
          obj.attach({ program: 'tc_count', hook: 'tc-ingress', ifname: 'eth0', netns: ${JSON.stringify(b.ns)} });
          obj.attach({ program: 'xdp_count', hook: 'xdp', ifname: 'eth0', netns: ${JSON.stringify(b.ns)}, mode: 'generic' });
          ${ending}
        `;
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
        assert.is(r.status, ending ? 3 : 0, r.stderr);
        assert.is(tcFilters(b.ns, b.ifname, 'ingress'), '');
        assert.not.ok(hasClsact(b.ns, b.ifname));
        assert.is(xdpProgId(b.ns, b.ifname), 0);
      }
    });
  });

  test('replacing the program at a TC hook under a ping flood loses no packet', async () => {
    await withTopology(createPair, async ({ a, b }) => {
      const one = load(fixture('rt_counter'), { name: 'one' });
      const two = load(fixture('rt_counter'), { name: 'two' });
      try {
        const att = one.attach({ hook: 'tc-ingress', program: 'tc_count', ifname: b.ifname, netns: b.ns, priority: 1, handle: 1 });
        assert.is(ping(a.ns, b.ipv4, 1), 1); // ARP settled before the flood
        const count = 1500;
        const flood = nsSpawn(a.ns, 'ping', ['-i', '0.001', '-c', String(count), '-W', '2', '-q', b.ipv4]);
        let out = '';
        flood.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        const done = new Promise<number>((resolve) => flood.on('exit', (code) => resolve(code ?? -1)));
        let swaps = 0;
        let finished = false;
        void done.then(() => (finished = true));
        while (!finished) {
          att.replace((att.program.owner === one ? two : one).programs.tc_count!);
          swaps++;
          await sleep(20);
        }
        assert.is(await done, 0, `ping reported loss:\n${out}`);
        assert.match(out, new RegExp(`${count} packets transmitted, ${count} received`));
        assert.ok(swaps >= 10, `only ${swaps} replacements happened`);
        // Every echo request went through exactly one of the two programs.
        const seen = [one, two].map((o) => o.map<string, bigint>('by_source').get(a.ipv4) ?? 0n);
        assert.is(seen[0]! + seen[1]!, BigInt(count + 1));
        assert.ok(seen[0]! > 0n && seen[1]! > 0n);
        assert.is(one.attachments.length + two.attachments.length, 1, 'the attachment moved, not copied');

        // attach({ replace }) from another object takes the hook over the same way.
        const taker = att.program.owner === one ? two : one;
        taker.attach({ hook: 'tc-ingress', program: 'tc_count', ifname: b.ifname, netns: b.ns, priority: 1, handle: 1, replace: true });
        assert.not.ok(att.attached);
        assert.is(taker.attachments.length, 1);
        assert.is(tcFilters(b.ns, b.ifname, 'ingress').split('\n').filter((l) => /handle/.test(l)).length, 1);
      } finally {
        closeAll(one, two);
      }
      assert.is(tcFilters(b.ns, b.ifname, 'ingress'), '');
      assert.not.ok(hasClsact(b.ns, b.ifname));
    });
  });

  test('XDP replace is atomic too, and detach after the netns is gone is quiet', async () => {
    const obj = load(fixture('rt_counter'));
    const other = load(fixture('rt_verdicts'));
    try {
      await withTopology(createPair, ({ a, b }) => {
        const att = obj.attach({ hook: 'xdp', ifname: b.ifname, netns: b.ns, mode: 'generic' });
        att.replace(other.programs.xdp_filter!);
        assert.is(xdpProgId(b.ns, b.ifname), other.programs.xdp_filter!.id);
        assert.is(ping(a.ns, b.ipv4, 2), 2);
        assert.is(other.attachments.length, 1);
      });
      // The topology is gone: detaching what was there is not an error.
      other.detach();
      assert.is(other.attachments.length, 0);
    } finally {
      closeAll(obj, other);
    }
  });
}

test.run();
