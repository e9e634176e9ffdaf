/**
 * Seeded random packets for differential tests: valid, malformed and
 * truncated frames of every kind the packet builder makes (IPv4/IPv6, VLAN
 * and QinQ, TCP/UDP/SCTP/ICMP/ICMPv6 and other protocols, IPv4 options,
 * IPv6 extension headers, fragments). A bias steers addresses, ports and
 * protocols toward the ones a ruleset names, so rules match often.
 *
 * Everything is a function of the seed: the same seed gives the same
 * packets on every machine (no Math.random).
 */
import { TsbpfError } from './errors.js';
import { ipv4ToBytes, ipv4ToText, ipv6ToBytes, ipv6ToText } from './packet-addr.js';
import { PacketBuilder, type Corruption, type Ipv6Extension, type LayerKind, type TcpOption } from './packet.js';

/** A small deterministic PRNG (mulberry32). */
export interface SeededRng {
  /** The 32-bit seed it started from. */
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** A uniform 32-bit unsigned integer. */
  uint32(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** An integer in [lo, hi], both included. */
  range(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  /** True with probability p (default 0.5). */
  bool(p?: number): boolean;
  bytes(n: number): Buffer;
  /** Shuffles in place and returns the array. */
  shuffle<T>(items: T[]): T[];
  /** An independent generator seeded from this one (so adding draws in one part does not shift another). */
  fork(): SeededRng;
}

/** A seeded generator; a string seed is hashed (FNV-1a) to 32 bits. */
export function rng(seed: number | string): SeededRng {
  const s = typeof seed === 'string' ? fnv1a(seed) : seed >>> 0;
  let state = s;
  const uint32 = (): number => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = (): number => uint32() / 0x100000000;
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n <= 0) throw new TsbpfError('INVALID_ARGUMENT', `rng.int(n) needs a positive integer, got ${n}`);
    return Math.floor(next() * n);
  };
  const r: SeededRng = {
    seed: s,
    next,
    uint32,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    pick: (items) => {
      if (items.length === 0) throw new TsbpfError('INVALID_ARGUMENT', 'rng.pick() needs a non-empty array');
      return items[int(items.length)]!;
    },
    bool: (p = 0.5) => next() < p,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = uint32() & 0xff;
      return b;
    },
    shuffle: (items) => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [items[i], items[j]] = [items[j]!, items[i]!];
      }
      return items;
    },
    fork: () => rng(uint32()),
  };
  return r;
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What random packets lean toward. Addresses may be CIDRs ('10.0.0.0/8'): a random address inside is used. */
export interface PacketBias {
  ipv4?: string[];
  ipv6?: string[];
  ports?: number[];
  /** IP protocol numbers (6, 17, 132, 1, 58, or any other). */
  protos?: number[];
  /**
   * Shortest frame made, default 14: BPF_PROG_TEST_RUN refuses frames
   * shorter than an Ethernet header. 0 also makes runts.
   */
  minLength?: number;
}

/** Features a generated packet has; every one appears within a few hundred packets. */
export type PacketFeature =
  | 'ipv4' | 'ipv6' | 'non-ip'
  | 'vlan' | 'qinq'
  | 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | 'other-l4'
  | 'ipv4-options' | 'tcp-options' | 'ipv6-ext' | 'ipv6-ext-max'
  | 'ipv4-fragment' | 'ipv6-fragment' | 'non-first-fragment'
  | 'malformed' | 'truncated' | 'runt' | 'biased';

export interface PacketCase {
  data: Buffer;
  features: PacketFeature[];
  /** The corruption applied, for malformed packets. */
  corruption?: Corruption | 'cross-protocol';
  /** One line for test failure output. */
  description: string;
}

/** A random frame (see randomPacketCase). */
export function randomPacket(r: SeededRng, bias: PacketBias = {}): Buffer {
  return randomPacketCase(r, bias).data;
}

/** A random frame with what it contains: about 70% valid, 15% malformed, 15% truncated. */
export function randomPacketCase(r: SeededRng, bias: PacketBias = {}): PacketCase {
  const minLength = bias.minLength ?? 14;
  const features = new Set<PacketFeature>();
  const desc: string[] = [];
  const roll = r.next();
  const category: 'valid' | 'malformed' | 'truncated' = roll < 0.7 ? 'valid' : roll < 0.85 ? 'malformed' : 'truncated';

  const famRoll = r.next();
  const family: 4 | 6 | 0 = famRoll < 0.5 ? 4 : famRoll < 0.92 ? 6 : 0;
  // Never an IP ethertype or a VLAN TPID for non-IP frames: those are made validly below.
  const nonIpType = family === 0 ? r.pick([0x0806, 0x88cc, 0x88b5, 0x8847, r.range(0x0600, 0xffff)]) : undefined;
  const otherType = nonIpType !== undefined && [0x0800, 0x86dd, 0x8100, 0x88a8].includes(nonIpType) ? 0x88b5 : nonIpType;

  const tags = r.pick([0, 0, 0, 0, 0, 0, 0, 1, 1, 2]);
  let b = new PacketBuilder().eth({ src: randomMac(r), dst: randomMac(r), type: tags === 0 ? otherType : undefined });
  for (let k = 0; k < tags; k++) {
    const id = r.bool(0.7) ? r.pick([1, 10, 20, 100, 4094]) : r.range(0, 4095);
    const tpid = tags === 2 && k === 0 && r.bool() ? 0x88a8 : 0x8100;
    b = b.vlan({ id, pcp: r.int(8), dei: r.bool(0.1), tpid, type: k === tags - 1 ? otherType : undefined });
    desc.push(`vlan ${id}`);
  }
  if (tags === 1) features.add('vlan');
  if (tags === 2) features.add('qinq');
  let corruption: PacketCase['corruption'];

  if (family === 0) {
    features.add('non-ip');
    desc.unshift(`eth type 0x${otherType!.toString(16)}`);
    b = b.payload(r.bytes(r.range(0, 64)));
  } else {
    const v6 = family === 6;
    features.add(v6 ? 'ipv6' : 'ipv4');
    const biasedAddrs = v6 ? bias.ipv6 : bias.ipv4;
    const addr = (): string => {
      if (biasedAddrs?.length && r.bool(0.6)) {
        features.add('biased');
        return addressIn(r, r.pick(biasedAddrs), v6);
      }
      return v6 ? randomIpv6(r) : randomIpv4(r);
    };
    const src = addr();
    const dst = addr();

    // Which upper layer, and is this a fragment?
    let l4 = chooseL4(r, v6, bias, features);
    const fragRoll = r.next();
    const fragment: 'none' | 'first' | 'later' = fragRoll < 0.88 ? 'none' : fragRoll < 0.94 ? 'first' : 'later';
    if (fragment === 'later') features.add('non-first-fragment');

    // Cross-protocol malformations: ICMPv6 over IPv4, ICMP over IPv6.
    if (category === 'malformed' && r.bool(0.15)) {
      l4 = { kind: v6 ? 'icmp' : 'icmpv6', proto: v6 ? 1 : 58 };
      corruption = 'cross-protocol';
    }

    if (v6) {
      const extensions: Ipv6Extension[] = [];
      const extRoll = r.next();
      const count = extRoll < 0.72 ? 0 : extRoll < 0.95 ? r.range(1, 4) : r.range(5, 8);
      if (count > 0) features.add('ipv6-ext');
      if (count >= 6) features.add('ipv6-ext-max');
      for (let k = 0; k < count; k++) extensions.push(randomExtension(r, k === 0));
      if (fragment !== 'none') {
        features.add('ipv6-fragment');
        extensions.splice(r.int(extensions.length + 1), 0, {
          type: 'fragment',
          offset: fragment === 'first' ? 0 : r.range(1, 0x1fff),
          mf: fragment === 'first' ? true : r.bool(),
          id: r.uint32(),
        });
      }
      b = b.ipv6({
        src,
        dst,
        hopLimit: randomTtl(r),
        dscp: randomDscp(r),
        ecn: r.int(4),
        flowLabel: r.bool(0.3) ? r.int(0x100000) : 0,
        extensions,
        proto: l4.proto,
      });
      desc.push(`ipv6${extensions.length ? ` ext=${extensions.map((e) => e.type).join(',')}` : ''}`);
    } else {
      let options: Buffer | undefined;
      if (r.bool(0.1)) {
        features.add('ipv4-options');
        options = randomIpv4Options(r);
      }
      if (fragment !== 'none') features.add('ipv4-fragment');
      b = b.ipv4({
        src,
        dst,
        ttl: randomTtl(r),
        dscp: randomDscp(r),
        ecn: r.int(4),
        id: r.int(0x10000),
        df: fragment === 'none' && r.bool(0.5),
        mf: fragment === 'first' || (fragment === 'later' && r.bool()),
        fragOffset: fragment === 'later' ? r.range(1, 0x1fff) : 0,
        options,
        proto: l4.proto,
      });
      desc.push(`ipv4${options ? ` opts=${options.length}` : ''}${fragment !== 'none' ? ` frag=${fragment}` : ''}`);
    }
    desc.push(`${src} -> ${dst}`);

    if (fragment === 'later' || l4.kind === 'other') {
      // A later fragment carries no L4 header, just bytes (which may look like one).
      b = b.payload(r.bytes(randomPayloadLength(r)));
      if (l4.kind === 'other') features.add('other-l4');
      desc.push(`proto ${l4.proto}`);
    } else {
      b = addL4(r, b, l4.kind, bias, features, desc);
      b = b.payload(r.bytes(randomPayloadLength(r)));
    }
  }

  // Malformations need the valid layout (where the headers are, how long they are).
  const valid = b.buildWithLayout();
  if (category === 'malformed' && corruption === undefined) {
    const applied = randomCorruption(r, b, valid.layers, valid.fullLength);
    if (applied) {
      b = applied.builder;
      corruption = applied.kind;
    }
  }
  if (corruption !== undefined) {
    features.add('malformed');
    desc.push(`malformed: ${corruption}`);
  }

  let data = category === 'malformed' ? b.build() : valid.data;
  if (category === 'truncated') {
    const cut = truncationPoint(r, valid.layers, data.length, minLength);
    if (cut < data.length) {
      data = data.subarray(0, cut);
      features.add('truncated');
      desc.push(`truncated to ${cut}`);
    }
  }
  if (data.length < minLength) data = Buffer.concat([data, Buffer.alloc(minLength - data.length)]);
  if (data.length < 14) features.add('runt');
  return {
    data: Buffer.from(data),
    features: [...features],
    ...(corruption !== undefined ? { corruption } : {}),
    description: `${desc.join(' ')} (${data.length} bytes)`,
  };
}

/** Context beside a packet (ingress interface, mark) for rules that match on them. */
export function randomContext(r: SeededRng, choices: { ifindexes?: number[]; marks?: number[] } = {}): { ifindex?: number; mark?: number } {
  const out: { ifindex?: number; mark?: number } = {};
  if (choices.ifindexes?.length) out.ifindex = r.pick(choices.ifindexes);
  if (r.bool(0.5)) out.mark = choices.marks?.length && r.bool(0.7) ? r.pick(choices.marks) : r.pick([0, 1, 0x10, r.uint32()]);
  return out;
}

// ---------------------------------------------------------------------------

type L4Kind = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | 'other';

function chooseL4(r: SeededRng, v6: boolean, bias: PacketBias, features: Set<PacketFeature>): { kind: L4Kind; proto: number } {
  let proto: number;
  if (bias.protos?.length && r.bool(0.5)) {
    features.add('biased');
    proto = r.pick(bias.protos);
    // The ICMP of the other family is rarely what a bias means.
    if (v6 && proto === 1) proto = 58;
    if (!v6 && proto === 58) proto = 1;
  } else {
    const x = r.next();
    proto = x < 0.35 ? 6 : x < 0.65 ? 17 : x < 0.8 ? (v6 ? 58 : 1) : x < 0.9 ? 132 : r.pick([47, 50, 89, 253, r.int(256)]);
  }
  const kind: L4Kind =
    proto === 6 ? 'tcp' : proto === 17 ? 'udp' : proto === 132 ? 'sctp' : proto === 1 && !v6 ? 'icmp' : proto === 58 && v6 ? 'icmpv6' : 'other';
  // Extension header numbers as the upper protocol would be parsed as more headers; keep "other" honest.
  if (kind === 'other' && [0, 43, 44, 51, 60].includes(proto) && v6) return { kind, proto: 253 };
  return { kind, proto };
}

function addL4(r: SeededRng, b: PacketBuilder, kind: L4Kind, bias: PacketBias, features: Set<PacketFeature>, desc: string[]): PacketBuilder {
  const port = (): number => {
    if (bias.ports?.length && r.bool(0.6)) {
      features.add('biased');
      return r.pick(bias.ports);
    }
    return r.bool(0.5) ? r.pick([0, 22, 53, 80, 123, 443, 1024, 5353, 8080, 65535]) : r.int(0x10000);
  };
  switch (kind) {
    case 'tcp': {
      const sport = port();
      const dport = port();
      const flags = r.bool(0.85) ? r.pick(['S', 'SA', 'A', 'PA', 'FA', 'R', 'RA', 'F', 'FPU', 'SF']) : r.int(256);
      let options: TcpOption[] | undefined;
      if (r.bool(0.3)) {
        features.add('tcp-options');
        options = randomTcpOptions(r);
      }
      desc.push(`tcp ${sport} -> ${dport} flags=${String(flags)}`);
      features.add('tcp');
      return b.tcp({ sport, dport, flags, seq: r.uint32(), ack: r.uint32(), window: r.int(0x10000), options });
    }
    case 'udp': {
      const sport = port();
      const dport = port();
      desc.push(`udp ${sport} -> ${dport}`);
      features.add('udp');
      return b.udp({ sport, dport });
    }
    case 'sctp': {
      const sport = port();
      const dport = port();
      desc.push(`sctp ${sport} -> ${dport}`);
      features.add('sctp');
      const chunk = r.pick(['init', 'data', 'heartbeat', 'abort', 'shutdown'] as const);
      return b.sctp({ sport, dport, vtag: chunk === 'init' ? 0 : r.uint32(), chunks: [{ type: chunk, value: r.bytes(r.pick([0, 4, 16, 17])) }] });
    }
    case 'icmp': {
      const [type, code] = r.bool(0.85) ? r.pick([[8, 0], [0, 0], [3, 3], [3, 1], [3, 4], [11, 0], [5, 1], [13, 0]] as const) : [r.int(256), r.int(256)];
      desc.push(`icmp type=${type} code=${code}`);
      features.add('icmp');
      return b.icmp({ type, code, id: r.int(0x10000), seq: r.int(0x10000) });
    }
    case 'icmpv6': {
      const [type, code] = r.bool(0.85) ? r.pick([[128, 0], [129, 0], [1, 4], [1, 1], [2, 0], [3, 0], [4, 1], [133, 0], [134, 0], [135, 0], [136, 0]] as const) : [r.int(256), r.int(256)];
      desc.push(`icmpv6 type=${type} code=${code}`);
      features.add('icmpv6');
      return b.icmpv6({ type, code, id: r.int(0x10000), seq: r.int(0x10000) });
    }
    case 'other':
      return b;
  }
}

/** Picks a corruption that applies to the packet, with values that stay encodable. */
function randomCorruption(r: SeededRng, b: PacketBuilder, layers: LayerSpan[], fullLength: number): { builder: PacketBuilder; kind: Corruption } | undefined {
  const has = (k: LayerKind) => layers.some((l) => l.kind === k);
  const last = (ks: LayerKind[]) => [...layers].reverse().find((l) => ks.includes(l.kind));
  const choices: Corruption[] = [];
  if (has('ipv4')) choices.push('ipv4-checksum', 'ipv4-ihl', 'ipv4-ihl');
  if (has('ipv4') || has('ipv6')) choices.push('ip-version', 'ip-length', 'ip-length');
  if (['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'].some((k) => has(k as LayerKind))) choices.push('l4-checksum');
  if (has('udp')) choices.push('udp-length', 'udp-length');
  if (has('tcp')) choices.push('tcp-offset', 'tcp-offset');
  if (choices.length === 0) return undefined;
  const kind = r.pick(choices);
  let value: number | undefined;
  switch (kind) {
    case 'ip-version': {
      const ip = last(['ipv4', 'ipv6'])!;
      const right = ip.kind === 'ipv4' ? 4 : 6;
      value = r.pick([0, 4, 6, 5, 15].filter((v) => v !== right));
      break;
    }
    case 'ipv4-ihl':
      value = r.pick([0, 1, 4, 6, 7, 15]);
      break;
    case 'tcp-offset':
      value = r.pick([0, 3, 4, 6, 15]);
      break;
    case 'ip-length': {
      const ip = last(['ipv4', 'ipv6'])!;
      // The field as built: IPv4 counts its header, IPv6 does not.
      const field = fullLength - ip.offset - (ip.kind === 'ipv6' ? 40 : 0);
      value = r.pick([-field, -Math.min(field, r.range(1, 20)), -1, 1, r.range(1, 0xffff - field)]);
      break;
    }
    case 'udp-length': {
      const udp = last(['udp'])!;
      const field = fullLength - udp.offset;
      value = r.pick([-field, -Math.min(field, 1), -Math.min(field, r.range(1, 8)), 1, r.range(1, 0xffff - field)]);
      break;
    }
    default:
      value = undefined;
  }
  return { builder: b.corrupt(kind, value), kind };
}

type LayerSpan = ReturnType<PacketBuilder['buildWithLayout']>['layers'][number];

/** Cut points cluster around header boundaries, where parsers go wrong. */
function truncationPoint(r: SeededRng, layers: LayerSpan[], length: number, minLength: number): number {
  let cut: number;
  if (r.bool(0.7) && layers.length > 0) {
    const l = r.pick(layers);
    const edge = r.bool() ? l.offset + l.length : l.offset + r.int(Math.max(1, l.length));
    cut = edge + r.pick([-1, -1, 0, 1]);
  } else {
    cut = r.int(Math.max(1, length));
  }
  return Math.max(Math.min(minLength, length), Math.min(cut, length - 1));
}

function randomExtension(r: SeededRng, first: boolean): Ipv6Extension {
  const kind = first && r.bool(0.5) ? 'hop-by-hop' : r.pick(['hop-by-hop', 'routing', 'dest-opts', 'dest-opts', 'ah'] as const);
  switch (kind) {
    case 'hop-by-hop':
    case 'dest-opts':
      // Router alert, or a PadN-only header, or a larger unknown option.
      return { type: kind, options: r.pick([Buffer.from([5, 2, 0, 0]), Buffer.alloc(0), Buffer.concat([Buffer.from([0x3e, 10]), r.bytes(10)])]) };
    case 'routing':
      return { type: 'routing', routingType: r.pick([0, 2, 4]), segmentsLeft: r.int(3), data: Buffer.concat([Buffer.alloc(4), r.bytes(r.pick([0, 16, 32]))]) };
    case 'ah':
      return { type: 'ah', spi: r.uint32(), seq: r.uint32(), icv: r.bytes(r.pick([12, 16])) };
  }
}

function randomIpv4Options(r: SeededRng): Buffer {
  const parts: Buffer[] = [];
  let len = 0;
  const n = r.range(1, 4);
  for (let k = 0; k < n; k++) {
    const opt = r.pick([
      Buffer.from([1]), // NOP
      Buffer.from([0x94, 4, 0, 0]), // router alert
      Buffer.concat([Buffer.from([0x44, 12, 5, 0]), r.bytes(8)]), // timestamp
      Buffer.concat([Buffer.from([0x07, 11, 4]), r.bytes(8)]), // record route
    ]);
    if (len + opt.length > 40) break;
    parts.push(opt);
    len += opt.length;
  }
  return Buffer.concat(parts);
}

function randomTcpOptions(r: SeededRng): TcpOption[] {
  const all: TcpOption[] = [
    { kind: 'mss', value: r.pick([536, 1220, 1460, 8960]) },
    { kind: 'nop' },
    { kind: 'wscale', value: r.int(15) },
    { kind: 'sack-permitted' },
    { kind: 'timestamp', value: r.uint32(), echo: r.uint32() },
  ];
  return r.shuffle(all).slice(0, r.range(1, all.length));
}

function randomTtl(r: SeededRng): number {
  return r.bool(0.7) ? r.pick([0, 1, 2, 32, 63, 64, 128, 255]) : r.int(256);
}

function randomDscp(r: SeededRng): number {
  return r.bool(0.7) ? r.pick([0, 0, 8, 10, 26, 46, 48]) : r.int(64);
}

function randomPayloadLength(r: SeededRng): number {
  const x = r.next();
  return x < 0.7 ? r.int(65) : x < 0.95 ? r.range(64, 512) : r.range(512, 1400);
}

function randomMac(r: SeededRng): Buffer {
  const m = r.bytes(6);
  m[0] = (m[0]! & 0xfe) | 0x02; // unicast, locally administered
  return m;
}

function randomIpv4(r: SeededRng): string {
  const b = r.bytes(4);
  const prefix = r.pick([[10], [172, 16], [192, 168], []]);
  prefix.forEach((v, i) => (b[i] = v));
  return ipv4ToText(b);
}

function randomIpv6(r: SeededRng): string {
  const b = r.bytes(16);
  if (r.bool(0.7)) {
    b[0] = 0xfd;
    b[1] = 0;
    b.fill(0, 2, 14);
  }
  return ipv6ToText(b);
}

/** An address inside `cidr` (or the address itself when there is no prefix length). */
function addressIn(r: SeededRng, cidr: string, v6: boolean): string {
  const [text, lenText] = cidr.split('/');
  const base = v6 ? ipv6ToBytes(text!) : ipv4ToBytes(text!);
  const bits = base.length * 8;
  const len = lenText === undefined ? bits : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > bits) {
    throw new TsbpfError('INVALID_ARGUMENT', `bias address '${cidr}' has a bad prefix length`, { hint: `0..${bits}` });
  }
  // The host part at random; sometimes the network's first or last address.
  const edge = r.pick(['random', 'random', 'first', 'last'] as const);
  const out = Buffer.from(base);
  for (let bit = len; bit < bits; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    const set = edge === 'random' ? r.bool() : edge === 'last';
    out[byte] = set ? out[byte]! | mask : out[byte]! & ~mask;
  }
  return v6 ? ipv6ToText(out) : ipv4ToText(out);
}
