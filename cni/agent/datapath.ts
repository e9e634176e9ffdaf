/**
 * The seam between the agent (control plane) and the BPF datapath. The
 * agent decides *what* (endpoints, identities, per-endpoint policy,
 * services); a Datapath makes it so in the kernel. The bundled datapath
 * (endpoint programs for policy and services, built with the DSL and loaded
 * with the runtime) implements this interface; until it lands the agent
 * runs with NoopDatapath (plain routing, no programs) or CountingDatapath (a
 * trivial per-endpoint packet counter, proving the attach path).
 *
 * Contract: every method is idempotent (the agent replays state after a
 * restart: attachEndpoint for every endpoint, then the full policy and
 * service state), and a Datapath keeps its kernel state (pinned maps,
 * attached programs) when stop() is called, so traffic flows while the agent
 * is down.
 */
import type { EndpointPolicy } from '../policy/types.js';

/** One pod interface on this node, as the agent created it. */
export interface Endpoint {
  /** Stable id: the host-side interface name (`tsb` + 11 hex digits of the attachment hash). */
  id: string;
  network: string;
  containerId: string;
  /** Interface name inside the pod (CNI_IFNAME). */
  ifname: string;
  /** The pod's network namespace path (CNI_NETNS). */
  netns: string;
  /** Host-side veth, in the node's network namespace. */
  hostIfname: string;
  hostMac: string;
  podMac: string;
  mtu: number;
  /** Pod addresses without prefix, IPv4 first. */
  addresses: string[];
  pod?: { namespace: string; name: string };
  /** Numeric security identity (set once the pod's labels are known). */
  identity?: number;
}

/** Where the datapath runs. */
export interface NodeContext {
  /** The node's network namespace (a path, or undefined: the agent's own). */
  netns: string | undefined;
  podCidrs: string[];
  /** Gateway addresses pods route through (on the node's `tsbpf0` device). */
  gateways: string[];
  /** The agent's state directory (the datapath may keep files under `datapath/`). */
  stateDir: string;
  /** bpffs directory for pins (e.g. /sys/fs/bpf/tsbpf/<node>). */
  pinDir: string;
  /** The datapath masquerades pod traffic leaving the node (the agent's --masquerade datapath). */
  masquerade?: boolean;
  /** The interface traffic leaves the node by (default: the default route's device). */
  uplink?: string;
}

/** An IP (or CIDR) and the identity traffic from/to it carries. */
export interface IpIdentity {
  cidr: string;
  identity: number;
}

/** A Service frontend with its ready backends (ClusterIP only for now). */
export interface ServiceEntry {
  /** 'namespace/name:port/proto'. */
  key: string;
  namespace: string;
  name: string;
  vip: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  /** Seconds of ClientIP affinity; 0 = none. */
  affinityTimeout: number;
  /** Ready backends only (EndpointSlice conditions.ready !== false). */
  backends: Array<{ addr: string; port: number }>;
}

export interface DatapathStatus {
  name: string;
  ready: boolean;
  programs: Array<{ name: string; attachedTo: string; hook: string }>;
  maps: Array<{ name: string; entries: number; maxEntries: number }>;
  [key: string]: unknown;
}

export interface Datapath {
  readonly name: string;
  /** Can masquerade pod traffic leaving the node (NodeContext.masquerade). */
  readonly masquerades?: boolean;
  /** Once, before anything else (and again after an agent restart). */
  start(node: NodeContext): Promise<void>;
  /** After the endpoint's interfaces exist and are up; before ADD returns. */
  attachEndpoint(ep: Endpoint): Promise<void>;
  /** Before the endpoint's interfaces are removed (DEL, GC); must tolerate a vanished interface. */
  detachEndpoint(ep: Endpoint): Promise<void>;
  /** The whole IP-to-identity table (replace semantics). */
  setIdentities(entries: IpIdentity[]): Promise<void>;
  /** The compiled policy of one endpoint (replace semantics). */
  applyPolicy(endpointId: string, policy: EndpointPolicy): Promise<void>;
  upsertService(svc: ServiceEntry): Promise<void>;
  deleteService(key: string): Promise<void>;
  status(): DatapathStatus;
  /** Agent shutdown: release handles, keep kernel state. */
  stop(): Promise<void>;
  /** Uninstall (the agent's --cleanup): detach the programs and remove pinned maps; instead of stop(). */
  destroy?(): Promise<void>;
}

/**
 * Attaches nothing; remembers what it was told so `tsbpf-cni status`,
 * `policy` and `services` show what a real datapath would program.
 */
export class NoopDatapath implements Datapath {
  readonly name: string = 'none';
  readonly endpoints = new Map<string, Endpoint>();
  readonly policies = new Map<string, EndpointPolicy>();
  readonly services = new Map<string, ServiceEntry>();
  identities: IpIdentity[] = [];

  async start(_node: NodeContext): Promise<void> {}

  async attachEndpoint(ep: Endpoint): Promise<void> {
    this.endpoints.set(ep.id, ep);
  }

  async detachEndpoint(ep: Endpoint): Promise<void> {
    this.endpoints.delete(ep.id);
    this.policies.delete(ep.id);
  }

  async setIdentities(entries: IpIdentity[]): Promise<void> {
    this.identities = entries;
  }

  async applyPolicy(endpointId: string, policy: EndpointPolicy): Promise<void> {
    this.policies.set(endpointId, policy);
  }

  async upsertService(svc: ServiceEntry): Promise<void> {
    this.services.set(svc.key, svc);
  }

  async deleteService(key: string): Promise<void> {
    this.services.delete(key);
  }

  status(): DatapathStatus {
    return {
      name: this.name,
      ready: true,
      programs: [],
      maps: [
        { name: 'ipcache (not programmed)', entries: this.identities.length, maxEntries: 0 },
        { name: 'policy (not programmed)', entries: this.policies.size, maxEntries: 0 },
        { name: 'services (not programmed)', entries: this.services.size, maxEntries: 0 },
      ],
    };
  }

  async stop(): Promise<void> {}
}
