/**
 * The BPF datapath behind the agent's Datapath interface: NetworkPolicy by
 * identity, enforced by one object (bpf/endpoint.c) attached at both TC
 * hooks of every pod's host-side veth:
 *
 *   tc-ingress of the host veth (`cni_from_pod`) = pod egress
 *   tc-egress  of the host veth (`cni_to_pod`)   = pod ingress
 *
 * Maps (pinned at `<pinDir>/<map>`, reused on restart so state survives the
 * agent; one set per node netns, since endpoints are keyed by ifindex): `cni_ipcache` (LPM: IP -> identity), `cni_endpoints` (host veth
 * ifindex -> identity and isolation per direction; an endpoint without an
 * entry is not policed), `cni_policy` (hash: endpoint, direction, peer
 * identity or 0 = any -> up to 16 protocol/port ranges), `cni_policy_cidr`
 * (LPM per endpoint and direction: ipBlocks with their exceptions resolved
 * into longest-prefix entries), `cni_ct` (LRU: connections allowed at an
 * endpoint in a direction, so replies always pass), `cni_stats`.
 *
 * Services (ClusterIP, ready backends, ClientIP affinity) go through the
 * services program of docs/stateful.md, attached on each pod's own interface
 * (client-side load balancing, see services.ts); its maps are pinned under
 * `<pinDir>/svc`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC } from '../../codegen/clang.js';
import { TsbpfError } from '../../sdk/errors.js';
import type { Attachment } from '../../runtime/attach.js';
import { load } from '../../runtime/entry.js';
import { native } from '../../runtime/native.js';
import type { BpfObject } from '../../runtime/object.js';
import { pinAll } from '../../runtime/pin.js';
import type { BpfMap } from '../../runtime/map.js';
import { listLinks } from '../agent/netlink.js';
import { NoopDatapath, type DatapathStatus, type Endpoint, type IpIdentity, type NodeContext, type ServiceEntry } from '../agent/datapath.js';
import type { EndpointPolicy } from '../policy/types.js';
import { endpointEntries, ipKey, keyOwner, u32 } from './encode.js';
import { BpfMasquerade } from './masquerade.js';
import { ClusterIpServices } from './services.js';

export const MAP_NAMES = ['cni_ipcache', 'cni_endpoints', 'cni_policy', 'cni_policy_cidr', 'cni_ct', 'cni_stats'] as const;
export const STAT_NAMES = ['allowedByConntrack', 'allowedOpen', 'allowedByPolicy', 'denied'] as const;

/** The program's C source (kept beside the sources; dist/ has only JS). */
export function endpointSource(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'bpf', 'endpoint.c'), path.resolve(here, '../../../cni/datapath/bpf/endpoint.c')];
  for (const c of candidates) if (existsSync(c)) return readFileSync(c, 'utf8');
  throw new TsbpfError('OBJECT_NOT_FOUND', `the endpoint program source was not found (looked in ${candidates.join(', ')})`);
}

export interface BpfDatapathOptions {
  /** bpffs directory for the maps; default `<NodeContext.pinDir>/cni/<node netns name, or 'host'>`. */
  pinDir?: string;
  /** TC filter priority/handle used on every host veth (fixed, so a restarted agent replaces in place). */
  priority?: number;
  /** ClusterIP services through the services program (default true). */
  services?: boolean;
  /**
   * TC filter priority/handle of the masquerade on the uplink. The uplink is the node's, shared with
   * other software: not 1/1, which a replace would take from whoever holds it. Default UPLINK_PRIORITY.
   */
  uplinkPriority?: number;
}

/** 0x7473, "ts": the masquerade's fixed priority and handle on the uplink. */
export const UPLINK_PRIORITY = 0x7473;

export class BpfDatapath extends NoopDatapath {
  override readonly name = 'bpf';
  readonly masquerades = true;
  readonly #options: BpfDatapathOptions;
  #node: NodeContext | undefined;
  #obj: BpfObject | undefined;
  #pinDir = '';
  readonly #ifindex = new Map<string, number>();
  readonly #attached = new Map<string, Attachment[]>();
  #overflow = new Map<string, string[]>();
  #svc: ClusterIpServices | undefined;
  #svcError: string | undefined;
  #masq: BpfMasquerade | undefined;
  #masqError: string | undefined;

  constructor(options: BpfDatapathOptions = {}) {
    super();
    this.#options = options;
  }

  get pinDir(): string {
    return this.#pinDir;
  }

  #map(name: (typeof MAP_NAMES)[number]): BpfMap<unknown, unknown> {
    if (!this.#obj) throw new TsbpfError('CLOSED', 'the BPF datapath is not started');
    return this.#obj.map(name);
  }

  override async start(node: NodeContext): Promise<void> {
    this.#node = node;
    // Keys are interface indexes, which are per network namespace: one set of maps per node netns.
    this.#pinDir = this.#options.pinDir ?? path.join(node.pinDir, 'cni', node.netns ? path.basename(node.netns) : 'host');
    if (!this.#obj) {
      const built = compileC(endpointSource());
      if (!existsSync(this.#pinDir)) mkdirSync(this.#pinDir, { recursive: true });
      // Maps pinned by a predecessor are reused: identities, policy and connections survive a restart.
      const obj = load({ bytes: built.bytes, path: 'tsbpf_cni.o' }, { name: 'tsbpf_cni', pinRoot: this.#pinDir });
      try {
        const missing = MAP_NAMES.filter((m) => !existsSync(path.join(this.#pinDir, m))).map((m) => ({ name: m, fd: obj.map(m).fd }));
        if (missing.length) pinAll(this.#pinDir, missing, []);
      } catch (e) {
        obj.close();
        throw e;
      }
      this.#obj = obj;
    }
    if (this.#options.services !== false && !this.#svc) {
      const svc = new ClusterIpServices();
      try {
        svc.start(path.join(this.#pinDir, 'svc'));
        this.#svc = svc;
        this.#svcError = undefined;
      } catch (e) {
        // Policy works without it; status says why services are not programmed.
        this.#svcError = (e as Error).message;
      }
    }
    if (node.masquerade && !this.#masq) {
      const masq = new BpfMasquerade();
      try {
        await masq.start({ dir: path.join(this.#pinDir, 'masq'), netns: node.netns, uplink: node.uplink, podCidrs: node.podCidrs, priority: this.#options.uplinkPriority ?? UPLINK_PRIORITY });
        this.#masq = masq;
        this.#masqError = undefined;
      } catch (e) {
        // A named uplink that cannot be used is a configuration error; a node without a default route just has no way out.
        if (node.uplink) throw e;
        this.#masqError = (e as Error).message;
      }
    }
    // Entries of interfaces that no longer exist (endpoints removed while the agent was down).
    const live = new Set((await listLinks(node.netns)).map((l) => l.ifindex));
    for (const [kind, map] of [
      ['policy', 'cni_policy'],
      ['cidr', 'cni_policy_cidr'],
    ] as const) {
      const raw = this.#map(map).raw;
      for (const k of [...raw.keys()]) if (!live.has(keyOwner(kind, k).ifindex)) raw.delete(k);
    }
    const eps = this.#map('cni_endpoints').raw;
    for (const k of [...eps.keys()]) if (!live.has(k.readUInt32LE(0))) eps.delete(k);
  }

  async #resolve(ep: { id: string; hostIfname?: string }): Promise<number | undefined> {
    const known = this.#ifindex.get(ep.id);
    if (known !== undefined) return known;
    const name = ep.hostIfname ?? ep.id;
    let ifindex: number | undefined;
    try {
      // In-process (if_nametoindex in the node's netns): no `ip` process on the ADD path.
      ifindex = native().ifIndex(name, this.#node?.netns);
    } catch {
      ifindex = undefined;
    }
    if (ifindex !== undefined) this.#ifindex.set(ep.id, ifindex);
    return ifindex;
  }

  override async attachEndpoint(ep: Endpoint): Promise<void> {
    await super.attachEndpoint(ep);
    const obj = this.#obj;
    if (!obj) throw new TsbpfError('CLOSED', 'the BPF datapath is not started');
    this.#ifindex.delete(ep.id);
    const ifindex = await this.#resolve(ep);
    if (ifindex === undefined) throw new TsbpfError('IFACE_NOT_FOUND', `host veth ${ep.hostIfname} of endpoint ${ep.id} does not exist`);
    for (const a of this.#attached.get(ep.id) ?? []) a.detach();
    const prio = this.#options.priority ?? 1;
    const common = { ifname: ep.hostIfname, netns: this.#node?.netns, priority: prio, handle: prio, replace: true, persistent: true };
    const a = obj.attach({ ...common, hook: 'tc-ingress', program: 'cni_from_pod' });
    const b = obj.attach({ ...common, hook: 'tc-egress', program: 'cni_to_pod' });
    this.#attached.set(ep.id, [a, b]);
    this.#svc?.attach(ep, prio);
    // A policy computed before the interface existed (or before a restart): program it now.
    const p = this.policies.get(ep.id);
    if (p) this.#writePolicy(ifindex, ep.id, p);
  }

  override async detachEndpoint(ep: Endpoint): Promise<void> {
    await super.detachEndpoint(ep);
    for (const a of this.#attached.get(ep.id) ?? []) {
      try {
        a.detach();
      } catch {
        /* the interface is gone, and its filters with it */
      }
    }
    this.#attached.delete(ep.id);
    this.#svc?.detach(ep);
    const ifindex = this.#ifindex.get(ep.id);
    this.#ifindex.delete(ep.id);
    this.#overflow.delete(ep.id);
    if (ifindex === undefined || !this.#obj) return;
    this.#purge(ifindex, new Set(), new Set());
    this.#map('cni_endpoints').raw.delete(u32(ifindex));
    const ct = this.#map('cni_ct').raw;
    for (const k of [...ct.keys()]) if (k.readUInt32LE(36) === ifindex) ct.delete(k);
  }

  override async setIdentities(entries: IpIdentity[]): Promise<void> {
    await super.setIdentities(entries);
    const raw = this.#map('cni_ipcache').raw;
    const want = new Map(entries.map((e) => [ipKey(e.cidr).toString('hex'), e.identity]));
    for (const [hex, id] of want) raw.set(Buffer.from(hex, 'hex'), u32(id));
    for (const k of [...raw.keys()]) if (!want.has(k.toString('hex'))) raw.delete(k);
  }

  override async upsertService(svc: ServiceEntry): Promise<void> {
    await super.upsertService(svc);
    this.#svc?.upsert(svc);
  }

  override async deleteService(key: string): Promise<void> {
    await super.deleteService(key);
    this.#svc?.delete(key);
  }

  override async applyPolicy(endpointId: string, policy: EndpointPolicy): Promise<void> {
    await super.applyPolicy(endpointId, policy);
    const ep = this.endpoints.get(endpointId);
    const ifindex = await this.#resolve({ id: endpointId, hostIfname: ep?.hostIfname });
    if (ifindex === undefined) return; // programmed at attach
    this.#writePolicy(ifindex, endpointId, policy);
  }

  /** Replace an endpoint's entries: new rules first, then stale ones out, then the isolation flags. */
  #writePolicy(ifindex: number, id: string, policy: EndpointPolicy): void {
    const e = endpointEntries(ifindex, policy);
    const pol = this.#map('cni_policy').raw;
    const cidr = this.#map('cni_policy_cidr').raw;
    for (const [k, v] of e.policy) pol.set(k, v);
    for (const [k, v] of e.cidr) cidr.set(k, v);
    this.#purge(ifindex, new Set(e.policy.map(([k]) => k.toString('hex'))), new Set(e.cidr.map(([k]) => k.toString('hex'))));
    this.#map('cni_endpoints').raw.set(u32(ifindex), e.ep);
    if (e.overflow.length) this.#overflow.set(id, e.overflow);
    else this.#overflow.delete(id);
  }

  #purge(ifindex: number, keepPolicy: Set<string>, keepCidr: Set<string>): void {
    for (const [kind, map, keep] of [
      ['policy', 'cni_policy', keepPolicy],
      ['cidr', 'cni_policy_cidr', keepCidr],
    ] as const) {
      const raw = this.#map(map).raw;
      for (const k of [...raw.keys()]) if (keyOwner(kind, k).ifindex === ifindex && !keep.has(k.toString('hex'))) raw.delete(k);
    }
  }

  /** Forget every tracked connection (they must then pass policy again); returns how many there were. */
  flushConntrack(): number {
    return this.#map('cni_ct').clear();
  }

  /** Packets by outcome, summed over CPUs. */
  stats(): Record<(typeof STAT_NAMES)[number], bigint> {
    const out = Object.fromEntries(STAT_NAMES.map((n) => [n, 0n])) as Record<(typeof STAT_NAMES)[number], bigint>;
    if (!this.#obj) return out;
    const m = this.#map('cni_stats');
    STAT_NAMES.forEach((n, i) => {
      const v = m.raw.get(u32(i));
      if (!v) return;
      for (let o = 0; o + 8 <= v.length; o += 8) out[n] += v.readBigUInt64LE(o);
    });
    return out;
  }

  override status(): DatapathStatus {
    const s = super.status();
    const svc = this.#svc?.status();
    // Fill levels of the maps that fill up (cni_stats is a per-CPU array of counters: always full, not listed).
    const maps = this.#obj
      ? MAP_NAMES.filter((n) => n !== 'cni_stats').map((n) => {
          const m = this.#map(n);
          let entries = 0;
          for (const _ of m.raw.keys()) entries++;
          return { name: n, entries, maxEntries: m.maxEntries };
        })
      : s.maps;
    return {
      ...s,
      name: this.name,
      ready: this.#obj !== undefined,
      pinDir: this.#pinDir,
      programs: [
        ...[...this.#attached.values()].flatMap((as) => as.map((a) => ({ name: a.hook === 'tc-ingress' ? 'cni_from_pod' : 'cni_to_pod', attachedTo: a.ifname, hook: a.hook }))),
        ...(this.#svc?.attachments() ?? []).map((a) => ({ name: a.program.name, attachedTo: `${a.ifname} in ${a.netns ?? ''}`, hook: a.hook })),
        ...(this.#masq?.attachments() ?? []).map((a) => ({ name: a.program.name, attachedTo: a.ifname, hook: a.hook })),
      ],
      maps: [...maps, ...(svc ? svc.maps : [{ name: 'services (not programmed)', entries: this.services.size, maxEntries: 0 }]), ...(this.#masq?.status().maps ?? [])],
      ...(this.#masq || this.#masqError
        ? { masquerade: this.#masq ? { uplink: this.#masq.uplink, address: this.#masq.address, packets: this.#masq.status().stats } : { error: this.#masqError } }
        : {}),
      services: svc ? { programmed: this.services.size - svc.skipped.length, skipped: svc.skipped, packets: svc.stats } : { error: this.#svcError ?? 'disabled' },
      packets: Object.fromEntries(Object.entries(this.stats()).map(([k, v]) => [k, String(v)])),
      overflow: Object.fromEntries(this.#overflow),
    };
  }

  /** Agent shutdown: programs stay attached and maps pinned; pods keep their policy while the agent is down. */
  override async stop(): Promise<void> {
    this.#attached.clear();
    this.#svc?.stop();
    this.#svc = undefined;
    this.#masq?.stop();
    this.#masq = undefined;
    this.#obj?.close();
    this.#obj = undefined;
  }

  /** Remove everything: detach from every endpoint this process attached, close, unpin the maps. */
  async destroy(): Promise<void> {
    for (const as of this.#attached.values()) {
      for (const a of as) {
        try {
          a.detach();
        } catch {
          /* interface gone */
        }
      }
    }
    this.#attached.clear();
    this.#svc?.destroy();
    this.#svc = undefined;
    this.#masq?.destroy();
    this.#masq = undefined;
    this.#obj?.close();
    this.#obj = undefined;
    if (this.#pinDir && existsSync(this.#pinDir)) {
      rmSync(path.join(this.#pinDir, 'svc'), { recursive: true, force: true });
      rmSync(path.join(this.#pinDir, 'masq'), { recursive: true, force: true });
      for (const m of MAP_NAMES) rmSync(path.join(this.#pinDir, m), { force: true });
      if (readdirSync(this.#pinDir).length === 0) rmdirSync(this.#pinDir);
      // The default layout <pin-dir>/cni/<netns>: the directories above go too once nothing else is in them.
      if (!this.#options.pinDir && this.#node) {
        for (const dir of [path.join(this.#node.pinDir, 'cni'), this.#node.pinDir]) {
          if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
        }
      }
    }
  }
}
