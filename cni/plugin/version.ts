/**
 * CNI spec versions: which ones the plugin speaks, and how results differ
 * between them (0.3.x/0.4.0 carry `ips[].version`; 1.1.0 adds interface MTU
 * and route attributes). Results are rendered in the version the runtime asked.
 */
import type { AttachResult } from '../protocol.js';

export const SUPPORTED_VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compare two x.y.z versions: negative, 0 or positive. Non-numeric parts compare as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function looksLikeVersion(v: unknown): v is string {
  return typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v);
}

/** The first spec version that has each command. */
export const COMMAND_SINCE: Record<string, string> = {
  ADD: '0.1.0',
  DEL: '0.1.0',
  VERSION: '0.2.0',
  CHECK: '0.4.0',
  GC: '1.1.0',
  STATUS: '1.1.0',
};

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface RenderedResult {
  cniVersion: string;
  interfaces: Array<Record<string, unknown>>;
  ips: Array<Record<string, unknown>>;
  routes: Array<Record<string, unknown>>;
  dns: Dns;
}

function isIpv6(address: string): boolean {
  return address.includes(':');
}

/**
 * Render `r` in `version`, appended to `prev` (the prevResult of a chain:
 * its interfaces come first, so our interface indexes shift by its count).
 */
export function renderResult(version: CniVersion, r: AttachResult, dns: Dns | undefined, prev?: Record<string, unknown>): RenderedResult {
  const legacy = compareVersions(version, '1.0.0') < 0;
  const rich = compareVersions(version, '1.1.0') >= 0;
  const prevIfaces = Array.isArray(prev?.interfaces) ? (prev!.interfaces as Array<Record<string, unknown>>) : [];
  const prevIps = Array.isArray(prev?.ips) ? (prev!.ips as Array<Record<string, unknown>>) : [];
  const prevRoutes = Array.isArray(prev?.routes) ? (prev!.routes as Array<Record<string, unknown>>) : [];
  const prevDns = prev?.dns && typeof prev.dns === 'object' ? (prev.dns as Dns) : {};
  const shift = prevIfaces.length;

  const interfaces = r.interfaces.map((i) => {
    const o: Record<string, unknown> = { name: i.name, mac: i.mac };
    if (rich && i.mtu !== undefined) o.mtu = i.mtu;
    if (i.sandbox !== undefined) o.sandbox = i.sandbox;
    return o;
  });
  const ips = r.ips.map((ip) => {
    const o: Record<string, unknown> = {};
    if (legacy) o.version = isIpv6(ip.address) ? '6' : '4';
    o.address = ip.address;
    if (ip.gateway !== undefined) o.gateway = ip.gateway;
    o.interface = ip.interface + shift;
    return o;
  });
  const routes = r.routes.map((rt) => (rt.gw === undefined ? { dst: rt.dst } : { dst: rt.dst, gw: rt.gw }));
  // A prevResult from a 0.3/0.4 chain keeps its own fields; a 1.x one must not carry `version`.
  const prevIpsFixed = prevIps.map((ip) => {
    const o = { ...ip };
    if (legacy && o.version === undefined && typeof o.address === 'string') o.version = isIpv6(o.address) ? '6' : '4';
    if (!legacy) delete o.version;
    return o;
  });
  return {
    cniVersion: version,
    interfaces: [...prevIfaces, ...interfaces],
    ips: [...prevIpsFixed, ...ips],
    routes: [...prevRoutes, ...routes],
    dns: dns ?? prevDns,
  };
}
