/**
 * Text <-> bytes for the addresses the packet builder writes: IPv4 dotted
 * quads, IPv6 (RFC 4291 section 2.2 text forms, RFC 5952 output) and MACs.
 * Errors are TsbpfError('INVALID_ARGUMENT') naming the bad text.
 */
import { TsbpfError } from './errors.js';
import { parseIpv4Bytes, parseIpv6Bytes } from './layout.js';

export function isIpv4Text(text: string): boolean {
  return parseIpv4Bytes(text) !== undefined;
}

/** '10.0.0.1' -> 4 bytes. */
export function ipv4ToBytes(text: string): Buffer {
  const b = parseIpv4Bytes(text);
  if (!b) throw badAddress('IPv4', text, "write four decimal octets, e.g. '10.0.0.1'");
  return Buffer.from(b);
}

export function isIpv6Text(text: string): boolean {
  return parseIpv6Bytes(text) !== undefined;
}

/** 'fd00::1', '::ffff:10.0.0.1' -> 16 bytes. */
export function ipv6ToBytes(text: string): Buffer {
  const b = parseIpv6Bytes(text);
  if (!b) throw badAddress('IPv6', text, "write eight hex groups or compress zeros with '::', e.g. 'fd00::1'");
  return Buffer.from(b);
}

/** 16 bytes -> RFC 5952 text (lower case, longest zero run of 2+ groups compressed). */
export function ipv6ToText(bytes: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

export function ipv4ToText(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** '02:00:00:00:00:01' (also with '-') -> 6 bytes. */
export function macToBytes(text: string): Buffer {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw badAddress('MAC', text, "write six hex bytes, e.g. '02:00:00:00:00:01'");
  }
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function macToText(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Accepts text or raw bytes of the right size. */
export function addressBytes(kind: 'IPv4' | 'IPv6' | 'MAC', value: string | Uint8Array): Buffer {
  const size = kind === 'IPv4' ? 4 : kind === 'IPv6' ? 16 : 6;
  if (typeof value !== 'string') {
    if (value.length !== size) {
      throw new TsbpfError('INVALID_ARGUMENT', `${kind} address must be ${size} bytes, got ${value.length}`);
    }
    return Buffer.from(value);
  }
  return kind === 'IPv4' ? ipv4ToBytes(value) : kind === 'IPv6' ? ipv6ToBytes(value) : macToBytes(value);
}

function badAddress(kind: string, text: string, hint: string): TsbpfError {
  return new TsbpfError('INVALID_ARGUMENT', `invalid ${kind} address '${text}'`, { hint, details: { value: text } });
}
