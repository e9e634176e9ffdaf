/**
 * TS layouts of the C structs in codegen/include/tsbpf/*.h, so maps and ring
 * buffer records of generated objects decode without hand-kept offsets.
 * The parse agreement test checks PKT against what the kernel writes.
 */
import { array, bytes, ipv4, ipv6, struct, u16, u32, u64, u8, type Layout } from '../sdk/layout.js';
import type { PacketView } from '../sdk/parse.js';

/** struct tsbpf_pkt (parse.h). */
export const PKT = struct(
  {
    present: u32,
    len: u32,
    eth_dst: u64,
    eth_src: u64,
    eth_type: u16,
    ethertype: u16,
    l3_off: u16,
    l4_off: u16,
    vlan_tpid: array(u16, 2),
    vlan_tci: array(u16, 2),
    nvlan: u8,
    proto: u8,
    ip_dscp: u8,
    ip_ecn: u8,
    ip_ttl: u8,
    ip4_ihl: u8,
    ip4_flags: u8,
    ip6_nexthdr: u8,
    ip_len: u16,
    ip_id: u16,
    ip4_csum: u16,
    ip6_ext: u8,
    frag_more: u8,
    frag_off: u16,
    _pad0: u16,
    frag_id: u32,
    ip6_flow: u32,
    ip4_src: u32,
    ip4_dst: u32,
    ip6_src: array(u32, 4),
    ip6_dst: array(u32, 4),
    sport: u16,
    dport: u16,
    tcp_seq: u32,
    tcp_ack: u32,
    tcp_doff: u8,
    tcp_flags: u8,
    tcp_window: u16,
    tcp_urg: u16,
    l4_csum: u16,
    udp_len: u16,
    icmp_type: u8,
    icmp_code: u8,
    sctp_vtag: u32,
    sctp_csum: u32,
  },
  { name: 'tsbpf_pkt' },
);
export type PktRecord = ReturnType<typeof PKT.decode>;

/** Presence bits of tsbpf_pkt.present. */
export const HAS = {
  ETH: 1 << 0,
  L3: 1 << 1,
  IPV4: 1 << 2,
  IPV6: 1 << 3,
  PROTO: 1 << 4,
  L4OFF: 1 << 5,
  FRAG: 1 << 6,
  TCP: 1 << 7,
  UDP: 1 << 8,
  SCTP: 1 << 9,
  ICMP: 1 << 10,
  ICMPV6: 1 << 11,
} as const;

export const MAX_DEPTH = 8;

/** struct tsbpf_state (filter.h). */
export const STATE = struct(
  {
    pkt: PKT,
    mark: u32,
    ifindex: u32,
    resume: u32,
    depth: u32,
    redirect_ifindex: u32,
    tail_calls: u32,
    stack: array(struct({ slot: u16, rule: u16 }, { name: 'tsbpf_frame' }), MAX_DEPTH),
  },
  { name: 'tsbpf_state' },
);

/** struct tsbpf_counter: per-rule packets and bytes (one per CPU in the map). */
export const COUNTER = struct({ packets: u64, bytes: u64 }, { name: 'tsbpf_counter' });

/** struct tsbpf_log_event: one record on the events ring buffer. */
export const LOG_EVENT = struct(
  {
    ts_ns: u64,
    rule_id: u32,
    action: u16,
    verdict: u8,
    family: u8,
    ifindex: u32,
    len: u32,
    mark: u32,
    proto: u8,
    _pad0: u8,
    sport: u16,
    dport: u16,
    _pad1: u16,
    src: bytes(16),
    dst: bytes(16),
  },
  { name: 'tsbpf_log_event' },
);

/** Verdict codes in log events (TSBPF_V_*). */
export const VERDICT_CODE = { continue: 0, accept: 1, drop: 2, reject: 3, redirect: 4 } as const;

/** struct tsbpf_bucket (the spin lock is a u32). */
export const BUCKET = struct({ lock: u32, started: u32, credit: u64, last: u64 }, { name: 'tsbpf_bucket' });
export const KBUCKET = struct({ credit: u64, last: u64 }, { name: 'tsbpf_kbucket' });
export const LIMIT_KEY = struct({ family: u32, addr: bytes(16) }, { name: 'tsbpf_limit_key' });

/** LPM trie keys of address sets: { prefixlen, address in network order }. */
export const LPM4_KEY = struct({ prefixlen: u32, addr: ipv4 }, { name: 'tsbpf_lpm4_key' });
export const LPM6_KEY = struct({ prefixlen: u32, addr: ipv6 }, { name: 'tsbpf_lpm6_key' });

export const SET_VALUE: Layout<number> = u8;

/** The tsbpf_pkt record the C parser writes for a frame, derived from sdk/parse.ts's view. */
export function pktRecordOf(v: PacketView): PktRecord {
  const r: PktRecord = {
    present: 0,
    len: v.len,
    eth_dst: 0n,
    eth_src: 0n,
    eth_type: 0,
    ethertype: 0,
    l3_off: 0,
    l4_off: 0,
    vlan_tpid: [0, 0],
    vlan_tci: [0, 0],
    nvlan: 0,
    proto: 0,
    ip_dscp: 0,
    ip_ecn: 0,
    ip_ttl: 0,
    ip4_ihl: 0,
    ip4_flags: 0,
    ip6_nexthdr: 0,
    ip_len: 0,
    ip_id: 0,
    ip4_csum: 0,
    ip6_ext: 0,
    frag_more: 0,
    frag_off: 0,
    _pad0: 0,
    frag_id: 0,
    ip6_flow: 0,
    ip4_src: 0,
    ip4_dst: 0,
    ip6_src: [0, 0, 0, 0],
    ip6_dst: [0, 0, 0, 0],
    sport: 0,
    dport: 0,
    tcp_seq: 0,
    tcp_ack: 0,
    tcp_doff: 0,
    tcp_flags: 0,
    tcp_window: 0,
    tcp_urg: 0,
    l4_csum: 0,
    udp_len: 0,
    icmp_type: 0,
    icmp_code: 0,
    sctp_vtag: 0,
    sctp_csum: 0,
  };
  let present = 0;
  if (v.eth) {
    present |= HAS.ETH;
    r.eth_dst = BigInt(v.eth.dst);
    r.eth_src = BigInt(v.eth.src);
    r.eth_type = v.eth.type;
  }
  r.nvlan = v.vlan.length;
  v.vlan.forEach((t, i) => {
    r.vlan_tpid[i] = t.tpid;
    r.vlan_tci[i] = (t.pcp << 13) | (t.dei << 12) | t.id;
  });
  if (v.ethertype !== undefined) {
    present |= HAS.L3;
    r.ethertype = v.ethertype;
    r.l3_off = v.l3Offset!;
  }
  const words = (x: bigint) => [0, 1, 2, 3].map((i) => Number((x >> BigInt(96 - 32 * i)) & 0xffffffffn));
  if (v.ipv4) {
    const ip = v.ipv4;
    present |= HAS.IPV4;
    r.ip4_ihl = ip.ihl;
    r.ip_dscp = ip.dscp;
    r.ip_ecn = ip.ecn;
    r.ip_len = ip.totalLength;
    r.ip_id = ip.id;
    r.ip4_flags = (ip.df ? 2 : 0) | (ip.mf ? 1 : 0);
    r.ip_ttl = ip.ttl;
    r.ip4_csum = ip.checksum;
    r.ip4_src = ip.src;
    r.ip4_dst = ip.dst;
  }
  if (v.ipv6) {
    const ip = v.ipv6;
    present |= HAS.IPV6;
    r.ip_dscp = ip.dscp;
    r.ip_ecn = ip.ecn;
    r.ip6_flow = ip.flowLabel;
    r.ip_len = ip.payloadLength;
    r.ip6_nexthdr = ip.nextHeader;
    r.ip_ttl = ip.hopLimit;
    r.ip6_src = words(ip.src);
    r.ip6_dst = words(ip.dst);
    r.ip6_ext = ip.extHeaders;
  }
  if (v.proto !== undefined) {
    present |= HAS.PROTO;
    r.proto = v.proto;
  }
  if (v.l4Offset !== undefined) {
    present |= HAS.L4OFF;
    r.l4_off = v.l4Offset;
  }
  if (v.fragment) {
    present |= HAS.FRAG;
    r.frag_off = v.fragment.offset;
    r.frag_more = v.fragment.more ? 1 : 0;
    r.frag_id = v.fragment.id;
  }
  if (v.tcp) {
    present |= HAS.TCP;
    Object.assign(r, {
      sport: v.tcp.sport,
      dport: v.tcp.dport,
      tcp_seq: v.tcp.seq,
      tcp_ack: v.tcp.ack,
      tcp_doff: v.tcp.doff,
      tcp_flags: v.tcp.flags,
      tcp_window: v.tcp.window,
      l4_csum: v.tcp.checksum,
      tcp_urg: v.tcp.urgent,
    });
  }
  if (v.udp) {
    present |= HAS.UDP;
    Object.assign(r, { sport: v.udp.sport, dport: v.udp.dport, udp_len: v.udp.length, l4_csum: v.udp.checksum });
  }
  if (v.sctp) {
    present |= HAS.SCTP;
    Object.assign(r, { sport: v.sctp.sport, dport: v.sctp.dport, sctp_vtag: v.sctp.vtag, sctp_csum: v.sctp.checksum });
  }
  const icmp = v.icmp ?? v.icmpv6;
  if (icmp) {
    present |= v.icmp ? HAS.ICMP : HAS.ICMPV6;
    Object.assign(r, { icmp_type: icmp.type, icmp_code: icmp.code, l4_csum: icmp.checksum });
  }
  r.present = present;
  return r;
}
