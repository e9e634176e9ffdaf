/**
 * What NetworkPolicy evaluation looks at: the pods (labels, addresses, named
 * ports, identity), the namespaces' labels, the node's own addresses and the
 * valid policies. Built from an ObjectStore plus the node's local endpoints.
 */
import { parsePrefix, prefixWithin } from '../addr.js';
import type { ContainerPort, NetworkPolicy, Pod } from '../k8s/objects.js';
import type { ObjectStore } from '../k8s/store.js';
import { NAMESPACE_NAME_LABEL, selectorProblems, type Labels } from './labels.js';
import type { IdentityAllocator } from './identity.js';

export interface PodInfo {
  namespace: string;
  name: string;
  labels: Labels;
  /** Addresses without prefix (both families). */
  ips: string[];
  ports: ContainerPort[];
  identity: number;
}

export interface PolicyContext {
  pods: PodInfo[];
  namespaceLabels(namespace: string): Labels;
  policies: NetworkPolicy[];
  /** The node's addresses: traffic to and from them is always allowed. */
  hostIps: string[];
}

/** A pod the node runs that may have no Pod object (no Kubernetes, or not in the file yet). */
export interface LocalPod {
  namespace: string;
  name: string;
  ips: string[];
}

export function podPorts(p: Pod): ContainerPort[] {
  return (p.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
}

export function podIps(p: Pod): string[] {
  const ips = (p.status?.podIPs ?? []).map((x) => x.ip);
  if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
  return ips;
}

/** Problems that make a policy invalid (the API server would reject it); invalid policies are not enforced. */
export function policyProblems(np: NetworkPolicy): string[] {
  const name = `${np.metadata.namespace ?? 'default'}/${np.metadata.name}`;
  const out: string[] = [];
  const spec = np.spec;
  if (!spec || typeof spec.podSelector !== 'object' || spec.podSelector === null) return [`${name}: spec.podSelector is required`];
  out.push(...selectorProblems(spec.podSelector, `${name} podSelector`));
  for (const t of spec.policyTypes ?? []) if (t !== 'Ingress' && t !== 'Egress') out.push(`${name}: unknown policyType '${t}'`);
  const rules = [
    ...(spec.ingress ?? []).map((r, i) => ({ peers: r.from, ports: r.ports, where: `${name} ingress[${i}]` })),
    ...(spec.egress ?? []).map((r, i) => ({ peers: r.to, ports: r.ports, where: `${name} egress[${i}]` })),
  ];
  for (const r of rules) {
    for (const [j, peer] of (r.peers ?? []).entries()) {
      const w = `${r.where} peer[${j}]`;
      if (peer.ipBlock) {
        if (peer.podSelector || peer.namespaceSelector) out.push(`${w}: ipBlock cannot be combined with selectors`);
        const c = parsePrefix(peer.ipBlock.cidr ?? '');
        if (!c) out.push(`${w}: ipBlock.cidr '${peer.ipBlock.cidr}' is not a CIDR`);
        for (const e of peer.ipBlock.except ?? []) {
          const x = parsePrefix(e);
          if (!x || !c || !prefixWithin(x, c)) {
            out.push(`${w}: except '${e}' is not inside ${peer.ipBlock.cidr}`);
          }
        }
      } else if (!peer.podSelector && !peer.namespaceSelector) out.push(`${w}: a peer needs podSelector, namespaceSelector or ipBlock`);
      if (peer.podSelector) out.push(...selectorProblems(peer.podSelector, `${w} podSelector`));
      if (peer.namespaceSelector) out.push(...selectorProblems(peer.namespaceSelector, `${w} namespaceSelector`));
    }
    for (const [j, p] of (r.ports ?? []).entries()) {
      const w = `${r.where} ports[${j}]`;
      if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol)) out.push(`${w}: unknown protocol '${p.protocol}'`);
      if (typeof p.port === 'number' && (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)) out.push(`${w}: port ${p.port} out of range`);
      if (typeof p.port === 'string' && !/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(p.port)) out.push(`${w}: '${p.port}' is not a port name`);
      if (p.endPort !== undefined) {
        if (typeof p.port !== 'number') out.push(`${w}: endPort needs a numeric port`);
        else if (!Number.isInteger(p.endPort) || p.endPort < p.port || p.endPort > 65535) out.push(`${w}: endPort ${p.endPort} must be in ${p.port}..65535`);
      }
    }
  }
  return out;
}

/**
 * Build the context from the object store and the node's local pods. A
 * local pod without a Pod object gets no labels (its namespace still counts).
 */
export function buildContext(store: ObjectStore, identities: IdentityAllocator, options: { local?: LocalPod[]; hostIps?: string[] } = {}): { ctx: PolicyContext; problems: string[] } {
  const pods = new Map<string, PodInfo>();
  for (const p of store.pods()) {
    if (p.spec?.hostNetwork) continue;
    const namespace = p.metadata.namespace ?? 'default';
    const labels = p.metadata.labels ?? {};
    pods.set(`${namespace}/${p.metadata.name}`, {
      namespace,
      name: p.metadata.name,
      labels,
      ips: podIps(p),
      ports: podPorts(p),
      identity: identities.identityOf(namespace, labels),
    });
  }
  for (const l of options.local ?? []) {
    const k = `${l.namespace}/${l.name}`;
    const known = pods.get(k);
    // The node knows the addresses it gave out, whatever the object's status says.
    if (known) known.ips = [...l.ips];
    else pods.set(k, { namespace: l.namespace, name: l.name, labels: {}, ips: [...l.ips], ports: [], identity: identities.identityOf(l.namespace, {}) });
  }
  const nsLabels = new Map<string, Labels>();
  for (const ns of store.namespaces()) nsLabels.set(ns.metadata.name, { ...(ns.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: ns.metadata.name });
  const problems: string[] = [];
  const policies: NetworkPolicy[] = [];
  for (const np of store.networkPolicies()) {
    const p = policyProblems(np);
    if (p.length > 0) problems.push(...p);
    else policies.push(np);
  }
  return {
    ctx: {
      pods: [...pods.values()],
      namespaceLabels: (n) => nsLabels.get(n) ?? { [NAMESPACE_NAME_LABEL]: n },
      policies,
      hostIps: options.hostIps ?? [],
    },
    problems,
  };
}
