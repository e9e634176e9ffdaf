/**
 * ClusterIP Services for the CNI through the services program of
 * docs/stateful.md (runtime/services.ts), used as it is.
 *
 * Placement: client side, on the pod's own interface (CNI_IFNAME inside the
 * pod netns). A connection to a VIP is load balanced (DNAT to a ready
 * backend) as it leaves the client pod, and its replies are translated back
 * as they enter it. So everything between the two pods, the policy programs
 * on both host veths included, sees the backend's real address: policy is
 * judged on the backend pod's identity, and the policy conntrack sees one
 * tuple per connection.
 *
 * One object serves every pod (its maps are shared); its maps are pinned
 * under `<pinDir>/svc` and reused on restart, so established connections keep
 * their backend. Attachments are persistent with a fixed priority/handle.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { TsbpfError } from '../../sdk/errors.js';
import { serviceDef, services, type ServiceDef } from '../../sdk/services.js';
import type { Attachment } from '../../runtime/attach.js';
import { pinAll } from '../../runtime/pin.js';
import { loadServices, type LoadedServices } from '../../runtime/services.js';
import type { Endpoint, ServiceEntry } from '../agent/datapath.js';

/** A service name the services program accepts (an identifier), from the agent's key. */
export function serviceName(key: string): string {
  return `svc_${key.replace(/[^A-Za-z0-9_.-]/g, '.')}`;
}

/** The agent's ServiceEntry as the services program's definition; undefined for what it cannot do (SCTP). */
export function toServiceDef(s: ServiceEntry): ServiceDef | undefined {
  if (s.protocol === 'SCTP') return undefined;
  return serviceDef(serviceName(s.key), {
    vip: s.vip,
    port: s.port,
    protocol: s.protocol === 'TCP' ? 'tcp' : 'udp',
    mode: 'maglev',
    ...(s.affinityTimeout > 0 ? { affinity: { timeout: s.affinityTimeout } } : {}),
    backends: s.backends.map((b) => ({ addr: b.addr, port: b.port })),
  });
}

export class ClusterIpServices {
  #lb: LoadedServices | undefined;
  readonly #attached = new Map<string, Attachment[]>();
  readonly #skipped = new Set<string>();

  /** Load (reusing pins under `dir`) and pin what is not pinned yet. */
  start(dir: string): void {
    if (this.#lb) return;
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    const lb = loadServices(services('tsbcni', { conntrack: { trackAll: false } }), { pinRoot: dir });
    try {
      const missing = Object.entries(lb.object.maps)
        .filter(([name]) => !name.includes('.') && !existsSync(path.join(dir, name)))
        .map(([name, m]) => ({ name, fd: m.fd }));
      if (missing.length) pinAll(dir, missing, []);
    } catch (e) {
      lb.close();
      throw e;
    }
    this.#lb = lb;
  }

  get loaded(): LoadedServices {
    if (!this.#lb) throw new TsbpfError('CLOSED', 'the services program is not loaded');
    return this.#lb;
  }

  /** Both hooks of the pod's own interface, inside its netns. */
  attach(ep: Endpoint, priority: number): void {
    const lb = this.loaded;
    this.detach(ep);
    const out: Attachment[] = [];
    for (const p of lb.compiled.programs) {
      if (p.hook !== 'tc-ingress' && p.hook !== 'tc-egress') continue;
      out.push(lb.object.attach({ program: p.name, hook: p.hook, ifname: ep.ifname, netns: ep.netns, priority, handle: priority, replace: true, persistent: true }));
    }
    this.#attached.set(ep.id, out);
  }

  detach(ep: { id: string }): void {
    for (const a of this.#attached.get(ep.id) ?? []) {
      try {
        a.detach();
      } catch {
        /* the pod netns or interface is gone, and the filters with it */
      }
    }
    this.#attached.delete(ep.id);
  }

  upsert(s: ServiceEntry): void {
    const def = toServiceDef(s);
    if (!def) {
      this.#skipped.add(s.key);
      return;
    }
    this.#skipped.delete(s.key);
    this.loaded.upsertService(def);
  }

  delete(key: string): void {
    this.#skipped.delete(key);
    this.loaded.deleteService(serviceName(key));
  }

  attachments(): Attachment[] {
    return [...this.#attached.values()].flat();
  }

  status(): { maps: Array<{ name: string; entries: number; maxEntries: number }>; skipped: string[]; stats: Record<string, string> } {
    const lb = this.#lb;
    if (!lb) return { maps: [], skipped: [], stats: {} };
    // Every map that fills up (arrays are always full, the ring buffer is a queue).
    const maps = Object.entries(lb.object.maps)
      .filter(([name, m]) => !name.includes('.') && !/array|ringbuf/.test(m.type))
      .map(([name, m]) => {
        let entries = 0;
        for (const _ of m.raw.keys()) entries++;
        return { name, entries, maxEntries: m.maxEntries };
      });
    return { maps, skipped: [...this.#skipped], stats: Object.fromEntries(Object.entries(lb.stats()).map(([k, v]) => [k, String(v)])) };
  }

  /** Release handles; attachments and pins stay. */
  stop(): void {
    this.#attached.clear();
    this.#lb?.object.close();
    this.#lb = undefined;
  }

  /** Detach from every pod this process attached to and close (pins are the caller's). */
  destroy(): void {
    for (const a of this.attachments()) {
      try {
        a.detach();
      } catch {
        /* gone */
      }
    }
    this.#attached.clear();
    this.#lb?.close();
    this.#lb = undefined;
  }
}
