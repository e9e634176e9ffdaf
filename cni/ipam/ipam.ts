/**
 * IPAM from the node's pod CIDRs (one IPv4 pool and, for dual stack, one
 * IPv6 pool). Allocations are keyed by the CNI attachment (network,
 * container id, ifname) and persisted before an address is used, so a crash
 * never hands one address out twice; an allocation whose ADD never finished
 * is released by the runtime's DEL or by CNI GC. The network address, the
 * gateway and (IPv4) the broadcast address are never handed out.
 */
import { join } from 'node:path';
import { CNI_ERR, CniError } from '../errors.js';
import { bitsOf, formatIp, formatPrefix, parsePrefix, prefixContains, prefixSize, parseIp, type Family, type Prefix } from '../addr.js';
import { JsonStore, type JsonStoreOptions } from '../store.js';
import type { AttachmentKey } from '../protocol.js';

export interface Allocation extends AttachmentKey {
  ip: string;
  family: Family;
  /** ISO time of the allocation. */
  at: string;
}

export interface IpamState {
  version: 1;
  /** Next-fit cursors per pool CIDR, so a released address is not reused at once. */
  cursors: Record<string, string>;
  allocations: Allocation[];
}

export interface Assigned {
  ip: string;
  family: Family;
  /** The pool's prefix length (the pod CIDR). */
  poolLen: number;
  gateway: string;
}

export interface PoolUsage {
  cidr: string;
  family: Family;
  gateway: string;
  reserved: string[];
  /** Usable addresses (size minus reserved). */
  capacity: bigint;
  used: number;
}

class Pool {
  readonly prefix: Prefix;
  readonly cidr: string;
  readonly gateway: bigint;
  readonly reserved: Set<bigint>;
  readonly first: bigint;
  readonly last: bigint;

  constructor(prefix: Prefix) {
    this.prefix = prefix;
    this.cidr = formatPrefix(prefix);
    const size = prefixSize(prefix);
    if (size < 4n) throw new CniError(CNI_ERR.INVALID_CONFIG, `pod CIDR ${this.cidr} is too small (needs at least 4 addresses)`);
    this.first = prefix.base;
    this.last = prefix.base + size - 1n;
    this.gateway = prefix.base + 1n;
    this.reserved = new Set([this.first, this.gateway]);
    if (prefix.family === 4) this.reserved.add(this.last);
  }

  text(v: bigint): string {
    return formatIp({ family: this.prefix.family, value: v });
  }

  capacity(): bigint {
    return prefixSize(this.prefix) - BigInt(this.reserved.size);
  }
}

export interface IpamOptions {
  /** The IPv4 pod CIDR of this node ('10.244.1.0/24'). */
  v4?: string;
  /** The IPv6 pod CIDR of this node, for dual stack ('fd00:10:244:1::/64'). */
  v6?: string;
  /** Directory of ipam.json. */
  stateDir: string;
  store?: JsonStoreOptions;
}

function keyOf(k: AttachmentKey): string {
  return `${k.network}\u0000${k.containerId}\u0000${k.ifname}`;
}

export class Ipam {
  readonly pools: Pool[] = [];
  readonly #store: JsonStore<IpamState>;
  #state: IpamState;
  /** Allocated address values per family, for O(1) "is it free". */
  readonly #used = new Map<Family, Set<bigint>>([
    [4, new Set()],
    [6, new Set()],
  ]);

  constructor(options: IpamOptions) {
    for (const [cidr, family] of [
      [options.v4, 4],
      [options.v6, 6],
    ] as const) {
      if (cidr === undefined) continue;
      const p = parsePrefix(cidr, { strict: true });
      if (!p || p.family !== family) throw new CniError(CNI_ERR.INVALID_CONFIG, `'${cidr}' is not an IPv${family} CIDR with host bits zero`);
      this.pools.push(new Pool(p));
    }
    if (this.pools.length === 0) throw new CniError(CNI_ERR.INVALID_CONFIG, 'IPAM needs a pod CIDR (IPv4, IPv6 or both)');
    this.#store = new JsonStore<IpamState>(join(options.stateDir, 'ipam.json'), options.store);
    this.#state = this.#store.load() ?? { version: 1, cursors: {}, allocations: [] };
    for (const a of this.#state.allocations) {
      const ip = parseIp(a.ip);
      if (ip) this.#used.get(ip.family)!.add(ip.value);
    }
  }

  pool(family: Family): Pool | undefined {
    return this.pools.find((p) => p.prefix.family === family);
  }

  /** The allocations of one attachment (empty when it has none). */
  lookup(key: AttachmentKey): Allocation[] {
    const k = keyOf(key);
    return this.#state.allocations.filter((a) => keyOf(a) === k);
  }

  allocations(): readonly Allocation[] {
    return this.#state.allocations;
  }

  #assigned(a: Allocation): Assigned {
    const pool = this.pools.find((p) => prefixContains(p.prefix, parseIp(a.ip)!));
    const family = a.family;
    return {
      ip: a.ip,
      family,
      poolLen: pool?.prefix.len ?? bitsOf(family),
      gateway: pool ? pool.text(pool.gateway) : '',
    };
  }

  /**
   * One address per configured family for `key`, persisted before return. An
   * attachment that already has addresses gets the same ones back (an ADD
   * retried after a crash does not allocate twice).
   */
  allocate(key: AttachmentKey): Assigned[] {
    const existing = this.lookup(key);
    const fresh: Allocation[] = [];
    for (const pool of this.pools) {
      if (existing.some((a) => a.family === pool.prefix.family)) continue;
      const v = this.#next(pool);
      if (v === undefined) {
        throw new CniError(CNI_ERR.POOL_EXHAUSTED, `no free address left in the pod CIDR ${pool.cidr}`, {
          cniDetails: `${this.#used.get(pool.prefix.family)!.size} of ${pool.capacity()} addresses in use`,
        });
      }
      fresh.push({ ...pick(key), ip: pool.text(v), family: pool.prefix.family, at: new Date().toISOString() });
      this.#state.cursors[pool.cidr] = pool.text(v);
    }
    if (fresh.length > 0) {
      const next: IpamState = { ...this.#state, allocations: [...this.#state.allocations, ...fresh] };
      this.#store.save(next);
      this.#state = next;
      for (const a of fresh) this.#used.get(a.family)!.add(parseIp(a.ip)!.value);
    }
    return [...existing, ...fresh].sort((a, b) => a.family - b.family).map((a) => this.#assigned(a));
  }

  #next(pool: Pool): bigint | undefined {
    const used = this.#used.get(pool.prefix.family)!;
    if (BigInt(used.size) >= pool.capacity()) return undefined;
    const cursor = this.#state.cursors[pool.cidr];
    const c = cursor === undefined ? undefined : parseIp(cursor);
    let v = c && prefixContains(pool.prefix, c) ? c.value + 1n : pool.first;
    // Next fit from the cursor; bounded by the pool size (capacity checked above, so it ends).
    for (;;) {
      if (v > pool.last) v = pool.first;
      if (!pool.reserved.has(v) && !used.has(v)) return v;
      v++;
    }
  }

  /** Release everything `key` holds; returns what was released (nothing is fine: DEL is idempotent). */
  release(key: AttachmentKey): Allocation[] {
    const k = keyOf(key);
    return this.#releaseWhere((a) => keyOf(a) === k);
  }

  /** CNI GC: release every allocation of `network` whose attachment is not in `valid`. */
  releaseExcept(network: string, valid: ReadonlyArray<{ containerId: string; ifname: string }>): Allocation[] {
    const keep = new Set(valid.map((v) => keyOf({ network, ...v })));
    return this.#releaseWhere((a) => a.network === network && !keep.has(keyOf(a)));
  }

  #releaseWhere(pred: (a: Allocation) => boolean): Allocation[] {
    const gone = this.#state.allocations.filter(pred);
    if (gone.length === 0) return [];
    const next: IpamState = { ...this.#state, allocations: this.#state.allocations.filter((a) => !pred(a)) };
    this.#store.save(next);
    this.#state = next;
    for (const a of gone) this.#used.get(a.family)!.delete(parseIp(a.ip)!.value);
    return gone;
  }

  usage(): PoolUsage[] {
    return this.pools.map((p) => ({
      cidr: p.cidr,
      family: p.prefix.family,
      gateway: p.text(p.gateway),
      reserved: [...p.reserved].map((v) => p.text(v)),
      capacity: p.capacity(),
      used: this.#state.allocations.filter((a) => prefixContains(p.prefix, parseIp(a.ip)!)).length,
    }));
  }

  /** Whether every pool still has a free address (STATUS). */
  hasFree(): boolean {
    return this.pools.every((p) => BigInt(this.#used.get(p.prefix.family)!.size) < p.capacity());
  }
}

function pick(k: AttachmentKey): AttachmentKey {
  return { network: k.network, containerId: k.containerId, ifname: k.ifname };
}
