/**
 * Services: the kube-proxy replacement as a tsbpf building block.
 *
 *   const lb = services('lb', { conntrack: { maxEntries: 65536 } }, (s) => {
 *     s.service('web', { vip: '10.96.0.10', port: 80, protocol: 'tcp', mode: 'maglev',
 *       backends: [{ addr: '10.1.0.2', port: 8080 }, { addr: '10.1.0.3', port: 8080, weight: 2 }] });
 *     s.masquerade({ out: 'eth0', from: '10.1.0.0/16' });
 *   });
 *
 * `services()` gives a plain `ServicesDefinition`: codegen/stateful compiles
 * it to a TC program pair (conntrack + load balancing + NAT), the runtime
 * (runtime/services.ts) loads it and changes services while it runs, and
 * sdk/stateful.ts evaluates it in TS (the reference).
 *
 * `ServiceTable` is the control plane both use: ids, backend records and
 * lookup tables, and the ordered map changes that make an update atomic from
 * a packet's point of view (new backends and table first, then the service
 * entry, then removals).
 */
import { parseCidr, parseIpv4, parseIpv6 } from './addr.js';
import { addrWords, DEFAULT_TIMEOUTS, familyOf, ipv4Number, type CtTimeouts, type Words } from './ct.js';
import { DslError, TsbpfError, type SourcePosition } from './errors.js';
import { isPrime, maglevTable, weightedTable, type NamedTable } from './maglev.js';
import { natRuleRecord, type NatRuleDef } from './nat.js';
import { callerPosition } from './source.js';

export type ServiceProtocol = 'tcp' | 'udp';
export type SelectionMode = 'random' | 'maglev';

export interface BackendDef {
  addr: string;
  port: number;
  /** Relative weight (default 1); 0 takes no new connections. */
  weight: number;
  /** Only ready backends take new connections (default true); existing connections keep theirs. */
  ready: boolean;
}

export interface ServiceDef {
  name: string;
  vip: string;
  port: number;
  protocol: ServiceProtocol;
  mode: SelectionMode;
  /** Session affinity by client IP: seconds a client keeps its backend after its last new connection (0: off). */
  affinityTimeout: number;
  backends: BackendDef[];
}

export interface ServicesDefinition {
  kind: 'services';
  version: 1;
  name: string;
  conntrack: { maxEntries: number; timeouts: CtTimeouts; trackAll: boolean };
  lb: { tableSize: number; maxServices: number; maxBackends: number; affinityEntries: number };
  nat: NatRuleDef[];
  /** Services present at load (more can be added at run time). */
  services: ServiceDef[];
  /** Also build cgroup connect/sendmsg/recvmsg/getpeername programs (socket-level load balancing). */
  socketLb: boolean;
  /** Hash seed (flow hash, SNAT port start); undefined: random at load. */
  hashSeed: number | undefined;
  source?: SourcePosition;
}

export const PROTO_NUMBER: Record<ServiceProtocol, number> = { tcp: 6, udp: 17 };

// ---------------------------------------------------------------------------
// DSL

export interface ServiceSpec {
  vip: string;
  port: number;
  protocol?: ServiceProtocol;
  mode?: SelectionMode;
  /** Session affinity by client IP, timeout in seconds. */
  affinity?: { timeout: number };
  backends?: Array<{ addr: string; port?: number; weight?: number; ready?: boolean }>;
}

export interface NatSpec {
  /** SNAT/masquerade: egress interface name. */
  out?: string;
  /** DNAT: ingress interface name. */
  in?: string;
  /** Source CIDR (default: any address of the family). */
  from?: string;
  /** Destination CIDR. */
  dst?: string;
  protocol?: ServiceProtocol | 'icmp' | 'icmp6' | number;
  dport?: number | [number, number];
  /** Translated address or [first, last]. */
  to?: string | [string, string];
  /** Translated port or [min, max]. */
  toPort?: number | [number, number];
  /** IP family when nothing else says (default 4). */
  family?: 4 | 6;
  name?: string;
}

export interface ServicesOptions {
  conntrack?: { maxEntries?: number; timeouts?: Partial<CtTimeouts>; trackAll?: boolean };
  /** Lookup table slots per service, a prime (default 251; raise it for services with many backends or fine-grained weights). */
  tableSize?: number;
  maxServices?: number;
  maxBackends?: number;
  affinityEntries?: number;
  socketLb?: boolean;
  hashSeed?: number;
}

export interface ServicesBuilder {
  service(name: string, spec: ServiceSpec): void;
  snat(spec: NatSpec & { to: string | [string, string] }): void;
  masquerade(spec: NatSpec): void;
  dnat(spec: NatSpec & { to: string | [string, string] }): void;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** A services definition (validated: a bad one throws a DslError naming the service or rule and where it was written). */
export function services(name: string, options: ServicesOptions = {}, build?: (s: ServicesBuilder) => void): ServicesDefinition {
  const source = callerPosition();
  if (!NAME.test(name) || name.length > 10) {
    throw new DslError(`services name '${name}' must be an identifier of at most 10 characters (it prefixes program names)`, { ...(source ? { source } : {}) });
  }
  const def: ServicesDefinition = {
    kind: 'services',
    version: 1,
    name,
    conntrack: {
      maxEntries: options.conntrack?.maxEntries ?? 65536,
      timeouts: { ...DEFAULT_TIMEOUTS, ...(options.conntrack?.timeouts ?? {}) },
      trackAll: options.conntrack?.trackAll ?? true,
    },
    lb: {
      tableSize: options.tableSize ?? 251,
      maxServices: options.maxServices ?? 1024,
      maxBackends: options.maxBackends ?? 16384,
      affinityEntries: options.affinityEntries ?? 65536,
    },
    nat: [],
    services: [],
    socketLb: options.socketLb ?? false,
    hashSeed: options.hashSeed,
    ...(source ? { source } : {}),
  };
  const at = () => {
    const s = callerPosition();
    return s ? { source: s } : {};
  };
  build?.({
    service(n, spec) {
      const where = at();
      try {
        def.services.push(serviceDef(n, spec));
      } catch (e) {
        throw new DslError(`service '${n}': ${(e as Error).message}`, where);
      }
    },
    snat: (spec) => def.nat.push(natDef('snat', spec, at())),
    masquerade: (spec) => def.nat.push(natDef('masquerade', spec, at())),
    dnat: (spec) => def.nat.push(natDef('dnat', spec, at())),
  });
  validateServices(def);
  return def;
}

/** A ServiceDef from the DSL spec (defaults filled in, addresses checked). */
export function serviceDef(name: string, spec: ServiceSpec): ServiceDef {
  const d: ServiceDef = {
    name,
    vip: spec.vip,
    port: spec.port,
    protocol: spec.protocol ?? 'tcp',
    mode: spec.mode ?? 'maglev',
    affinityTimeout: spec.affinity?.timeout ?? 0,
    backends: (spec.backends ?? []).map((b) => ({ addr: b.addr, port: b.port ?? spec.port, weight: b.weight ?? 1, ready: b.ready ?? true })),
  };
  checkService(d);
  return d;
}

/** The family of an address (no prefix), or undefined when it is not one. */
function addrFamily(text: string): 4 | 6 | undefined {
  if (typeof text !== 'string') return undefined;
  if (ipv4Number(text) !== undefined) return 4;
  if (text.includes('/')) return undefined;
  if (parseIpv4(text) !== undefined) return 4;
  return parseIpv6(text) !== undefined && text.includes(':') ? 6 : undefined;
}

function isAddr(text: string): boolean {
  return addrFamily(text) !== undefined;
}

function checkPort(p: number, what: string): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new TsbpfError('INVALID_ARGUMENT', `${what} ${String(p)} is not a port (1-65535)`);
}

/** What checking a service parsed on the way (so it is parsed once). */
export interface ParsedService {
  family: 4 | 6;
  vip: Words;
  /** Backend addresses, in order. */
  backends: Words[];
  /** Backend names 'addr|port', in order. */
  names: string[];
}

/** Throws a TsbpfError('INVALID_ARGUMENT') when the service is malformed; returns the parsed addresses. */
export function checkService(d: ServiceDef): ParsedService {
  if (!NAME.test(d.name)) throw new TsbpfError('INVALID_ARGUMENT', `service name '${d.name}' must be an identifier`);
  const fam = addrFamily(d.vip);
  if (fam === undefined) throw new TsbpfError('INVALID_ARGUMENT', `VIP '${d.vip}' is not an address`);
  checkPort(d.port, 'port');
  if (d.protocol !== 'tcp' && d.protocol !== 'udp') throw new TsbpfError('INVALID_ARGUMENT', `protocol must be 'tcp' or 'udp' (got '${String(d.protocol)}')`);
  if (d.mode !== 'random' && d.mode !== 'maglev') throw new TsbpfError('INVALID_ARGUMENT', `mode must be 'random' or 'maglev' (got '${String(d.mode)}')`);
  if (!Number.isInteger(d.affinityTimeout) || d.affinityTimeout < 0 || d.affinityTimeout > 86400 * 365) {
    throw new TsbpfError('INVALID_ARGUMENT', `affinity timeout must be whole seconds (got ${String(d.affinityTimeout)})`);
  }
  // Services are checked on every change, 10,000 at a time when a cluster is programmed: parse
  // each address once, and look for duplicates by comparing (a Set only for long lists).
  const n = d.backends.length;
  const seen = n > 32 ? new Set<string>() : undefined;
  const backends: Words[] = new Array<Words>(n);
  const names: string[] = new Array<string>(n);
  // IPv4 address and port as one number: cheaper to compare than the names.
  const ends = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const b = d.backends[i]!;
    const v4 = ipv4Number(b.addr);
    const bf = v4 !== undefined ? 4 : addrFamily(b.addr);
    if (bf !== fam) throw new TsbpfError('INVALID_ARGUMENT', `backend '${b.addr}' is not an IPv${fam} address like the VIP`);
    checkPort(b.port, `backend ${b.addr} port`);
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > 65535) throw new TsbpfError('INVALID_ARGUMENT', `backend ${b.addr}:${b.port} weight must be 0-65535`);
    const k = `${b.addr}|${b.port}`;
    let dup = false;
    if (seen) {
      dup = seen.has(k);
      seen.add(k);
    } else if (v4 !== undefined) {
      ends[i] = v4 * 65536 + b.port;
      for (let j = 0; j < i && !dup; j++) dup = ends[j] === ends[i];
    } else {
      ends[i] = -1;
      for (let j = 0; j < i && !dup; j++) dup = ends[j] < 0 && names[j] === k;
    }
    if (dup) throw new TsbpfError('INVALID_ARGUMENT', `backend ${b.addr}:${b.port} is listed twice`);
    names[i] = k;
    backends[i] = v4 !== undefined ? [v4, 0, 0, 0] : addrWords(b.addr);
  }
  return { family: fam, vip: addrWords(d.vip), backends, names };
}

const PROTO_NAMES: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmp6: 58 };

function natDef(kind: NatRuleDef['kind'], spec: NatSpec, where: { source?: SourcePosition }): NatRuleDef {
  const label = `${kind} rule${spec.name ? ` '${spec.name}'` : ''}`;
  try {
    const to = spec.to === undefined ? undefined : typeof spec.to === 'string' ? ([spec.to, spec.to] as [string, string]) : spec.to;
    const texts = [to?.[0], spec.from, spec.dst].filter((x): x is string => x !== undefined);
    const family: 4 | 6 = spec.family ?? (texts.some((t) => t.includes(':')) ? 6 : 4);
    const range = (p: number | [number, number] | undefined): [number, number] | undefined => (p === undefined ? undefined : typeof p === 'number' ? [p, p] : p);
    const proto = spec.protocol === undefined ? undefined : typeof spec.protocol === 'number' ? spec.protocol : PROTO_NAMES[spec.protocol];
    if (spec.protocol !== undefined && proto === undefined) throw new TsbpfError('INVALID_ARGUMENT', `unknown protocol '${String(spec.protocol)}'`);
    const r: NatRuleDef = { kind, family };
    if (spec.name) r.name = spec.name;
    if (proto !== undefined) r.proto = proto;
    const ifname = kind === 'dnat' ? spec.in : spec.out;
    if (ifname) r.ifname = ifname;
    if (spec.from) r.src = canonical(spec.from);
    if (spec.dst) r.dst = canonical(spec.dst);
    const dport = range(spec.dport);
    if (dport) r.dport = dport;
    if (to) r.to = to;
    const toPort = range(spec.toPort);
    if (toPort) r.toPort = toPort;
    natRuleRecord(r); // checks addresses and ranges
    return r;
  } catch (e) {
    throw new DslError(e instanceof TsbpfError && e.message.startsWith(`${kind} rule`) ? e.message : `${label}: ${(e as Error).message}`, where);
  }
}

function canonical(cidr: string): string {
  const c = parseCidr(cidr);
  if ('error' in c) throw new TsbpfError('INVALID_ARGUMENT', c.error);
  return c.text;
}

/** Checks a definition built by hand (services() checks its own). */
export function validateServices(def: ServicesDefinition): void {
  const fail = (m: string) => {
    throw new DslError(m, def.source ? { source: def.source } : {});
  };
  if (!isPrime(def.lb.tableSize) || def.lb.tableSize > 65521) fail(`tableSize must be a prime up to 65521 (got ${def.lb.tableSize})`);
  for (const [k, v] of Object.entries({ 'conntrack.maxEntries': def.conntrack.maxEntries, maxServices: def.lb.maxServices, maxBackends: def.lb.maxBackends, affinityEntries: def.lb.affinityEntries })) {
    if (!Number.isInteger(v) || v < 1 || v > 1 << 26) fail(`${k} must be an integer from 1 to ${1 << 26} (got ${v})`);
  }
  if (def.nat.length > NAT_RULES_MAX) fail(`at most ${NAT_RULES_MAX} NAT rules (got ${def.nat.length})`);
  if (def.hashSeed !== undefined && (!Number.isInteger(def.hashSeed) || def.hashSeed < 0 || def.hashSeed > 0xffffffff)) fail('hashSeed must be a u32');
  const names = new Set<string>();
  const keys = new Set<string>();
  for (const s of def.services) {
    try {
      checkService(s);
    } catch (e) {
      fail(`service '${s.name}': ${(e as Error).message}`);
    }
    if (names.has(s.name)) fail(`service name '${s.name}' is used twice`);
    names.add(s.name);
    const k = serviceKeyId(s);
    if (keys.has(k)) fail(`service '${s.name}': ${s.vip} port ${s.port}/${s.protocol} is already another service`);
    keys.add(k);
  }
}

export const NAT_RULES_MAX = 16;

// ---------------------------------------------------------------------------
// The control plane: what the datapath maps hold

/** struct tsbpf_lb_key */
export interface LbKeyRecord {
  addr: Words;
  port: number;
  proto: number;
  family: number;
}

/** struct tsbpf_lb_service */
export interface ServiceRecord {
  id: number;
  table: number;
  affinity_s: number;
  count: number;
  mode: number;
  flags: number;
}

/** struct tsbpf_lb_backend */
export interface BackendRecord {
  addr: Words;
  port: number;
  family: number;
  flags: number;
  svc_id: number;
  weight: number;
}

export const LB_RANDOM = 1;
export const LB_MAGLEV = 2;
export const LBB_READY = 1;

/** One map operation; the runtime applies a change list in order. */
export type LbChange =
  | { map: 'backends'; op: 'set'; id: number; value: BackendRecord }
  | { map: 'backends'; op: 'delete'; id: number }
  | { map: 'tables'; op: 'set'; id: number; value: Uint32Array }
  | { map: 'tables'; op: 'delete'; id: number }
  | { map: 'services'; op: 'set'; key: LbKeyRecord; value: ServiceRecord }
  | { map: 'services'; op: 'delete'; key: LbKeyRecord };

export function serviceKeyId(s: { vip: string; port: number; protocol: ServiceProtocol }): string {
  return lbKeyId(lbKeyOf(s));
}

export function lbKeyOf(s: { vip: string; port: number; protocol: ServiceProtocol }): LbKeyRecord {
  return { addr: addrWords(s.vip), port: s.port, proto: PROTO_NUMBER[s.protocol], family: familyOf(s.vip) };
}

function lbKeyId(k: LbKeyRecord): string {
  return `${k.family}/${k.addr[0]}.${k.addr[1]}.${k.addr[2]}.${k.addr[3]}/${k.port}/${k.proto}`;
}

/** Backend ids by table slot (0 for an empty slot). */
function slotIds(idx: Int32Array, idOf: Uint32Array): Uint32Array {
  const ids = new Uint32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    ids[i] = j < 0 ? 0 : idOf[j]!;
  }
  return ids;
}

/** A service's table by backend name (slot -> index into names, -1 empty), from its backend ids. */
function namedSlots(st: ServiceState): NamedTable {
  const at = new Map<number, number>();
  st.usable.ids.forEach((id, j) => at.set(id, j));
  const table = new Int32Array(st.tableIds.length);
  for (let i = 0; i < table.length; i++) table[i] = at.get(st.tableIds[i]!) ?? -1;
  return { table, names: st.usable.names };
}

interface ServiceState {
  def: ServiceDef;
  id: number;
  table: number;
  /** 'addr|port' -> backend id */
  backendIds: Map<string, number>;
  tableIds: Uint32Array;
  /** The backends in the table, by name and id (the table by name, where the next Maglev update starts from, follows from tableIds). */
  usable: { names: string[]; ids: number[] };
  /** What the service map holds for it. */
  record: ServiceRecord;
}

export interface ServiceInfo {
  def: ServiceDef;
  id: number;
  table: number;
  /** Backend ids by 'addr:port'. */
  backendIds: Record<string, number>;
}

/**
 * The services of one program as its maps hold them. Every mutation returns
 * the ordered map changes; the reference evaluator reads this object, the
 * runtime writes the changes into the kernel.
 */
export class ServiceTable {
  private readonly byKey = new Map<string, ServiceState>();
  private readonly byName = new Map<string, string>();
  // By id (ids are small consecutive integers): arrays, cheaper than Maps at 100,000 backends.
  private readonly backendById: Array<BackendRecord | undefined> = [];
  private backendCount = 0;
  private readonly tableById: Array<Uint32Array | undefined> = [];
  private nextService = 1;
  private nextBackend = 1;
  private nextTable = 1;

  constructor(readonly options: { tableSize: number; maxServices: number; maxBackends: number }) {
    if (!isPrime(options.tableSize)) throw new TsbpfError('INVALID_ARGUMENT', `table size ${options.tableSize} is not a prime`);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Start new ids above these (maps that outlived a reload still hold entries with lower ones). */
  reserveIds(above: { service: number; backend: number; table: number }): void {
    this.nextService = Math.max(this.nextService, above.service + 1);
    this.nextBackend = Math.max(this.nextBackend, above.backend + 1);
    this.nextTable = Math.max(this.nextTable, above.table + 1);
  }

  /** Add or replace a service (matched by VIP, port and protocol). */
  upsert(def: ServiceDef): LbChange[] {
    const parsed = checkService(def);
    const key: LbKeyRecord = { addr: parsed.vip, port: def.port, proto: PROTO_NUMBER[def.protocol], family: parsed.family };
    const kid = lbKeyId(key);
    const old = this.byKey.get(kid);
    const other = this.byName.get(def.name);
    if (other !== undefined && other !== kid) throw new TsbpfError('INVALID_ARGUMENT', `service name '${def.name}' belongs to another VIP and port`);
    if (!old && this.byKey.size >= this.options.maxServices) {
      throw new TsbpfError('INVALID_ARGUMENT', `service '${def.name}': the program holds at most ${this.options.maxServices} services`, { hint: 'raise maxServices in services()' });
    }
    const n = def.backends.length;
    const names = parsed.names;
    if (this.backendCount + n > this.options.maxBackends) {
      // Only then count precisely: backends the service keeps do not add to the total.
      const fresh = names.filter((k) => !old?.backendIds.has(k)).length;
      const dropped = old ? [...old.backendIds.keys()].filter((k) => !names.includes(k)).length : 0;
      if (this.backendCount + fresh - dropped > this.options.maxBackends) {
        throw new TsbpfError('INVALID_ARGUMENT', `service '${def.name}': the program holds at most ${this.options.maxBackends} backends`, { hint: 'raise maxBackends in services()' });
      }
    }
    const id = old?.id ?? this.nextService++;
    const changes: LbChange[] = [];
    const backendIds = new Map<string, number>();
    const usableNames: string[] = [];
    const usableWeights: number[] = [];
    const usableIds: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = def.backends[i]!;
      const bk = names[i]!;
      const bid = old?.backendIds.get(bk) ?? this.nextBackend++;
      backendIds.set(bk, bid);
      const rec: BackendRecord = { addr: parsed.backends[i]!, port: b.port, family: parsed.family, flags: b.ready ? LBB_READY : 0, svc_id: id, weight: b.weight };
      const prev = old ? this.backendById[bid] : undefined;
      if (!prev || !sameBackend(prev, rec)) changes.push({ map: 'backends', op: 'set', id: bid, value: rec });
      if (b.ready && b.weight > 0) {
        usableNames.push(bk);
        usableWeights.push(b.weight);
        usableIds.push(bid);
      }
    }
    // The table: ready backends with a weight, by stable name ('addr|port').
    const entries = usableNames.map((name, i) => ({ name, weight: usableWeights[i]! }));
    const idx = def.mode === 'maglev' ? maglevTable(entries, this.options.tableSize, old ? namedSlots(old) : undefined) : weightedTable(entries, this.options.tableSize);
    const ids = slotIds(idx, Uint32Array.from(usableIds));
    let table = old?.table ?? 0;
    const tableChanged = !old || !sameIds(old.tableIds, ids);
    if (tableChanged) {
      table = this.nextTable++;
      changes.push({ map: 'tables', op: 'set', id: table, value: ids });
    }
    const value: ServiceRecord = { id, table, affinity_s: def.affinityTimeout, count: entries.length, mode: def.mode === 'maglev' ? LB_MAGLEV : LB_RANDOM, flags: 0 };
    changes.push({ map: 'services', op: 'set', key, value });
    if (old && tableChanged) changes.push({ map: 'tables', op: 'delete', id: old.table });
    if (old) for (const [bk, bid] of old.backendIds) if (!backendIds.has(bk)) changes.push({ map: 'backends', op: 'delete', id: bid });

    // Apply to the model in the same order.
    this.apply(changes);
    this.byKey.set(kid, { def: cloneService(def), id, table, backendIds, tableIds: ids, usable: { names: usableNames, ids: usableIds }, record: value });
    this.byName.set(def.name, kid);
    return changes;
  }

  /** Remove a service by name or by VIP, port and protocol. Unknown: no changes. */
  delete(ref: string | { vip: string; port: number; protocol: ServiceProtocol }): LbChange[] {
    const kid = typeof ref === 'string' ? this.byName.get(ref) : serviceKeyId(ref);
    const st = kid ? this.byKey.get(kid) : undefined;
    if (!st || !kid) return [];
    const changes: LbChange[] = [{ map: 'services', op: 'delete', key: lbKeyOf(st.def) }, { map: 'tables', op: 'delete', id: st.table }];
    for (const bid of st.backendIds.values()) changes.push({ map: 'backends', op: 'delete', id: bid });
    this.apply(changes);
    this.byKey.delete(kid);
    this.byName.delete(st.def.name);
    return changes;
  }

  /** A service's definition by name. */
  get(name: string): ServiceDef | undefined {
    const kid = this.byName.get(name);
    const st = kid ? this.byKey.get(kid) : undefined;
    return st ? cloneService(st.def) : undefined;
  }

  list(): ServiceInfo[] {
    return [...this.byKey.values()].map((s) => ({
      def: cloneService(s.def),
      id: s.id,
      table: s.table,
      backendIds: Object.fromEntries([...s.backendIds].map(([k, v]) => [k.replace('|', ':'), v])),
    }));
  }

  // What the datapath reads (the reference evaluator uses these).

  lookup(key: LbKeyRecord): ServiceRecord | undefined {
    return this.byKey.get(lbKeyId(key))?.record;
  }

  backend(id: number): BackendRecord | undefined {
    return this.backendById[id];
  }

  table(id: number): Uint32Array | undefined {
    return this.tableById[id];
  }

  /** Every map entry, for writing a fresh program's maps (tables and backends first). */
  snapshot(): LbChange[] {
    const out: LbChange[] = [];
    this.backendById.forEach((value, id) => value && out.push({ map: 'backends', op: 'set', id, value }));
    this.tableById.forEach((value, id) => value && out.push({ map: 'tables', op: 'set', id, value }));
    for (const st of this.byKey.values()) out.push({ map: 'services', op: 'set', key: lbKeyOf(st.def), value: st.record });
    return out;
  }

  private apply(changes: readonly LbChange[]): void {
    for (const c of changes) {
      if (c.map === 'backends') {
        const had = this.backendById[c.id] !== undefined;
        if (c.op === 'set') {
          this.backendById[c.id] = c.value;
          if (!had) this.backendCount++;
        } else if (had) {
          this.backendById[c.id] = undefined;
          this.backendCount--;
        }
      } else if (c.map === 'tables') {
        this.tableById[c.id] = c.op === 'set' ? c.value : undefined;
      }
    }
  }
}

function sameBackend(a: BackendRecord, b: BackendRecord): boolean {
  return a.port === b.port && a.family === b.family && a.flags === b.flags && a.svc_id === b.svc_id && a.weight === b.weight && a.addr.every((w, i) => w === b.addr[i]);
}

function sameIds(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function cloneService(d: ServiceDef): ServiceDef {
  return { ...d, backends: d.backends.map((b) => ({ ...b })) };
}
