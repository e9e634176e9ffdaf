/**
 * The agent's view of the cluster: the latest version of every object, by
 * kind, fed by an ObjectSource. Policy and service logic read only this.
 */
import { NAMESPACED, objectKey, type EndpointSlice, type Kind, type KubeObject, type Namespace, type NetworkPolicy, type Pod, type Service } from './objects.js';
import type { ObjectEvent } from './source.js';

export class ObjectStore {
  readonly #byKind = new Map<Kind, Map<string, KubeObject>>();
  /** Bumped by every batch that changed something. */
  generation = 0;

  /** Apply a batch; returns whether anything changed. */
  apply(batch: readonly ObjectEvent[]): boolean {
    let changed = false;
    for (const ev of batch) {
      const o = normalize(ev.object);
      let m = this.#byKind.get(o.kind);
      if (!m) this.#byKind.set(o.kind, (m = new Map()));
      const key = objectKey(o);
      if (ev.type === 'delete') changed = m.delete(key) || changed;
      else {
        m.set(key, o);
        changed = true;
      }
    }
    if (changed) this.generation++;
    return changed;
  }

  #list<T extends KubeObject>(kind: Kind): T[] {
    return [...(this.#byKind.get(kind)?.values() ?? [])] as T[];
  }

  namespaces(): Namespace[] {
    return this.#list('Namespace');
  }
  pods(): Pod[] {
    return this.#list('Pod');
  }
  services(): Service[] {
    return this.#list('Service');
  }
  endpointSlices(): EndpointSlice[] {
    return this.#list('EndpointSlice');
  }
  networkPolicies(): NetworkPolicy[] {
    return this.#list('NetworkPolicy');
  }

  namespace(name: string): Namespace | undefined {
    return this.#byKind.get('Namespace')?.get(`Namespace//${name}`) as Namespace | undefined;
  }

  pod(namespace: string, name: string): Pod | undefined {
    return this.#byKind.get('Pod')?.get(`Pod/${namespace}/${name}`) as Pod | undefined;
  }

  counts(): Record<Kind, number> {
    return {
      Namespace: this.#byKind.get('Namespace')?.size ?? 0,
      Pod: this.#byKind.get('Pod')?.size ?? 0,
      Service: this.#byKind.get('Service')?.size ?? 0,
      EndpointSlice: this.#byKind.get('EndpointSlice')?.size ?? 0,
      NetworkPolicy: this.#byKind.get('NetworkPolicy')?.size ?? 0,
    };
  }
}

/** Namespaced objects without a namespace live in 'default', as the API server would put them. */
export function normalize<T extends KubeObject>(o: T): T {
  if (NAMESPACED.has(o.kind) && !o.metadata.namespace) return { ...o, metadata: { ...o.metadata, namespace: 'default' } };
  return o;
}
