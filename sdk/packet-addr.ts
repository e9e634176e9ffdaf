/**
 * Text <-> bytes for the addresses the packet builder writes: IPv4 dotted
 * quads, IPv6 (RFC 4291 section 2.2 text forms, RFC 5952 output) and MACs.
 * Errors are TsbpfError('INVALID_ARGUMENT') naming the bad text.
 */
import { TsbpfError } from './errors.js';

const DEC_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function isIpv4Text(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => DEC_OCTET.test(p));
}

/** '10.0.0.1' -> 4 bytes. */
export function ipv4ToBytes(text: string): Buffer {
  if (!isIpv4Text(text)) throw badAddress('IPv4', text, "write four decimal octets, e.g. '10.0.0.1'");
  return Buffer.from(text.split('.').map(Number));
}

export function isIpv6Text(text: string): boolean {
  return parseIpv6(text) !== undefined;
}

/** 'fd00::1', '::ffff:10.0.0.1' -> 16 bytes. */
export function ipv6ToBytes(text: string): Buffer {
  const b = parseIpv6(text);
  if (!b) throw badAddress('IPv6', text, "write eight hex groups or compress zeros with '::', e.g. 'fd00::1'");
  return b;
}

function parseIpv6(text: string): Buffer | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  let head = text;
  let v4: Buffer | undefined;
  // A trailing dotted quad stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) > 0) {
    const quad = text.slice(lastColon + 1);
    if (!isIpv4Text(quad)) return undefined;
    v4 = Buffer.from(quad.split('.').map(Number));
    head = text.slice(0, lastColon + 1);
    // 'x::' + quad leaves 'x::'; 'x:y:' + quad leaves a trailing ':' to drop.
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const want = v4 ? 6 : 8;
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  if (!left || !right) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const missing = want - left.length - right.length;
    if (missing < 1) return undefined;
    all = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    if (left.length !== want) return undefined;
    all = left;
  }
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (v4) v4.copy(out, 12);
  return out;
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
