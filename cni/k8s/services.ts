/**
 * Services as the datapath programs them: one entry per (ClusterIP, port,
 * protocol) with the ready backends from the Service's EndpointSlices.
 */
import { canonicalIp, familyOfText } from '../addr.js';
import type { ServiceEntry } from '../agent/datapath.js';
import { SERVICE_NAME_LABEL } from './objects.js';
import type { ObjectStore } from './store.js';

/** Default ClientIP affinity timeout (Kubernetes: 3 hours). */
export const DEFAULT_AFFINITY_SECONDS = 10800;

export function computeServices(store: ObjectStore): ServiceEntry[] {
  const out: ServiceEntry[] = [];
  const slices = store.endpointSlices();
  for (const svc of store.services()) {
    const spec = svc.spec ?? {};
    if (spec.type === 'ExternalName') continue;
    const ns = svc.metadata.namespace ?? 'default';
    const vips = (spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [])
      .filter((v) => v !== 'None' && v !== '')
      .map((v) => canonicalIp(v))
      .filter((v): v is string => v !== undefined);
    const mine = slices.filter((s) => (s.metadata.namespace ?? 'default') === ns && s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name);
    const affinity = spec.sessionAffinity === 'ClientIP' ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SECONDS) : 0;
    for (const vip of vips) {
      const family = familyOfText(vip);
      for (const sp of spec.ports ?? []) {
        const protocol = sp.protocol ?? 'TCP';
        const backends = new Map<string, { addr: string; port: number }>();
        for (const s of mine) {
          if (s.addressType !== (family === 4 ? 'IPv4' : 'IPv6')) continue;
          const slicePort = (s.ports ?? []).find((p) => (p.name ?? '') === (sp.name ?? '') && (p.protocol ?? 'TCP') === protocol);
          const port = slicePort?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : undefined);
          if (port === undefined) continue;
          for (const ep of s.endpoints ?? []) {
            // A missing `ready` means ready (EndpointSlice API); terminating endpoints are not ready.
            if (ep.conditions?.ready === false) continue;
            for (const a of ep.addresses) {
              const addr = canonicalIp(a);
              if (addr) backends.set(`${addr}:${port}`, { addr, port });
            }
          }
        }
        out.push({
          key: `${ns}/${svc.metadata.name}:${vip}:${sp.port}/${protocol}`,
          namespace: ns,
          name: svc.metadata.name,
          vip,
          port: sp.port,
          protocol,
          affinityTimeout: affinity,
          backends: [...backends.values()].sort((a, b) => (a.addr === b.addr ? a.port - b.port : a.addr < b.addr ? -1 : 1)),
        });
      }
    }
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}
