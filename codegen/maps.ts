/**
 * Every map of a generated object, described once: the C declaration
 * (emit-c.ts prints it) and the layout info compile() returns for the runtime
 * and for typed accessors.
 */
import { parseCidr } from '../sdk/addr.js';
import { DslError } from '../sdk/errors.js';
import { cDecls, cType, encode, u16, u32, u64, type Layout } from '../sdk/layout.js';
import type { Definition, MapKind } from '../sdk/model.js';
import type { Ir } from './ir.js';
import { BUCKET, COUNTER, KBUCKET, LIMIT_KEY, LPM4_KEY, LPM6_KEY, SET_VALUE, STATE } from './layouts.js';
import { CT_CONFIG, CT_ENTRY, CT_KEY, NAT_IFADDR, NAT_RULE } from './stateful/layouts.js';
import { timeoutsArray } from '../sdk/ct.js';

export type MapRole = 'state' | 'errors' | 'counters' | 'events' | 'limits' | 'limit-keyed' | 'ifindex' | 'prog-array' | 'set' | 'user' | 'classifier' | 'conntrack';

export type MapType = MapKind | 'prog_array';

export interface MapInfo {
  name: string;
  role: MapRole;
  kind: MapType;
  key?: Layout<any>;
  value?: Layout<any>;
  maxEntries: number;
  /** Per-CPU maps hold one value per possible CPU. */
  perCpu: boolean;
  /** Entries the runtime writes right after load (named sets' initial elements). */
  initial?: Array<{ key: Buffer; value: Buffer }>;
  /** The same, packed for one BPF_MAP_UPDATE_BATCH (large classifier maps); `initial` is derived from it on demand. */
  initialBatch?: { keys: Buffer; values: Buffer; count: number };
  /** What the map is for, one line. */
  description: string;
}

/** A map plus its C declaration pieces. */
export interface MapSpec extends MapInfo {
  cType: string;
  cKey?: string;
  cValue?: string;
  flags?: string;
  /** Extra C text after the struct body (prog_array initialisers). */
  init?: string;
  /** Declared by a support header (ct.h, nat.h, ctfilter.h), not by the generated C. */
  external?: boolean;
}

const BPF_TYPE: Record<MapType, string> = {
  hash: 'BPF_MAP_TYPE_HASH',
  lru_hash: 'BPF_MAP_TYPE_LRU_HASH',
  array: 'BPF_MAP_TYPE_ARRAY',
  percpu_array: 'BPF_MAP_TYPE_PERCPU_ARRAY',
  percpu_hash: 'BPF_MAP_TYPE_PERCPU_HASH',
  lpm_trie: 'BPF_MAP_TYPE_LPM_TRIE',
  ringbuf: 'BPF_MAP_TYPE_RINGBUF',
  prog_array: 'BPF_MAP_TYPE_PROG_ARRAY',
};

export const ERRORS_SLOTS = 8;
export const EVENTS_BYTES = 256 * 1024;
/** Names codegen uses for its own maps; users may not take them. */
export const RESERVED_PREFIX = 'tsbpf_';

export interface MapPlan {
  specs: MapSpec[];
  /** C type declarations for user map keys/values (before the maps). */
  userTypes: string;
}

/** Every map of the object, in declaration order. */
export function planMaps(def: Definition, ir: Ir): MapPlan {
  const specs: MapSpec[] = [];
  const add = (s: Omit<MapSpec, 'cType'>) => specs.push({ ...s, cType: BPF_TYPE[s.kind] });

  add({
    name: 'tsbpf_state', role: 'state', kind: 'percpu_array', key: u32, value: STATE, perCpu: true,
    maxEntries: Math.max(1, ir.programs.length), cKey: '__u32', cValue: 'struct tsbpf_state',
    description: 'per-packet parse result and return stack, one slot per program',
  });
  add({
    name: 'tsbpf_errors', role: 'errors', kind: 'percpu_array', key: u32, value: u64, perCpu: true,
    maxEntries: ERRORS_SLOTS, cKey: '__u32', cValue: '__u64',
    description: 'internal failures: 0 tail call, 1 return stack, 2 state, 3 reject, 4 limit',
  });
  add({
    name: 'tsbpf_counters', role: 'counters', kind: 'percpu_array', key: u32, value: COUNTER, perCpu: true,
    maxEntries: Math.max(1, ir.ruleCount), cKey: '__u32', cValue: 'struct tsbpf_counter',
    description: 'per-rule packets and bytes, indexed by rule id',
  });
  if (ir.usesLog) {
    add({
      name: 'tsbpf_events', role: 'events', kind: 'ringbuf', perCpu: false, maxEntries: EVENTS_BYTES,
      description: 'log events (struct tsbpf_log_event)',
    });
  }
  if (ir.limitSlots > 0) {
    add({
      name: 'tsbpf_limits', role: 'limits', kind: 'array', key: u32, value: BUCKET, perCpu: false,
      maxEntries: ir.limitSlots, cKey: '__u32', cValue: 'struct tsbpf_bucket',
      description: 'token buckets of unkeyed limits',
    });
  }
  for (const l of ir.limits) {
    if (!l.map) continue;
    add({
      name: l.map, role: 'limit-keyed', kind: 'lru_hash', key: LIMIT_KEY, value: KBUCKET, perCpu: false,
      maxEntries: l.maxKeys ?? 65536, cKey: 'struct tsbpf_limit_key', cValue: 'struct tsbpf_kbucket',
      description: `token buckets per address of limit #${l.limitId} (rule ${l.ruleId})`,
    });
  }
  if (ir.ifnames.length > 0) {
    add({
      name: 'tsbpf_ifindex', role: 'ifindex', kind: 'array', key: u32, value: u32, perCpu: false,
      maxEntries: ir.ifnames.length, cKey: '__u32', cValue: '__u32',
      description: `interface indexes of ${ir.ifnames.map((n) => `'${n}'`).join(', ')} (by slot), written at load time`,
    });
  }
  for (const p of ir.programs) {
    const values = [
      ...(p.actSlot !== undefined ? [`[${p.actSlot}] = (void *)&${p.actFn}`] : []),
      ...(p.ctSlot !== undefined ? [`[${p.ctSlot}] = (void *)&${p.ctFn}`] : []),
      ...p.chains.filter((c) => c.slot !== undefined).map((c) => `[${c.slot}] = (void *)&${c.fn}`),
    ];
    add({
      name: p.progArray, role: 'prog-array', kind: 'prog_array', key: u32, value: u32, perCpu: false,
      maxEntries: p.slots, cKey: '__u32',
      description: `tail-call slots of program ${p.name} (filled by libbpf at load)`,
      init: `{\n\t.values = {\n${values.map((v) => `\t\t${v},`).join('\n')}\n\t},\n}`,
    });
  }
  for (const s of ir.sets) {
    const lpm = s.type !== 'port';
    const key = s.type === 'ipv4' ? LPM4_KEY : s.type === 'ipv6' ? LPM6_KEY : u16;
    const initial = s.elements.map((e) => ({ key: setKey(s.name, s.type, e), value: encode(SET_VALUE, 1) }));
    add({
      name: s.name, role: 'set', kind: lpm ? 'lpm_trie' : 'hash', key, value: SET_VALUE, perCpu: false,
      maxEntries: s.maxEntries,
      cKey: s.type === 'ipv4' ? 'struct tsbpf_lpm4_key' : s.type === 'ipv6' ? 'struct tsbpf_lpm6_key' : '__u16',
      cValue: '__u8',
      ...(lpm ? { flags: 'BPF_F_NO_PREALLOC' } : {}),
      initial,
      description: s.ruleId === undefined ? `${s.type} set '${s.name}'` : `${s.type} list of rule ${s.ruleId}, as a ${lpm ? 'LPM trie' : 'hash'} (filled at load)`,
    });
  }
  if (ir.conntrack) {
    const ct = def.conntrack!;
    add({
      name: 'tsbpf_fct', role: 'conntrack', kind: 'percpu_array', key: u32, perCpu: true,
      maxEntries: Math.max(1, ir.programs.length), cKey: '__u32', cValue: 'struct tsbpf_fct',
      description: 'per-packet conntrack state across tail calls (ctfilter.h), one slot per program',
    });
    add({
      name: 'tsbpf_ct', role: 'conntrack', kind: 'lru_hash', key: CT_KEY, value: CT_ENTRY, perCpu: false,
      maxEntries: ir.conntrack.maxEntries, external: true,
      description: 'conntrack: connections and their NAT aliases (ct.h)',
    });
    add({
      name: 'tsbpf_ct_config', role: 'conntrack', kind: 'array', key: u32, value: CT_CONFIG, perCpu: false,
      maxEntries: 1, external: true,
      initial: [{ key: encode(u32, 0), value: encode(CT_CONFIG, { timeouts: timeoutsArray(ct.timeouts ?? {}), seed: 0, nat_rules: 0, flags: ct.tcpLoose ? 2 : 0, _pad: 0 }) }],
      description: 'conntrack timeouts and hash seed (the runtime writes the seed at load)',
    });
    add({
      name: 'tsbpf_nat_rules', role: 'conntrack', kind: 'array', key: u32, value: NAT_RULE, perCpu: false,
      maxEntries: 1, external: true,
      description: 'unused by filters (nat.h declares it; NAT actions carry their parameters in the code)',
    });
    add({
      name: 'tsbpf_nat_ifaddr', role: 'conntrack', kind: 'hash', key: u32, value: NAT_IFADDR, perCpu: false,
      maxEntries: 256, external: true,
      description: 'masquerade addresses by egress ifindex (the runtime writes them at attach)',
    });
    add({
      name: 'tsbpf_fct_stats', role: 'conntrack', kind: 'percpu_array', key: u32, value: u64, perCpu: true,
      maxEntries: 8, external: true,
      description: 'conntrack counters: new, reply, translated, icmp translated, nat exhausted, clash, error, no ifaddr',
    });
    if (ir.conntrack.snat) {
      add({
        name: 'tsbpf_fct_events', role: 'conntrack', kind: 'ringbuf', perCpu: false, maxEntries: 64 * 1024, external: true,
        description: 'conntrack events: nat-exhausted (struct tsbpf_fct_event)',
      });
    }
  }
  const decls: Array<readonly [string, Layout<unknown>]> = [];
  for (const m of def.maps) {
    const names: { cKey?: string; cValue?: string } = {};
    if (m.kind !== 'ringbuf') {
      if (!m.key || !m.value) throw new DslError(`map '${m.name}' needs a key and a value layout`, { ...(m.source ? { source: m.source } : {}) });
      decls.push([`${m.name}_key`, m.key], [`${m.name}_value`, m.value]);
      names.cKey = cType(m.key, `${m.name}_key`);
      names.cValue = cType(m.value, `${m.name}_value`);
    }
    add({
      name: m.name, role: 'user', kind: m.kind, perCpu: m.kind === 'percpu_array' || m.kind === 'percpu_hash',
      ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}),
      maxEntries: m.maxEntries,
      ...names,
      ...(m.kind === 'lpm_trie' ? { flags: 'BPF_F_NO_PREALLOC' } : {}),
      description: `user map '${m.name}'`,
    });
  }
  // Struct tags come from the map names; a named struct layout keeps its fields.
  const userTypes = decls.length ? cDecls(decls.map(([n, l]) => [n, l] as const)) : '';
  return { specs, userTypes };
}

/** The key bytes of one set element. */
export function setKey(set: string, type: 'ipv4' | 'ipv6' | 'port', e: string | number): Buffer {
  if (type === 'port') {
    if (typeof e !== 'number' || !Number.isInteger(e) || e < 0 || e > 65535) {
      throw new DslError(`set '${set}': ${String(e)} is not a port (0-65535)`, {});
    }
    return encode(u16, e);
  }
  const c = parseCidr(String(e));
  if ('error' in c || (c.family === 6) !== (type === 'ipv6')) {
    throw new DslError(`set '${set}': '${String(e)}' is not an ${type} address or CIDR`, {});
  }
  const slash = c.text.indexOf('/');
  return type === 'ipv4'
    ? encode(LPM4_KEY, { prefixlen: c.len, addr: c.text.slice(0, slash) })
    : encode(LPM6_KEY, { prefixlen: c.len, addr: c.text.slice(0, slash) });
}

/** The C declaration of one map. */
export function mapDeclC(s: MapSpec): string {
  const lines = ['struct {', `\t__uint(type, ${s.cType});`, `\t__uint(max_entries, ${s.maxEntries});`];
  if (s.flags) lines.push(`\t__uint(map_flags, ${s.flags});`);
  if (s.kind === 'prog_array') {
    lines.push('\t__uint(key_size, sizeof(__u32));', `\t__array(values, int (void *));`);
  } else {
    if (s.cKey) lines.push(`\t__type(key, ${s.cKey});`);
    if (s.cValue) lines.push(`\t__type(value, ${s.cValue});`);
  }
  return `${lines.join('\n')}\n} ${s.name} SEC(".maps")${s.init ? ` = ${s.init}` : ''};`;
}
