/**
 * Typed access to a conntrack map (tsbpf_ct, the layout of ct.h), whoever
 * owns it: a filter with conntrack (LoadedFilter.conntrack) or a pinned map
 * (`tsbpf ct`), and a services program (LoadedServices): list and filter connections, delete them with all
 * their keys, flush, collect expired entries.
 */
import { CT_ENTRY, CT_KEY, type CtEntryRecord, type CtKeyRecord } from '../codegen/stateful/layouts.js';
import { entryFromRecord, keyFromRecord, keyToRecord } from '../codegen/stateful/records.js';
import { ConntrackTable, describeConnection, keyId, keysOfConnection, matchConnection, type CtConnection, type CtFilter } from '../sdk/ct.js';
import { array, encode, struct, u16, u32, u64, u8 } from '../sdk/layout.js';
import { wordsText, type Tuple } from '../sdk/ct.js';
import { FCT_STATS, type FctEvent, type FctStat } from '../sdk/ct-filter.js';
import { expiredKeys } from '../sdk/stateful.js';
import type { BpfMap } from './map.js';

/** The kernel's bpf_ktime_get_ns clock (CLOCK_MONOTONIC), as Node reads it. */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** The connections of a decoded table matching `filter`, oldest first. */
export function connectionsIn(table: ConntrackTable, filter: CtFilter, now: bigint): CtConnection[] {
  const out: CtConnection[] = [];
  for (const { key, entry } of table.connections()) {
    const c = describeConnection(key, entry, now);
    if (matchConnection(c, filter)) out.push(c);
  }
  return out.sort((a, b) => (a.createdNs < b.createdNs ? -1 : a.createdNs > b.createdNs ? 1 : 0));
}

/** Conntrack operations on one tsbpf_ct map. */
export class ConntrackMap {
  constructor(readonly map: BpfMap<unknown, unknown>) {}

  /** Every entry, decoded (primaries and aliases). */
  table(): ConntrackTable {
    const t = new ConntrackTable();
    for (const [k, v] of this.map.raw.lookupBatch()) {
      t.set(keyFromRecord(CT_KEY.decode(k, 0) as CtKeyRecord), entryFromRecord(CT_ENTRY.decode(v, 0) as CtEntryRecord));
    }
    return t;
  }

  /** Connections matching `filter`, oldest first (expired ones only with `expired: true`). */
  list(filter: CtFilter = {}, now = monotonicNs()): CtConnection[] {
    return connectionsIn(this.table(), filter, now);
  }

  /** Delete connections (with every key they own: NAT aliases too); returns how many. */
  delete(which: CtFilter | CtConnection | CtConnection[]): number {
    const list = Array.isArray(which) ? which : 'entry' in which ? [which as CtConnection] : this.list({ ...(which as CtFilter), expired: true });
    this.deleteKeys(list);
    return list.length;
  }

  /** Delete every key the connections own; returns the entries deleted. */
  deleteKeys(list: readonly CtConnection[]): number {
    const seen = new Set<string>();
    let n = 0;
    for (const c of list) {
      for (const k of keysOfConnection(c.entry)) {
        const id = keyId(k);
        if (seen.has(id)) continue;
        seen.add(id);
        if (this.map.raw.delete(encode(CT_KEY, keyToRecord(k)))) n++;
      }
    }
    return n;
  }

  /** Delete every entry. */
  flush(): number {
    return this.map.clear();
  }

  /** Delete expired connections (with their keys) and aliases left without a live one; returns the entries deleted. */
  gc(now = monotonicNs()): number {
    let n = 0;
    for (const k of expiredKeys(this.table(), now)) if (this.map.raw.delete(encode(CT_KEY, keyToRecord(k)))) n++;
    return n;
  }
}

/** struct tsbpf_fct_event (ctfilter.h). */
export const FCT_EVENT = struct(
  { ts_ns: u64, kind: u32, ifindex: u32, rule: u32, family: u8, proto: u8, sport: u16, dport: u16, _pad: u16, src: array(u32, 4), dst: array(u32, 4) },
  { name: 'tsbpf_fct_event' },
);

/** A decoded tsbpf_fct_events record. */
export function fctEventFromBytes(raw: Buffer): FctEvent & { tsNs: bigint; text: string } {
  const r = FCT_EVENT.decode(raw, 0) as { ts_ns: bigint; ifindex: number; rule: number; family: number; proto: number; sport: number; dport: number; src: number[]; dst: number[] };
  const family = r.family === 6 ? 6 : 4;
  const tuple: Tuple = { src: r.src as Tuple['src'], dst: r.dst as Tuple['dst'], sport: r.sport, dport: r.dport, family, proto: r.proto, icmp: 0 };
  return {
    kind: 'nat-exhausted',
    ifindex: r.ifindex,
    ruleId: r.rule,
    tuple,
    tsNs: r.ts_ns,
    text: `nat-exhausted: rule ${r.rule}, ${wordsText(tuple.src, family)}:${r.sport} > ${wordsText(tuple.dst, family)}:${r.dport} proto ${r.proto}`,
  };
}

/** tsbpf_fct_stats summed over CPUs, by name. */
export function fctStats(map: BpfMap<unknown, unknown>): Record<FctStat, bigint> {
  const m = map as BpfMap<number, bigint[]>;
  const out = {} as Record<FctStat, bigint>;
  FCT_STATS.forEach((name, i) => {
    out[name] = (m.get(i) ?? []).reduce((a, x) => a + x, 0n);
  });
  return out;
}
