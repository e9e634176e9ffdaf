/**
 * Security identities: one number per distinct (namespace, pod labels). Pods
 * with the same labels in the same namespace are indistinguishable to every
 * NetworkPolicy, so policy maps key on the identity instead of on addresses,
 * and a new pod with known labels needs no policy change at all. Identities
 * are persisted so they survive an agent restart (pinned maps hold them).
 */
import { join } from 'node:path';
import { JsonStore, type JsonStoreOptions } from '../store.js';
import { IDENTITY } from './types.js';
import { labelsText, type Labels } from './labels.js';

export function identityKey(namespace: string, labels: Labels): string {
  return `${namespace}/${labelsText(labels)}`;
}

interface IdentityState {
  version: 1;
  next: number;
  ids: Record<string, number>;
}

export interface IdentityEntry {
  identity: number;
  namespace: string;
  labels: string;
}

export class IdentityAllocator {
  readonly #store: JsonStore<IdentityState> | undefined;
  #state: IdentityState;

  /** Without a state directory identities live in memory only (tests, the evaluator). */
  constructor(options: { stateDir?: string; store?: JsonStoreOptions } = {}) {
    this.#store = options.stateDir ? new JsonStore<IdentityState>(join(options.stateDir, 'identities.json'), options.store) : undefined;
    this.#state = this.#store?.load() ?? { version: 1, next: IDENTITY.FIRST_POD, ids: {} };
  }

  /** The identity of a label set, allocated on first use (not persisted until commit()). */
  identityOf(namespace: string, labels: Labels): number {
    const k = identityKey(namespace, labels);
    let id = this.#state.ids[k];
    if (id === undefined) {
      id = this.#state.next++;
      this.#state.ids[k] = id;
      this.#dirty = true;
    }
    return id;
  }

  #dirty = false;

  /** Forget identities no longer in use and persist the table. */
  commit(inUse: ReadonlySet<number>): void {
    for (const [k, id] of Object.entries(this.#state.ids)) {
      if (!inUse.has(id)) {
        delete this.#state.ids[k];
        this.#dirty = true;
      }
    }
    if (this.#dirty && this.#store) this.#store.save(this.#state);
    this.#dirty = false;
  }

  entries(): IdentityEntry[] {
    return Object.entries(this.#state.ids)
      .map(([k, identity]) => {
        const slash = k.indexOf('/');
        return { identity, namespace: k.slice(0, slash), labels: k.slice(slash + 1) };
      })
      .sort((a, b) => a.identity - b.identity);
  }
}
