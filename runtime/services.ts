/**
 * loadServices(definition): a services program (conntrack, load balancing,
 * NAT) compiled, loaded and driven from TS.
 *
 *   const lb = loadServices(def);
 *   lb.attach({ ifname: 'eth0', netns });          // tc ingress + egress
 *   lb.upsertService(serviceDef('web', { vip, port: 80, backends }));
 *   lb.conntrack({ dport: 80 });                   // typed entries
 *   lb.gc();                                       // drop expired entries
 *
 * Every service change is a handful of map updates, never a reload, and is
 * atomic from a packet's point of view: new backends and the new lookup
 * table are written first, then the service entry is replaced (one update),
 * then what it no longer uses is deleted (sdk/services.ts ServiceTable).
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { compileServices, type ServicesCompileOptions, type ServicesCompileResult } from '../codegen/stateful/compile.js';
import { SVC_EVENT } from '../codegen/stateful/layouts.js';
import { encodeBackend, encodeLbKey, encodeService, encodeU32, eventFromRecord, natRuleToRecord } from '../codegen/stateful/records.js';
import type { SockAttach } from '../codegen/stateful/emit.js';
import {
  addrWords,
  ConntrackTable,
  timeoutsArray,
  type CtConnection,
  type CtFilter,
  type CtKey,
  type Words,
} from '../sdk/ct.js';
import { TsbpfError } from '../sdk/errors.js';
import { natRuleRecord } from '../sdk/nat.js';
import { lbKeyOf, serviceDef, serviceKeyId, ServiceTable, validateServices, type LbChange, type ServiceDef, type ServicesDefinition, type ServiceInfo, type ServiceSpec } from '../sdk/services.js';
import { SVC_STATS, type ServiceEvent, type SvcStat } from '../sdk/stateful.js';
import type { Attachment, XdpMode } from './attach.js';
import { load } from './load.js';
import type { BpfMap } from './map.js';
import { native } from './native.js';
import { ConntrackMap, monotonicNs } from './conntrack.js';
import { wrapNative } from './errors.js';
import type { BpfObject } from './object.js';
import type { RingBuffer } from './ringbuf.js';
import type { TestRunResult } from './test-run.js';

export interface LoadServicesOptions extends ServicesCompileOptions {
  /** Reuse maps pinned under this directory (conntrack and services survive a reload). */
  pinRoot?: string;
  logLevel?: 1 | 2;
  /** Hash seed (default: the definition's, else random). */
  seed?: number;
  /** Interface indexes for NAT rules' interface names (attach resolves them otherwise). */
  interfaces?: Record<string, number>;
  /** Masquerade source addresses by ifindex (attach reads them from the interface otherwise). */
  ifaddrs?: Record<number, { v4?: string; v6?: string }>;
}

export interface ServicesAttachOptions {
  ifname: string;
  netns?: string;
  /** tc programs: default both, ingress (DNAT, replies, ICMP errors) and egress (SNAT, client-side LB). Not for XDP. */
  hooks?: Array<'tc-ingress' | 'tc-egress'>;
  /** tc filter priority (a later priority runs after; see the `verdict: 'continue'` load option). */
  priority?: number;
  /** XDP programs (`hook: 'xdp'` at load): the XDP mode (default: driver when the device has it, else generic). */
  mode?: XdpMode;
}

export interface ServicesTestRun extends TestRunResult {
  /** TC_ACT_OK, TC_ACT_UNSPEC (verdict 'continue'), XDP_PASS: 'accept'; TC_ACT_SHOT, XDP_DROP: 'drop'; TC_ACT_REDIRECT: 'loop' (a hairpin at egress, sent back into the interface's ingress). */
  action: 'accept' | 'drop' | 'loop';
}

const SOCK_ATTACH: SockAttach[] = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'recvmsg4', 'recvmsg6', 'getpeername4', 'getpeername6'];

export { monotonicNs };

export class LoadedServices {
  /** The control plane: what the service maps hold. */
  readonly table: ServiceTable;
  readonly seed: number;
  private readonly interfaces: Record<string, number>;
  private readonly cgroups: Array<{ path: string; attach: SockAttach; progId: number }> = [];
  private readonly attachments: Attachment[] = [];

  constructor(
    readonly object: BpfObject,
    readonly compiled: ServicesCompileResult,
    options: LoadServicesOptions,
  ) {
    const def = compiled.definition;
    this.table = new ServiceTable(def.lb);
    this.seed = options.seed ?? def.hashSeed ?? randomInt(0, 0xffffffff);
    this.interfaces = { ...(options.interfaces ?? {}) };
  }

  /** The definition in force: the one loaded, or the last given to reprogram(). */
  get definition(): ServicesDefinition {
    return this.active ?? this.compiled.definition;
  }

  private active: ServicesDefinition | undefined;

  get name(): string {
    return this.definition.name;
  }

  map<K = unknown, V = unknown>(name: string): BpfMap<K, V> {
    return this.object.map<K, V>(name);
  }

  // -------------------------------------------------------------------------
  // Settings

  /** @internal write config, NAT rules (with interfaces known so far) and masquerade addresses. */
  writeConfig(ifaddrs: LoadServicesOptions['ifaddrs'] = {}): void {
    const def = this.definition;
    this.map('tsbpf_ct_config').set(0, {
      timeouts: timeoutsArray(def.conntrack.timeouts),
      seed: this.seed,
      nat_rules: def.nat.length,
      flags: def.conntrack.trackAll ? 1 : 0,
      _pad: 0,
    });
    this.writeNatRules();
    for (const [ifindex, a] of Object.entries(ifaddrs)) this.setIfaddr(Number(ifindex), a);
  }

  /**
   * Apply another definition to the running program, without a reload:
   * conntrack timeouts, NAT rules, and the set of services (those not in
   * `def` are deleted, the others upserted). Map sizes (conntrack, tables,
   * services, backends) and the programs must be those loaded. Connections
   * already tracked keep their translation.
   */
  reprogram(def: ServicesDefinition): void {
    validateServices(def);
    const cur = this.compiled.definition;
    const same =
      def.lb.tableSize === cur.lb.tableSize &&
      def.lb.maxServices === cur.lb.maxServices &&
      def.lb.maxBackends === cur.lb.maxBackends &&
      def.lb.affinityEntries === cur.lb.affinityEntries &&
      def.conntrack.maxEntries === cur.conntrack.maxEntries &&
      def.socketLb === cur.socketLb;
    if (!same) {
      throw new TsbpfError('INVALID_ARGUMENT', `services '${def.name}' differs from the loaded program in map sizes or programs`, {
        hint: 'tableSize, maxServices, maxBackends, affinityEntries, conntrack.maxEntries and socketLb are fixed at load: load it anew',
      });
    }
    this.active = def;
    // NAT rules may name interfaces not resolved yet: look in the netns the program is attached in.
    for (const r of def.nat) {
      if (r.ifname === undefined || this.interfaces[r.ifname] !== undefined) continue;
      for (const netns of new Set(this.attachments.map((a) => a.netns))) {
        try {
          this.interfaces[r.ifname] = native().ifIndex(r.ifname, netns);
          break;
        } catch {
          /* not there */
        }
      }
    }
    this.writeConfig();
    // Gone, or the same name on another VIP, port or protocol: delete first.
    const keep = new Map(def.services.map((d) => [d.name, serviceKeyId(d)]));
    for (const info of this.table.list()) if (keep.get(info.def.name) !== serviceKeyId(info.def)) this.deleteService(info.def.name);
    this.upsertServices(def.services);
  }

  /**
   * @internal Maps reused from pins hold the services of the previous load:
   * write the new set under fresh ids, then delete what it does not use.
   * Every service changes atomically; conntrack is untouched.
   */
  adoptPinned(defs: readonly ServiceDef[]): void {
    const svc = this.map('tsbpf_lb_services').raw;
    const be = this.map('tsbpf_lb_backends').raw;
    const tab = this.map('tsbpf_lb_tables').raw;
    const oldKeys = [...svc.keys()];
    const maxOf = (keys: Buffer[]) => keys.reduce((m, k) => Math.max(m, k.readUInt32LE(0)), 0);
    const oldBackends = [...be.keys()];
    const oldTables = [...tab.keys()];
    const maxService = oldKeys.reduce((m, k) => Math.max(m, svc.get(k)?.readUInt32LE(0) ?? 0), 0);
    this.table.reserveIds({ service: maxService, backend: maxOf(oldBackends), table: maxOf(oldTables) });
    this.upsertServices(defs);
    const liveKeys = new Set(this.table.list().map((i) => encodeLbKey(lbKeyOf(i.def)).toString('hex')));
    for (const k of oldKeys) if (!liveKeys.has(k.toString('hex'))) svc.delete(k);
    const liveTables = new Set(this.table.list().map((i) => i.table));
    const liveBackends = new Set(this.table.list().flatMap((i) => Object.values(i.backendIds)));
    for (const k of oldTables) if (!liveTables.has(k.readUInt32LE(0))) tab.delete(k);
    for (const k of oldBackends) if (!liveBackends.has(k.readUInt32LE(0))) be.delete(k);
  }

  private writeNatRules(): void {
    const rules = this.map<number, unknown>('tsbpf_nat_rules');
    this.definition.nat.forEach((r, i) => {
      const ifindex = r.ifname === undefined ? 0 : (this.interfaces[r.ifname] ?? 0xffffffff);
      rules.set(i, natRuleToRecord(natRuleRecord(r, ifindex)));
    });
  }

  /** The address masquerade gives connections leaving through `ifindex`. */
  setIfaddr(ifindex: number, a: { v4?: string; v6?: string }): void {
    const v6: Words = a.v6 ? addrWords(a.v6) : [0, 0, 0, 0];
    this.map('tsbpf_nat_ifaddr').set(ifindex, { v4: a.v4 ? addrWords(a.v4)[0] : 0, v6, has4: a.v4 ? 1 : 0, has6: a.v6 ? 1 : 0, _pad: 0 });
  }

  // -------------------------------------------------------------------------
  // Attaching

  /**
   * Attach at TC on an interface (both hooks by default). NAT rules that
   * name interfaces are resolved in the same netns, and the interface's
   * addresses become its masquerade addresses.
   */
  attach(options: ServicesAttachOptions): Attachment[] {
    const xdp = this.compiled.programs.some((p) => p.hook === 'xdp');
    if (xdp && options.hooks) throw new TsbpfError('INVALID_ARGUMENT', `services '${this.name}' was loaded for XDP: it has no tc hooks`, { hint: "load it without hook: 'xdp' for tc" });
    if (!xdp && options.mode) throw new TsbpfError('INVALID_ARGUMENT', 'mode is an XDP option', { hint: "load with hook: 'xdp' for an XDP program" });
    const hooks: Array<'tc-ingress' | 'tc-egress' | 'xdp'> = xdp ? ['xdp'] : (options.hooks ?? ['tc-ingress', 'tc-egress']);
    let changed = false;
    for (const r of this.definition.nat) {
      if (r.ifname === undefined || this.interfaces[r.ifname] !== undefined) continue;
      try {
        this.interfaces[r.ifname] = native().ifIndex(r.ifname, options.netns);
        changed = true;
      } catch {
        /* not in this netns: the rule stays unresolved (it matches nothing) */
      }
    }
    if (changed) this.writeNatRules();
    const ifindex = native().ifIndex(options.ifname, options.netns);
    const addrs = interfaceAddresses(options.ifname, options.netns);
    if (addrs.v4 || addrs.v6) this.setIfaddr(ifindex, addrs);
    const out: Attachment[] = [];
    try {
      for (const hook of hooks) {
        const program = this.compiled.programs.find((p) => p.hook === hook && p.kind !== 'bench')!.name;
        out.push(
          this.object.attach({
            program,
            hook,
            ifname: options.ifname,
            ...(options.netns ? { netns: options.netns } : {}),
            ...(options.priority && !xdp ? { priority: options.priority } : {}),
            ...(options.mode ? { mode: options.mode } : {}),
          }),
        );
      }
    } catch (e) {
      for (const a of out) a.detach();
      throw e;
    }
    this.attachments.push(...out);
    return out;
  }

  /**
   * Socket-level load balancing for every process in a cgroup v2 directory
   * (needs `socketLb: true`): connect/sendmsg get a backend, recvmsg and
   * getpeername show the VIP. Attached with bpftool (the native addon has no
   * cgroup attach yet); close() detaches.
   */
  attachCgroup(cgroupPath: string): void {
    if (!this.definition.socketLb) {
      throw new TsbpfError('INVALID_ARGUMENT', `services '${this.name}' has no socket programs`, { hint: 'build it with services(name, { socketLb: true })' });
    }
    const done: Array<{ path: string; attach: SockAttach; progId: number }> = [];
    try {
      for (const attach of SOCK_ATTACH) {
        const prog = this.object.program(this.compiled.programs.find((p) => p.hook === attach)!.name);
        bpftool(['cgroup', 'attach', cgroupPath, attach, 'id', String(prog.id), 'multi']);
        done.push({ path: cgroupPath, attach, progId: prog.id });
      }
    } catch (e) {
      for (const d of done) tryBpftool(['cgroup', 'detach', d.path, d.attach, 'id', String(d.progId)]);
      throw e;
    }
    this.cgroups.push(...done);
  }

  detach(): void {
    for (const a of this.attachments.splice(0)) if (a.attached) a.detach();
    for (const c of this.cgroups.splice(0)) tryBpftool(['cgroup', 'detach', c.path, c.attach, 'id', String(c.progId)]);
  }

  // -------------------------------------------------------------------------
  // Services

  /** Add or replace one service (by VIP, port and protocol): atomic for packets. */
  upsertService(def: ServiceDef): void;
  upsertService(name: string, spec: ServiceSpec): void;
  upsertService(a: ServiceDef | string, spec?: ServiceSpec): void {
    const def = typeof a === 'string' ? serviceDef(a, spec!) : a;
    this.applyChanges(this.table.upsert(def));
  }

  /** Add or replace many services with batched map updates (each service still changes atomically). */
  upsertServices(defs: readonly ServiceDef[]): void {
    // In chunks of whole services: fewer change records alive at once (less for the GC to
    // copy), and each service still has its backends and table written before its entry.
    const CHUNK = 256;
    for (let at = 0; at < defs.length; at += CHUNK) {
      const changes: LbChange[] = [];
      for (let i = at; i < Math.min(defs.length, at + CHUNK); i++) for (const c of this.table.upsert(defs[i]!)) changes.push(c);
      this.applyChanges(changes, true);
    }
  }

  deleteService(ref: string | { vip: string; port: number; protocol: 'tcp' | 'udp' }): boolean {
    const changes = this.table.delete(ref);
    this.applyChanges(changes);
    return changes.length > 0;
  }

  /** Add or change one backend of a service (weight, readiness). */
  setBackend(service: string, backend: { addr: string; port?: number; weight?: number; ready?: boolean }): void {
    const def = this.requireService(service);
    const port = backend.port ?? def.port;
    const i = def.backends.findIndex((b) => b.addr === backend.addr && b.port === port);
    const prev = i >= 0 ? def.backends[i]! : { addr: backend.addr, port, weight: 1, ready: true };
    const next = { ...prev, ...(backend.weight !== undefined ? { weight: backend.weight } : {}), ...(backend.ready !== undefined ? { ready: backend.ready } : {}) };
    if (i >= 0) def.backends[i] = next;
    else def.backends.push(next);
    this.upsertService(def);
  }

  /** Remove a backend from a service: no new connections go to it; existing ones keep it. */
  removeBackend(service: string, addr: string, port?: number): boolean {
    const def = this.requireService(service);
    const p = port ?? def.port;
    const n = def.backends.length;
    def.backends = def.backends.filter((b) => !(b.addr === addr && b.port === p));
    if (def.backends.length === n) return false;
    this.upsertService(def);
    return true;
  }

  services(): ServiceInfo[] {
    return this.table.list();
  }

  private requireService(name: string): ServiceDef {
    const def = this.table.get(name);
    if (!def) throw new TsbpfError('INVALID_ARGUMENT', `no service named '${name}'`, { hint: `services: ${this.table.list().map((s) => s.def.name).join(', ') || 'none'}` });
    return def;
  }

  /** Write changes in order; `batched` groups them by phase (backends, tables, services, deletions). */
  private applyChanges(changes: readonly LbChange[], batched = false): void {
    const svc = this.map('tsbpf_lb_services').raw;
    const be = this.map('tsbpf_lb_backends').raw;
    const tab = this.map('tsbpf_lb_tables').raw;
    const tableValue = (ids: Uint32Array) => Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
    if (!batched) {
      for (const c of changes) {
        if (c.map === 'services') {
          if (c.op === 'set') svc.set(encodeLbKey(c.key), encodeService(c.value));
          else svc.delete(encodeLbKey(c.key));
        } else if (c.map === 'backends') {
          if (c.op === 'set') be.set(encodeU32(c.id), encodeBackend(c.value));
          else be.delete(encodeU32(c.id));
        } else if (c.op === 'set') tab.set(encodeU32(c.id), tableValue(c.value));
        else tab.delete(encodeU32(c.id));
      }
      return;
    }
    // Phases: backends, tables, services, deletions; each set phase one key buffer and one value
    // buffer straight to BPF_MAP_UPDATE_BATCH (a service delete flushes the sets before it).
    let nBe = 0;
    let nTab = 0;
    for (const c of changes) {
      if (c.op !== 'set') continue;
      if (c.map === 'backends') nBe++;
      else if (c.map === 'tables') nTab++;
    }
    const m = this.definition.lb.tableSize;
    const beKeys = Buffer.allocUnsafe(4 * nBe);
    const beValues = Buffer.alloc(28 * nBe);
    const tabKeys = Buffer.allocUnsafe(4 * nTab);
    const tabValues = Buffer.allocUnsafe(4 * m * nTab);
    let i = 0;
    let j = 0;
    for (const c of changes) {
      if (c.op !== 'set') continue;
      if (c.map === 'backends') {
        beKeys.writeUInt32LE(c.id >>> 0, 4 * i);
        encodeBackend(c.value, beValues, 28 * i++);
      } else if (c.map === 'tables') {
        tabKeys.writeUInt32LE(c.id >>> 0, 4 * j);
        tableValue(c.value).copy(tabValues, 4 * m * j++);
      }
    }
    batchUpdate(this.map('tsbpf_lb_backends'), beKeys, beValues, nBe);
    batchUpdate(this.map('tsbpf_lb_tables'), tabKeys, tabValues, nTab);
    const svcMap = this.map('tsbpf_lb_services');
    let run: Array<Extract<LbChange, { map: 'services'; op: 'set' }>> = [];
    const flush = () => {
      const keys = Buffer.alloc(20 * run.length);
      const values = Buffer.alloc(16 * run.length);
      run.forEach((c, k) => {
        encodeLbKey(c.key, keys, 20 * k);
        encodeService(c.value, values, 16 * k);
      });
      batchUpdate(svcMap, keys, values, run.length);
      run = [];
    };
    for (const c of changes) {
      if (c.map !== 'services') continue;
      if (c.op === 'set') run.push(c);
      else {
        flush();
        svc.delete(encodeLbKey(c.key));
      }
    }
    flush();
    for (const c of changes) {
      if (c.op !== 'delete' || c.map === 'services') continue;
      (c.map === 'tables' ? tab : be).delete(encodeU32(c.id));
    }
  }

  // -------------------------------------------------------------------------
  // Conntrack

  /** The conntrack map (runtime/conntrack.ts). */
  private get ct(): ConntrackMap {
    return new ConntrackMap(this.map('tsbpf_ct'));
  }

  /** Every entry of the conntrack map, decoded (primaries and aliases). */
  conntrackTable(): ConntrackTable {
    return this.ct.table();
  }

  /** Tracked connections matching `filter` (expired ones only with `expired: true`). */
  conntrack(filter: CtFilter = {}, now = monotonicNs()): CtConnection[] {
    return this.ct.list(filter, now);
  }

  /** Delete connections (all their keys); returns how many. */
  ctDelete(which: CtFilter | CtConnection | CtConnection[]): number {
    return this.ct.delete(which);
  }

  /** Delete every entry. */
  ctFlush(): number {
    return this.ct.flush();
  }

  /**
   * Garbage collection: delete expired connections (with their NAT keys) and
   * aliases left without a live connection. Returns the number of entries
   * deleted. The LRU map also evicts the oldest entries when it is full.
   */
  gc(now = monotonicNs()): number {
    return this.ct.gc(now);
  }

  // -------------------------------------------------------------------------
  // Observing

  /** Datapath counters, summed over CPUs. */
  stats(): Record<SvcStat, bigint> {
    const m = this.map<number, bigint[]>('tsbpf_svc_stats');
    const out = {} as Record<SvcStat, bigint>;
    SVC_STATS.forEach((name, i) => {
      out[name] = (m.get(i) ?? []).reduce((s, x) => s + x, 0n);
    });
    return out;
  }

  /** Events (NAT ports exhausted, a service without backends, tuple clashes), on the event loop. */
  onEvent(callback: (e: ServiceEvent & { tsNs: bigint }) => void): RingBuffer<Buffer> {
    return this.object.ringBuffer('tsbpf_svc_events', (raw: Buffer) => callback(eventFromRecord(SVC_EVENT.decode(raw, 0))));
  }

  /** Run one packet through the ingress, egress or XDP program (BPF_PROG_TEST_RUN; the device is lo, ifindex 1). */
  testRun(hook: 'tc-ingress' | 'tc-egress' | 'xdp', data: Buffer, options: { repeat?: number } = {}): ServicesTestRun {
    const prog = this.compiled.programs.find((p) => p.hook === hook && p.kind !== 'bench');
    if (!prog) throw new TsbpfError('INVALID_ARGUMENT', `services '${this.name}' has no ${hook} program`, { hint: `it has: ${this.compiled.programs.map((p) => p.hook).join(', ')}` });
    const r = this.object.testRun(prog.name, { data, ...(options.repeat ? { repeat: options.repeat } : {}) });
    // TC_ACT_SHOT is 2; XDP_DROP is 1 (XDP_ABORTED 0 drops too).
    const drop = hook === 'xdp' ? r.retval <= 1 : r.retval === 2;
    return { ...r, action: drop ? 'drop' : hook !== 'xdp' && r.retval === 7 ? 'loop' : 'accept' };
  }

  /** Pin every map (and program) under `dir` on bpffs: `tsbpf ct list --pin DIR` reads the conntrack table there. */
  pin(dir: string): void {
    this.object.pin(dir);
  }

  unpin(): void {
    this.object.unpin();
  }

  close(): void {
    try {
      this.detach();
    } finally {
      this.object.close();
    }
  }
}

/** BPF_MAP_UPDATE_BATCH of `count` entries already laid out back to back (one update each where batches are missing). */
function batchUpdate(map: BpfMap<unknown, unknown>, keys: Buffer, values: Buffer, count: number): void {
  if (count === 0) return;
  try {
    native().mapUpdateBatch(map.fd, keys, values, count, 0);
  } catch (e) {
    const ks = map.keySize;
    const vs = map.valueSize;
    if ((e as { updated?: number }).updated) throw wrapNative(e, { code: 'MAP_OP_FAILED', what: `batch update of map '${map.name}'` });
    for (let i = 0; i < count; i++) map.raw.set(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
  }
}

/** Compile (cached) and load a services program, write its settings and initial services. */
export function loadServices(def: ServicesDefinition, options: LoadServicesOptions = {}): LoadedServices {
  const compiled = compileServices(def, options);
  const object = load(compiled.object, {
    name: def.name,
    layouts: compiled.layouts,
    ...(options.pinRoot ? { pinRoot: options.pinRoot } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
  });
  try {
    const s = new LoadedServices(object, compiled, options);
    s.writeConfig(options.ifaddrs);
    if (options.pinRoot) s.adoptPinned(def.services);
    else if (def.services.length) s.upsertServices(def.services);
    return s;
  } catch (e) {
    object.close();
    throw e;
  }
}

/** The first IPv4 and IPv6 (global) address of an interface, read with `ip -j addr`. */
export function interfaceAddresses(ifname: string, netns?: string): { v4?: string; v6?: string } {
  try {
    const args = [...(netns ? ['-n', netns] : []), '-j', 'addr', 'show', 'dev', ifname];
    const j = JSON.parse(execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{ addr_info?: Array<{ family: string; local: string; scope: string }> }>;
    const infos = j[0]?.addr_info ?? [];
    const v4 = infos.find((a) => a.family === 'inet')?.local;
    const v6 = infos.find((a) => a.family === 'inet6' && a.scope === 'global')?.local;
    return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
  } catch {
    return {};
  }
}

function bpftool(args: string[]): string {
  try {
    return execFileSync('bpftool', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; code?: string };
    if (err.code === 'ENOENT') throw new TsbpfError('ENV_MISSING', 'bpftool is needed to attach socket programs to a cgroup', { hint: 'npx tsbpf setup', cause: e });
    throw new TsbpfError('ATTACH_FAILED', `bpftool ${args.join(' ')} failed: ${String(err.stderr ?? '').trim()}`, { cause: e });
  }
}

function tryBpftool(args: string[]): void {
  try {
    bpftool(args);
  } catch {
    /* already gone */
  }
}

export type { CtKey };
