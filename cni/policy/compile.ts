/**
 * NetworkPolicy compiled per endpoint into the shape the BPF policy maps take
 * (types.ts): per direction, isolated or not, and the allowed (peer, protocol,
 * port range) tuples. Peers given by selectors become identities; ipBlocks
 * stay CIDRs with their exceptions; named ports are resolved (ingress: on the
 * endpoint itself; egress: on each destination pod, giving per-peer entries).
 * `allows()` evaluates the compiled form the way the datapath will, and the
 * tests check it against the reference evaluator (evaluate.ts).
 */
import { formatIp, parseIp, parsePrefix, prefixContains } from '../addr.js';
import type { NetworkPolicyPeer, NetworkPolicyPort } from '../k8s/objects.js';
import type { PodInfo, PolicyContext } from './context.js';
import { inIpBlock, peerMatches, policyTypes, selectingPolicies, type Direction, type TrafficProtocol } from './evaluate.js';
import { IDENTITY, type DirectionPolicy, type EndpointPolicy, type PeerMatch, type PolicyRule, type Protocol } from './types.js';

const ALL_PORTS: [number, number] = [0, 65535];

function selectedPods(ctx: PolicyContext, peer: NetworkPolicyPeer, ns: string): PodInfo[] {
  return ctx.pods.filter((p) => peerMatches(ctx, peer, ns, { pod: p, ip: p.ips[0] ?? '' }));
}

function podsInBlock(ctx: PolicyContext, block: { cidr: string; except?: string[] }): Array<{ pod: PodInfo; ip: string }> {
  return ctx.pods.flatMap((p) => p.ips.filter((ip) => inIpBlock(ip, block)).map((ip) => ({ pod: p, ip })));
}

function namedPort(p: PodInfo, name: string, proto: Protocol): number[] {
  return p.ports.filter((cp) => cp.name === name && (cp.protocol ?? 'TCP') === proto).map((cp) => cp.containerPort);
}

function hostPrefix(ip: string): string {
  const a = parseIp(ip)!;
  return `${formatIp(a)}/${a.family === 4 ? 32 : 128}`;
}

function compileRule(ctx: PolicyContext, pod: PodInfo, dir: Direction, ns: string, peers: NetworkPolicyPeer[] | undefined, ports: NetworkPolicyPort[] | undefined): PolicyRule[] {
  const allPeers = !peers || peers.length === 0;
  const peerMatches: PeerMatch[] = allPeers
    ? [{ kind: 'all' }]
    : peers.flatMap((peer): PeerMatch[] =>
        peer.ipBlock
          ? [{ kind: 'cidr', cidr: peer.ipBlock.cidr, except: [...(peer.ipBlock.except ?? [])] }]
          : [...new Set(selectedPods(ctx, peer, ns).map((p) => p.identity))].map((identity) => ({ kind: 'identity', identity })),
      );
  if (!ports || ports.length === 0) return peerMatches.map((peer) => ({ peer, protocol: 'ANY', portFrom: 0, portTo: 65535 }));
  const out: PolicyRule[] = [];
  for (const e of ports) {
    const protocol = e.protocol ?? 'TCP';
    if (typeof e.port !== 'string') {
      const [from, to] = e.port === undefined ? ALL_PORTS : [e.port, e.endPort ?? e.port];
      for (const peer of peerMatches) out.push({ peer, protocol, portFrom: from, portTo: to });
      continue;
    }
    const name = e.port;
    if (dir === 'Ingress') {
      // The destination is the endpoint itself.
      for (const n of namedPort(pod, name, protocol)) for (const peer of peerMatches) out.push({ peer, protocol, portFrom: n, portTo: n });
      continue;
    }
    // Egress: the number depends on the destination pod, so each peer pod gets its own entries.
    if (allPeers) {
      for (const p of ctx.pods) for (const n of namedPort(p, name, protocol)) out.push({ peer: { kind: 'identity', identity: p.identity }, protocol, portFrom: n, portTo: n });
      continue;
    }
    for (const peer of peers) {
      if (peer.ipBlock) {
        for (const { pod: p, ip } of podsInBlock(ctx, peer.ipBlock)) {
          for (const n of namedPort(p, name, protocol)) out.push({ peer: { kind: 'cidr', cidr: hostPrefix(ip), except: [] }, protocol, portFrom: n, portTo: n });
        }
      } else {
        for (const p of selectedPods(ctx, peer, ns)) for (const n of namedPort(p, name, protocol)) out.push({ peer: { kind: 'identity', identity: p.identity }, protocol, portFrom: n, portTo: n });
      }
    }
  }
  return out;
}

function ruleKey(r: PolicyRule): string {
  const p = r.peer.kind === 'all' ? 'all' : r.peer.kind === 'identity' ? `id:${r.peer.identity}` : `cidr:${r.peer.cidr}-${r.peer.except.join(',')}`;
  return `${p}|${r.protocol}|${r.portFrom}|${r.portTo}`;
}

/** Drop duplicates and tuples another one covers (same peer and protocol, wider range; or ANY). */
export function normalizeRules(rules: PolicyRule[]): PolicyRule[] {
  const uniq = [...new Map(rules.map((r) => [ruleKey(r), r])).values()];
  const peerKey = (r: PolicyRule) => ruleKey({ ...r, protocol: 'ANY', portFrom: 0, portTo: 0 });
  const covered = (r: PolicyRule) =>
    uniq.some(
      (o) =>
        o !== r &&
        peerKey(o) === peerKey(r) &&
        (o.protocol === 'ANY' ? r.protocol !== 'ANY' : o.protocol === r.protocol && o.portFrom <= r.portFrom && o.portTo >= r.portTo && (o.portFrom < r.portFrom || o.portTo > r.portTo)),
    );
  return uniq.filter((r) => !covered(r)).sort((a, b) => (ruleKey(a) < ruleKey(b) ? -1 : 1));
}

function compileDirection(ctx: PolicyContext, pod: PodInfo, dir: Direction): DirectionPolicy {
  const policies = selectingPolicies(ctx, pod, dir);
  if (policies.length === 0) return { isolated: false, rules: [], policies: [] };
  const rules: PolicyRule[] = [];
  for (const np of policies) {
    const ns = np.metadata.namespace ?? 'default';
    if (!policyTypes(np).includes(dir)) continue;
    if (dir === 'Ingress') for (const r of np.spec.ingress ?? []) rules.push(...compileRule(ctx, pod, dir, ns, r.from, r.ports));
    else for (const r of np.spec.egress ?? []) rules.push(...compileRule(ctx, pod, dir, ns, r.to, r.ports));
  }
  // The node may always talk to its pods (kubelet probes): an explicit entry keeps the datapath simple.
  rules.push({ peer: { kind: 'identity', identity: IDENTITY.HOST }, protocol: 'ANY', portFrom: 0, portTo: 65535 });
  return { isolated: true, rules: normalizeRules(rules), policies: policies.map((np) => `${np.metadata.namespace ?? 'default'}/${np.metadata.name}`).sort() };
}

export function compileEndpointPolicy(ctx: PolicyContext, pod: PodInfo): EndpointPolicy {
  return {
    pod: { namespace: pod.namespace, name: pod.name },
    identity: pod.identity,
    ingress: compileDirection(ctx, pod, 'Ingress'),
    egress: compileDirection(ctx, pod, 'Egress'),
  };
}

/** The peer as the datapath sees it: its identity (from the ipcache) and its address. */
export interface PeerView {
  identity: number;
  ip: string;
}

function peerHit(m: PeerMatch, peer: PeerView): boolean {
  if (m.kind === 'all') return true;
  if (m.kind === 'identity') return m.identity === peer.identity;
  const a = parseIp(peer.ip);
  const c = parsePrefix(m.cidr);
  if (!a || !c || !prefixContains(c, a)) return false;
  return !m.except.some((e) => {
    const x = parsePrefix(e);
    return x !== undefined && prefixContains(x, a);
  });
}

/** Does a compiled direction allow a first packet from/to `peer`? (What the BPF lookup will do.) */
export function allows(d: DirectionPolicy, peer: PeerView, protocol: TrafficProtocol, port: number | undefined): boolean {
  if (!d.isolated) return true;
  return d.rules.some(
    (r) => peerHit(r.peer, peer) && (r.protocol === 'ANY' || (r.protocol === protocol && port !== undefined && port >= r.portFrom && port <= r.portTo)),
  );
}
