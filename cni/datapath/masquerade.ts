/**
 * Masquerade of pod traffic leaving the node, in BPF: the services program
 * of docs/stateful.md (runtime/services.ts) with one masquerade rule per pod
 * CIDR, attached at both hooks of the node's uplink. At egress a connection
 * from a pod CIDR gets the uplink's address as its source (a port allocated
 * by the program's NAT, the pod's own port kept when it is free); at ingress
 * its replies (and ICMP errors about it) are translated back before the node
 * routes them to the pod. Traffic between pods of the node never leaves by
 * the uplink, which is what "to anywhere outside the pod CIDR" means on one
 * node.
 *
 * Its own object (`tsbmasq`), not the ClusterIP one: NAT rules match on an
 * egress ifindex, and interface indexes of the node and of pod namespaces
 * overlap. Maps pinned under `<pinDir>/masq` and reused on restart;
 * attachments persistent with a fixed priority/handle, so masqueraded
 * connections keep flowing while no agent runs.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { TsbpfError } from '../../sdk/errors.js';
import { services } from '../../sdk/services.js';
import type { Attachment } from '../../runtime/attach.js';
import { pinAll } from '../../runtime/pin.js';
import { loadServices, type LoadedServices } from '../../runtime/services.js';
import { listLinks, run, type NetnsRef } from '../agent/netlink.js';

export interface MasqueradeOptions {
  /** bpffs directory for the maps. */
  dir: string;
  netns: NetnsRef;
  /** The interface traffic leaves the node by; default: the device of the IPv4 (else IPv6) default route. */
  uplink?: string;
  podCidrs: string[];
  priority: number;
}

/** The device of the node's default route (IPv4 first). */
export async function defaultRouteDevice(netns: NetnsRef): Promise<string | undefined> {
  for (const family of ['-4', '-6']) {
    const r = await run(netns, ['ip', family, '-j', 'route', 'show', 'default']);
    if (r.code !== 0) continue;
    const routes = JSON.parse(r.stdout || '[]') as Array<{ dev?: string }>;
    const dev = routes.find((x) => x.dev)?.dev;
    if (dev) return dev;
  }
  return undefined;
}

/** The first IPv4 and global IPv6 address of an interface (by nsenter, so a netns path works too). */
async function addressesOf(netns: NetnsRef, ifname: string): Promise<{ v4?: string; v6?: string }> {
  const r = await run(netns, ['ip', '-j', 'addr', 'show', 'dev', ifname]);
  if (r.code !== 0) return {};
  const infos = (JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ family: string; local: string; scope: string }> }>)[0]?.addr_info ?? [];
  const v4 = infos.find((a) => a.family === 'inet')?.local;
  const v6 = infos.find((a) => a.family === 'inet6' && a.scope === 'global')?.local;
  return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
}

export class BpfMasquerade {
  #lb: LoadedServices | undefined;
  #attached: Attachment[] = [];
  #uplink = '';
  #address: { v4?: string; v6?: string } = {};

  get uplink(): string {
    return this.#uplink;
  }

  get address(): { v4?: string; v6?: string } {
    return this.#address;
  }

  async start(o: MasqueradeOptions): Promise<void> {
    if (this.#lb) return;
    const uplink = o.uplink ?? (await defaultRouteDevice(o.netns));
    if (!uplink) throw new TsbpfError('IFACE_NOT_FOUND', 'masquerade: the node has no default route to take the uplink from', { hint: 'give the agent --uplink IFNAME' });
    const link = (await listLinks(o.netns)).find((l) => l.ifname === uplink);
    if (!link) throw new TsbpfError('IFACE_NOT_FOUND', `masquerade: uplink ${uplink} does not exist`);
    const address = await addressesOf(o.netns, uplink);
    const def = services('tsbmasq', { conntrack: { trackAll: false } }, (s) => {
      for (const [i, cidr] of o.podCidrs.entries()) s.masquerade({ out: uplink, from: cidr, name: `pods${i}` });
    });
    if (!existsSync(o.dir)) mkdirSync(o.dir, { recursive: true });
    const lb = loadServices(def, { pinRoot: o.dir, interfaces: { [uplink]: link.ifindex }, ifaddrs: { [link.ifindex]: address } });
    try {
      const missing = Object.entries(lb.object.maps)
        .filter(([name]) => !name.includes('.') && !existsSync(path.join(o.dir, name)))
        .map(([name, m]) => ({ name, fd: m.fd }));
      if (missing.length) pinAll(o.dir, missing, []);
      const attached: Attachment[] = [];
      for (const p of lb.compiled.programs) {
        if (p.hook !== 'tc-ingress' && p.hook !== 'tc-egress') continue;
        attached.push(lb.object.attach({ program: p.name, hook: p.hook, ifname: uplink, ...(o.netns ? { netns: o.netns } : {}), priority: o.priority, handle: o.priority, replace: true, persistent: true }));
      }
      this.#attached = attached;
    } catch (e) {
      lb.close();
      throw e;
    }
    this.#lb = lb;
    this.#uplink = uplink;
    this.#address = address;
  }

  attachments(): Attachment[] {
    return this.#attached;
  }

  status(): { maps: Array<{ name: string; entries: number; maxEntries: number }>; stats: Record<string, string> } {
    const lb = this.#lb;
    if (!lb) return { maps: [], stats: {} };
    const maps = Object.entries(lb.object.maps)
      .filter(([name, m]) => !name.includes('.') && !/array|ringbuf/.test(m.type) && !name.startsWith('tsbpf_lb_'))
      .map(([name, m]) => {
        let entries = 0;
        for (const _ of m.raw.keys()) entries++;
        return { name: `masq/${name}`, entries, maxEntries: m.maxEntries };
      });
    return { maps, stats: Object.fromEntries(Object.entries(lb.stats()).map(([k, v]) => [k, String(v)])) };
  }

  /** Release handles; attachments and pins stay. */
  stop(): void {
    this.#attached = [];
    this.#lb?.object.close();
    this.#lb = undefined;
  }

  /** Detach from the uplink and close (the pins are the caller's). */
  destroy(): void {
    for (const a of this.#attached) {
      try {
        a.detach();
      } catch {
        /* gone */
      }
    }
    this.#attached = [];
    this.#lb?.close();
    this.#lb = undefined;
  }
}
