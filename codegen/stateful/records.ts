/**
 * Between the services program's map records (layouts.ts) and the sdk's
 * model types (sdk/ct.ts, sdk/services.ts, sdk/nat.ts), both ways.
 */
import type { BackendRecord, LbKeyRecord, ServiceRecord } from '../../sdk/services.js';
import type { CtEntry, CtKey, Tuple, Words } from '../../sdk/ct.js';
import type { NatRuleRecord } from '../../sdk/nat.js';
import type { ServiceEvent } from '../../sdk/stateful.js';
import { SVC_EVENT_KIND } from '../../sdk/stateful.js';
import type { CtEntryRecord, CtKeyRecord, SvcEventRecord, TupleRecord } from './layouts.js';

const w4 = (a: readonly number[]): Words => [a[0]! >>> 0, a[1]! >>> 0, a[2]! >>> 0, a[3]! >>> 0];

export function tupleFromRecord(r: TupleRecord): Tuple {
  return { src: w4(r.src), dst: w4(r.dst), sport: r.sport, dport: r.dport, family: r.family as 4 | 6, proto: r.proto, icmp: r.icmp };
}

export function tupleToRecord(t: Tuple): TupleRecord {
  return { src: [...t.src], dst: [...t.dst], sport: t.sport, dport: t.dport, family: t.family, proto: t.proto, icmp: t.icmp, _pad: 0 };
}

export function keyFromRecord(r: CtKeyRecord): CtKey {
  return { a: w4(r.a), b: w4(r.b), pa: r.pa, pb: r.pb, family: r.family, proto: r.proto };
}

export function keyToRecord(k: CtKey): CtKeyRecord {
  return { a: [...k.a], b: [...k.b], pa: k.pa, pb: k.pb, family: k.family, proto: k.proto, _pad: 0 };
}

export function entryFromRecord(r: CtEntryRecord): CtEntry {
  return {
    createdNs: r.created_ns,
    lastNs: r.last_ns,
    expiresNs: r.expires_ns,
    packets: [r.packets[0]!, r.packets[1]!],
    bytes: [r.bytes[0]!, r.bytes[1]!],
    mark: r.mark,
    svcId: r.svc_id,
    backendId: r.backend_id,
    flags: r.flags,
    role: r.role,
    state: r.state,
    family: r.family,
    proto: r.proto,
    dirHook: [r.dir_hook[0]!, r.dir_hook[1]!],
    natRule: r.nat_rule,
    o: tupleFromRecord(r.o),
    x: tupleFromRecord(r.x),
    primary: keyFromRecord(r.primary),
  };
}

export function entryToRecord(e: CtEntry): CtEntryRecord {
  return {
    created_ns: e.createdNs,
    last_ns: e.lastNs,
    expires_ns: e.expiresNs,
    packets: [...e.packets],
    bytes: [...e.bytes],
    mark: e.mark,
    svc_id: e.svcId,
    backend_id: e.backendId,
    flags: e.flags,
    role: e.role,
    state: e.state,
    family: e.family,
    proto: e.proto,
    dir_hook: [...e.dirHook],
    nat_rule: e.natRule,
    o: tupleToRecord(e.o),
    x: tupleToRecord(e.x),
    primary: keyToRecord(e.primary),
  };
}

export function natRuleToRecord(r: NatRuleRecord): Record<string, unknown> {
  return { ...r, _pad: 0, src_net: [...r.src_net], src_mask: [...r.src_mask], dst_net: [...r.dst_net], dst_mask: [...r.dst_mask], to_min: [...r.to_min], to_max: [...r.to_max] };
}

export function eventFromRecord(r: SvcEventRecord): ServiceEvent & { tsNs: bigint } {
  return {
    kind: SVC_EVENT_KIND[r.kind] ?? 'clash',
    ifindex: r.ifindex,
    svcId: r.svc_id,
    rule: r.rule === 0xffffffff ? undefined : r.rule,
    tuple: { src: w4(r.src), dst: w4(r.dst), sport: r.sport, dport: r.dport, family: r.family as 4 | 6, proto: r.proto, icmp: 0 },
    tsNs: r.ts_ns,
  };
}

// Fast encoders for bulk programming (the layouts' generic encoders cost more than
// the syscalls at 100,000 records); test/stateful/layouts.test.ts checks they agree.

/** struct tsbpf_lb_backend, 28 bytes. */
export function encodeBackend(b: BackendRecord, out = Buffer.alloc(28), at = 0): Buffer {
  out.writeUInt32LE(b.addr[0] >>> 0, at);
  out.writeUInt32LE(b.addr[1] >>> 0, at + 4);
  out.writeUInt32LE(b.addr[2] >>> 0, at + 8);
  out.writeUInt32LE(b.addr[3] >>> 0, at + 12);
  out.writeUInt16LE(b.port, at + 16);
  out[at + 18] = b.family;
  out[at + 19] = b.flags;
  out.writeUInt32LE(b.svc_id >>> 0, at + 20);
  out.writeUInt32LE(b.weight >>> 0, at + 24);
  return out;
}

/** struct tsbpf_lb_key, 20 bytes. */
export function encodeLbKey(k: LbKeyRecord, out = Buffer.alloc(20), at = 0): Buffer {
  for (let i = 0; i < 4; i++) out.writeUInt32LE(k.addr[i]! >>> 0, at + 4 * i);
  out.writeUInt16LE(k.port, at + 16);
  out[at + 18] = k.proto;
  out[at + 19] = k.family;
  return out;
}

/** struct tsbpf_lb_service, 16 bytes. */
export function encodeService(s: ServiceRecord, out = Buffer.alloc(16), at = 0): Buffer {
  out.writeUInt32LE(s.id >>> 0, at);
  out.writeUInt32LE(s.table >>> 0, at + 4);
  out.writeUInt32LE(s.affinity_s >>> 0, at + 8);
  out.writeUInt16LE(s.count, at + 12);
  out[at + 14] = s.mode;
  out[at + 15] = s.flags;
  return out;
}

/** A u32 key. */
export function encodeU32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}
