/**
 * Pod endpoints: one veth pair per attachment. The host side (`tsb<hash>`)
 * stays in the node's namespace with a /32 (and /128) route to the pod; the
 * pod side is created directly inside CNI_NETNS under CNI_IFNAME, with the
 * pod's address as a host prefix and a default route via the gateway, so
 * every packet a pod sends goes through the node (and its datapath).
 *
 * IPv4: the gateway is the pool's first address, held by the node's `tsbpf0`
 * device; the host veth answers ARP for it (a local address, arp_ignore 0).
 * IPv6: the host veth carries fe80::1 (no DAD, so it works at once) and the
 * pod routes via it; the pool's first address on `tsbpf0` reaches the node.
 */
import { createHash } from 'node:crypto';
import type { Assigned } from '../ipam/ipam.js';
import type { AttachResult } from '../protocol.js';
import { ipSteps, listAddrs, listLinks, run, type IpStep, type NetlinkMode, type NetnsRef } from './netlink.js';

/** Link-local next hop of every pod for IPv6 (on each host veth). */
export const GATEWAY6_LINK_LOCAL = 'fe80::1';

export function attachmentHash(network: string, containerId: string, ifname: string): string {
  return createHash('sha256').update(`${network}\u0000${containerId}\u0000${ifname}`).digest('hex');
}

/** Host-side interface name: 'tsb' + 11 hex digits (14 characters, IFNAMSIZ is 16). */
export function hostIfname(hash: string): string {
  return `tsb${hash.slice(0, 11)}`;
}

/** A locally administered unicast MAC derived from the hash (host side: salt 'h', pod side 'p'). */
export function macFor(hash: string, side: 'h' | 'p'): string {
  const b = createHash('sha256').update(`${side}${hash}`).digest();
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface EndpointPlan {
  nodeNetns: NetnsRef;
  podNetns: string;
  hostIfname: string;
  podIfname: string;
  hostMac: string;
  podMac: string;
  mtu: number;
  addresses: Assigned[];
}

/**
 * The `ip` steps of an endpoint, per namespace, in order. The pod's routes
 * may already be there (a second interface in the same pod: the default
 * route belongs to the first, as the spec allows).
 */
export function endpointSteps(p: EndpointPlan): { node: IpStep[]; pod: IpStep[] } {
  const v4 = p.addresses.find((a) => a.family === 4);
  const v6 = p.addresses.find((a) => a.family === 6);
  const mtu = String(p.mtu);
  const node: IpStep[] = [
    ['link', 'add', p.hostIfname, 'address', p.hostMac, 'mtu', mtu, 'type', 'veth', 'peer', 'name', p.podIfname, 'address', p.podMac, 'mtu', mtu, 'netns', p.podNetns],
  ];
  if (v6) {
    node.push(['link', 'set', p.hostIfname, 'addrgenmode', 'none']);
    node.push(['addr', 'add', `${GATEWAY6_LINK_LOCAL}/64`, 'dev', p.hostIfname, 'nodad']);
  }
  node.push(['link', 'set', p.hostIfname, 'up']);
  if (v4) node.push(['route', 'replace', `${v4.ip}/32`, 'dev', p.hostIfname, 'scope', 'link']);
  if (v6) node.push(['route', 'replace', `${v6.ip}/128`, 'dev', p.hostIfname]);
  const pod: IpStep[] = [];
  if (v4) pod.push(['addr', 'add', `${v4.ip}/32`, 'dev', p.podIfname]);
  if (v6) pod.push(['addr', 'add', `${v6.ip}/128`, 'dev', p.podIfname, 'nodad']);
  pod.push(['link', 'set', p.podIfname, 'up']);
  const route = (argv: string[]): IpStep => ({ argv, mayExist: true });
  if (v4) {
    pod.push(route(['route', 'append', v4.gateway, 'dev', p.podIfname, 'scope', 'link']));
    pod.push(route(['route', 'add', 'default', 'via', v4.gateway, 'dev', p.podIfname]));
  }
  if (v6) pod.push(route(['route', 'add', '::/0', 'via', GATEWAY6_LINK_LOCAL, 'dev', p.podIfname]));
  return { node, pod };
}

/** Two `ip -batch` processes in batch mode: one in the node's namespace, one in the pod's. */
export async function createEndpoint(mode: NetlinkMode, p: EndpointPlan): Promise<void> {
  const steps = endpointSteps(p);
  try {
    await ipSteps(mode, p.nodeNetns, steps.node);
  } catch (e) {
    // A leftover host link of this attachment (a crash before its record was saved): remove it, try once more.
    // (A step after `link add` that failed leaves the link too: removing it cleans that up as well.)
    if (!(await removeHostLink(p.nodeNetns, p.hostIfname))) throw e;
    try {
      await ipSteps(mode, p.nodeNetns, steps.node);
    } catch (again) {
      await removeHostLink(p.nodeNetns, p.hostIfname);
      throw again;
    }
  }
  try {
    await ipSteps(mode, p.podNetns, steps.pod);
  } catch (e) {
    await removeHostLink(p.nodeNetns, p.hostIfname);
    throw e;
  }
}

/** Delete the host side (the kernel removes the pod side and the routes with it). Missing is fine. */
export async function removeHostLink(nodeNetns: NetnsRef, ifname: string): Promise<boolean> {
  const r = await run(nodeNetns, ['ip', 'link', 'del', ifname]);
  return r.code === 0;
}

/** The CNI result of an endpoint (version-neutral). */
export function attachResult(p: { podIfname: string; podMac: string; hostIfname: string; hostMac: string; mtu: number; podNetns: string; addresses: Assigned[] }): AttachResult {
  const ips: AttachResult['ips'] = [];
  const routes: AttachResult['routes'] = [];
  for (const a of p.addresses) {
    if (a.family === 4) {
      ips.push({ address: `${a.ip}/32`, gateway: a.gateway, interface: 1 });
      routes.push({ dst: '0.0.0.0/0', gw: a.gateway });
    } else {
      ips.push({ address: `${a.ip}/128`, gateway: GATEWAY6_LINK_LOCAL, interface: 1 });
      routes.push({ dst: '::/0', gw: GATEWAY6_LINK_LOCAL });
    }
  }
  return {
    interfaces: [
      { name: p.hostIfname, mac: p.hostMac, mtu: p.mtu },
      { name: p.podIfname, mac: p.podMac, mtu: p.mtu, sandbox: p.podNetns },
    ],
    ips,
    routes,
  };
}

/** What CHECK finds wrong with an endpoint (empty: all is well). */
export async function checkEndpoint(p: { nodeNetns: NetnsRef; podNetns: string; hostIfname: string; podIfname: string; addresses: string[] }): Promise<string[]> {
  const problems: string[] = [];
  const host = (await listLinks(p.nodeNetns)).find((l) => l.ifname === p.hostIfname);
  if (!host) problems.push(`host interface ${p.hostIfname} is missing`);
  else if (!(host.flags ?? []).includes('UP')) problems.push(`host interface ${p.hostIfname} is down`);
  let podAddrs: string[] = [];
  try {
    const a = await listAddrs(p.podNetns, p.podIfname);
    podAddrs = (a[0]?.addr_info ?? []).map((x) => x.local);
  } catch {
    problems.push(`interface ${p.podIfname} is missing in ${p.podNetns}`);
    return problems;
  }
  for (const want of p.addresses) if (!podAddrs.includes(want)) problems.push(`address ${want} is missing on ${p.podIfname}`);
  return problems;
}
