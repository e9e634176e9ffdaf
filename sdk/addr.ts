/**
 * Address text: parsing and canonical forms for IPv4/IPv6 addresses, CIDRs and
 * MAC addresses. The model stores canonical text; codegen and the evaluator
 * parse it back with these functions.
 */
import { formatIpv4, formatIpv6, formatMac } from './parse.js';
// One parser of address text for the whole sdk: the layouts' (sdk/layout.ts).
import { parseIpv4Bytes, parseIpv6Bytes } from './layout.js';

/** Dotted-quad IPv4 text, checked by the compiler as far as a template type can. */
export type Ipv4Address = `${number}.${number}.${number}.${number}`;
/** IPv4 address or CIDR ('10.0.0.0/8'). */
export type Ipv4Cidr = Ipv4Address | `${Ipv4Address}/${number}`;
/** IPv6 address or CIDR: anything with a colon ('2001:db8::/32', '::1'). */
export type Ipv6Cidr = `${string}:${string}`;
/** 'aa:bb:cc:dd:ee:ff' (or with '-'). */
export type MacAddress =
  | `${string}:${string}:${string}:${string}:${string}:${string}`
  | `${string}-${string}-${string}-${string}-${string}-${string}`;

/** Parse dotted-quad IPv4 text to an unsigned 32-bit number; undefined when malformed. */
export function parseIpv4(text: string): number | undefined {
  const b = parseIpv4Bytes(text);
  return b && ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** Parse IPv6 text (with '::' and an optional dotted IPv4 tail) to a 128-bit bigint. */
export function parseIpv6(text: string): bigint | undefined {
  const b = parseIpv6Bytes(text);
  if (!b) return undefined;
  let x = 0n;
  for (const byte of b) x = (x << 8n) | BigInt(byte);
  return x;
}

export interface Cidr4 {
  family: 4;
  /** Network address (host bits cleared), unsigned 32-bit. */
  addr: number;
  len: number;
  /** Canonical text, e.g. '10.0.0.0/8'. */
  text: string;
}

export interface Cidr6 {
  family: 6;
  addr: bigint;
  len: number;
  text: string;
}

export type Cidr = Cidr4 | Cidr6;

/** Parse an address or CIDR of either family; a bare address is a /32 or /128. Host bits are cleared. */
export function parseCidr(text: string): Cidr | { error: string } {
  if (typeof text !== 'string') return { error: `expected an address or CIDR string, got ${typeof text}` };
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? undefined : text.slice(slash + 1);
  const isV6 = addrText.includes(':');
  const max = isV6 ? 128 : 32;
  let len = max;
  if (lenText !== undefined) {
    if (!/^\d{1,3}$/.test(lenText)) return { error: `bad prefix length in '${text}'` };
    len = Number(lenText);
    if (len > max) return { error: `prefix length /${len} is too long for an IPv${isV6 ? 6 : 4} address in '${text}' (at most /${max})` };
  }
  if (isV6) {
    const a = parseIpv6(addrText);
    if (a === undefined) return { error: `'${text}' is not a valid IPv6 address or CIDR` };
    const net = a & mask6(len);
    return { family: 6, addr: net, len, text: `${formatIpv6(net)}/${len}` };
  }
  const a = parseIpv4(addrText);
  if (a === undefined) return { error: `'${text}' is not a valid IPv4 address or CIDR` };
  const net = (a & mask4(len)) >>> 0;
  return { family: 4, addr: net, len, text: `${formatIpv4(net)}/${len}` };
}

/** Netmask of a /len IPv4 prefix as an unsigned 32-bit number. */
export function mask4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export function mask6(len: number): bigint {
  const all = (1n << 128n) - 1n;
  return len === 0 ? 0n : (all << BigInt(128 - len)) & all;
}

/** True when the IPv4 address (u32) lies in the prefix. */
export function inCidr4(addr: number, c: { addr: number; len: number }): boolean {
  return ((addr & mask4(c.len)) >>> 0) === c.addr;
}

export function inCidr6(addr: bigint, c: { addr: bigint; len: number }): boolean {
  return (addr & mask6(c.len)) === c.addr;
}

/** Parse 'aa:bb:cc:dd:ee:ff' (or with '-') to a 48-bit number. */
export function parseMac(text: string): number | undefined {
  if (typeof text !== 'string' || !/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(text)) return undefined;
  return parseInt(text.replace(/[:-]/g, ''), 16);
}

/** Canonical lower-case MAC text, or undefined when malformed. */
export function canonicalMac(text: string): string | undefined {
  const m = parseMac(text);
  return m === undefined ? undefined : formatMac(m);
}
