/**
 * The byte layouts of the endpoint program's maps (cni/datapath/bpf/endpoint.c)
 * and the translation of a compiled EndpointPolicy into map entries. Pure:
 * no kernel, so the translation is tested on its own.
 *
 * Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so an
 * IPv4 /n is a /96+n in the tries.
 */
import { parsePrefix, prefixWithin, type Prefix } from '../addr.js';
import { TsbpfError } from '../../sdk/errors.js';
import { PROTO_NUMBER, type DirectionPolicy, type EndpointPolicy, type PolicyRule } from '../policy/types.js';

export const DIR_INGRESS = 0;
export const DIR_EGRESS = 1;
/** Ranges per rule set (MAX_RANGES in endpoint.c). */
export const MAX_RANGES = 16;
export const RULE_SET_SIZE = 4 + MAX_RANGES * 8;

export interface PortRange {
  /** IP protocol number; 0 = every protocol and port. */
  proto: number;
  from: number;
  to: number;
}

/** A prefix as 16 bytes plus its length in the 128-bit space. */
export function mappedPrefix(p: Prefix): { addr: Buffer; len: number } {
  const addr = Buffer.alloc(16);
  if (p.family === 4) {
    addr[10] = 0xff;
    addr[11] = 0xff;
    addr.writeUInt32BE(Number(p.base), 12);
    return { addr, len: 96 + p.len };
  }
  for (let i = 0; i < 16; i++) addr[i] = Number((p.base >> BigInt(8 * (15 - i))) & 0xffn);
  return { addr, len: p.len };
}

function prefixOf(text: string): Prefix {
  const p = parsePrefix(text);
  if (!p) throw new TsbpfError('INVALID_ARGUMENT', `not an address or prefix: '${text}'`);
  return p;
}

/** struct ip_key { u32 prefixlen; u8 addr[16]; } */
export function ipKey(cidr: string): Buffer {
  const { addr, len } = mappedPrefix(prefixOf(cidr));
  const b = Buffer.alloc(20);
  b.writeUInt32LE(len, 0);
  addr.copy(b, 4);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** struct ep_info { u32 identity; u8 isolated[2]; u8 pad[2]; } */
export function epInfo(identity: number, isolatedIngress: boolean, isolatedEgress: boolean): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(identity >>> 0, 0);
  b[4] = isolatedIngress ? 1 : 0;
  b[5] = isolatedEgress ? 1 : 0;
  return b;
}

/** struct policy_key { u32 ifindex; u32 peer; u8 dir; u8 pad[3]; } (peer 0 = any) */
export function policyKey(ifindex: number, peer: number, dir: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt32LE(peer >>> 0, 4);
  b[8] = dir;
  return b;
}

/** struct cidr_key { u32 prefixlen; u32 ifindex; u8 dir; u8 pad[3]; u8 addr[16]; } */
export function cidrKey(ifindex: number, dir: number, p: Prefix): Buffer {
  const { addr, len } = mappedPrefix(p);
  const b = Buffer.alloc(28);
  b.writeUInt32LE(64 + len, 0);
  b.writeUInt32LE(ifindex, 4);
  b[8] = dir;
  addr.copy(b, 12);
  return b;
}

/** The ifindex and direction of a policy or cidr key (for replacing an endpoint's entries). */
export function keyOwner(kind: 'policy' | 'cidr', key: Buffer): { ifindex: number; dir: number } {
  return kind === 'policy' ? { ifindex: key.readUInt32LE(0), dir: key[8]! } : { ifindex: key.readUInt32LE(4), dir: key[8]! };
}

/** struct rule_set { u32 count; struct { u16 from, to; u8 proto; u8 pad[3]; } r[MAX_RANGES]; } */
export function ruleSet(ranges: PortRange[]): Buffer {
  const b = Buffer.alloc(RULE_SET_SIZE);
  b.writeUInt32LE(ranges.length, 0);
  ranges.forEach((r, i) => {
    const o = 4 + i * 8;
    b.writeUInt16LE(r.from, o);
    b.writeUInt16LE(r.to, o + 2);
    b[o + 4] = r.proto;
  });
  return b;
}

function rangeOf(r: PolicyRule): PortRange {
  return r.protocol === 'ANY' ? { proto: 0, from: 0, to: 65535 } : { proto: PROTO_NUMBER[r.protocol], from: r.portFrom, to: r.portTo };
}

/** Ranges without duplicates and without those another one covers; one `any` range stands for all. */
export function mergeRanges(ranges: PortRange[]): PortRange[] {
  if (ranges.some((r) => r.proto === 0)) return [{ proto: 0, from: 0, to: 65535 }];
  const sorted = [...ranges].sort((a, b) => a.proto - b.proto || a.from - b.from || b.to - a.to);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.proto === r.proto && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

export interface DirectionEntries {
  /** peer identity (0 = any) -> ranges */
  identities: Map<number, PortRange[]>;
  /** prefix text -> ranges; an empty list is an exception (denies what a shorter prefix allows). */
  cidrs: Map<string, { prefix: Prefix; ranges: PortRange[] }>;
  /** Keys whose ranges did not fit MAX_RANGES: written as deny (fail closed). */
  overflow: string[];
}

/**
 * One direction's rules as map entries. CIDR rules with exceptions become a
 * set of prefixes where the longest match decides: for every prefix P that
 * is a rule's cidr or one of its exceptions, an address whose longest match is
 * P lies in a rule's cidr C iff C contains P, and in an exception E iff E
 * contains P; so P gets the ranges of every rule with C ⊇ P and no E ⊇ P.
 */
export function directionEntries(d: DirectionPolicy): DirectionEntries {
  const identities = new Map<number, PortRange[]>();
  const cidrRules: Array<{ cidr: Prefix; except: Prefix[]; range: PortRange }> = [];
  for (const r of d.rules) {
    const range = rangeOf(r);
    if (r.peer.kind === 'cidr') cidrRules.push({ cidr: prefixOf(r.peer.cidr), except: r.peer.except.map(prefixOf), range });
    else {
      const peer = r.peer.kind === 'all' ? 0 : r.peer.identity;
      identities.set(peer, [...(identities.get(peer) ?? []), range]);
    }
  }
  const overflow: string[] = [];
  for (const [peer, ranges] of identities) {
    const m = mergeRanges(ranges);
    if (m.length > MAX_RANGES) {
      overflow.push(`identity ${peer}`);
      identities.set(peer, []);
    } else identities.set(peer, m);
  }
  const prefixes = new Map<string, Prefix>();
  for (const r of cidrRules) for (const p of [r.cidr, ...r.except]) prefixes.set(`${p.family}|${p.base}|${p.len}`, p);
  const cidrs = new Map<string, { prefix: Prefix; ranges: PortRange[] }>();
  for (const [k, p] of prefixes) {
    const applying = cidrRules.filter((r) => prefixWithin(p, r.cidr) && !r.except.some((e) => prefixWithin(p, e)));
    let ranges = mergeRanges(applying.map((r) => r.range));
    if (ranges.length > MAX_RANGES) {
      overflow.push(`cidr ${k}`);
      ranges = [];
    }
    cidrs.set(k, { prefix: p, ranges });
  }
  return { identities, cidrs, overflow };
}

export interface EndpointEntries {
  ep: Buffer;
  policy: Array<[Buffer, Buffer]>;
  cidr: Array<[Buffer, Buffer]>;
  overflow: string[];
}

/** Every map entry of one endpoint's policy. */
export function endpointEntries(ifindex: number, p: EndpointPolicy): EndpointEntries {
  const out: EndpointEntries = { ep: epInfo(p.identity, p.ingress.isolated, p.egress.isolated), policy: [], cidr: [], overflow: [] };
  for (const [dir, d] of [
    [DIR_INGRESS, p.ingress],
    [DIR_EGRESS, p.egress],
  ] as const) {
    if (!d.isolated) continue;
    const e = directionEntries(d);
    for (const [peer, ranges] of e.identities) out.policy.push([policyKey(ifindex, peer, dir), ruleSet(ranges)]);
    for (const { prefix, ranges } of e.cidrs.values()) out.cidr.push([cidrKey(ifindex, dir, prefix), ruleSet(ranges)]);
    out.overflow.push(...e.overflow.map((o) => `${dir === DIR_INGRESS ? 'ingress' : 'egress'} ${o}`));
  }
  return out;
}
