/**
 * The stateful model in TS alone (no kernel): conntrack keys and the TCP
 * state machine, the services DSL and its validation, the control plane's
 * ordered map changes, NAT checksum arithmetic, and what evaluateServices
 * makes of a connection's packets.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addrWords, CT_STATE, CT_STATE_NAMES, ctInit, flowHash, keyId, keyOf, reverseTuple, tcpStep, type Tuple } from '../../sdk/ct.js';
import { DslError } from '../../sdk/errors.js';
import { Rng } from '../../sdk/generate.js';
import { csumReplace, halves } from '../../sdk/nat.js';
import { packet } from '../../sdk/packet.js';
import { parsePacket, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../sdk/parse.js';
import { serviceDef, services, ServiceTable } from '../../sdk/services.js';
import { evaluateServices, ServicesState } from '../../sdk/stateful.js';
import { checkFrame } from '../packet/verify.js';
import { onesSum } from '../../sdk/checksum.js';

const tuple = (src: string, sport: number, dst: string, dport: number, proto = 6): Tuple => ({
  src: addrWords(src),
  dst: addrWords(dst),
  sport,
  dport,
  family: src.includes(':') ? 6 : 4,
  proto,
  icmp: 0,
});

test('a connection has one key from either end; different connections have different keys', () => {
  const t = tuple('10.0.0.2', 40000, '10.96.0.1', 80);
  assert.is(keyId(keyOf(t)), keyId(keyOf(reverseTuple(t))));
  assert.is.not(keyId(keyOf(t)), keyId(keyOf(tuple('10.0.0.2', 40001, '10.96.0.1', 80))));
  assert.is.not(keyId(keyOf(t)), keyId(keyOf({ ...t, proto: 17 })));
  assert.is(flowHash(t, 1), flowHash(t, 1));
  assert.is.not(flowHash(t, 1), flowHash(t, 2));
});

test('TCP states follow the flags of both directions', () => {
  const v = parsePacket(packet().ipv4({ src: '10.0.0.1', dst: '10.0.0.2' }).tcp({ sport: 1, dport: 2, flags: 'S' }).build());
  const t = tuple('10.0.0.1', 1, '10.0.0.2', 2);
  const e = ctInit(t, v, new Array(12).fill(1), CT_STATE['tcp-syn-sent'], 1, 0n);
  const name = () => CT_STATE_NAMES[e.state];
  tcpStep(e, TCP_SYN, 0);
  assert.is(name(), 'tcp-syn-sent', 'a retransmitted SYN');
  tcpStep(e, TCP_SYN | TCP_ACK, 1);
  assert.is(name(), 'tcp-syn-recv');
  tcpStep(e, TCP_ACK, 0);
  assert.is(name(), 'tcp-established');
  tcpStep(e, TCP_FIN | TCP_ACK, 0);
  assert.is(name(), 'tcp-fin-wait');
  tcpStep(e, TCP_ACK, 1);
  assert.is(name(), 'tcp-fin-wait');
  tcpStep(e, TCP_FIN | TCP_ACK, 1);
  assert.is(name(), 'tcp-closing');
  tcpStep(e, TCP_ACK, 0);
  assert.is(name(), 'tcp-time-wait');
  tcpStep(e, TCP_RST, 1);
  assert.is(name(), 'tcp-close');
});

test('services() builds a checked definition; mistakes name the service and the source line', () => {
  const def = services('web', { tableSize: 251 }, (s) => {
    s.service('a', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.1', port: 8080 }, { addr: '10.1.0.2' }] });
    s.masquerade({ out: 'eth0', from: '10.1.0.0/16' });
  });
  assert.is(def.services[0]!.backends[1]!.port, 80, 'a backend port defaults to the service port');
  assert.is(def.services[0]!.mode, 'maglev');
  assert.equal(def.nat[0], { kind: 'masquerade', family: 4, ifname: 'eth0', src: '10.1.0.0/16' });
  const bad: Array<[() => unknown, RegExp]> = [
    [() => services('x', {}, (s) => s.service('a', { vip: '10.96.0.1', port: 70000 })), /port 70000/],
    [() => services('x', {}, (s) => s.service('a', { vip: '10.96.0.1', port: 80, backends: [{ addr: 'fd00::1' }] })), /not an IPv4 address like the VIP/],
    [() => services('x', {}, (s) => s.service('a', { vip: '10.96.0.0/24', port: 80 })), /VIP '10.96.0.0\/24' is not an address/],
    [() => services('x', { tableSize: 1000 }), /prime/],
    [() => services('x', {}, (s) => s.snat({ to: '10.0.0.1', toPort: [5, 2] })), /port range/],
    [() => services('x', {}, (s) => s.snat({ to: ['10.0.0.9', '10.0.0.1'] })), /must be ascending/],
    [
      () =>
        services('x', {}, (s) => {
          s.service('a', { vip: '10.96.0.1', port: 80 });
          s.service('b', { vip: '10.96.0.1', port: 80 });
        }),
      /already another service/,
    ],
    [() => services('much-too-long-name'), /at most 10 characters/],
  ];
  for (const [fn, re] of bad) {
    try {
      fn();
      assert.unreachable(`no error for ${re}`);
    } catch (e) {
      assert.instance(e, DslError, `${String(e)}`);
      assert.match((e as Error).message, re);
      assert.match((e as Error).message, /model\.test\.ts:\d+:\d+/, 'the message names where it was written');
    }
  }
});

test('the control plane orders changes so a packet never sees half a service', () => {
  const table = new ServiceTable({ tableSize: 251, maxServices: 10, maxBackends: 100 });
  const v1 = serviceDef('a', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.1' }, { addr: '10.1.0.2' }] });
  const c1 = table.upsert(v1);
  assert.equal(
    c1.map((c) => `${c.map}:${c.op}`),
    ['backends:set', 'backends:set', 'tables:set', 'services:set'],
  );
  const ids1 = table.list()[0]!.backendIds;
  const v2 = serviceDef('a', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.2' }, { addr: '10.1.0.3' }] });
  const c2 = table.upsert(v2);
  assert.equal(
    c2.map((c) => `${c.map}:${c.op}`),
    ['backends:set', 'tables:set', 'services:set', 'tables:delete', 'backends:delete'],
    'new backend and table first, the service flips, then the old ones go',
  );
  assert.is(table.list()[0]!.backendIds['10.1.0.2:80'], ids1['10.1.0.2:80'], 'a kept backend keeps its id');
  // Readiness only: no new table id when the table does not change... it does change here.
  const c3 = table.upsert({ ...v2, backends: v2.backends.map((b) => ({ ...b, ready: b.addr !== '10.1.0.3' })) });
  assert.ok(c3.some((c) => c.map === 'tables' && c.op === 'set'), 'a backend that is not ready leaves the table');
  assert.is(table.lookup({ addr: addrWords('10.96.0.1'), port: 80, proto: 6, family: 4 })!.count, 1);
  const d = table.delete('a');
  assert.equal(d[0]!.map, 'services', 'deleting removes the service entry first');
  assert.is(table.size, 0);
  const small = new ServiceTable({ tableSize: 251, maxServices: 1, maxBackends: 100 });
  small.upsert(v1);
  assert.throws(() => small.upsert({ ...v1, name: 'b', port: 81 }), /at most 1 services/);
});

test('checksum updates equal a full recomputation', () => {
  const rng = new Rng(5);
  for (let i = 0; i < 2000; i++) {
    const data = Buffer.alloc(20);
    for (let j = 0; j < 20; j++) data[j] = rng.int(0, 255);
    data.writeUInt16BE(0, 10);
    data.writeUInt16BE(~onesSum(data) & 0xffff, 10);
    const old = data.readUInt32BE(4);
    const neu = rng.u32();
    const c = csumReplace(data.readUInt16BE(10), halves([old]), halves([neu]));
    data.writeUInt32BE(neu, 4);
    data.writeUInt16BE(c, 10);
    assert.is(onesSum(data), 0xffff, `update ${i}`);
  }
});

test('evaluateServices: a connection to a VIP is translated both ways and tracked', () => {
  const def = services('e', { hashSeed: 1 }, (s) => s.service('a', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.7', port: 8080 }] }));
  const st = new ServicesState(def);
  const ing = (p: Buffer) => evaluateServices(st, p, { hook: 'tc-ingress', now: 1n });
  const syn = ing(packet().ipv4({ src: '10.0.0.2', dst: '10.96.0.1' }).tcp({ sport: 40000, dport: 80, flags: 'S' }).build());
  assert.is(syn.ctState, 'new');
  const out = parsePacket(syn.data);
  assert.is(out.ipv4!.dst, addrWords('10.1.0.7')[0]);
  assert.is(out.tcp!.dport, 8080);
  assert.equal(checkFrame(syn.data).problems, []);
  const synack = ing(packet().ipv4({ src: '10.1.0.7', dst: '10.0.0.2' }).tcp({ sport: 8080, dport: 40000, flags: 'SA' }).build());
  assert.is(synack.ctState, 'established');
  assert.is(synack.direction, 'reply');
  const back = parsePacket(synack.data);
  assert.is(back.ipv4!.src, addrWords('10.96.0.1')[0], 'the reply comes from the VIP');
  assert.is(back.tcp!.sport, 80);
  assert.is(CT_STATE_NAMES[synack.entry!.state], 'tcp-syn-recv');
  // An ICMP error from the backend about the connection: related, inner headers translated back.
  const quoted = syn.data.subarray(14);
  const err = ing(packet().ipv4({ src: '10.1.0.7', dst: '10.0.0.2' }).icmp({ type: 'dest-unreachable', code: 'port-unreachable', payload: quoted }).build());
  assert.is(err.ctState, 'related');
  const inner = parsePacket(Buffer.concat([err.data.subarray(0, 14), err.data.subarray(14 + 28)]));
  assert.is(inner.ipv4!.dst, addrWords('10.96.0.1')[0]);
  assert.is(inner.tcp!.dport, 80);
  // Invalid: a RST that belongs to nothing.
  const rst = ing(packet().ipv4({ src: '10.0.0.9', dst: '10.0.0.3' }).tcp({ sport: 1, dport: 2, flags: 'R' }).build());
  assert.is(rst.ctState, 'invalid');
  assert.is(st.stats.lbNew, 1);
});

test.run();
