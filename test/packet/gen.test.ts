/**
 * The seeded generator: the same seed gives the same packets; within a few
 * thousand packets every kind appears; valid packets verify, malformed ones
 * are broken in the way they say, truncated ones are cut; a bias makes the
 * given addresses, ports and protocols common.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isIpv4Text, ipv4ToBytes, ipv6ToBytes } from '../../sdk/packet-addr.js';
import { randomContext, randomPacket, randomPacketCase, rng, type PacketCase, type PacketFeature } from '../../sdk/packet-gen.js';
import { checkFrame } from './verify.js';

test('rng() is mulberry32: fixed outputs for seed 1 (recorded seeds replay forever)', () => {
  const r = rng(1);
  assert.equal([r.uint32(), r.uint32(), r.uint32()], [0xa087eaf3, 0x00b349c9, 0x8706c4eb]);
  assert.is(rng('seed').seed, rng('seed').seed, 'string seeds hash deterministically');
  assert.is.not(rng('seed').seed, rng('seeds').seed);
});

test('rng helpers stay in range and are deterministic', () => {
  const r = rng(7);
  const counts = new Array<number>(6).fill(0);
  for (let i = 0; i < 6000; i++) counts[r.int(6)]!++;
  assert.ok(counts.every((c) => c > 800 && c < 1200), `int(6) is roughly uniform: ${counts}`);
  for (let i = 0; i < 1000; i++) {
    const v = r.range(-2, 2);
    assert.ok(v >= -2 && v <= 2 && Number.isInteger(v));
    const f = r.next();
    assert.ok(f >= 0 && f < 1);
  }
  let heads = 0;
  for (let i = 0; i < 10000; i++) if (r.bool(0.2)) heads++;
  assert.ok(heads > 1700 && heads < 2300, `bool(0.2) ~ 20%: ${heads}`);
  assert.equal(r.shuffle([1, 2, 3, 4, 5]).sort(), [1, 2, 3, 4, 5]);
  assert.is(r.bytes(9).length, 9);
  assert.ok(['a', 'b'].includes(r.pick(['a', 'b'])));
  assert.throws(() => r.int(0), /positive integer/);
  assert.throws(() => r.pick([]), /non-empty/);
  // fork(): an independent stream, itself deterministic
  const a = rng(3).fork();
  const b = rng(3).fork();
  assert.is(a.uint32(), b.uint32());
});

test('the same seed gives the same packets; another seed different ones', () => {
  const run = (seed: number) => {
    const r = rng(seed);
    return Array.from({ length: 300 }, () => randomPacket(r).toString('hex'));
  };
  assert.equal(run(42), run(42));
  assert.not.equal(run(42), run(43));
});

const N = 3000;
const cases: PacketCase[] = [];
{
  const r = rng(2024);
  for (let i = 0; i < N; i++) cases.push(randomPacketCase(r));
}

test(`${N} packets cover every kind`, () => {
  const seen = new Set<PacketFeature>(cases.flatMap((c) => c.features));
  const want: PacketFeature[] = [
    'ipv4', 'ipv6', 'non-ip', 'vlan', 'qinq', 'tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'other-l4',
    'ipv4-options', 'tcp-options', 'ipv6-ext', 'ipv6-ext-max', 'ipv4-fragment', 'ipv6-fragment',
    'non-first-fragment', 'malformed', 'truncated',
  ];
  for (const f of want) assert.ok(seen.has(f), `no '${f}' packet among ${N}`);
  assert.not.ok(seen.has('runt'), 'no frame shorter than Ethernet by default');
  assert.not.ok(seen.has('biased'), 'no bias given');
  const corruptions = new Set(cases.map((c) => c.corruption).filter(Boolean));
  for (const k of ['ipv4-checksum', 'l4-checksum', 'ip-version', 'ipv4-ihl', 'ip-length', 'udp-length', 'tcp-offset', 'cross-protocol']) {
    assert.ok(corruptions.has(k as PacketCase['corruption']), `no '${k}' corruption`);
  }
});

test('valid packets verify: every length and checksum holds', () => {
  let checked = 0;
  for (const c of cases) {
    if (c.features.includes('malformed') || c.features.includes('truncated')) continue;
    const { problems } = checkFrame(c.data);
    assert.equal(problems, [], c.description);
    checked++;
  }
  assert.ok(checked > N * 0.6, `${checked} valid packets`);
});

test('malformed packets are broken the way they say', () => {
  for (const c of cases) {
    if (!c.corruption || c.features.includes('truncated')) continue;
    const { problems } = checkFrame(c.data);
    const expect: Record<string, RegExp | undefined> = {
      'ipv4-checksum': /ipv4 header checksum/,
      'l4-checksum': /checksum/,
      'ip-version': /version|checksum/,
      'ip-length': /length/,
      'udp-length': /udp length/,
    };
    const re = expect[c.corruption];
    if (re) assert.ok(problems.some((p) => re.test(p)), `${c.description}: ${problems.join(', ') || 'no problem found'}`);
  }
});

test('truncated IP packets are shorter than their headers say; no frame is below 14 bytes', () => {
  for (const c of cases) {
    assert.ok(c.data.length >= 14, c.description);
    if (!c.features.includes('truncated') || c.features.includes('non-ip')) continue;
    assert.ok(checkFrame(c.data).problems.length > 0 || c.data.length < 34, c.description);
  }
});

test('minLength: 0 also makes runts (shorter than Ethernet)', () => {
  const r = rng(5);
  let runts = 0;
  for (let i = 0; i < 3000; i++) if (randomPacketCase(r, { minLength: 0 }).data.length < 14) runts++;
  assert.ok(runts > 0);
});

test('a bias makes the given addresses, CIDRs, ports and protocols common', () => {
  const r = rng(11);
  const bias = { ipv4: ['192.168.7.7', '10.9.0.0/16'], ipv6: ['fd00:bee::/32'], ports: [8443], protos: [132] };
  let ip = 0;
  let hitAddr = 0;
  let sctp = 0;
  let port = 0;
  for (let i = 0; i < 2000; i++) {
    const c = randomPacketCase(r, bias);
    if (c.features.includes('malformed') || c.features.includes('truncated') || c.features.includes('vlan') || c.features.includes('qinq')) continue;
    const d = c.data;
    if (d.readUInt16BE(12) === 0x0800) {
      ip++;
      const addrs = [d.subarray(26, 30), d.subarray(30, 34)];
      if (addrs.some((a) => a.equals(ipv4ToBytes('192.168.7.7')) || (a[0] === 10 && a[1] === 9))) hitAddr++;
    } else if (d.readUInt16BE(12) === 0x86dd) {
      ip++;
      const prefix = ipv6ToBytes('fd00:bee::').subarray(0, 4);
      if ([d.subarray(22, 26), d.subarray(38, 42)].some((a) => a.equals(prefix))) hitAddr++;
    }
    if (c.features.includes('sctp')) sctp++;
    if (/ 8443( |$)/.test(c.description)) port++;
  }
  assert.ok(hitAddr > ip * 0.6, `biased addresses in ${hitAddr} of ${ip} IP packets`);
  assert.ok(sctp > ip * 0.3, `sctp in ${sctp} of ${ip}`);
  assert.ok(port > ip * 0.3, `port 8443 in ${port}`);
});

test('randomContext(): marks and interfaces from the given choices', () => {
  const r = rng(9);
  const seen = new Set<number | undefined>();
  for (let i = 0; i < 200; i++) {
    const c = randomContext(r, { ifindexes: [2, 3], marks: [0x42] });
    assert.ok(c.ifindex === 2 || c.ifindex === 3);
    seen.add(c.mark);
  }
  assert.ok(seen.has(0x42) && seen.has(undefined));
});

test('descriptions say what the packet is', () => {
  const c = cases.find((x) => x.features.includes('tcp') && x.features.includes('ipv4'))!;
  assert.match(c.description, /^ipv4/);
  assert.match(c.description, /tcp \d+ -> \d+ flags=/);
  assert.ok(isIpv4Text(c.description.split(' ')[1]!), c.description);
});

test('2,000 packets take well under a second', () => {
  const r = rng(1);
  const t = Date.now();
  for (let i = 0; i < 2000; i++) randomPacket(r);
  assert.ok(Date.now() - t < 1500, `${Date.now() - t} ms`);
});

test.run();
