/**
 * TS layouts of the structs in codegen/include/tsbpf/{ct,nat,lb,svc}.h, so
 * the runtime encodes and decodes the services program's maps without
 * hand-kept offsets (test/stateful/layouts.test.ts checks them against clang).
 */
import { array, struct, u16, u32, u64, u8, type Layout } from '../../sdk/layout.js';

export const TUPLE = struct(
  { src: array(u32, 4), dst: array(u32, 4), sport: u16, dport: u16, family: u8, proto: u8, icmp: u8, _pad: u8 },
  { name: 'tsbpf_tuple' },
);

export const CT_KEY = struct(
  { a: array(u32, 4), b: array(u32, 4), pa: u16, pb: u16, family: u8, proto: u8, _pad: u16 },
  { name: 'tsbpf_ct_key' },
);

export const CT_ENTRY = struct(
  {
    created_ns: u64,
    last_ns: u64,
    expires_ns: u64,
    packets: array(u64, 2),
    bytes: array(u64, 2),
    mark: u32,
    svc_id: u32,
    backend_id: u32,
    flags: u16,
    role: u8,
    state: u8,
    family: u8,
    proto: u8,
    dir_hook: array(u8, 2),
    nat_rule: u32,
    o: TUPLE,
    x: TUPLE,
    primary: CT_KEY,
  },
  { name: 'tsbpf_ct_entry' },
);

export const CT_STATES = 12;

export const CT_CONFIG = struct(
  { timeouts: array(u32, CT_STATES), seed: u32, nat_rules: u32, flags: u32, _pad: u32 },
  { name: 'tsbpf_ct_config' },
);

export const NAT_RULE = struct(
  {
    kind: u8,
    family: u8,
    proto: u8,
    _pad: u8,
    ifindex: u32,
    src_net: array(u32, 4),
    src_mask: array(u32, 4),
    dst_net: array(u32, 4),
    dst_mask: array(u32, 4),
    dport_min: u16,
    dport_max: u16,
    port_min: u16,
    port_max: u16,
    to_min: array(u32, 4),
    to_max: array(u32, 4),
  },
  { name: 'tsbpf_nat_rule' },
);

export const NAT_IFADDR = struct({ v4: u32, v6: array(u32, 4), has4: u8, has6: u8, _pad: u16 }, { name: 'tsbpf_nat_ifaddr' });

export const LB_KEY = struct({ addr: array(u32, 4), port: u16, proto: u8, family: u8 }, { name: 'tsbpf_lb_key' });

export const LB_SERVICE = struct({ id: u32, table: u32, affinity_s: u32, count: u16, mode: u8, flags: u8 }, { name: 'tsbpf_lb_service' });

export const LB_BACKEND = struct(
  { addr: array(u32, 4), port: u16, family: u8, flags: u8, svc_id: u32, weight: u32 },
  { name: 'tsbpf_lb_backend' },
);

/** struct tsbpf_lb_table: M backend ids (the runtime writes it as raw bytes). */
export function lbTable(m: number): Layout<{ ids: number[] }> {
  return struct({ ids: array(u32, m) }, { name: 'tsbpf_lb_table' });
}

export const LB_AFF_KEY = struct({ svc_id: u32, family: u32, addr: array(u32, 4) }, { name: 'tsbpf_lb_aff_key' });

export const LB_AFF = struct({ backend_id: u32, _pad: u32, last_ns: u64 }, { name: 'tsbpf_lb_aff' });

export const SVC_EVENT = struct(
  {
    ts_ns: u64,
    kind: u32,
    ifindex: u32,
    svc_id: u32,
    rule: u32,
    family: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    _pad: u16,
    src: array(u32, 4),
    dst: array(u32, 4),
  },
  { name: 'tsbpf_svc_event' },
);

/** Socket LB: reverse translation of a connected/sendmsg'd socket (sock.h). */
export const SOCK_REV_KEY = struct({ cookie: u64, addr: array(u32, 4), port: u16, family: u8, _pad: array(u8, 5) }, { name: 'tsbpf_sock_rev_key' });
export const SOCK_REV = struct({ addr: array(u32, 4), port: u16, family: u8, _pad: u8 }, { name: 'tsbpf_sock_rev' });

export type CtKeyRecord = ReturnType<typeof CT_KEY.decode>;
export type CtEntryRecord = ReturnType<typeof CT_ENTRY.decode>;
export type TupleRecord = ReturnType<typeof TUPLE.decode>;
export type SvcEventRecord = ReturnType<typeof SVC_EVENT.decode>;
