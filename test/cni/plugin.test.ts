/**
 * The CNI execution protocol (spec 1.1) as tsbpf-cni implements it: which
 * environment each command needs, how the network config is checked, the
 * error object and its code for every way an invocation can be wrong, and
 * the result in each cniVersion. The agent is replaced by a recorder here
 * (no kernel involved); test/cni/agent.test.ts runs the same executable
 * against a real agent.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CNI_ERR, CniError } from '../../cni/errors.js';
import { parseCniArgs, prevAddresses, runPlugin, validIfname, type Env } from '../../cni/plugin/cni.js';
import { renderResult, SUPPORTED_VERSIONS } from '../../cni/plugin/version.js';
import type { AgentRequest, AttachResult } from '../../cni/protocol.js';
import { PLUGIN } from './harness.js';

const ATTACH: AttachResult = {
  interfaces: [
    { name: 'tsb0123456789a', mac: '02:00:00:00:00:01', mtu: 1500 },
    { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1500, sandbox: '/proc/self/ns/net' },
  ],
  ips: [
    { address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 },
    { address: 'fd00::2/128', gateway: 'fe80::1', interface: 1 },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '10.1.0.1' },
    { dst: '::/0', gw: 'fe80::1' },
  ],
};

/** An agent stand-in that records requests and answers ADD with ATTACH. */
function recorder(answer: (req: AgentRequest) => unknown = (r) => (r.op === 'add' ? ATTACH : r.op === 'status' ? { ready: true } : undefined)) {
  const calls: AgentRequest[] = [];
  return {
    calls,
    request: async (_socket: string, req: AgentRequest) => {
      calls.push(req);
      return answer(req);
    },
  };
}

const NETNS = '/proc/self/ns/net';
const env = (command: string, extra: Env = {}): Env => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: NETNS,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  ...extra,
});
const conf = (extra: Record<string, unknown> = {}, version = '1.1.0') => JSON.stringify({ cniVersion: version, name: 'tsbpf', type: 'tsbpf-cni', ...extra });

async function codeOf(e: Env, stdin: string): Promise<number> {
  const out = await runPlugin(e, stdin, recorder().request);
  assert.is(out.exitCode, 1, 'an error exits non-zero');
  const o = JSON.parse(out.stdout) as { code: number; msg: string; cniVersion: string };
  assert.type(o.msg, 'string');
  assert.type(o.cniVersion, 'string');
  return o.code;
}

test('VERSION lists every supported version, answered in the version asked', async () => {
  for (const v of SUPPORTED_VERSIONS) {
    const out = await runPlugin({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }), recorder().request);
    assert.is(out.exitCode, 0);
    assert.equal(JSON.parse(out.stdout), { cniVersion: v, supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  }
  const bare = await runPlugin({ CNI_COMMAND: 'VERSION' }, '', recorder().request);
  assert.is(JSON.parse(bare.stdout).cniVersion, '1.1.0', 'no stdin: the latest version');
});

test('ADD sends the attachment to the agent and prints the result; K8S_POD_* come from CNI_ARGS', async () => {
  const r = recorder();
  const out = await runPlugin(env('ADD', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1' }), conf({ mtu: 1400 }), r.request);
  assert.is(out.exitCode, 0);
  assert.equal(r.calls, [{ op: 'add', network: 'tsbpf', containerId: 'c0ffee', ifname: 'eth0', netns: NETNS, podNamespace: 'shop', podName: 'web-1', mtu: 1400 }]);
  const res = JSON.parse(out.stdout);
  assert.is(res.cniVersion, '1.1.0');
  assert.equal(res.ips[0], { address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 });
  assert.is(res.interfaces[1].mtu, 1500, '1.1.0 carries the interface MTU');
});

test('results differ by version: 0.3.1/0.4.0 have ips[].version, 1.0.0 does not, only 1.1.0 has interface mtu', () => {
  for (const v of SUPPORTED_VERSIONS) {
    const r = renderResult(v, ATTACH, undefined);
    assert.is(r.cniVersion, v);
    const legacy = v === '0.3.1' || v === '0.4.0';
    assert.is(r.ips[0]!.version, legacy ? '4' : undefined, v);
    assert.is(r.ips[1]!.version, legacy ? '6' : undefined, v);
    assert.is(r.interfaces[0]!.mtu, v === '1.1.0' ? 1500 : undefined, v);
    assert.equal(r.routes, [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '::/0', gw: 'fe80::1' }]);
    assert.equal(r.dns, {});
  }
});

test('a prevResult from an earlier plugin in the chain is kept, and our interface indexes shift past it', async () => {
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'lo', sandbox: NETNS }], ips: [{ address: '127.0.0.1/8', interface: 0 }], dns: { nameservers: ['10.96.0.10'] } };
  const out = await runPlugin(env('ADD'), conf({ prevResult: prev }, '1.0.0'), recorder().request);
  const r = JSON.parse(out.stdout);
  assert.equal(r.interfaces.map((i: { name: string }) => i.name), ['lo', 'tsb0123456789a', 'eth0']);
  assert.equal(r.ips.map((i: { interface: number }) => i.interface), [0, 2, 2]);
  assert.equal(r.dns, { nameservers: ['10.96.0.10'] });
});

test('the config dns section is passed through to the result', async () => {
  const dns = { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'] };
  const out = await runPlugin(env('ADD'), conf({ dns }), recorder().request);
  assert.equal(JSON.parse(out.stdout).dns, dns);
});

test('DEL, CHECK, GC and STATUS print nothing on success', async () => {
  const r = recorder();
  const prevResult = renderResult('1.1.0', ATTACH, undefined);
  for (const [e, c] of [
    [env('DEL'), conf()],
    [env('DEL', { CNI_NETNS: '' }), conf()],
    [env('CHECK'), conf({ prevResult })],
    [{ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, conf({ 'cni.dev/valid-attachments': [{ containerID: 'c0ffee', ifname: 'eth0' }] })],
    [{ CNI_COMMAND: 'STATUS' }, conf()],
  ] as const) {
    const out = await runPlugin(e, c, r.request);
    assert.equal(out, { stdout: '', exitCode: 0 }, e.CNI_COMMAND);
  }
  assert.equal(
    r.calls.map((c) => c.op),
    ['del', 'del', 'check', 'gc', 'status'],
  );
  assert.is((r.calls[1] as { netns?: string }).netns, undefined, 'DEL without CNI_NETNS is fine');
  assert.equal((r.calls[2] as { expectAddresses: string[] }).expectAddresses, ['10.1.0.2/32', 'fd00::2/128']);
  assert.equal((r.calls[3] as { valid: unknown }).valid, [{ containerId: 'c0ffee', ifname: 'eth0' }]);
});

test('error code 4: missing or malformed environment variables', async () => {
  assert.is(await codeOf({}, conf()), CNI_ERR.INVALID_ENV, 'no CNI_COMMAND');
  assert.is(await codeOf(env('FROB'), conf()), CNI_ERR.INVALID_ENV, 'unknown command');
  for (const v of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME']) {
    const e = env('ADD');
    delete e[v];
    const out = await runPlugin(e, conf(), recorder().request);
    const o = JSON.parse(out.stdout);
    assert.is(o.code, 4, v);
    assert.match(o.msg, v, 'the message names the variable');
  }
  assert.is(await codeOf(env('DEL', { CNI_IFNAME: '' }), conf()), 4, 'DEL needs CNI_IFNAME');
  assert.is(await codeOf(env('ADD', { CNI_CONTAINERID: '-bad' }), conf()), 4, 'container id must start alphanumeric');
  assert.is(await codeOf(env('ADD', { CNI_IFNAME: 'a-very-long-ifname' }), conf()), 4, 'ifname of 16+ chars');
  assert.is(await codeOf(env('ADD', { CNI_IFNAME: 'eth/0' }), conf()), 4, 'ifname with /');
  assert.is(await codeOf(env('ADD', { CNI_NETNS: 'relative/ns' }), conf()), 4, 'CNI_NETNS not absolute');
  assert.is(await codeOf(env('ADD', { CNI_NETNS: '/var/run/netns/does-not-exist-tsbpf' }), conf()), 4, 'CNI_NETNS missing for ADD');
  assert.is(await codeOf(env('ADD', { CNI_ARGS: 'K8S_POD_NAME' }), conf()), 4, 'CNI_ARGS not K=V');
});

test('error code 6: stdin is not a JSON object', async () => {
  assert.is(await codeOf(env('ADD'), '{"cniVersion": '), CNI_ERR.DECODE_FAILURE);
  assert.is(await codeOf(env('ADD'), '[1,2]'), CNI_ERR.DECODE_FAILURE);
  assert.is(await codeOf(env('ADD'), ''), CNI_ERR.DECODE_FAILURE);
});

test('error code 7: invalid network config', async () => {
  assert.is(await codeOf(env('ADD'), JSON.stringify({ name: 'tsbpf', type: 'tsbpf-cni' })), CNI_ERR.INVALID_CONFIG, 'no cniVersion');
  assert.is(await codeOf(env('ADD'), JSON.stringify({ cniVersion: '1.1.0', type: 'tsbpf-cni' })), 7, 'no name');
  assert.is(await codeOf(env('ADD'), JSON.stringify({ cniVersion: '1.1.0', name: 'tsbpf' })), 7, 'no type');
  assert.is(await codeOf(env('ADD'), conf({ mtu: 70000 })), 7, 'mtu out of range');
  assert.is(await codeOf(env('ADD'), conf({ socket: 'relative.sock' })), 7, 'socket not absolute');
  assert.is(await codeOf(env('CHECK'), conf()), 7, 'CHECK without prevResult');
  assert.is(await codeOf({ CNI_COMMAND: 'GC' }, conf()), 7, 'GC without cni.dev/valid-attachments');
  assert.is(await codeOf({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': [{ containerID: 1 }] })), 7, 'GC attachment malformed');
});

test('error code 2: an unsupported field names the key and value', async () => {
  const out = await runPlugin(env('ADD'), conf({ ipam: { type: 'host-local', subnet: '10.0.0.0/24' } }), recorder().request);
  const o = JSON.parse(out.stdout);
  assert.is(o.code, CNI_ERR.UNSUPPORTED_FIELD);
  assert.match(o.msg, 'ipam.type');
  assert.match(o.msg, 'host-local');
});

test('error code 1: an unsupported cniVersion, or a command newer than the config version; answered in the version asked', async () => {
  const out = await runPlugin(env('ADD'), conf({}, '0.2.0'), recorder().request);
  assert.equal(JSON.parse(out.stdout).code, CNI_ERR.INCOMPATIBLE_VERSION);
  assert.is(JSON.parse(out.stdout).cniVersion, '0.2.0');
  assert.is(await codeOf(env('ADD'), conf({}, '2.0.0')), 1);
  assert.is(await codeOf(env('CHECK'), conf({ prevResult: {} }, '0.3.1')), 1, 'CHECK came in 0.4.0');
  assert.is(await codeOf({ CNI_COMMAND: 'STATUS' }, conf({}, '1.0.0')), 1, 'STATUS came in 1.1.0');
  assert.is(await codeOf({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': [] }, '1.0.0')), 1, 'GC came in 1.1.0');
});

test('agent errors pass through with their code; an unreachable agent is 11 (try again), for STATUS 50', async () => {
  const down = async () => {
    throw new CniError(CNI_ERR.TRY_AGAIN_LATER, 'the tsbpf agent is not running');
  };
  for (const cmd of ['ADD', 'DEL']) {
    const o = JSON.parse((await runPlugin(env(cmd), conf(), down)).stdout);
    assert.is(o.code, 11, cmd);
  }
  assert.is(JSON.parse((await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(), down)).stdout).code, CNI_ERR.NOT_AVAILABLE);
  const full = recorder(() => ({ ready: false, reason: 'the pod CIDR has no free address' }));
  const o = JSON.parse((await runPlugin({ CNI_COMMAND: 'STATUS' }, conf(), full.request)).stdout);
  assert.is(o.code, 50);
  assert.match(o.msg, 'no free address');
  const unknown = async () => {
    throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, 'no endpoint for container c0ffee', { cniDetails: 'gone' });
  };
  const u = JSON.parse((await runPlugin(env('CHECK'), conf({ prevResult: {} }), unknown)).stdout);
  assert.equal(u, { cniVersion: '1.1.0', code: 3, msg: 'no endpoint for container c0ffee', details: 'gone' });
});

test('CNI_ARGS, interface names and prevResult addresses', () => {
  assert.equal(parseCniArgs('A=1;B=x=y;;C='), { A: '1', B: 'x=y', C: '' });
  assert.equal(parseCniArgs(undefined), {});
  assert.throws(() => parseCniArgs('=1'), (e: unknown) => (e as CniError).cniCode === 4);
  assert.ok(validIfname('eth0') && validIfname('net1.100') && validIfname('x'.repeat(15)));
  assert.not.ok(validIfname('') || validIfname('.') || validIfname('..') || validIfname('a b') || validIfname('a:b') || validIfname('x'.repeat(16)));
  const prev = renderResult('1.0.0', ATTACH, undefined);
  assert.equal(prevAddresses(prev as unknown as Record<string, unknown>, 'eth0'), ['10.1.0.2/32', 'fd00::2/128']);
  assert.equal(prevAddresses(prev as unknown as Record<string, unknown>, 'net1'), []);
});

test('the executable: VERSION, and error objects on stdout with a non-zero exit, exactly as a runtime sees them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-cni-'));
  try {
    const run = (e: Env, stdin: string) => spawnSync(PLUGIN, [], { env: e as NodeJS.ProcessEnv, input: stdin, encoding: 'utf8' });
    const v = run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}');
    assert.is(v.status, 0);
    assert.equal(JSON.parse(v.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    const sock = join(dir, 'none.sock');
    const add = run(env('ADD'), conf({ socket: sock }));
    assert.is(add.status, 1);
    assert.is(JSON.parse(add.stdout).code, 11, 'no agent: try again later');
    const st = run({ CNI_COMMAND: 'STATUS' }, conf({ socket: sock }));
    assert.is(st.status, 1);
    assert.is(JSON.parse(st.stdout).code, 50);
    const bad = run(env('ADD'), 'not json');
    assert.is(bad.status, 1);
    assert.is(JSON.parse(bad.stdout).code, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the plugin never loads the compiler toolchain: its static import graph stays inside cni/ and node:', async () => {
  const { readFileSync } = await import('node:fs');
  const { dirname, resolve } = await import('node:path');
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('node:')) continue;
      assert.ok(spec.startsWith('.'), `${file} imports the package '${spec}'`);
      visit(resolve(dirname(file), spec));
    }
  };
  visit(PLUGIN);
  const files = [...seen].map((f) => f.slice(f.indexOf('/dist/') + 6));
  for (const f of files) assert.ok(f.startsWith('cni/') || f === 'sdk/errors.js', `plugin loads ${f}`);
  assert.not.ok(files.some((f) => /codegen|runtime|ts-morph|swc|yaml/.test(f)));
});

test('the CLI (tsbpf-cni without CNI_COMMAND): usage errors exit 2, an absent agent exits 1 with a clear line', async () => {
  const { ctlMain } = await import('../../cni/plugin/ctl.js');
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  assert.is(await ctlMain([], io), 2);
  assert.is(await ctlMain(['frobnicate'], io), 2);
  assert.match(lines.join('\n'), "unknown command 'frobnicate'");
  assert.is(await ctlMain(['status', 'extra'], io), 2);
  assert.is(await ctlMain(['--help'], io), 0);
  lines.length = 0;
  assert.is(await ctlMain(['status', '--socket', '/nonexistent/tsbpf.sock'], io), 1);
  assert.match(lines.join('\n'), 'the tsbpf agent is not running');
});

test('status fill levels: percent of max with one decimal, below 0.1% said so, IPv6 pool capacities as text', async () => {
  const { fillText } = await import('../../cni/plugin/ctl.js');
  assert.is(fillText(0, 65536), '0.0%');
  assert.is(fillText(2, 65536), '<0.1%');
  assert.is(fillText(1, 253), '0.3%');
  assert.is(fillText(4096, 4096), '100.0%');
  assert.is(fillText(3, (2n ** 64n - 2n).toString()), '<0.1%');
  assert.is(fillText(0, 0), '-');
});

test.run();
