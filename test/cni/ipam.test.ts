/**
 * IPAM from the node's pod CIDRs: next-fit allocation that never hands out
 * the network, gateway or broadcast address, one address per family per
 * attachment (a retried ADD gets the same ones), release and GC, and
 * persistence that survives a crash at any moment (simulated at each step
 * of a save, and by killing a real process in the middle of allocating).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CNI_ERR, CniError } from '../../cni/errors.js';
import { Ipam } from '../../cni/ipam/ipam.js';
import type { SaveStep } from '../../cni/store.js';

const here = dirname(fileURLToPath(import.meta.url));
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsbpf-ipam-'));
  dirs.push(d);
  return d;
}
const key = (i: number | string, ifname = 'eth0') => ({ network: 'tsbpf', containerId: `c${i}`, ifname });

test('addresses come from the pod CIDR; network, gateway and broadcast are never handed out', () => {
  const ipam = new Ipam({ v4: '10.9.0.0/29', stateDir: tmp() });
  const got = [1, 2, 3, 4, 5].map((i) => ipam.allocate(key(i))[0]!.ip);
  assert.equal(got, ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
  assert.equal(ipam.usage()[0]!.reserved, ['10.9.0.0', '10.9.0.1', '10.9.0.7']);
  const a = ipam.allocate(key(1))[0]!;
  assert.equal(a, { ip: '10.9.0.2', family: 4, poolLen: 29, gateway: '10.9.0.1' }, 'the same attachment gets the same address back');
  try {
    ipam.allocate(key(6));
    assert.unreachable('a /29 has 5 usable addresses');
  } catch (e) {
    assert.is((e as CniError).cniCode, CNI_ERR.POOL_EXHAUSTED);
  }
  assert.not.ok(ipam.hasFree());
});

test('dual stack: one address per family, IPv4 first; IPv6 has no broadcast to reserve', () => {
  const ipam = new Ipam({ v4: '10.9.1.0/24', v6: 'fd00:9:1::/64', stateDir: tmp() });
  const a = ipam.allocate(key(1));
  assert.equal(
    a.map((x) => [x.ip, x.gateway, x.poolLen]),
    [
      ['10.9.1.2', '10.9.1.1', 24],
      ['fd00:9:1::2', 'fd00:9:1::1', 64],
    ],
  );
  assert.equal(ipam.usage()[1]!.reserved, ['fd00:9:1::', 'fd00:9:1::1']);
  const v6only = new Ipam({ v6: 'fd00:9:2::/120', stateDir: tmp() });
  assert.equal(v6only.allocate(key(1)).map((x) => x.ip), ['fd00:9:2::2']);
});

test('released addresses are reused only after the rest of the pool (next fit)', () => {
  const ipam = new Ipam({ v4: '10.9.2.0/29', stateDir: tmp() });
  for (const i of [1, 2, 3]) ipam.allocate(key(i));
  assert.equal(ipam.release(key(1)).map((a) => a.ip), ['10.9.2.2']);
  assert.equal(ipam.release(key(1)), [], 'releasing twice is fine (DEL is idempotent)');
  assert.is(ipam.allocate(key(4))[0]!.ip, '10.9.2.5');
  assert.is(ipam.allocate(key(5))[0]!.ip, '10.9.2.6');
  assert.is(ipam.allocate(key(6))[0]!.ip, '10.9.2.2', 'wraps around to the freed address');
});

test('attachments are keyed by (network, container, ifname): two interfaces of one container get two addresses', () => {
  const ipam = new Ipam({ v4: '10.9.3.0/24', stateDir: tmp() });
  const a = ipam.allocate(key(1, 'eth0'))[0]!.ip;
  const b = ipam.allocate(key(1, 'net1'))[0]!.ip;
  const c = ipam.allocate({ network: 'other', containerId: 'c1', ifname: 'eth0' })[0]!.ip;
  assert.is(new Set([a, b, c]).size, 3);
});

test('GC releases what the runtime no longer lists, for that network only', () => {
  const ipam = new Ipam({ v4: '10.9.4.0/24', stateDir: tmp() });
  for (const i of [1, 2, 3, 4]) ipam.allocate(key(i));
  ipam.allocate({ network: 'other', containerId: 'c9', ifname: 'eth0' });
  const released = ipam.releaseExcept('tsbpf', [{ containerId: 'c2', ifname: 'eth0' }, { containerId: 'c4', ifname: 'eth0' }]);
  assert.equal(released.map((a) => a.containerId).sort(), ['c1', 'c3']);
  assert.equal(ipam.allocations().map((a) => a.containerId).sort(), ['c2', 'c4', 'c9']);
});

test('allocations persist: a new Ipam over the same directory sees them and continues after the cursor', () => {
  const dir = tmp();
  const a = new Ipam({ v4: '10.9.5.0/24', v6: 'fd00:9:5::/64', stateDir: dir });
  for (const i of [1, 2, 3]) a.allocate(key(i));
  a.release(key(2));
  const b = new Ipam({ v4: '10.9.5.0/24', v6: 'fd00:9:5::/64', stateDir: dir });
  assert.equal(b.allocations().map((x) => `${x.containerId} ${x.ip}`), ['c1 10.9.5.2', 'c1 fd00:9:5::2', 'c3 10.9.5.4', 'c3 fd00:9:5::4']);
  assert.is(b.allocate(key(4))[0]!.ip, '10.9.5.5');
  assert.equal(b.allocate(key(1)).map((x) => x.ip), ['10.9.5.2', 'fd00:9:5::2']);
});

test('bad pools are refused', () => {
  const bad = (o: { v4?: string; v6?: string }) => assert.throws(() => new Ipam({ ...o, stateDir: tmp() }), (e: unknown) => (e as CniError).cniCode === CNI_ERR.INVALID_CONFIG);
  bad({});
  bad({ v4: '10.9.6.1/24' });
  bad({ v4: 'fd00::/64' });
  bad({ v6: '10.0.0.0/8' });
  bad({ v4: '10.9.6.0/31' });
});

test('a crash at any step of a save leaves either the old or the new state, and no temporary file', () => {
  const steps: SaveStep[] = ['tmp-partial', 'tmp-written', 'renamed'];
  for (const at of steps) {
    const dir = tmp();
    const ipam = new Ipam({ v4: '10.9.7.0/24', stateDir: dir });
    ipam.allocate(key(1));
    let armed = true;
    const crashing = new Ipam({
      v4: '10.9.7.0/24',
      stateDir: dir,
      store: {
        onStep: (s) => {
          if (armed && s === at) {
            armed = false;
            throw new Error(`crash at ${s}`);
          }
        },
      },
    });
    assert.throws(() => crashing.allocate(key(2)), /crash at/);
    const leftovers = readdirSync(dir).filter((f) => f.includes('.tmp-'));
    assert.is(leftovers.length, at === 'renamed' ? 0 : 1, `${at}: the temporary file is still there before restart`);
    const after = new Ipam({ v4: '10.9.7.0/24', stateDir: dir });
    const ips = after.allocations().map((a) => `${a.containerId} ${a.ip}`);
    assert.equal(ips, at === 'renamed' ? ['c1 10.9.7.2', 'c2 10.9.7.3'] : ['c1 10.9.7.2'], at);
    assert.is(readdirSync(dir).filter((f) => f.includes('.tmp-')).length, 0, 'loading removes leftovers');
    // Retrying the interrupted ADD: same address if it was committed, the next free one otherwise; never two.
    const again = after.allocate(key(2))[0]!.ip;
    assert.is(again, '10.9.7.3', at);
    assert.is(new Set(after.allocations().map((a) => a.ip)).size, after.allocations().length);
  }
});

test('a corrupt state file is an error, not an empty pool (which would hand out addresses twice)', () => {
  const dir = tmp();
  new Ipam({ v4: '10.9.8.0/24', stateDir: dir }).allocate(key(1));
  writeFileSync(join(dir, 'ipam.json'), '{"version":1,"allocations":[{"ip"');
  assert.throws(() => new Ipam({ v4: '10.9.8.0/24', stateDir: dir }), /corrupt/);
});

const WORKER = `
import { Ipam } from ${JSON.stringify(resolve(here, '../../cni/ipam/ipam.js'))};
const ipam = new Ipam({ v4: '10.9.12.0/22', v6: 'fd00:9:9::/64', stateDir: process.argv[1] });
for (let i = Number(process.argv[2]); ; i++) {
  const a = ipam.allocate({ network: 'tsbpf', containerId: 'k' + i, ifname: 'eth0' });
  process.stdout.write('ok k' + i + ' ' + a.map((x) => x.ip).join(' ') + '\\n');
  if (i % 3 === 0) ipam.release({ network: 'tsbpf', containerId: 'k' + (i - 1), ifname: 'eth0' });
}
`;

test('killed mid-allocation (SIGKILL at random moments): every reported allocation is on disk, none twice', async () => {
  const dir = tmp();
  let start = 0;
  const reported = new Map<string, string>();
  for (let round = 0; round < 6; round++) {
    const p = spawn(process.execPath, ['--input-type=module', '-e', WORKER, dir, String(start)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<void>((r) => p.on('exit', () => r()));
    // Wait for it to be allocating, then kill at a moment that varies per round.
    await new Promise<void>((r, fail) => {
      const t = setInterval(() => {
        if (out.includes('ok ')) {
          clearInterval(t);
          r();
        } else if (p.exitCode !== null) {
          clearInterval(t);
          fail(new Error('the worker exited before allocating'));
        }
      }, 2);
    });
    await new Promise((r) => setTimeout(r, 5 + round * 7));
    p.kill('SIGKILL');
    await exited;
    const lines = out.split('\n').filter((l) => l.startsWith('ok '));
    for (const l of lines) {
      const [, id, ...ips] = l.split(' ');
      reported.set(id!, ips.join(' '));
    }
    const ipam = new Ipam({ v4: '10.9.12.0/22', v6: 'fd00:9:9::/64', stateDir: dir });
    const all = ipam.allocations();
    assert.is(new Set(all.map((a) => a.ip)).size, all.length, `round ${round}: an address is held twice`);
    const byId = new Map<string, string[]>();
    for (const a of all) byId.set(a.containerId, [...(byId.get(a.containerId) ?? []), a.ip]);
    for (const [id, ips] of reported) {
      const n = Number(id.slice(1));
      const releasedLater = n % 3 === 2 && reported.has(`k${n + 1}`);
      if (releasedLater) continue;
      assert.equal(byId.get(id)?.join(' '), ips, `round ${round}: ${id} was reported but is not on disk as reported`);
    }
    // At most the one allocation in flight at the kill is on disk without having been reported; its owner is recorded, so DEL or GC frees it.
    const unreported = [...byId.keys()].filter((id) => !reported.has(id));
    assert.ok(unreported.length <= 1, `round ${round}: ${unreported.join(',')}`);
    // The runtime calls DEL for an ADD that failed: that frees it, nothing leaks.
    for (const id of unreported) assert.is(ipam.release({ network: 'tsbpf', containerId: id, ifname: 'eth0' }).length, 2);
    start = Math.max(start, ...[...byId.keys()].map((id) => Number(id.slice(1)) + 1), ...[...reported.keys()].map((id) => Number(id.slice(1)) + 1));
    assert.ok(existsSync(join(dir, 'ipam.json')));
    assert.ok(JSON.parse(readFileSync(join(dir, 'ipam.json'), 'utf8')).version === 1);
  }
  assert.ok(reported.size >= 6, `allocated ${reported.size} across the rounds`);
});

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test.run();
