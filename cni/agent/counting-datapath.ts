/**
 * A placeholder datapath that proves the attach path end to end: one DSL
 * filter (a single counting rule that accepts everything) compiled once,
 * attached at tc-ingress of every host-side veth (traffic leaving the pods).
 * Policy and services are remembered, not enforced. The real endpoint
 * programs replace it through the same Datapath interface.
 */
import { filter } from '../../sdk/dsl/filter.js';
import { rule } from '../../sdk/dsl/rule.js';
import { load } from '../../runtime/entry.js';
import type { LoadedFilter } from '../../runtime/filter.js';
import type { Attachment } from '../../runtime/attach.js';
import { NoopDatapath, type DatapathStatus, type Endpoint, type NodeContext } from './datapath.js';

export const countingFilter = filter('tsbpf_ep_count', { hook: 'tc-ingress' }, ({ chain }) =>
  chain('input', { policy: 'accept' }, [rule().named('from-pod').count().accept()]),
);

export class CountingDatapath extends NoopDatapath {
  override readonly name = 'count';
  #filter: LoadedFilter | undefined;
  #node: NodeContext | undefined;
  readonly #attached = new Map<string, Attachment>();

  override async start(node: NodeContext): Promise<void> {
    this.#node = node;
    this.#filter ??= load(countingFilter);
  }

  override async attachEndpoint(ep: Endpoint): Promise<void> {
    await super.attachEndpoint(ep);
    const f = this.#filter!;
    this.#attached.get(ep.id)?.detach();
    // Fixed priority and handle, persistent: a restarted agent replaces its predecessor's program in place.
    const a = f.attach({ hook: 'tc-ingress', ifname: ep.hostIfname, netns: this.#node?.netns, priority: 1, handle: 1, replace: true, persistent: true });
    this.#attached.set(ep.id, a);
  }

  override async detachEndpoint(ep: Endpoint): Promise<void> {
    await super.detachEndpoint(ep);
    const a = this.#attached.get(ep.id);
    this.#attached.delete(ep.id);
    try {
      a?.detach();
    } catch {
      /* the interface is already gone, and the filter with it */
    }
  }

  /** Packets seen from all pods since load. */
  packets(): bigint {
    return this.#filter?.counters()[0]?.packets ?? 0n;
  }

  override status(): DatapathStatus {
    const s = super.status();
    return {
      ...s,
      name: this.name,
      programs: [...this.#attached.values()].map((a) => ({ name: 'tsbpf_ep_count', attachedTo: a.ifname, hook: a.hook })),
      packetsFromPods: String(this.packets()),
    };
  }

  override async stop(): Promise<void> {
    // Persistent attachments stay; dropping the handles leaves them in the kernel.
    this.#attached.clear();
  }
}
