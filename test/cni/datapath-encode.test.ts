/**
 * How a compiled EndpointPolicy becomes entries of the endpoint program's
 * maps (cni/datapath/encode.ts): key layouts, port ranges merged, and
 * ipBlocks with exceptions turned into longest-prefix entries whose answer
 * equals "in the cidr and in no exception" for every address.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIp, parsePrefix, prefixContains } from '../../cni/addr.js';
import { cidrKey, directionEntries, endpointEntries, ipKey, MAX_RANGES, mergeRanges, policyKey, ruleSet, type PortRange } from '../../cni/datapath/encode.js';
import type { DirectionPolicy, PolicyRule } from '../../cni/policy/types.js';
import { serviceName, toServiceDef } from '../../cni/datapath/services.js';

const tcp = (from: number, to = from): PortRange => ({ proto: 6, from, to });

test('IPv4 is IPv4-mapped in 16 bytes: a /n is a /96+n', () => {
  const k = ipKey('10.1.2.3/32');
  assert.is(k.readUInt32LE(0), 128);
  assert.is(k.subarray(4).toString('hex'), '00000000000000000000ffff0a010203');
  assert.is(ipKey('fd00::1').readUInt32LE(0), 128);
  assert.is(ipKey('fd00::/8').subarray(4, 5).toString('hex'), 'fd');
  const c = cidrKey(7, 1, parsePrefix('10.0.0.0/8')!);
  assert.is(c.length, 28);
  assert.is(c.readUInt32LE(0), 64 + 96 + 8, 'ifindex and direction are a 64-bit exact prefix');
  assert.is(c.readUInt32LE(4), 7);
  assert.is(c[8], 1);
  assert.is(policyKey(7, 300, 0).toString('hex'), '070000002c01000000000000');
});

test('ranges: duplicates, overlaps and neighbours merge; ANY stands for everything', () => {
  assert.equal(mergeRanges([tcp(80), tcp(80), tcp(81, 90), tcp(85, 100), { proto: 17, from: 53, to: 53 }, tcp(443)]), [tcp(80, 100), tcp(443), { proto: 17, from: 53, to: 53 }]);
  assert.equal(mergeRanges([tcp(80), { proto: 0, from: 0, to: 65535 }]), [{ proto: 0, from: 0, to: 65535 }]);
  const b = ruleSet([tcp(5000, 6000)]);
  assert.is(b.length, 4 + MAX_RANGES * 8);
  assert.is(b.readUInt32LE(0), 1);
  assert.is(b.readUInt16LE(4), 5000);
  assert.is(b.readUInt16LE(6), 6000);
  assert.is(b[8], 6);
});

function rule(peer: PolicyRule['peer'], protocol: PolicyRule['protocol'], from = 0, to = 65535): PolicyRule {
  return { peer, protocol, portFrom: from, portTo: to };
}

/** What the datapath answers for an address: the ranges of the longest matching prefix. */
function lpm(entries: ReturnType<typeof directionEntries>, ip: string): PortRange[] {
  const a = parseIp(ip)!;
  let best: { len: number; ranges: PortRange[] } | undefined;
  for (const { prefix, ranges } of entries.cidrs.values()) if (prefixContains(prefix, a) && (!best || prefix.len > best.len)) best = { len: prefix.len, ranges };
  return best?.ranges ?? [];
}

test('ipBlocks with exceptions: the longest prefix carries exactly the rules that apply there', () => {
  const d: DirectionPolicy = {
    isolated: true,
    policies: ['x/y'],
    rules: [
      rule({ kind: 'cidr', cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }, 'TCP', 80, 80),
      rule({ kind: 'cidr', cidr: '10.1.0.0/16', except: ['10.1.2.0/24'] }, 'UDP', 53, 53),
      rule({ kind: 'cidr', cidr: '10.1.2.3/32', except: [] }, 'ANY'),
      rule({ kind: 'identity', identity: 300 }, 'TCP', 5432, 5432),
      rule({ kind: 'identity', identity: 300 }, 'TCP', 5433, 5440),
      rule({ kind: 'all' }, 'SCTP', 9, 9),
    ],
  };
  const e = directionEntries(d);
  assert.equal(e.identities.get(300), [tcp(5432, 5440)]);
  assert.equal(e.identities.get(0), [{ proto: 132, from: 9, to: 9 }]);
  assert.equal(lpm(e, '10.9.9.9'), [tcp(80)]);
  assert.equal(lpm(e, '10.1.9.9'), [{ proto: 17, from: 53, to: 53 }], 'the /8 rule excepts 10.1/16, the /16 rule applies');
  assert.equal(lpm(e, '10.1.2.9'), [], 'excepted by both');
  assert.equal(lpm(e, '10.1.2.3'), [{ proto: 0, from: 0, to: 65535 }]);
  assert.equal(lpm(e, '11.0.0.1'), []);
  assert.equal(e.overflow, []);
});

test('an endpoint: isolation flags, entries only for isolated directions; too many ranges fail closed', () => {
  const open: DirectionPolicy = { isolated: false, rules: [], policies: [] };
  const many: DirectionPolicy = { isolated: true, policies: ['a/b'], rules: Array.from({ length: MAX_RANGES + 1 }, (_, i) => rule({ kind: 'identity', identity: 400 }, 'TCP', 1000 + 2 * i, 1000 + 2 * i)) };
  const e = endpointEntries(9, { pod: { namespace: 'a', name: 'p' }, identity: 300, ingress: many, egress: open });
  assert.is(e.ep.toString('hex'), '2c0100000100' + '0000');
  assert.is(e.policy.length, 1);
  assert.is(e.policy[0]![1].readUInt32LE(0), 0, 'no ranges: denied');
  assert.equal(e.overflow, ['ingress identity 400']);
  assert.is(e.cidr.length, 0);
});

test('a ServiceEntry as the services program sees it: names made identifiers, affinity, SCTP left out', () => {
  const e = { key: 'shop/db:10.96.0.20:5432/TCP', namespace: 'shop', name: 'db', vip: '10.96.0.20', port: 5432, protocol: 'TCP' as const, affinityTimeout: 600, backends: [{ addr: '10.1.0.3', port: 5432 }] };
  assert.is(serviceName(e.key), 'svc_shop.db.10.96.0.20.5432.TCP');
  const d = toServiceDef(e)!;
  assert.equal([d.vip, d.port, d.protocol, d.affinityTimeout, d.backends.map((b) => `${b.addr}:${b.port}:${b.ready}`)], ['10.96.0.20', 5432, 'tcp', 600, ['10.1.0.3:5432:true']]);
  assert.is(toServiceDef({ ...e, protocol: 'SCTP' }), undefined);
  assert.is(toServiceDef({ ...e, protocol: 'UDP', affinityTimeout: 0 })!.affinityTimeout, 0);
});

test.run();
