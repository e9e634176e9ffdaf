/**
 * `tsbpf ct` on a pinned services program: list (table and JSON, filters),
 * delete by filter, gc and flush, and clear errors for bad input.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { uniqueId } from '../net/topology.js';
import { packet } from '../../sdk/packet.js';
import { services } from '../../sdk/services.js';
import { loadServices } from '../../runtime/services.js';
import { ct } from '../../cli/commands/ct.js';

const bin = fileURLToPath(new URL('../../cli/bin.js', import.meta.url));
/** The real binary (slow to start): used once to show the wiring. */
const tsbpfBin = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

/** The command in-process, as the binary runs it: exit status and output. */
async function tsbpf(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  try {
    const status = await ct.run(args.slice(1), { out: (l) => out.push(l), err: (l) => out.push(l), step: () => () => {} });
    return { status, stdout: out.join('\n'), stderr: '' };
  } catch (e) {
    return { status: 1, stdout: out.join('\n'), stderr: (e as Error).message };
  }
}

test('bad input is refused with a clear message', async () => {
  const r = tsbpfBin('ct', 'list');
  assert.is(r.status, 1);
  assert.match(r.stderr, /NAME or --pin DIR/);
  const r2 = await tsbpf('ct', 'frobnicate', 'x');
  assert.is(r2.status, 1);
  assert.match(r2.stderr, /list, delete, flush or gc/);
  const r3 = await tsbpf('ct', 'list', '--pin', '/sys/fs/bpf/does-not-exist-here', '--dport', '99999');
  assert.is(r3.status, 1);
  assert.match(r3.stderr, /--dport must be a port/);
});

if (requireKernel('stateful: tsbpf ct')) {
  test('ct list shows connections with their translation; delete, gc and flush remove them', async () => {
    const dir = `/sys/fs/bpf/tsbpf-ct-test-${uniqueId()}`;
    const def = services('ctcli', { hashSeed: 3 }, (s) => s.service('web', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.2', port: 8080 }] }));
    const lb = loadServices(def);
    try {
      for (const sport of [40000, 40001]) lb.testRun('tc-ingress', packet().ipv4({ src: '10.0.0.5', dst: '10.96.0.1' }).tcp({ sport, dport: 80, flags: 'S' }).build());
      lb.testRun('tc-ingress', packet().ipv4({ src: '10.0.0.5', dst: '10.0.0.6' }).udp({ sport: 5000, dport: 53 }).build());
      lb.pin(dir);

      const list = await tsbpf('ct', 'list', '--pin', dir);
      assert.is(list.status, 0, list.stderr);
      assert.match(list.stdout, /tcp\s+tcp-syn-sent\s+10\.0\.0\.5:40000 > 10\.96\.0\.1:80\s+10\.0\.0\.5:40000 > 10\.1\.0\.2:8080\s+dnat/);
      assert.match(list.stdout, /udp\s+udp\s+10\.0\.0\.5:5000 > 10\.0\.0\.6:53\s+-/);

      const json = await tsbpf('ct', 'list', '--pin', dir, '--proto', 'tcp', '--json');
      assert.is(json.status, 0, json.stderr);
      const conns = JSON.parse(json.stdout) as Array<{ state: string; translated: { dst: string }; packets: { original: string } }>;
      assert.is(conns.length, 2);
      assert.is(conns[0]!.translated.dst, '10.1.0.2');
      assert.is(Number(conns[0]!.packets.original), 1);

      const del = await tsbpf('ct', 'delete', '--pin', dir, '--sport', '40000');
      assert.is(del.status, 0, del.stderr);
      assert.match(del.stdout, /deleted 1 connections \(2 entries\)/, 'the connection and its DNAT key');
      assert.is(lb.conntrack({ protocol: 'tcp' }).length, 1);

      const gc = await tsbpf('ct', 'gc', '--pin', dir);
      assert.match(gc.stdout, /deleted 0 expired entries/);
      const flush = await tsbpf('ct', 'flush', '--pin', dir);
      assert.match(flush.stdout, /deleted 3 entries/);
      assert.match((await tsbpf('ct', 'list', '--pin', dir)).stdout, /no connections \(0 entries in the map\)/);
    } finally {
      lb.unpin();
      lb.close();
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
