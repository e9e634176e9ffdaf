/**
 * The tsbpf CLI driven exactly as a user drives it: a TypeScript filter file
 * built, loaded into a test namespace, inspected, replaced and detached, with
 * real pings in between; and bad input rejected with a clear message.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireKernel } from '../kernel.js';
import { createPair, ping, type PairTopology } from '../net/topology.js';

const bin = fileURLToPath(new URL('../../cli/bin.js', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/${name}`, import.meta.url));

function tsbpf(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, TSBPF_STATE_DIR: stateDir } });
}

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-cli-state-'));
process.on('exit', () => rmSync(stateDir, { recursive: true, force: true }));

test('build writes the C, the object, the layouts and a typed maps module', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-build-'));
  try {
    const r = tsbpf('build', fixture('cli-fw.ts'), '-o', out);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /clifw: .*\{c,o,maps\.json,maps\.ts\}/);
    const c = readFileSync(path.join(out, 'clifw.c'), 'utf8');
    assert.match(c, /cli-fw\.ts:4:/, 'the C names where the filter was written');
    assert.match(c, /no-8080/);
    assert.is(readFileSync(path.join(out, 'clifw.o')).subarray(1, 4).toString(), 'ELF');
    const meta = JSON.parse(readFileSync(path.join(out, 'clifw.maps.json'), 'utf8')) as { rules: Array<{ name: string }> };
    assert.equal(meta.rules.map((r) => r.name), ['no-8080', 'pings']);
    assert.match(readFileSync(path.join(out, 'clifw.maps.ts'), 'utf8'), /export const layouts/);
    assert.match(r.stderr, /compiling clifw/, 'progress is shown');
    // types: the same module from any object's BTF
    const t = tsbpf('types', path.join(out, 'clifw.o'), '-o', path.join(out, 'types.ts'));
    assert.is(t.status, 0, t.stderr);
    const mod = readFileSync(path.join(out, 'types.ts'), 'utf8');
    assert.match(mod, /tsbpf_counters/);
    assert.match(mod, /packets: bigint/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a rule that cannot compile is named with its file:line:col, and nothing is written', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-build-'));
  try {
    const r = tsbpf('build', fixture('cli-bad-port.ts'), '-o', out);
    assert.is(r.status, 1);
    assert.match(r.stderr, /cli-bad-port\.ts:5:\d+: rule 'input#0': .*70000/);
    assert.not.ok(existsSync(path.join(out, 'badport.c')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('explain walks the rules for a packet without the kernel', () => {
  const r = tsbpf('explain', fixture('cli-fw.ts'), '--packet', 'tcp 10.0.0.1:1234 -> 10.0.0.2:8080 flags=S');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /packet: 54 bytes, tcp 10.0.0.1:1234 -> 10.0.0.2:8080/);
  assert.match(r.stdout, /✓ input\/no-8080: .*l4\.dport 8080 in 8080: yes/);
  assert.match(r.stdout, /verdict: drop \(by rule 'no-8080'/);
  const plan = tsbpf('explain', fixture('cli-fw.ts'), '--plan');
  assert.is(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, /programs \(the first of each hook is attached/);
  assert.match(plan.stdout, /tsbpf_counters/);
});

test('function programs: build writes their object; test runs the same function in Node beside the kernel', () => {
  const file = fileURLToPath(new URL('../../../examples/fn/dns-guard.ts', import.meta.url));
  const out = mkdtempSync(path.join(os.tmpdir(), 'tsbpf-build-'));
  try {
    const b = tsbpf('build', file, '-o', out);
    assert.is(b.status, 0, b.stderr);
    assert.match(b.stdout, /dns-guard: .*programs dnsGuard@xdp/);
    assert.ok(existsSync(path.join(out, 'dns-guard.o')));
    // A file of this repository imports tsbpf's sources (a second copy of the classes): its filter is still found.
    const eb = tsbpf('build', fileURLToPath(new URL('../../../examples/fn/edge-guard.ts', import.meta.url)), '-o', out);
    assert.is(eb.status, 0, eb.stderr);
    assert.match(eb.stdout, /edge-guard: .*programs edgeGuard@xdp/);
    assert.match(eb.stdout, /edge: .*\(2 programs, 6 rules/);
    if (process.getuid?.() !== 0) return;
    const t = tsbpf('test', file, '--packet', 'udp 10.0.0.1:53 -> 10.0.0.2:5353 len=600', '--packet', 'udp 10.0.0.1:53 -> 10.0.0.2:5353');
    assert.is(t.status, 0, t.stderr + t.stdout);
    assert.match(t.stdout, /kernel: drop \(retval 1[^]*node: +XDP_DROP[^]*kernel: pass \(retval 2[^]*node: +XDP_PASS/);
    // A function that runs a declared chain and uses DSL maps: the CLI hands the file's module to the compiler.
    const edge = fileURLToPath(new URL('../../../examples/fn/edge-guard.ts', import.meta.url));
    const e = tsbpf('test', edge, '--export', 'edgeGuard', '--packet', 'tcp 10.66.0.1:1234 -> 10.0.0.2:443 flags=S', '--packet', 'tcp 10.1.0.1:1234 -> 10.0.0.2:443 flags=S');
    assert.is(e.status, 0, e.stderr + e.stdout);
    assert.match(e.stdout, /kernel: drop \(retval 1[^]*node: +XDP_DROP[^]*kernel: pass \(retval 2[^]*node: +XDP_PASS/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('bad arguments are clear errors', () => {
  const spec = tsbpf('explain', fixture('cli-fw.ts'), '--packet', 'tcp 10.0.0.1 -> 10.0.0.999:80');
  assert.is(spec.status, 1);
  assert.match(spec.stderr, /10\.0\.0\.999/);
  const hook = tsbpf('load', fixture('cli-fw.ts'), '--hook', 'egress', '--ifname', 'lo');
  assert.is(hook.status, 1);
  assert.match(hook.stderr, /--hook must be one of xdp, tc-ingress, tc-egress \(got 'egress'\)/);
  const missing = tsbpf('build', '/nonexistent/fw.ts');
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /no such file: \/nonexistent\/fw\.ts/);
  const unknownFlag = tsbpf('build', fixture('cli-fw.ts'), '--frobnicate');
  assert.is(unknownFlag.status, 2);
  assert.match(unknownFlag.stderr, /--frobnicate/);
});

if (requireKernel('cli: load, maps, test, replace, detach')) {
  test('load attaches in a netns, maps shows counters, a second load replaces and keeps them, detach cleans up', () => {
    let topo: PairTopology | undefined;
    const pinDir = `/sys/fs/bpf/tsbpf-test-${process.pid}`;
    try {
      topo = createPair();
      const { a, b } = topo;
      const load = tsbpf('load', fixture('cli-fw.ts'), '--hook', 'tc-ingress', '--ifname', b.ifname, '--netns', b.ns, '--pin', pinDir);
      assert.is(load.status, 0, load.stderr);
      assert.match(load.stdout, /clifw: attached at tc-ingress/);
      assert.is(ping(a.ns, b.ipv4, 3), 3);

      const maps = tsbpf('maps', '--pin', pinDir);
      assert.is(maps.status, 0, maps.stderr);
      assert.match(maps.stdout, /1\s+pings\s+input\s+3\s+294/);
      assert.not.match(maps.stdout, /tsbpf_state/, 'internal maps only with --all');

      const again = tsbpf('load', fixture('cli-fw.ts'), '--hook', 'tc-ingress', '--ifname', b.ifname, '--netns', b.ns, '--pin', pinDir);
      assert.is(again.status, 0, again.stderr);
      assert.match(again.stdout, /replaced/);
      assert.is(ping(a.ns, b.ipv4, 2), 2);
      const json = JSON.parse(tsbpf('maps', '--pin', pinDir, 'tsbpf_counters', '--json').stdout) as { tsbpf_counters: Array<{ rule: string; packets: number }> };
      assert.is(json.tsbpf_counters.find((r) => r.rule === 'pings')!.packets, 5, 'counters survived the replacement');

      const t = tsbpf('test', fixture('cli-fw.ts'), '--packet', 'tcp 10.0.0.1:1 -> 10.0.0.2:8080', '--packet', 'udp 10.0.0.1:1 -> 10.0.0.2:53');
      assert.is(t.status, 0, t.stderr + t.stdout);
      assert.match(t.stdout, /kernel: +drop/);
      assert.match(t.stdout, /evaluator: accept by policy of chain input/);

      // attach: the pinned program also on the other side of the link, then counting that side's pings too
      const badMode = tsbpf('attach', '--pin', pinDir, '--hook', 'xdp', '--ifname', a.ifname, '--netns', a.ns, '--mode', 'turbo');
      assert.is(badMode.status, 1);
      assert.match(badMode.stderr, /--mode must be generic or driver \(got 'turbo'\)/);
      const att = tsbpf('attach', '--pin', pinDir, '--hook', 'tc-ingress', '--ifname', a.ifname, '--netns', a.ns);
      assert.is(att.status, 0, att.stderr);
      assert.match(att.stdout, /attached at tc-ingress on eth0/);
      assert.is(ping(b.ns, a.ipv4, 2), 2);
      const after = JSON.parse(tsbpf('maps', '--pin', pinDir, 'tsbpf_counters', '--json').stdout) as { tsbpf_counters: Array<{ rule: string; packets: number }> };
      assert.is(after.tsbpf_counters.find((r) => r.rule === 'pings')!.packets, 7, 'requests seen at the second hook are counted in the same maps');

      const d = tsbpf('detach', '--pin', pinDir);
      assert.is(d.status, 0, d.stderr);
      assert.not.ok(existsSync(pinDir), 'pins removed');
      assert.match(d.stdout, /detached from tc-ingress on eth0 in .*tsA-/, 'the attach made by tsbpf attach is detached too');
      for (const h of [a, b]) {
        const qdiscs = spawnSync('tc', ['-n', h.ns, 'qdisc', 'show', 'dev', h.ifname], { encoding: 'utf8' }).stdout;
        assert.not.match(qdiscs, /clsact/, 'the clsact qdiscs tsbpf made are gone');
      }
    } finally {
      tsbpf('detach', '--pin', pinDir);
      rmSync(pinDir, { recursive: true, force: true });
      topo?.destroy();
    }
  });
}

test.run();
