/**
 * The node agent: IPAM, endpoints (veth pairs), the object source, identity
 * and policy computation, services, and the Datapath that programs the
 * kernel. The socket server (server.ts) calls add/del/check/gc/status; the
 * object source feeds the store; every change of objects or endpoints
 * recomputes identities, policies and services and hands the differences to
 * the datapath.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_ERR, CniError, isCniError } from '../errors.js';
import { Ipam, type Assigned } from '../ipam/ipam.js';
import { FileObjectSource } from '../k8s/file-source.js';
import { computeServices } from '../k8s/services.js';
import type { ObjectSource } from '../k8s/source.js';
import { ObjectStore } from '../k8s/store.js';
import { compileEndpointPolicy } from '../policy/compile.js';
import { buildContext } from '../policy/context.js';
import { IdentityAllocator } from '../policy/identity.js';
import { IDENTITY, type EndpointPolicy } from '../policy/types.js';
import type { AddRequest, AttachmentKey, AttachResult, CheckRequest, DelRequest, GcRequest, StatusResult } from '../protocol.js';
import { JsonStore, type JsonStoreOptions } from '../store.js';
import { NoopDatapath, type Datapath, type Endpoint, type IpIdentity, type ServiceEntry } from './datapath.js';
import { attachmentHash, attachResult, checkEndpoint, createEndpoint, hostIfname, macFor, removeHostLink } from './endpoint.js';
import { listLinks, type NetlinkMode } from './netlink.js';
import { setupNode, teardownNode, type NodeOptions } from './node.js';

export interface AgentOptions {
  /** Directory for ipam.json, endpoints.json, identities.json (created 0700). */
  stateDir: string;
  /** The node's network namespace (name or path); undefined: the agent's own. */
  nodeNetns?: string;
  podCidr4?: string;
  podCidr6?: string;
  /** Default pod MTU (a network config's `mtu` overrides it). Default 1500. */
  mtu?: number;
  netlink?: NetlinkMode;
  /** Default: 'datapath' when the datapath masquerades (the BPF one), else 'iptables'. */
  masquerade?: NodeOptions['masquerade'];
  /** The node's uplink for the datapath's masquerade (default: the default route's device). */
  uplink?: string;
  datapath?: Datapath;
  /** Kubernetes objects; a path is read as a watched YAML file. */
  objects?: ObjectSource | string;
  /** bpffs directory for the datapath's pins. */
  pinDir?: string;
  /** Concurrent endpoint set-ups (each runs a few processes). Default 8. */
  parallelism?: number;
  store?: JsonStoreOptions;
}

export interface EndpointRecord extends Endpoint {
  assigned: Assigned[];
  result: AttachResult;
  created: string;
}

interface EndpointsState {
  version: 1;
  endpoints: EndpointRecord[];
}

function keyText(k: AttachmentKey): string {
  return `${k.network}\u0000${k.containerId}\u0000${k.ifname}`;
}

/** A counting semaphore: at most `n` holders at once. */
class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

export class Agent {
  readonly options: AgentOptions;
  readonly datapath: Datapath;
  readonly objects = new ObjectStore();
  readonly ipam: Ipam;
  readonly identities: IdentityAllocator;
  readonly #endpointStore: JsonStore<EndpointsState>;
  readonly #endpoints = new Map<string, EndpointRecord>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #netlink: Semaphore;
  readonly #source: ObjectSource | undefined;
  #gateways: string[] = [];
  #started = 0;
  #ready = false;
  #notReadyReason = 'starting';
  /** Last state handed to the datapath, for diffs. */
  #applied = { identities: '', policies: new Map<string, string>(), services: new Map<string, string>() };
  #policies = new Map<string, EndpointPolicy>();
  #services: ServiceEntry[] = [];
  #policyProblems: string[] = [];
  #sourceErrors: string[] = [];
  #sync: Promise<void> = Promise.resolve();
  #syncQueued = false;

  constructor(options: AgentOptions) {
    if (!options.podCidr4 && !options.podCidr6) throw new CniError(CNI_ERR.INVALID_CONFIG, 'the agent needs a pod CIDR (--pod-cidr and/or --pod-cidr6)');
    this.options = options;
    this.datapath = options.datapath ?? new NoopDatapath();
    if (options.masquerade === 'datapath' && !this.datapath.masquerades) {
      throw new CniError(CNI_ERR.INVALID_CONFIG, `the ${this.datapath.name} datapath does not masquerade: use --masquerade iptables (or off)`);
    }
    this.ipam = new Ipam({ v4: options.podCidr4, v6: options.podCidr6, stateDir: options.stateDir, store: options.store });
    this.identities = new IdentityAllocator({ stateDir: options.stateDir, store: options.store });
    this.#endpointStore = new JsonStore<EndpointsState>(join(options.stateDir, 'endpoints.json'), options.store);
    for (const e of this.#endpointStore.load()?.endpoints ?? []) this.#endpoints.set(keyText(e), e);
    this.#netlink = new Semaphore(options.parallelism ?? 8);
    this.#source = typeof options.objects === 'string' ? new FileObjectSource(options.objects) : options.objects;
  }

  get nodeNetns(): string | undefined {
    return this.options.nodeNetns;
  }

  /** Where masquerade happens: as configured, else in the datapath when it can. */
  get masquerade(): NonNullable<NodeOptions['masquerade']> {
    return this.options.masquerade ?? (this.datapath.masquerades ? 'datapath' : 'iptables');
  }

  #nodeOptions(): NodeOptions {
    return { netns: this.options.nodeNetns, podCidr4: this.options.podCidr4, podCidr6: this.options.podCidr6, masquerade: this.masquerade };
  }

  /** Set up the node, re-attach surviving endpoints, start the object source. */
  async start(): Promise<void> {
    this.#started = Date.now();
    const { gateways } = await setupNode(this.#nodeOptions());
    this.#gateways = gateways;
    await this.datapath.start({
      netns: this.options.nodeNetns,
      podCidrs: [this.options.podCidr4, this.options.podCidr6].filter((c): c is string => !!c),
      gateways,
      stateDir: this.options.stateDir,
      pinDir: this.options.pinDir ?? '/sys/fs/bpf/tsbpf',
      masquerade: this.masquerade === 'datapath',
      ...(this.options.uplink ? { uplink: this.options.uplink } : {}),
    });
    // Endpoints made before a restart: still there (the kernel kept them), attach the datapath again.
    const links = new Set((await listLinks(this.options.nodeNetns)).map((l) => l.ifname));
    for (const ep of this.#endpoints.values()) if (links.has(ep.hostIfname)) await this.datapath.attachEndpoint(ep);
    if (this.#source) {
      await this.#source.start({
        events: (batch) => {
          if (this.objects.apply(batch)) this.#scheduleSync();
        },
        error: (e) => {
          this.#sourceErrors = [...this.#sourceErrors.slice(-9), `${new Date().toISOString()} ${e.message}`];
        },
      });
    }
    this.#ready = true;
    this.#notReadyReason = '';
    this.#scheduleSync();
    await this.#sync;
  }

  /**
   * Stop serving; kernel state (interfaces, routes, programs, pins) stays so pods keep working.
   * `cleanupNode` uninstalls instead: the node set-up and the datapath (programs, pinned maps) go.
   */
  async stop(options: { cleanupNode?: boolean } = {}): Promise<void> {
    this.#ready = false;
    this.#notReadyReason = 'stopping';
    await this.#source?.stop();
    await Promise.allSettled([...this.#locks.values()]);
    await this.#sync;
    if (options.cleanupNode && this.datapath.destroy) await this.datapath.destroy();
    else await this.datapath.stop();
    if (options.cleanupNode) await teardownNode(this.#nodeOptions());
  }

  /** Run `fn` with the attachment's lock held (the runtime never overlaps calls for one container; GC may). */
  async #locked<T>(key: AttachmentKey, fn: () => Promise<T>): Promise<T> {
    const k = keyText(key);
    const prev = this.#locks.get(k) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(k, tail);
    void tail.then(() => {
      if (this.#locks.get(k) === tail) this.#locks.delete(k);
    });
    return run;
  }

  #saveEndpoints(): void {
    this.#endpointStore.save({ version: 1, endpoints: [...this.#endpoints.values()] });
  }

  #requireReady(): void {
    if (!this.#ready) throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `the agent is not ready: ${this.#notReadyReason}`);
  }

  async add(req: AddRequest): Promise<AttachResult> {
    this.#requireReady();
    if (!existsSync(req.netns)) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${req.netns} does not exist`);
    return this.#locked(req, async () => {
      const k = keyText(req);
      const hash = attachmentHash(req.network, req.containerId, req.ifname);
      const host = hostIfname(hash);
      const existing = this.#endpoints.get(k);
      if (existing && existing.netns === req.netns) {
        const problems = await checkEndpoint({ nodeNetns: this.nodeNetns, podNetns: existing.netns, hostIfname: existing.hostIfname, podIfname: existing.ifname, addresses: existing.addresses });
        if (problems.length === 0) return existing.result;
      }
      if (existing) {
        // A half-made or moved endpoint: start again with the same addresses.
        await this.datapath.detachEndpoint(existing).catch(() => undefined);
        await removeHostLink(this.nodeNetns, existing.hostIfname);
      }
      const hadAddresses = this.ipam.lookup(req).length > 0;
      const assigned = this.ipam.allocate(req);
      const mtu = req.mtu ?? this.options.mtu ?? 1500;
      const plan = {
        nodeNetns: this.nodeNetns,
        podNetns: req.netns,
        hostIfname: host,
        podIfname: req.ifname,
        hostMac: macFor(hash, 'h'),
        podMac: macFor(hash, 'p'),
        mtu,
        addresses: assigned,
      };
      const ep: EndpointRecord = {
        id: host,
        network: req.network,
        containerId: req.containerId,
        ifname: req.ifname,
        netns: req.netns,
        hostIfname: host,
        hostMac: plan.hostMac,
        podMac: plan.podMac,
        mtu,
        addresses: assigned.map((a) => a.ip),
        assigned,
        result: attachResult(plan),
        created: new Date().toISOString(),
      };
      if (req.podNamespace && req.podName) ep.pod = { namespace: req.podNamespace, name: req.podName };
      try {
        await this.#netlink.use(() => createEndpoint(this.options.netlink ?? 'batch', plan));
        this.#endpoints.set(k, ep);
        this.#saveEndpoints();
        await this.datapath.attachEndpoint(ep);
      } catch (e) {
        this.#endpoints.delete(k);
        this.#saveEndpoints();
        await removeHostLink(this.nodeNetns, host);
        if (!hadAddresses) this.ipam.release(req);
        if (isCniError(e)) {
          if (/File exists/.test(e.message)) throw new CniError(CNI_ERR.AGENT_FAILURE, `interface ${req.ifname} already exists in ${req.netns}`, { cause: e, cniDetails: e.message });
          throw e;
        }
        throw new CniError(CNI_ERR.AGENT_FAILURE, `endpoint set-up failed: ${(e as Error).message}`, { cause: e });
      }
      this.#scheduleSync();
      return ep.result;
    });
  }

  async del(req: DelRequest): Promise<void> {
    this.#requireReady();
    await this.#locked(req, () => this.#delete(req));
  }

  /** Remove an attachment: whatever of it exists (DEL is idempotent). */
  async #delete(key: AttachmentKey): Promise<void> {
    const k = keyText(key);
    const ep = this.#endpoints.get(k);
    const host = ep?.hostIfname ?? hostIfname(attachmentHash(key.network, key.containerId, key.ifname));
    if (ep) await this.datapath.detachEndpoint(ep);
    await removeHostLink(this.nodeNetns, host);
    this.ipam.release(key);
    if (ep) {
      this.#endpoints.delete(k);
      this.#saveEndpoints();
      this.#scheduleSync();
    }
  }

  async check(req: CheckRequest): Promise<void> {
    this.#requireReady();
    await this.#locked(req, async () => {
      const ep = this.#endpoints.get(keyText(req));
      if (!ep) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `no endpoint for container ${req.containerId} interface ${req.ifname} in network ${req.network}`);
      const problems = await checkEndpoint({ nodeNetns: this.nodeNetns, podNetns: req.netns, hostIfname: ep.hostIfname, podIfname: ep.ifname, addresses: ep.addresses });
      const expected = req.expectAddresses.map((a) => a.split('/')[0]!);
      for (const a of expected) if (!ep.addresses.includes(a)) problems.push(`prevResult lists ${a}, the agent gave ${ep.addresses.join(', ')}`);
      if (this.ipam.lookup(req).length === 0) problems.push('the IPAM reservation is gone');
      if (problems.length > 0) throw new CniError(CNI_ERR.CHECK_FAILED, `container ${req.containerId}: ${problems.join('; ')}`);
    });
  }

  /** CNI GC: remove every attachment of the network that the runtime does not list. */
  async gc(req: GcRequest): Promise<{ removed: number; released: number }> {
    this.#requireReady();
    const valid = new Set(req.valid.map((v) => keyText({ network: req.network, ...v })));
    let removed = 0;
    for (const ep of [...this.#endpoints.values()]) {
      if (ep.network !== req.network || valid.has(keyText(ep))) continue;
      await this.#locked(ep, () => this.#delete(ep));
      removed++;
    }
    const released = this.ipam.releaseExcept(req.network, req.valid).length;
    // Host links of ours that no endpoint owns (a crash between link and record).
    const owned = new Set([...this.#endpoints.values()].map((e) => e.hostIfname));
    for (const l of await listLinks(this.nodeNetns)) {
      if (/^tsb[0-9a-f]{11}$/.test(l.ifname) && !owned.has(l.ifname) && !this.#locks.size) {
        await removeHostLink(this.nodeNetns, l.ifname);
        removed++;
      }
    }
    return { removed, released };
  }

  endpoints(): EndpointRecord[] {
    return [...this.#endpoints.values()].map((e) => ({ ...e, identity: this.#policies.get(e.id)?.identity ?? e.identity }));
  }

  status(): StatusResult {
    const ds = this.datapath.status();
    const poolFree = this.ipam.hasFree();
    const ready = this.#ready && ds.ready && poolFree;
    const reason = !this.#ready ? this.#notReadyReason : !ds.ready ? `datapath ${ds.name} is not ready` : !poolFree ? 'the pod CIDR has no free address' : undefined;
    const s: StatusResult = {
      ready,
      uptimeS: this.#started ? Math.round((Date.now() - this.#started) / 1000) : 0,
      node: { netns: this.nodeNetns ?? '(agent netns)', podCidrs: [this.options.podCidr4, this.options.podCidr6].filter(Boolean), gateways: this.#gateways, masquerade: this.masquerade },
      endpoints: this.#endpoints.size,
      ipam: this.ipamView().pools,
      datapath: ds,
      objects: { source: this.#source?.name ?? 'none', counts: this.objects.counts(), errors: this.#sourceErrors, policyProblems: this.#policyProblems },
      identities: this.identities.entries().length,
    };
    if (reason) s.reason = reason;
    return s;
  }

  ipamView(): { pools: Array<Record<string, unknown>>; allocations: Array<Record<string, unknown>> } {
    return {
      // An IPv6 /64 holds more than a double can count exactly: big capacities travel as text.
      pools: this.ipam.usage().map((u) => ({ ...u, capacity: u.capacity <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(u.capacity) : u.capacity.toString() })),
      allocations: this.ipam.allocations().map((a) => ({ ...a })),
    };
  }

  services(): ServiceEntry[] {
    return this.#services;
  }

  /** The compiled policy of one endpoint (by id, container id prefix, or 'namespace/pod'), or all. */
  policy(endpoint?: string): Array<{ endpoint: string; policy: EndpointPolicy }> {
    const all = [...this.#endpoints.values()];
    const eps = endpoint === undefined ? all : all.filter((e) => e.id === endpoint || e.containerId.startsWith(endpoint) || (e.pod && `${e.pod.namespace}/${e.pod.name}` === endpoint));
    if (endpoint !== undefined && eps.length === 0) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `no endpoint matches '${endpoint}'`);
    return eps.flatMap((e) => {
      const p = this.#policies.get(e.id);
      return p ? [{ endpoint: e.id, policy: p }] : [];
    });
  }

  /** Wait until the objects and endpoints seen so far are computed and handed to the datapath. */
  async settled(): Promise<void> {
    while (this.#syncQueued) await new Promise((r) => setImmediate(r));
    await this.#sync;
  }

  #scheduleSync(): void {
    if (this.#syncQueued || !this.#ready) return;
    this.#syncQueued = true;
    this.#sync = this.#sync.then(() => {
      this.#syncQueued = false;
      return this.#doSync().catch((e: unknown) => {
        this.#sourceErrors = [...this.#sourceErrors.slice(-9), `${new Date().toISOString()} sync: ${(e as Error).message}`];
      });
    });
  }

  /** Recompute identities, policies and services; hand the differences to the datapath. */
  async #doSync(): Promise<void> {
    const eps = [...this.#endpoints.values()];
    const local = eps.map((e) => ({ namespace: e.pod?.namespace ?? 'default', name: e.pod?.name ?? e.containerId, ips: e.addresses }));
    const { ctx, problems } = buildContext(this.objects, this.identities, { local, hostIps: this.#gateways });
    this.#policyProblems = problems;
    const byName = new Map(ctx.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
    const ipcache: IpIdentity[] = [];
    for (const p of ctx.pods) for (const ip of p.ips) ipcache.push({ cidr: `${ip}/${ip.includes(':') ? 128 : 32}`, identity: p.identity });
    for (const ip of ctx.hostIps) ipcache.push({ cidr: `${ip}/${ip.includes(':') ? 128 : 32}`, identity: IDENTITY.HOST });
    ipcache.sort((a, b) => (a.cidr < b.cidr ? -1 : 1));
    this.identities.commit(new Set(ctx.pods.map((p) => p.identity)));
    const idText = JSON.stringify(ipcache);
    if (idText !== this.#applied.identities) {
      await this.datapath.setIdentities(ipcache);
      this.#applied.identities = idText;
    }
    const policies = new Map<string, EndpointPolicy>();
    for (const [i, e] of eps.entries()) {
      const l = local[i]!;
      const pod = byName.get(`${l.namespace}/${l.name}`)!;
      e.identity = pod.identity;
      const p = compileEndpointPolicy(ctx, pod);
      policies.set(e.id, p);
      const text = JSON.stringify(p);
      if (this.#applied.policies.get(e.id) !== text) {
        await this.datapath.applyPolicy(e.id, p);
        this.#applied.policies.set(e.id, text);
      }
    }
    for (const id of [...this.#applied.policies.keys()]) if (!policies.has(id)) this.#applied.policies.delete(id);
    this.#policies = policies;
    const services = computeServices(this.objects);
    const seen = new Set<string>();
    for (const s of services) {
      seen.add(s.key);
      const text = JSON.stringify(s);
      if (this.#applied.services.get(s.key) !== text) {
        await this.datapath.upsertService(s);
        this.#applied.services.set(s.key, text);
      }
    }
    for (const key of [...this.#applied.services.keys()]) {
      if (!seen.has(key)) {
        await this.datapath.deleteService(key);
        this.#applied.services.delete(key);
      }
    }
    this.#services = services;
  }
}
