/**
 * IP address arithmetic for the CNI (IPAM pools, ipBlocks, routes): both
 * families as bigints so one code path serves IPv4 and IPv6. Dependency-free:
 * the plugin executable imports it.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

export interface Prefix {
  family: Family;
  /** The network address (host bits cleared). */
  base: bigint;
  len: number;
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

export function parseIp(text: string): Ip | undefined {
  if (isIPv4(text)) {
    let v = 0n;
    for (const p of text.split('.')) v = (v << 8n) | BigInt(Number(p));
    return { family: 4, value: v };
  }
  if (!isIPv6(text)) return undefined;
  let t = text.split('%')[0]!;
  // An embedded dotted quad ('::ffff:1.2.3.4') becomes two hextets.
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (m) {
    const v4 = parseIp(m[2]!)!.value;
    t = `${m[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = t.includes('::') ? t.split('::') : [t, undefined];
  const h = head ? head.split(':') : [];
  const tl = tail === undefined ? [] : tail ? tail.split(':') : [];
  const fill = tail === undefined ? 0 : 8 - h.length - tl.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...tl];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return { family: 6, value: v };
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  }
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on ties.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Canonical text of an address ('10.0.0.1', 'fd00::1'); undefined when malformed. */
export function canonicalIp(text: string): string | undefined {
  const ip = parseIp(text);
  return ip ? formatIp(ip) : undefined;
}

export function maskOf(family: Family, len: number): bigint {
  const bits = BigInt(bitsOf(family));
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(len))) - 1n);
}

/**
 * Parse 'a.b.c.d/len' or 'x::/len' (a bare address is a host prefix). With
 * `strict`, host bits must be zero (an ipBlock or a pod CIDR); otherwise they
 * are cleared.
 */
export function parsePrefix(text: string, options: { strict?: boolean } = {}): Prefix | undefined {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return undefined;
  const bits = bitsOf(ip.family);
  let len = bits;
  if (slash >= 0) {
    const l = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(l)) return undefined;
    len = Number(l);
    if (len > bits) return undefined;
  }
  const base = ip.value & maskOf(ip.family, len);
  if (options.strict && base !== ip.value) return undefined;
  return { family: ip.family, base, len };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIp({ family: p.family, value: p.base })}/${p.len}`;
}

export function prefixContains(p: Prefix, ip: Ip): boolean {
  return p.family === ip.family && (ip.value & maskOf(p.family, p.len)) === p.base;
}

/** Whether `inner` lies within `outer` (equal counts). */
export function prefixWithin(inner: Prefix, outer: Prefix): boolean {
  return inner.family === outer.family && inner.len >= outer.len && (inner.base & maskOf(outer.family, outer.len)) === outer.base;
}

export function prefixSize(p: Prefix): bigint {
  return 1n << BigInt(bitsOf(p.family) - p.len);
}

export function familyOfText(text: string): Family | undefined {
  return parseIp(text.split('/')[0] ?? '')?.family;
}
