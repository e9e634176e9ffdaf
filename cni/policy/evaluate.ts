/**
 * The reference semantics of Kubernetes NetworkPolicy v1, written from the
 * Kubernetes documentation ("Network Policies") and deliberately naive: it
 * answers one question, "is this packet's connection allowed", by walking the
 * policies. It is the oracle the compiled per-endpoint form (compile.ts) and
 * the datapath are checked against.
 *
 * - A pod is isolated for a direction when a policy in its namespace selects
 *   it (podSelector) and that direction is in the policy's policyTypes
 *   (default: Ingress, plus Egress when the policy has egress rules).
 *   Unisolated: everything is allowed in that direction.
 * - Isolated: allowed when some rule of some selecting policy allows it;
 *   policies are additive. A connection needs egress allowed at the source
 *   and ingress allowed at the destination.
 * - A rule's peers (from/to) are ORed; none listed = every peer. A peer:
 *   podSelector alone = pods of the policy's namespace; namespaceSelector
 *   alone = all pods of matching namespaces; both = matching pods in matching
 *   namespaces; ipBlock = addresses in cidr and not in except (pods' addresses
 *   included, a choice the documentation leaves to the implementation).
 * - A rule's ports are ORed; none listed = every port of every protocol (ICMP
 *   too). protocol defaults to TCP; no port = every port of that protocol;
 *   endPort makes a range; a named port is looked up in the destination pod's
 *   container ports (name and protocol).
 * - Exceptions: a pod can always reach itself, and traffic to and from the
 *   node the pod runs on is always allowed. Replies of allowed connections
 *   are allowed (conntrack): this evaluator judges the first packet.
 */
import { parseIp, parsePrefix, prefixContains } from '../addr.js';
import type { NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort } from '../k8s/objects.js';
import { matchesSelector } from './labels.js';
import type { PodInfo, PolicyContext } from './context.js';
import type { Protocol } from './types.js';

export type Direction = 'Ingress' | 'Egress';
export type TrafficProtocol = Protocol | 'ICMP';

/** One end of a connection: a pod (at one of its addresses), the node, or an address outside. */
export type Endpointish = { pod: PodInfo; ip: string } | { host: true; ip: string } | { ip: string };

export interface Probe {
  src: Endpointish;
  dst: Endpointish;
  protocol: TrafficProtocol;
  /** Destination port (TCP/UDP/SCTP). */
  port?: number;
}

export function policyTypes(np: NetworkPolicy): Direction[] {
  if (np.spec.policyTypes && np.spec.policyTypes.length > 0) return np.spec.policyTypes;
  return np.spec.egress && np.spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

/** The policies that isolate `pod` for `dir`. */
export function selectingPolicies(ctx: PolicyContext, pod: PodInfo, dir: Direction): NetworkPolicy[] {
  return ctx.policies.filter(
    (np) => (np.metadata.namespace ?? 'default') === pod.namespace && policyTypes(np).includes(dir) && matchesSelector(np.spec.podSelector, pod.labels),
  );
}

function isPod(e: Endpointish): e is { pod: PodInfo; ip: string } {
  return 'pod' in e;
}

function isHost(e: Endpointish, ctx: PolicyContext): boolean {
  return 'host' in e || ctx.hostIps.includes(e.ip);
}

export function inIpBlock(ip: string, block: { cidr: string; except?: string[] }): boolean {
  const a = parseIp(ip);
  const c = parsePrefix(block.cidr);
  if (!a || !c || !prefixContains(c, a)) return false;
  return !(block.except ?? []).some((e) => {
    const x = parsePrefix(e);
    return x !== undefined && prefixContains(x, a);
  });
}

export function peerMatches(ctx: PolicyContext, peer: NetworkPolicyPeer, policyNamespace: string, other: Endpointish): boolean {
  if (peer.ipBlock) return inIpBlock(other.ip, peer.ipBlock);
  if (!isPod(other)) return false;
  const p = other.pod;
  if (peer.namespaceSelector) {
    if (!matchesSelector(peer.namespaceSelector, ctx.namespaceLabels(p.namespace))) return false;
  } else if (p.namespace !== policyNamespace) return false;
  return peer.podSelector ? matchesSelector(peer.podSelector, p.labels) : true;
}

/** Whether a port entry admits (protocol, port) towards `target` (the destination pod, for named ports). */
export function portMatches(entry: NetworkPolicyPort, protocol: TrafficProtocol, port: number | undefined, target: Endpointish): boolean {
  const proto = entry.protocol ?? 'TCP';
  if (protocol !== proto) return false;
  if (entry.port === undefined) return true;
  if (port === undefined) return false;
  if (typeof entry.port === 'number') return port >= entry.port && port <= (entry.endPort ?? entry.port);
  if (!isPod(target)) return false;
  return target.pod.ports.some((cp) => cp.name === entry.port && (cp.protocol ?? 'TCP') === proto && cp.containerPort === port);
}

/** Whether `pod` allows the traffic in `dir` with `other` (the peer) and `target` (the destination). */
export function directionAllows(ctx: PolicyContext, pod: PodInfo, dir: Direction, other: Endpointish, protocol: TrafficProtocol, port: number | undefined, target: Endpointish): boolean {
  const policies = selectingPolicies(ctx, pod, dir);
  if (policies.length === 0) return true;
  for (const np of policies) {
    const ns = np.metadata.namespace ?? 'default';
    const rules = dir === 'Ingress' ? (np.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })) : (np.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
    for (const r of rules) {
      const peerOk = !r.peers || r.peers.length === 0 || r.peers.some((peer) => peerMatches(ctx, peer, ns, other));
      if (!peerOk) continue;
      const portOk = !r.ports || r.ports.length === 0 || r.ports.some((e) => portMatches(e, protocol, port, target));
      if (portOk) return true;
    }
  }
  return false;
}

/** Is the connection `probe` describes allowed? */
export function isAllowed(ctx: PolicyContext, probe: Probe): boolean {
  const { src, dst, protocol, port } = probe;
  if (isPod(src) && isPod(dst) && src.pod.namespace === dst.pod.namespace && src.pod.name === dst.pod.name) return true;
  if (isHost(src, ctx) || isHost(dst, ctx)) return true;
  if (isPod(src) && !directionAllows(ctx, src.pod, 'Egress', dst, protocol, port, dst)) return false;
  if (isPod(dst) && !directionAllows(ctx, dst.pod, 'Ingress', src, protocol, port, dst)) return false;
  return true;
}
