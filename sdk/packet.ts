/**
 * A fluent, typed builder for test packets:
 *
 *   packet().eth().vlan({ id: 10 }).ipv4({ src: '10.0.0.1', dst: '10.0.0.2' })
 *     .tcp({ sport: 40000, dport: 80, flags: 'S' }).payload('hello').build()
 *
 * Every length and checksum (IPv4 header, TCP/UDP/ICMPv6 with their
 * pseudo-headers, ICMP, SCTP's CRC32c) is computed unless the options give
 * the field explicitly, which is how malformed packets are made; `corrupt()`
 * names the common cases. `truncate(n)` cuts the finished frame.
 *
 * Builders are immutable: every call returns a new builder, so a prefix can
 * be shared (`const base = packet().ipv4(...)`; `base.tcp(...)`, `base.udp(...)`).
 * `packet()` returns a view typed by stage (TCP only after an IP layer, ICMP
 * only after IPv4...); `PacketBuilder` itself accepts any order, for generators.
 * A packet that starts at IP or VLAN gets a default Ethernet header.
 */
import { TsbpfError } from './errors.js';
import { addressBytes } from './packet-addr.js';
import { crc32c, internetChecksum, ipv4PseudoHeaderSum, ipv6PseudoHeaderSum, onesSum } from './checksum.js';

// ---------------------------------------------------------------------------
// Options of each layer

export type MacInput = string | Uint8Array;
export type Ipv4Input = string | Uint8Array;
export type Ipv6Input = string | Uint8Array;
/** Payload bytes: raw bytes, a UTF-8 string, or a count of filler bytes (0, 1, 2, ...). */
export type PayloadInput = Uint8Array | string | number;

export interface EthOptions {
  /** Default 02:00:00:00:00:01. */
  src?: MacInput;
  /** Default 02:00:00:00:00:02. */
  dst?: MacInput;
  /** Ethertype; default from the next layer (VLAN TPID, 0x0800, 0x86dd, else 0x88b5). */
  type?: number;
}

export interface VlanOptions {
  /** 12-bit VLAN id. */
  id: number;
  /** Priority code point, 0..7 (default 0). */
  pcp?: number;
  /** Drop eligible indicator (default false). */
  dei?: boolean;
  /** The TPID written before this tag (by Ethernet or the outer tag): 0x8100 (default) or 0x88a8. */
  tpid?: number;
  /** Ethertype after the tag; default from the next layer. */
  type?: number;
}

export interface Ipv4Options {
  src: Ipv4Input;
  dst: Ipv4Input;
  /** Default 64. */
  ttl?: number;
  /** The whole TOS byte; wins over dscp/ecn. */
  tos?: number;
  dscp?: number;
  ecn?: number;
  /** Identification (default 0). */
  id?: number;
  /** The 3 flag bits as a number (0x4 reserved, 0x2 DF, 0x1 MF); OR-ed with df/mf. */
  flags?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units, as in the header. */
  fragOffset?: number;
  /** Raw IPv4 options, padded with end-of-list (0) to a multiple of 4; at most 40 bytes. */
  options?: Uint8Array;
  /** Protocol; default from the next layer (6, 17, 132, 1, 58, 4, 41), else 253. */
  proto?: number;
  /** Overrides (malformed packets): the values written instead of the computed ones. */
  version?: number;
  ihl?: number;
  totalLength?: number;
  checksum?: number;
}

export type Ipv6Extension =
  /** TLV options (padded with Pad1/PadN to a multiple of 8 bytes). */
  | { type: 'hop-by-hop' | 'dest-opts'; options?: Uint8Array }
  /** Routing header; data follows the 4 fixed bytes (default 4 reserved zero bytes), padded to 8. */
  | { type: 'routing'; routingType?: number; segmentsLeft?: number; data?: Uint8Array }
  /** Fragment header; offset in 8-byte units. */
  | { type: 'fragment'; offset?: number; mf?: boolean; id?: number }
  /** Authentication header; ICV default 12 zero bytes (padded so the header is a multiple of 8). */
  | { type: 'ah'; spi?: number; seq?: number; icv?: Uint8Array }
  /** Any other next-header value with the generic (next, length, data) layout. */
  | { type: number; data?: Uint8Array };

export interface Ipv6Options {
  src: Ipv6Input;
  dst: Ipv6Input;
  /** Default 64. */
  hopLimit?: number;
  /** The whole traffic class byte; wins over dscp/ecn. */
  trafficClass?: number;
  dscp?: number;
  ecn?: number;
  /** 20-bit flow label (default 0). */
  flowLabel?: number;
  /** Extension headers in wire order. */
  extensions?: Ipv6Extension[];
  /** Upper-layer protocol (the last next-header); default from the next layer, else 59 (no next header). */
  proto?: number;
  /** Overrides (malformed packets). */
  version?: number;
  payloadLength?: number;
}

export type TcpFlagName = 'fin' | 'syn' | 'rst' | 'psh' | 'ack' | 'urg' | 'ece' | 'cwr';
/** A number, letters ('S', 'SA', 'FA', 'PA', 'R'; F S R P A U E C, '.' = ack), 'syn,ack', or names. */
export type TcpFlagsInput = number | string | TcpFlagName[];

export type TcpOption =
  | { kind: 'eol' }
  | { kind: 'nop' }
  | { kind: 'mss'; value: number }
  | { kind: 'wscale'; value: number }
  | { kind: 'sack-permitted' }
  | { kind: 'sack'; blocks: Array<[number, number]> }
  | { kind: 'timestamp'; value: number; echo?: number }
  /** Any option by number: kind, length, data. */
  | { kind: number; data?: Uint8Array };

export interface TcpOptions {
  sport: number;
  dport: number;
  /** Default 'S'. */
  flags?: TcpFlagsInput;
  seq?: number;
  ack?: number;
  /** Default 65535. */
  window?: number;
  urgent?: number;
  /** Raw bytes or a list; padded with end-of-list to a multiple of 4; at most 40 bytes. */
  options?: Uint8Array | TcpOption[];
  /** Overrides (malformed packets): data offset in 32-bit words, checksum. */
  dataOffset?: number;
  checksum?: number;
}

export interface UdpOptions {
  sport: number;
  dport: number;
  /** Overrides: the length field; the checksum (0 = none, allowed over IPv4). */
  length?: number;
  checksum?: number;
}

export type SctpChunkType =
  | 'data' | 'init' | 'init-ack' | 'sack' | 'heartbeat' | 'heartbeat-ack' | 'abort'
  | 'shutdown' | 'shutdown-ack' | 'error' | 'cookie-echo' | 'cookie-ack' | 'shutdown-complete';

export interface SctpChunk {
  type: number | SctpChunkType;
  flags?: number;
  /** Chunk value after the 4-byte chunk header; padded to a multiple of 4. */
  value?: Uint8Array;
}

export interface SctpOptions {
  sport: number;
  dport: number;
  /** Verification tag (default 0, as in an INIT). */
  vtag?: number;
  /** Chunks after the common header (raw bytes or a list). Payload added later follows them. */
  chunks?: Uint8Array | SctpChunk[];
  /** Override of the CRC32c, as the 32-bit value (stored little-endian). */
  checksum?: number;
}

export interface IcmpOptions<TypeName extends string = IcmpTypeName> {
  type: number | TypeName;
  /** Code by number or by name for the type (e.g. 'port-unreachable'); default 0. */
  code?: number | string;
  /** Echo identifier and sequence (bytes 4..7 of the header). */
  id?: number;
  seq?: number;
  /** MTU for fragmentation-needed / packet-too-big. */
  mtu?: number;
  /** Bytes 4..7 as one 32-bit value; wins over id/seq/mtu. */
  rest?: number;
  /** Message body after the 8-byte header; payload() added later follows it. */
  payload?: PayloadInput;
  checksum?: number;
}

export const ICMP_TYPE_NAMES = {
  'echo-reply': 0,
  'dest-unreachable': 3,
  'source-quench': 4,
  redirect: 5,
  'echo-request': 8,
  'router-advertisement': 9,
  'router-solicitation': 10,
  'time-exceeded': 11,
  'parameter-problem': 12,
  'timestamp-request': 13,
  'timestamp-reply': 14,
} as const;
export type IcmpTypeName = keyof typeof ICMP_TYPE_NAMES;

export const ICMP_CODE_NAMES: Readonly<Record<number, Readonly<Record<string, number>>>> = {
  3: {
    'net-unreachable': 0,
    'host-unreachable': 1,
    'protocol-unreachable': 2,
    'port-unreachable': 3,
    'fragmentation-needed': 4,
    'source-route-failed': 5,
    'net-unknown': 6,
    'host-unknown': 7,
    'net-prohibited': 9,
    'host-prohibited': 10,
    'admin-prohibited': 13,
  },
  5: { 'redirect-net': 0, 'redirect-host': 1, 'redirect-tos-net': 2, 'redirect-tos-host': 3 },
  11: { 'ttl-exceeded': 0, 'reassembly-timeout': 1 },
  12: { pointer: 0, 'missing-option': 1, 'bad-length': 2 },
};

export const ICMPV6_TYPE_NAMES = {
  'dest-unreachable': 1,
  'packet-too-big': 2,
  'time-exceeded': 3,
  'parameter-problem': 4,
  'echo-request': 128,
  'echo-reply': 129,
  'mld-query': 130,
  'mld-report': 131,
  'mld-done': 132,
  'router-solicitation': 133,
  'router-advertisement': 134,
  'neighbor-solicitation': 135,
  'neighbor-advertisement': 136,
  redirect: 137,
  'mldv2-report': 143,
} as const;
export type Icmpv6TypeName = keyof typeof ICMPV6_TYPE_NAMES;

export const ICMPV6_CODE_NAMES: Readonly<Record<number, Readonly<Record<string, number>>>> = {
  1: {
    'no-route': 0,
    'admin-prohibited': 1,
    'beyond-scope': 2,
    'address-unreachable': 3,
    'port-unreachable': 4,
    'source-policy-failed': 5,
    'reject-route': 6,
  },
  3: { 'hop-limit-exceeded': 0, 'reassembly-timeout': 1 },
  4: { 'header-field': 0, 'unrecognized-next-header': 1, 'unrecognized-option': 2 },
};

/** Malformations `corrupt()` applies to the innermost matching layer. */
export type Corruption =
  /** IPv4 header checksum wrong (or `value` written). */
  | 'ipv4-checksum'
  /** TCP/UDP/SCTP/ICMP/ICMPv6 checksum wrong (or `value` written). */
  | 'l4-checksum'
  /** IP version field set to `value` (default 15). */
  | 'ip-version'
  /** IPv4 ihl set to `value` words (default 4, below the minimum). */
  | 'ipv4-ihl'
  /** IPv4 total length / IPv6 payload length off by `value` bytes (default +16). */
  | 'ip-length'
  /** UDP length off by `value` bytes (default +8). */
  | 'udp-length'
  /** TCP data offset set to `value` words (default 4, below the minimum). */
  | 'tcp-offset';

export type LayerKind = 'eth' | 'vlan' | 'ipv4' | 'ipv6' | 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | 'payload';

/** Where each layer's header sits in the built frame (before truncation). */
export interface LayerSpan {
  kind: LayerKind;
  offset: number;
  /** Header length (the whole bytes for payload; header + body for ICMP). */
  length: number;
}

export interface BuiltPacket {
  data: Buffer;
  layers: LayerSpan[];
  /** Frame length before truncation. */
  fullLength: number;
}

// ---------------------------------------------------------------------------
// Stage-typed views (what packet() returns)

/** Methods valid at any point. */
export interface PacketTail {
  /** Appends bytes after the last layer. */
  payload(data: PayloadInput): PacketTail;
  /** Pads the frame with `fill` bytes to at least `minLength` (e.g. 60, Ethernet's minimum). */
  pad(minLength: number, fill?: number): PacketTail;
  /** Keeps the first n bytes of the built frame (n < 0: drops the last -n). */
  truncate(n: number): PacketTail;
  /** Makes the packet malformed in one named way (see Corruption). */
  corrupt(kind: Corruption, value?: number): PacketTail;
  build(): Buffer;
  /** The frame and each layer's offset and length. */
  buildWithLayout(): BuiltPacket;
}

export interface Ipv4Stage extends PacketTail {
  tcp(o: TcpOptions): PacketTail;
  udp(o: UdpOptions): PacketTail;
  sctp(o: SctpOptions): PacketTail;
  icmp(o: IcmpOptions<IcmpTypeName>): PacketTail;
  /** IP in IP. */
  ipv4(o: Ipv4Options): Ipv4Stage;
  ipv6(o: Ipv6Options): Ipv6Stage;
}

export interface Ipv6Stage extends PacketTail {
  tcp(o: TcpOptions): PacketTail;
  udp(o: UdpOptions): PacketTail;
  sctp(o: SctpOptions): PacketTail;
  icmpv6(o: IcmpOptions<Icmpv6TypeName>): PacketTail;
  ipv4(o: Ipv4Options): Ipv4Stage;
  ipv6(o: Ipv6Options): Ipv6Stage;
}

export interface L2Stage extends PacketTail {
  /** An 802.1Q/802.1ad tag; call twice for QinQ. */
  vlan(o: VlanOptions): L2Stage;
  ipv4(o: Ipv4Options): Ipv4Stage;
  ipv6(o: Ipv6Options): Ipv6Stage;
}

export interface EthStage extends L2Stage {
  eth(o?: EthOptions): L2Stage;
}

/** Starts a packet. See the module comment. */
export function packet(): EthStage {
  return new PacketBuilder();
}

// ---------------------------------------------------------------------------
// The builder

type Layer =
  | { kind: 'eth'; o: EthOptions }
  | { kind: 'vlan'; o: VlanOptions }
  | { kind: 'ipv4'; o: Ipv4Options }
  | { kind: 'ipv6'; o: Ipv6Options }
  | { kind: 'tcp'; o: TcpOptions }
  | { kind: 'udp'; o: UdpOptions }
  | { kind: 'sctp'; o: SctpOptions }
  | { kind: 'icmp'; o: IcmpOptions<string> }
  | { kind: 'icmpv6'; o: IcmpOptions<string> }
  | { kind: 'payload'; bytes: Buffer };

interface Fault {
  kind: Corruption;
  value: number | undefined;
}

interface State {
  layers: readonly Layer[];
  faults: readonly Fault[];
  padTo: number;
  padFill: number;
  truncate: number | undefined;
}

const L4_KINDS = new Set<LayerKind>(['tcp', 'udp', 'sctp', 'icmp', 'icmpv6']);

/** The untyped-order builder behind packet(): any layer after any other, checked at build(). */
export class PacketBuilder implements EthStage, Ipv4Stage, Ipv6Stage {
  private readonly s: State;

  constructor(state?: State) {
    this.s = state ?? { layers: [], faults: [], padTo: 0, padFill: 0, truncate: undefined };
  }

  private with(layer: Layer): PacketBuilder {
    let layers = this.s.layers;
    // A frame always starts with Ethernet unless the caller wrote one.
    if (layers.length === 0 && layer.kind !== 'eth') layers = [{ kind: 'eth', o: {} }];
    return new PacketBuilder({ ...this.s, layers: [...layers, layer] });
  }

  eth(o: EthOptions = {}): PacketBuilder {
    return this.with({ kind: 'eth', o });
  }
  vlan(o: VlanOptions): PacketBuilder {
    return this.with({ kind: 'vlan', o });
  }
  ipv4(o: Ipv4Options): PacketBuilder {
    return this.with({ kind: 'ipv4', o });
  }
  ipv6(o: Ipv6Options): PacketBuilder {
    return this.with({ kind: 'ipv6', o });
  }
  tcp(o: TcpOptions): PacketBuilder {
    return this.with({ kind: 'tcp', o });
  }
  udp(o: UdpOptions): PacketBuilder {
    return this.with({ kind: 'udp', o });
  }
  sctp(o: SctpOptions): PacketBuilder {
    return this.with({ kind: 'sctp', o });
  }
  icmp(o: IcmpOptions<IcmpTypeName>): PacketBuilder {
    return this.with({ kind: 'icmp', o });
  }
  icmpv6(o: IcmpOptions<Icmpv6TypeName>): PacketBuilder {
    return this.with({ kind: 'icmpv6', o });
  }
  payload(data: PayloadInput): PacketBuilder {
    return this.with({ kind: 'payload', bytes: payloadBytes(data, 'payload') });
  }

  pad(minLength: number, fill = 0): PacketBuilder {
    checkUint('pad length', minLength, 0xffff);
    checkUint('pad fill byte', fill, 0xff);
    return new PacketBuilder({ ...this.s, padTo: minLength, padFill: fill });
  }

  truncate(n: number): PacketBuilder {
    if (!Number.isInteger(n)) invalid(`truncate() needs an integer byte count, got ${n}`);
    return new PacketBuilder({ ...this.s, truncate: n });
  }

  corrupt(kind: Corruption, value?: number): PacketBuilder {
    const need: Record<Corruption, LayerKind[]> = {
      'ipv4-checksum': ['ipv4'],
      'ipv4-ihl': ['ipv4'],
      'ip-version': ['ipv4', 'ipv6'],
      'ip-length': ['ipv4', 'ipv6'],
      'l4-checksum': [...L4_KINDS],
      'udp-length': ['udp'],
      'tcp-offset': ['tcp'],
    };
    const kinds = need[kind];
    if (!kinds) invalid(`unknown corruption '${String(kind)}'`, `one of: ${Object.keys(need).join(', ')}`);
    if (!this.s.layers.some((l) => kinds.includes(l.kind))) {
      invalid(`corrupt('${kind}') needs a ${kinds.join(' or ')} layer, and this packet has none`);
    }
    if (value !== undefined && !Number.isInteger(value)) invalid(`corrupt('${kind}') value must be an integer, got ${value}`);
    return new PacketBuilder({ ...this.s, faults: [...this.s.faults, { kind, value }] });
  }

  /** The layers added so far, by kind. */
  kinds(): LayerKind[] {
    return this.s.layers.map((l) => l.kind);
  }

  build(): Buffer {
    return this.buildWithLayout().data;
  }

  buildWithLayout(): BuiltPacket {
    const { layers } = this.s;
    const faults = resolveFaults(layers, this.s.faults);
    const parts: Buffer[] = new Array<Buffer>(layers.length);
    let inner: Buffer = Buffer.alloc(0);
    // Inside out: each header needs the bytes it carries (lengths, checksums).
    for (let i = layers.length - 1; i >= 0; i--) {
      const header = encodeLayer(layers, i, inner, faults.get(i) ?? []);
      parts[i] = header;
      inner = Buffer.concat([header, inner]);
    }
    const spans: LayerSpan[] = [];
    let offset = 0;
    layers.forEach((l, i) => {
      spans.push({ kind: l.kind, offset, length: parts[i]!.length });
      offset += parts[i]!.length;
    });
    let data = inner;
    if (data.length < this.s.padTo) data = Buffer.concat([data, Buffer.alloc(this.s.padTo - data.length, this.s.padFill)]);
    const fullLength = data.length;
    const t = this.s.truncate;
    if (t !== undefined) data = data.subarray(0, t >= 0 ? Math.min(t, data.length) : Math.max(0, data.length + t));
    return { data: Buffer.from(data), layers: spans, fullLength };
  }
}

// ---------------------------------------------------------------------------
// Encoding

function resolveFaults(layers: readonly Layer[], faults: readonly Fault[]): Map<number, Fault[]> {
  const byLayer = new Map<number, Fault[]>();
  for (const f of faults) {
    const want: LayerKind[] =
      f.kind === 'ipv4-checksum' || f.kind === 'ipv4-ihl' ? ['ipv4']
      : f.kind === 'ip-version' || f.kind === 'ip-length' ? ['ipv4', 'ipv6']
      : f.kind === 'udp-length' ? ['udp']
      : f.kind === 'tcp-offset' ? ['tcp']
      : [...L4_KINDS];
    // The innermost layer of that kind.
    for (let i = layers.length - 1; i >= 0; i--) {
      if (want.includes(layers[i]!.kind)) {
        byLayer.set(i, [...(byLayer.get(i) ?? []), f]);
        break;
      }
    }
  }
  return byLayer;
}

function encodeLayer(layers: readonly Layer[], i: number, inner: Buffer, faults: Fault[]): Buffer {
  const layer = layers[i]!;
  const next = layers[i + 1];
  const fault = (k: Corruption): Fault | undefined => faults.find((f) => f.kind === k);
  switch (layer.kind) {
    case 'eth':
      return encodeEth(layer.o, next);
    case 'vlan':
      return encodeVlan(layer.o, next);
    case 'ipv4':
      return encodeIpv4(layer.o, next, inner, fault);
    case 'ipv6':
      return encodeIpv6(layer.o, next, inner, fault);
    case 'tcp':
      return encodeTcp(layer.o, enclosingIp(layers, i, 'tcp'), inner, fault);
    case 'udp':
      return encodeUdp(layer.o, enclosingIp(layers, i, 'udp'), inner, fault);
    case 'sctp':
      return encodeSctp(layer.o, inner, fault);
    case 'icmp':
      return encodeIcmp(layer.o, false, undefined, inner, fault);
    case 'icmpv6':
      return encodeIcmp(layer.o, true, enclosingIp(layers, i, 'icmpv6'), inner, fault);
    case 'payload':
      return layer.bytes;
  }
}

type IpLayer = { kind: 'ipv4'; o: Ipv4Options } | { kind: 'ipv6'; o: Ipv6Options };

function enclosingIp(layers: readonly Layer[], i: number, what: string): IpLayer {
  for (let j = i - 1; j >= 0; j--) {
    const l = layers[j]!;
    if (l.kind === 'ipv4' || l.kind === 'ipv6') return l;
  }
  return invalid(`${what} needs an IPv4 or IPv6 layer before it (its checksum covers the IP pseudo-header)`);
}

function ethertypeFor(next: Layer | undefined): number {
  switch (next?.kind) {
    case 'vlan':
      return next.o.tpid ?? 0x8100;
    case 'ipv4':
      return 0x0800;
    case 'ipv6':
      return 0x86dd;
    default:
      // IEEE local experimental ethertype: no parser takes it for IP.
      return 0x88b5;
  }
}

function protoFor(next: Layer | undefined, none: number): number {
  switch (next?.kind) {
    case 'tcp':
      return 6;
    case 'udp':
      return 17;
    case 'sctp':
      return 132;
    case 'icmp':
      return 1;
    case 'icmpv6':
      return 58;
    case 'ipv4':
      return 4;
    case 'ipv6':
      return 41;
    default:
      return none;
  }
}

function encodeEth(o: EthOptions, next: Layer | undefined): Buffer {
  const b = Buffer.alloc(14);
  addressBytes('MAC', o.dst ?? '02:00:00:00:00:02').copy(b, 0);
  addressBytes('MAC', o.src ?? '02:00:00:00:00:01').copy(b, 6);
  b.writeUInt16BE(checkUint('eth type', o.type ?? ethertypeFor(next), 0xffff), 12);
  return b;
}

function encodeVlan(o: VlanOptions, next: Layer | undefined): Buffer {
  const b = Buffer.alloc(4);
  const id = checkUint('vlan id', o.id, 0xfff);
  const pcp = checkUint('vlan pcp', o.pcp ?? 0, 7);
  b.writeUInt16BE((pcp << 13) | (o.dei ? 0x1000 : 0) | id, 0);
  b.writeUInt16BE(checkUint('vlan type', o.type ?? ethertypeFor(next), 0xffff), 2);
  return b;
}

type FaultOf = (k: Corruption) => Fault | undefined;

function tosByte(what: string, whole: number | undefined, dscp: number | undefined, ecn: number | undefined): number {
  if (whole !== undefined) return checkUint(`${what}`, whole, 0xff);
  return (checkUint('dscp', dscp ?? 0, 63) << 2) | checkUint('ecn', ecn ?? 0, 3);
}

function encodeIpv4(o: Ipv4Options, next: Layer | undefined, inner: Buffer, fault: FaultOf): Buffer {
  const opts = o.options ? padTo(Buffer.from(o.options), 4, 0) : Buffer.alloc(0);
  if (opts.length > 40) invalid(`ipv4 options are ${opts.length} bytes; the header has room for 40`);
  const h = Buffer.alloc(20 + opts.length);
  const versionFault = fault('ip-version');
  const version = versionFault ? versionFault.value ?? 15 : o.version ?? 4;
  const ihlFault = fault('ipv4-ihl');
  const ihl = ihlFault ? ihlFault.value ?? 4 : o.ihl ?? h.length / 4;
  h[0] = (checkUint('ipv4 version', version, 15) << 4) | checkUint('ipv4 ihl', ihl, 15);
  h[1] = tosByte('ipv4 tos', o.tos, o.dscp, o.ecn);
  const lengthFault = fault('ip-length');
  let total = o.totalLength ?? h.length + inner.length;
  if (lengthFault) total += lengthFault.value ?? 16;
  h.writeUInt16BE(checkUint('ipv4 total length', total, 0xffff), 2);
  h.writeUInt16BE(checkUint('ipv4 id', o.id ?? 0, 0xffff), 4);
  const flags = checkUint('ipv4 flags', o.flags ?? 0, 7) | (o.df ? 2 : 0) | (o.mf ? 1 : 0);
  h.writeUInt16BE((flags << 13) | checkUint('ipv4 fragOffset', o.fragOffset ?? 0, 0x1fff), 6);
  h[8] = checkUint('ipv4 ttl', o.ttl ?? 64, 0xff);
  h[9] = checkUint('ipv4 proto', o.proto ?? protoFor(next, 253), 0xff);
  addressBytes('IPv4', o.src).copy(h, 12);
  addressBytes('IPv4', o.dst).copy(h, 16);
  opts.copy(h, 20);
  const csFault = fault('ipv4-checksum');
  let cs = o.checksum ?? internetChecksum(h);
  if (csFault) cs = csFault.value ?? breakChecksum(cs);
  h.writeUInt16BE(checkUint('ipv4 checksum', cs, 0xffff), 10);
  return h;
}

const EXT_CODES = { 'hop-by-hop': 0, routing: 43, fragment: 44, ah: 51, 'dest-opts': 60 } as const;

function extCode(e: Ipv6Extension): number {
  return typeof e.type === 'number' ? checkUint('ipv6 extension type', e.type, 0xff) : EXT_CODES[e.type];
}

function encodeIpv6(o: Ipv6Options, next: Layer | undefined, inner: Buffer, fault: FaultOf): Buffer {
  const exts = o.extensions ?? [];
  const upper = checkUint('ipv6 proto', o.proto ?? protoFor(next, 59), 0xff);
  const extBytes = exts.map((e, k) => encodeExtension(e, k + 1 < exts.length ? extCode(exts[k + 1]!) : upper));
  const h = Buffer.alloc(40);
  const versionFault = fault('ip-version');
  const version = checkUint('ipv6 version', versionFault ? versionFault.value ?? 15 : o.version ?? 6, 15);
  const tc = tosByte('ipv6 trafficClass', o.trafficClass, o.dscp, o.ecn);
  const flow = checkUint('ipv6 flowLabel', o.flowLabel ?? 0, 0xfffff);
  h.writeUInt32BE(((version << 28) | (tc << 20) | flow) >>> 0, 0);
  const extLen = extBytes.reduce((n, b) => n + b.length, 0);
  let plen = o.payloadLength ?? extLen + inner.length;
  const lengthFault = fault('ip-length');
  if (lengthFault) plen += lengthFault.value ?? 16;
  h.writeUInt16BE(checkUint('ipv6 payload length', plen, 0xffff), 4);
  h[6] = exts.length > 0 ? extCode(exts[0]!) : upper;
  h[7] = checkUint('ipv6 hopLimit', o.hopLimit ?? 64, 0xff);
  addressBytes('IPv6', o.src).copy(h, 8);
  addressBytes('IPv6', o.dst).copy(h, 24);
  return Buffer.concat([h, ...extBytes]);
}

function encodeExtension(e: Ipv6Extension, nextHeader: number): Buffer {
  if (typeof e.type === 'number') {
    const body = padTo(Buffer.from(e.data ?? []), 8, 0, 2);
    return Buffer.concat([Buffer.from([nextHeader, (body.length + 2) / 8 - 1]), body]);
  }
  switch (e.type) {
    case 'hop-by-hop':
    case 'dest-opts': {
      const opts = Buffer.from(e.options ?? []);
      const total = Math.max(8, Math.ceil((opts.length + 2) / 8) * 8);
      const b = Buffer.concat([Buffer.from([nextHeader, total / 8 - 1]), opts, padOptions(total - 2 - opts.length)]);
      return b;
    }
    case 'routing': {
      const data = Buffer.from(e.data ?? Buffer.alloc(4));
      const body = padTo(data, 8, 0, 4);
      const b = Buffer.alloc(4 + body.length);
      b[0] = nextHeader;
      b[1] = b.length / 8 - 1;
      b[2] = checkUint('routing type', e.routingType ?? 0, 0xff);
      b[3] = checkUint('routing segmentsLeft', e.segmentsLeft ?? 0, 0xff);
      body.copy(b, 4);
      return b;
    }
    case 'fragment': {
      const b = Buffer.alloc(8);
      b[0] = nextHeader;
      b.writeUInt16BE((checkUint('fragment offset', e.offset ?? 0, 0x1fff) << 3) | (e.mf ? 1 : 0), 2);
      b.writeUInt32BE(checkUint('fragment id', e.id ?? 0, 0xffffffff), 4);
      return b;
    }
    case 'ah': {
      const icv = padTo(Buffer.from(e.icv ?? Buffer.alloc(12)), 8, 0, 12);
      const b = Buffer.alloc(12 + icv.length);
      b[0] = nextHeader;
      // AH counts in 32-bit words, minus 2 (RFC 4302).
      b[1] = b.length / 4 - 2;
      b.writeUInt32BE(checkUint('ah spi', e.spi ?? 1, 0xffffffff), 4);
      b.writeUInt32BE(checkUint('ah seq', e.seq ?? 0, 0xffffffff), 8);
      icv.copy(b, 12);
      return b;
    }
  }
}

/** Pad1 for one byte, PadN otherwise (RFC 8200 section 4.2). */
function padOptions(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  if (n === 1) return Buffer.from([0]);
  const b = Buffer.alloc(n);
  b[0] = 1;
  b[1] = n - 2;
  return b;
}

/** Sum of the pseudo-header for an upper-layer packet of `length` bytes. */
function pseudoSum(ip: IpLayer, proto: number, length: number): number {
  if (ip.kind === 'ipv4') return ipv4PseudoHeaderSum(addressBytes('IPv4', ip.o.src), addressBytes('IPv4', ip.o.dst), proto, length);
  return ipv6PseudoHeaderSum(addressBytes('IPv6', ip.o.src), addressBytes('IPv6', ip.o.dst), proto, length);
}

function encodeTcp(o: TcpOptions, ip: IpLayer, inner: Buffer, fault: FaultOf): Buffer {
  const opts = tcpOptionBytes(o.options);
  const h = Buffer.alloc(20 + opts.length);
  h.writeUInt16BE(checkUint('tcp sport', o.sport, 0xffff), 0);
  h.writeUInt16BE(checkUint('tcp dport', o.dport, 0xffff), 2);
  h.writeUInt32BE(checkUint('tcp seq', o.seq ?? 0, 0xffffffff), 4);
  h.writeUInt32BE(checkUint('tcp ack', o.ack ?? 0, 0xffffffff), 8);
  const offFault = fault('tcp-offset');
  const off = offFault ? offFault.value ?? 4 : o.dataOffset ?? h.length / 4;
  h[12] = checkUint('tcp dataOffset', off, 15) << 4;
  h[13] = tcpFlagsValue(o.flags ?? 'S');
  h.writeUInt16BE(checkUint('tcp window', o.window ?? 65535, 0xffff), 14);
  h.writeUInt16BE(checkUint('tcp urgent', o.urgent ?? 0, 0xffff), 18);
  opts.copy(h, 20);
  let cs = o.checksum ?? internetChecksumWith(pseudoSum(ip, 6, h.length + inner.length), h, inner);
  const csFault = fault('l4-checksum');
  if (csFault) cs = csFault.value ?? breakChecksum(cs);
  h.writeUInt16BE(checkUint('tcp checksum', cs, 0xffff), 16);
  return h;
}

function encodeUdp(o: UdpOptions, ip: IpLayer, inner: Buffer, fault: FaultOf): Buffer {
  const h = Buffer.alloc(8);
  const actual = 8 + inner.length;
  h.writeUInt16BE(checkUint('udp sport', o.sport, 0xffff), 0);
  h.writeUInt16BE(checkUint('udp dport', o.dport, 0xffff), 2);
  let len = o.length ?? actual;
  const lenFault = fault('udp-length');
  if (lenFault) len += lenFault.value ?? 8;
  h.writeUInt16BE(checkUint('udp length', len, 0xffff), 4);
  let cs = o.checksum;
  if (cs === undefined) {
    cs = internetChecksumWith(pseudoSum(ip, 17, actual), h, inner);
    // 0 means "no checksum" in UDP, so a computed 0 is sent as 0xffff (RFC 768).
    if (cs === 0) cs = 0xffff;
  }
  const csFault = fault('l4-checksum');
  if (csFault) cs = csFault.value ?? breakChecksum(cs);
  h.writeUInt16BE(checkUint('udp checksum', cs, 0xffff), 6);
  return h;
}

const SCTP_CHUNK_TYPES: Record<SctpChunkType, number> = {
  data: 0,
  init: 1,
  'init-ack': 2,
  sack: 3,
  heartbeat: 4,
  'heartbeat-ack': 5,
  abort: 6,
  shutdown: 7,
  'shutdown-ack': 8,
  error: 9,
  'cookie-echo': 10,
  'cookie-ack': 11,
  'shutdown-complete': 14,
};

function encodeSctp(o: SctpOptions, inner: Buffer, fault: FaultOf): Buffer {
  let chunks: Buffer;
  if (o.chunks === undefined) chunks = Buffer.alloc(0);
  else if (o.chunks instanceof Uint8Array) chunks = Buffer.from(o.chunks);
  else {
    chunks = Buffer.concat(
      o.chunks.map((c) => {
        const type = typeof c.type === 'number' ? checkUint('sctp chunk type', c.type, 0xff) : SCTP_CHUNK_TYPES[c.type];
        if (type === undefined) invalid(`unknown sctp chunk type '${String(c.type)}'`, `one of: ${Object.keys(SCTP_CHUNK_TYPES).join(', ')}`);
        const value = Buffer.from(c.value ?? []);
        const head = Buffer.alloc(4);
        head[0] = type;
        head[1] = checkUint('sctp chunk flags', c.flags ?? 0, 0xff);
        // The chunk length excludes the padding (RFC 9260 section 3.2).
        head.writeUInt16BE(checkUint('sctp chunk length', 4 + value.length, 0xffff), 2);
        return padTo(Buffer.concat([head, value]), 4, 0);
      }),
    );
  }
  const h = Buffer.alloc(12);
  h.writeUInt16BE(checkUint('sctp sport', o.sport, 0xffff), 0);
  h.writeUInt16BE(checkUint('sctp dport', o.dport, 0xffff), 2);
  h.writeUInt32BE(checkUint('sctp vtag', o.vtag ?? 0, 0xffffffff), 4);
  const whole = Buffer.concat([h, chunks, inner]);
  let cs = o.checksum ?? crc32c(whole);
  const csFault = fault('l4-checksum');
  if (csFault) cs = csFault.value ?? (cs ^ 0x00ff00ff) >>> 0;
  h.writeUInt32LE(checkUint('sctp checksum', cs >>> 0, 0xffffffff), 8);
  return Buffer.concat([h, chunks]);
}

function encodeIcmp(o: IcmpOptions<string>, v6: boolean, ip: IpLayer | undefined, inner: Buffer, fault: FaultOf): Buffer {
  const what = v6 ? 'icmpv6' : 'icmp';
  const type = icmpTypeNumber(o.type, v6);
  const code = icmpCodeNumber(type, o.code ?? 0, v6);
  const body = o.payload === undefined ? Buffer.alloc(0) : payloadBytes(o.payload, `${what} payload`);
  const h = Buffer.alloc(8);
  h[0] = type;
  h[1] = code;
  let rest: number;
  if (o.rest !== undefined) rest = checkUint(`${what} rest`, o.rest, 0xffffffff);
  else if (o.mtu !== undefined) rest = checkUint(`${what} mtu`, o.mtu, v6 ? 0xffffffff : 0xffff);
  else rest = ((checkUint(`${what} id`, o.id ?? 0, 0xffff) << 16) | checkUint(`${what} seq`, o.seq ?? 0, 0xffff)) >>> 0;
  h.writeUInt32BE(rest, 4);
  const length = h.length + body.length + inner.length;
  const initial = v6 && ip ? pseudoSum(ip, 58, length) : 0;
  let cs = o.checksum ?? internetChecksumWith(initial, h, body, inner);
  const csFault = fault('l4-checksum');
  if (csFault) cs = csFault.value ?? breakChecksum(cs);
  h.writeUInt16BE(checkUint(`${what} checksum`, cs, 0xffff), 2);
  return Buffer.concat([h, body]);
}

/** Checksum over parts with a starting sum; parts are concatenated first so odd lengths sum right. */
function internetChecksumWith(initial: number, ...parts: Buffer[]): number {
  return ~onesSum(Buffer.concat(parts), initial) & 0xffff;
}

/** A checksum that no longer verifies: changes the low byte, which never maps 0x0000 onto 0xffff. */
function breakChecksum(cs: number): number {
  return cs ^ 0x00ff;
}

// ---------------------------------------------------------------------------
// Names and values shared with the packet spec parser

const TCP_FLAG_BITS: Record<TcpFlagName, number> = { fin: 0x01, syn: 0x02, rst: 0x04, psh: 0x08, ack: 0x10, urg: 0x20, ece: 0x40, cwr: 0x80 };
const TCP_FLAG_LETTERS: Record<string, number> = { F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10, '.': 0x10, U: 0x20, E: 0x40, C: 0x80 };

/** TCP flags as the header byte: 'SA', 'syn,ack', ['syn', 'ack'], 0x12 all give 0x12. */
export function tcpFlagsValue(flags: TcpFlagsInput): number {
  if (typeof flags === 'number') return checkUint('tcp flags', flags, 0xff);
  const names = typeof flags === 'string' ? (flags.includes(',') || /^[a-z]{3}$/.test(flags) ? flags.split(',') : undefined) : flags;
  let v = 0;
  if (names) {
    for (const n of names) {
      const bit = TCP_FLAG_BITS[n.trim().toLowerCase() as TcpFlagName];
      if (bit === undefined) invalid(`unknown tcp flag '${n}'`, `flag names: ${Object.keys(TCP_FLAG_BITS).join(', ')}`);
      v |= bit;
    }
    return v;
  }
  for (const ch of flags as string) {
    const bit = TCP_FLAG_LETTERS[ch.toUpperCase()];
    if (bit === undefined) invalid(`unknown tcp flag letter '${ch}' in '${flags as string}'`, "letters: F S R P A U E C (e.g. 'SA'), or names like 'syn,ack'");
    v |= bit;
  }
  return v;
}

function tcpOptionBytes(options: TcpOptions['options']): Buffer {
  if (options === undefined) return Buffer.alloc(0);
  let raw: Buffer;
  if (options instanceof Uint8Array) raw = Buffer.from(options);
  else {
    raw = Buffer.concat(
      options.map((op): Buffer => {
        switch (op.kind) {
          case 'eol':
            return Buffer.from([0]);
          case 'nop':
            return Buffer.from([1]);
          case 'mss': {
            const b = Buffer.from([2, 4, 0, 0]);
            b.writeUInt16BE(checkUint('tcp mss', op.value, 0xffff), 2);
            return b;
          }
          case 'wscale':
            return Buffer.from([3, 3, checkUint('tcp wscale', op.value, 0xff)]);
          case 'sack-permitted':
            return Buffer.from([4, 2]);
          case 'sack': {
            const b = Buffer.alloc(2 + op.blocks.length * 8);
            b[0] = 5;
            b[1] = b.length;
            op.blocks.forEach(([l, r], k) => {
              b.writeUInt32BE(checkUint('sack left edge', l, 0xffffffff), 2 + k * 8);
              b.writeUInt32BE(checkUint('sack right edge', r, 0xffffffff), 6 + k * 8);
            });
            return b;
          }
          case 'timestamp': {
            const b = Buffer.alloc(10);
            b[0] = 8;
            b[1] = 10;
            b.writeUInt32BE(checkUint('tcp timestamp', op.value, 0xffffffff), 2);
            b.writeUInt32BE(checkUint('tcp timestamp echo', op.echo ?? 0, 0xffffffff), 6);
            return b;
          }
          default: {
            const kind: unknown = (op as { kind: unknown }).kind;
            if (typeof kind !== 'number') return invalid(`unknown tcp option '${String(kind)}'`);
            const data = Buffer.from((op as { data?: Uint8Array }).data ?? []);
            return Buffer.concat([Buffer.from([checkUint('tcp option kind', kind, 0xff), checkUint('tcp option length', data.length + 2, 0xff)]), data]);
          }
        }
      }),
    );
  }
  const padded = padTo(raw, 4, 0);
  if (padded.length > 40) invalid(`tcp options are ${padded.length} bytes; the header has room for 40`);
  return padded;
}

/** ICMP (v6 = false) or ICMPv6 type by name or number. */
export function icmpTypeNumber(type: number | string, v6: boolean): number {
  if (typeof type === 'number') return checkUint(v6 ? 'icmpv6 type' : 'icmp type', type, 0xff);
  const table: Record<string, number> = v6 ? ICMPV6_TYPE_NAMES : ICMP_TYPE_NAMES;
  const n = table[type];
  if (n === undefined) {
    const other: Record<string, number> = v6 ? ICMP_TYPE_NAMES : ICMPV6_TYPE_NAMES;
    const hint = other[type] !== undefined ? `'${type}' is an ${v6 ? 'ICMP (v4)' : 'ICMPv6'} type name; ` : '';
    invalid(`unknown ${v6 ? 'icmpv6' : 'icmp'} type '${type}'`, `${hint}names: ${Object.keys(table).join(', ')}`);
  }
  return n;
}

/** ICMP/ICMPv6 code by name (meaningful for the given type) or number. */
export function icmpCodeNumber(type: number, code: number | string, v6: boolean): number {
  if (typeof code === 'number') return checkUint(v6 ? 'icmpv6 code' : 'icmp code', code, 0xff);
  if (/^\d+$/.test(code)) return checkUint(v6 ? 'icmpv6 code' : 'icmp code', Number(code), 0xff);
  const table = (v6 ? ICMPV6_CODE_NAMES : ICMP_CODE_NAMES)[type] ?? {};
  const n = table[code];
  if (n === undefined) {
    const names = Object.keys(table);
    invalid(
      `unknown ${v6 ? 'icmpv6' : 'icmp'} code '${code}' for type ${type}`,
      names.length ? `codes of type ${type}: ${names.join(', ')}` : `type ${type} has no named codes; give a number`,
    );
  }
  return n;
}

// ---------------------------------------------------------------------------
// Small helpers

function payloadBytes(data: PayloadInput, what: string): Buffer {
  if (typeof data === 'number') {
    checkUint(`${what} length`, data, 0xffff);
    return Buffer.from(Array.from({ length: data }, (_, i) => i & 0xff));
  }
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data);
  return invalid(`${what} must be bytes, a string or a byte count`);
}

/** Pads with `fill` so that (length + offset) is a multiple of `unit`. */
function padTo(b: Buffer, unit: number, fill: number, offset = 0): Buffer {
  const rem = (b.length + offset) % unit;
  if (rem === 0) return b;
  return Buffer.concat([b, Buffer.alloc(unit - rem, fill)]);
}

function checkUint(what: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    invalid(`${what} must be an integer 0..${max}, got ${String(v)}`);
  }
  return v;
}

function invalid(message: string, hint?: string): never {
  throw new TsbpfError('INVALID_ARGUMENT', message, hint ? { hint } : {});
}
