/**
 * The node's side of pod networking, set up once when the agent starts:
 * forwarding on, the `tsbpf0` device holding the pods' gateway addresses,
 * and masquerade of pod traffic leaving the pod CIDR. `tsbpf0` is one end of
 * a veth pair (peer `tsbpf0n`, both up) rather than a dummy device, which not
 * every kernel has; the datapath may use the pair as its way into the host
 * stack.
 *
 * Masquerade: with the BPF datapath (NodeOptions.masquerade = 'datapath') it
 * is the datapath's (cni/datapath/masquerade.ts) and nothing is set up here;
 * with 'iptables' it is a MASQUERADE rule, tagged with a comment so it can be
 * found and removed.
 */
import { formatIp, parsePrefix } from '../addr.js';
import { CNI_ERR, CniError } from '../errors.js';
import { listLinks, run, runOk, sysctl, type NetnsRef } from './netlink.js';

export const GATEWAY_DEVICE = 'tsbpf0';
export const GATEWAY_PEER = 'tsbpf0n';
export const MASQ_COMMENT = 'tsbpf: pod masquerade';

export interface NodeOptions {
  netns: NetnsRef;
  podCidr4?: string;
  podCidr6?: string;
  /** 'iptables' (default here): a MASQUERADE rule; 'datapath': the datapath does it; 'off'. */
  masquerade?: 'iptables' | 'datapath' | 'off';
}

export function gatewayOf(cidr: string): string {
  const p = parsePrefix(cidr, { strict: true });
  if (!p) throw new CniError(CNI_ERR.INVALID_CONFIG, `'${cidr}' is not a CIDR`);
  return formatIp({ family: p.family, value: p.base + 1n });
}

function masqRules(o: NodeOptions): Array<{ tool: string; args: string[] }> {
  if ((o.masquerade ?? 'iptables') !== 'iptables') return [];
  const out: Array<{ tool: string; args: string[] }> = [];
  for (const [cidr, tool] of [
    [o.podCidr4, 'iptables'],
    [o.podCidr6, 'ip6tables'],
  ] as const) {
    if (!cidr) continue;
    out.push({ tool, args: ['-t', 'nat', '%', 'POSTROUTING', '-s', cidr, '!', '-d', cidr, '-m', 'comment', '--comment', MASQ_COMMENT, '-j', 'MASQUERADE'] });
  }
  return out;
}

export async function setupNode(o: NodeOptions): Promise<{ gateways: string[] }> {
  const gateways: string[] = [];
  const settings: Record<string, number> = {};
  if (o.podCidr4) settings['net.ipv4.ip_forward'] = 1;
  if (o.podCidr6) settings['net.ipv6.conf.all.forwarding'] = 1;
  await sysctl(o.netns, settings);
  const links = await listLinks(o.netns);
  if (!links.some((l) => l.ifname === GATEWAY_DEVICE)) await runOk(o.netns, ['ip', 'link', 'add', GATEWAY_DEVICE, 'type', 'veth', 'peer', 'name', GATEWAY_PEER]);
  for (const cidr of [o.podCidr4, o.podCidr6]) {
    if (!cidr) continue;
    const gw = gatewayOf(cidr);
    gateways.push(gw);
    const plen = cidr.includes(':') ? 128 : 32;
    await runOk(o.netns, ['ip', 'addr', 'replace', `${gw}/${plen}`, 'dev', GATEWAY_DEVICE, ...(plen === 128 ? ['nodad'] : [])]);
  }
  await runOk(o.netns, ['ip', 'link', 'set', GATEWAY_PEER, 'up']);
  await runOk(o.netns, ['ip', 'link', 'set', GATEWAY_DEVICE, 'up']);
  for (const r of masqRules(o)) {
    const check = await run(o.netns, [r.tool, ...r.args.map((a) => (a === '%' ? '-C' : a))]);
    if (check.code !== 0) await runOk(o.netns, [r.tool, ...r.args.map((a) => (a === '%' ? '-A' : a))]);
  }
  return { gateways };
}

/** Undo setupNode (the agent's --cleanup on a real node; test nodes are whole namespaces and just go away). */
export async function teardownNode(o: NodeOptions): Promise<void> {
  for (const r of masqRules(o)) {
    while ((await run(o.netns, [r.tool, ...r.args.map((a) => (a === '%' ? '-D' : a))])).code === 0) {
      /* remove every copy */
    }
  }
  await run(o.netns, ['ip', 'link', 'del', GATEWAY_DEVICE]);
}
