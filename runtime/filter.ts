/**
 * loadFilter(): a DSL filter compiled, loaded and ready: the object plus what
 * codegen knows about it (rule table, sets, interface slots), so a user works
 * in terms of rules and sets rather than maps and return codes. Its rules
 * change while it runs through `handle.rules` (runtime/rules.ts): a map
 * update when the ruleset keeps its shape, else a regenerated program
 * swapped in at its hooks; the handle follows (object, maps, sets, logs).
 */
import { compile, type CompileOptions, type CompileResult } from '../codegen/compile.js';
import { setKey } from '../codegen/maps.js';
import { LOG_EVENT, VERDICT_CODE } from '../codegen/layouts.js';
import type { DefinitionLike } from '../sdk/dsl/filter.js';
import { TsbpfError, VerifierError } from '../sdk/errors.js';
import { verifierError } from '../codegen/verifier.js';
import { encode, formatIpv6, u32, u8 } from '../sdk/layout.js';
import type { Definition, Hook, RuleDef, SetDecl, Verdict } from '../sdk/model.js';
import type { Attachment, AttachOptions, XdpMode } from './attach.js';
import type { BpfMap } from './map.js';
import { native } from './native.js';
import { wrapNative } from './errors.js';
import { load, type LoadOptions } from './load.js';
import type { BpfObject } from './object.js';
import type { RingBuffer } from './ringbuf.js';
import { LiveRules } from './rules.js';
import { randomInt } from 'node:crypto';
import { addrWords, type Words } from '../sdk/ct.js';
import type { FctEvent, FctStat } from '../sdk/ct-filter.js';
import { ConntrackMap, fctEventFromBytes, fctStats } from './conntrack.js';
import { interfaceAddresses } from './services.js';
import type { SkbContext, TestRunResult } from './test-run.js';

export interface LoadFilterOptions extends CompileOptions {
  /** Reuse maps pinned under this directory (counters and sets survive a reload). */
  pinRoot?: string;
  logLevel?: LoadOptions['logLevel'];
  /** Interface indexes by name for `ifname` matches and redirects: written at load (test runs see them); attach resolves the names not given. */
  interfaces?: Record<string, number>;
  /** Conntrack hash seed (SNAT port and address choice, DNAT ranges); default random. Give it to EvalState to compare. */
  conntrackSeed?: number;
  /** Masquerade addresses by ifindex, written at load (attach at tc-egress writes the interface's own). */
  ifaddrs?: Record<number, { v4?: string; v6?: string }>;
}

export interface FilterAttachOptions {
  hook: Hook;
  ifname: string;
  netns?: string;
  priority?: number;
  handle?: number;
  mode?: XdpMode;
  replace?: boolean;
  persistent?: boolean;
}

export interface FilterTestRun extends TestRunResult {
  /** The filter's verdict, in DSL terms. */
  filterVerdict: Verdict;
}

export interface RuleCounter {
  id: number;
  name: string;
  chain: string;
  packets: bigint;
  bytes: bigint;
}

export interface FilterLogEvent {
  ruleId: number;
  rule: string;
  prefix: string;
  /** What the rule decided: 'continue' for a rule that only logs. */
  verdict: Verdict | 'continue';
  /** 4 or 6 (0: not IP). */
  family: number;
  ifindex: number;
  mark: number;
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  len: number;
  /** bpf_ktime_get_ns() when the rule ran. */
  tsNs: bigint;
}

/** A set of a loaded filter, updatable while it runs (a map update, no reload). */
export class FilterSet {
  constructor(
    readonly decl: SetDecl,
    private map: BpfMap<unknown, unknown>,
  ) {}

  /** @internal the filter was regenerated: the same kernel map, through the new object. */
  rebind(map: BpfMap<unknown, unknown>): void {
    this.map = map;
  }

  get name(): string {
    return this.decl.name;
  }

  add(...elements: Array<string | number>): void {
    for (const e of elements) this.map.raw.set(setKey(this.decl.name, this.decl.type, e), encode(u8, 1));
  }

  delete(element: string | number): boolean {
    return this.map.raw.delete(setKey(this.decl.name, this.decl.type, element));
  }

  has(element: string | number): boolean {
    return this.map.raw.has(setKey(this.decl.name, this.decl.type, element));
  }

  /** Number of elements (walks the map). */
  get size(): number {
    let n = 0;
    for (const _ of this.map.raw.keys()) n++;
    return n;
  }

  clear(): void {
    for (const k of [...this.map.raw.keys()]) this.map.raw.delete(k);
  }
}

const VERDICT_NAME = Object.fromEntries(Object.entries(VERDICT_CODE).map(([k, v]) => [v, k])) as Record<number, Verdict | 'continue'>;
const TC_RETVAL: Record<number, Verdict> = { 0: 'accept', 2: 'drop', 7: 'redirect' };
const XDP_RETVAL: Record<number, Verdict> = { 1: 'drop', 2: 'accept', 3: 'reject', 4: 'redirect' };

/**
 * Log events of a filter: stays subscribed when a rule update regenerates the
 * program (the ring buffer is reopened on the new object's map, which is the
 * same kernel map).
 */
export class LogSubscription {
  #rb: RingBuffer<Buffer> | undefined;
  #closed = false;

  /** @internal */
  constructor(
    private readonly open: () => RingBuffer<Buffer>,
    private readonly owner: Set<LogSubscription>,
  ) {
    this.#rb = open();
    owner.add(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Delivers what is in the buffer now, synchronously; returns how many events. */
  consume(): number {
    if (!this.#rb || this.#rb.closed) throw new TsbpfError('CLOSED', 'the log subscription is closed');
    return this.#rb.consume();
  }

  /** Let the process exit while subscribed. */
  unref(): this {
    this.#rb?.unref();
    return this;
  }

  ref(): this {
    this.#rb?.ref();
    return this;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.owner.delete(this);
    this.#rb?.close();
    this.#rb = undefined;
  }

  /** @internal the filter's object changed: drain the old buffer, then read the new one. */
  reopen(): void {
    if (this.#closed) return;
    const old = this.#rb;
    try {
      if (old && !old.closed) old.consume();
    } catch {
      /* the old one is going away anyway */
    }
    this.#rb = this.open();
    old?.close();
  }
}

export class LoadedFilter {
  readonly sets: Readonly<Record<string, FilterSet>>;
  #object: BpfObject;
  #compiled: CompileResult;
  #live: LiveRules | undefined;
  readonly #logs = new Set<LogSubscription>();

  constructor(
    object: BpfObject,
    compiled: CompileResult,
    private readonly interfaces: Record<string, number>,
    /** @internal what it was loaded with: regenerations compile and load the same way. */
    readonly loadOptions: LoadFilterOptions = {},
  ) {
    this.#object = object;
    this.#compiled = compiled;
    const sets: Record<string, FilterSet> = {};
    for (const s of compiled.definition.sets) {
      const m = object.maps[s.name];
      if (m) sets[s.name] = new FilterSet(s, m);
    }
    this.sets = sets;
  }

  /** The loaded object (a new one after a rule update that changed the ruleset's shape). */
  get object(): BpfObject {
    return this.#object;
  }

  /** What the object was compiled from (its definition is the one at the last regeneration). */
  get compiled(): CompileResult {
    return this.#compiled;
  }

  /** The ruleset as it is now, live updates included: what evaluate() must be given to agree with the kernel. */
  get definition(): Definition {
    return this.#live?.definition ?? this.#compiled.definition;
  }

  /**
   * Change rules while the filter runs: `rules.add(rule, { chain, position })`,
   * `rules.remove(name)`, `rules.replace(name, rule)`, `rules.update([...])`.
   * See runtime/rules.ts and docs/classification.md.
   */
  get rules(): LiveRules {
    return (this.#live ??= new LiveRules(this));
  }

  get name(): string {
    return this.#compiled.definition.name;
  }

  get maps(): BpfObject['maps'] {
    return this.object.maps;
  }

  /** The BPF program attached at `hook` (the entry of its tail-call chain). */
  entryProgram(hook: Hook): string {
    const p = this.compiled.programs.find((x) => x.hook === hook && x.entry);
    if (!p) {
      const have = [...new Set(this.compiled.programs.map((x) => x.hook))].join(', ');
      throw new TsbpfError('PROGRAM_NOT_FOUND', `filter '${this.name}' has no program for hook ${hook} (it has: ${have})`, {
        hint: `build the filter with { hook: '${hook}' }`,
      });
    }
    return p.name;
  }

  /** Attach the hook's entry program; interface names that rules match are resolved in the same netns. */
  attach(options: FilterAttachOptions): Attachment {
    this.resolveInterfaces(options.netns);
    // Masquerade at egress translates to this interface's own address: read it now.
    if (options.hook === 'tc-egress' && this.hasConntrack && this.definition.chains.some((c) => c.rules.some((r) => r.actions.some((a) => a.kind === 'masquerade')))) {
      const a = interfaceAddresses(options.ifname, options.netns);
      if (a.v4 || a.v6) this.setIfaddr(native().ifIndex(options.ifname, options.netns), a);
    }
    const opts: AttachOptions = { ...options, program: this.entryProgram(options.hook) };
    return this.object.attach(opts);
  }

  detach(attachment?: Attachment): void {
    this.object.detach(attachment);
  }

  // -------------------------------------------------------------------------
  // Conntrack (filters whose rules use match.ct, ctMark or NAT)

  /** Whether the filter has a conntrack table. */
  get hasConntrack(): boolean {
    return this.definition.conntrack !== undefined && this.object.maps['tsbpf_ct'] !== undefined;
  }

  /** The hash seed the datapath uses (written at load). */
  get conntrackSeed(): number {
    return this.#ctSeed;
  }

  #ctSeed = 0;

  /**
   * The filter's conntrack table: `list(filter)`, `delete(...)`, `flush()`,
   * `gc()` (runtime/conntrack.ts), the same entries `tsbpf ct` shows.
   */
  get conntrack(): ConntrackMap {
    const m = this.object.maps['tsbpf_ct'];
    if (!m) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.name}' has no conntrack table`, { hint: 'use match.ct, ctMark or a NAT action in a rule, or filter(name, { conntrack: true }, ...)' });
    return new ConntrackMap(m);
  }

  /** Conntrack counters (new connections, replies accepted before the rules, translations, NAT drops), summed over CPUs. */
  conntrackStats(): Record<FctStat, bigint> {
    const m = this.object.maps['tsbpf_fct_stats'];
    if (!m) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.name}' has no conntrack table`);
    return fctStats(m);
  }

  /** `nat-exhausted` events (an SNAT or masquerade rule without a free port), on the event loop. */
  onConntrackEvent(callback: (e: FctEvent & { tsNs: bigint; text: string }) => void): RingBuffer<Buffer> {
    if (!this.object.maps['tsbpf_fct_events']) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.name}' has no SNAT or masquerade rule, so no conntrack events`);
    return this.object.ringBuffer('tsbpf_fct_events', (raw: Buffer) => callback(fctEventFromBytes(raw)));
  }

  /** The address masquerade gives connections leaving through `ifindex` (attach at tc-egress writes it from the interface). */
  setIfaddr(ifindex: number, a: { v4?: string; v6?: string }): void {
    const m = this.object.maps['tsbpf_nat_ifaddr'];
    if (!m) throw new TsbpfError('INVALID_ARGUMENT', `filter '${this.name}' has no conntrack table`);
    const v6: Words = a.v6 ? addrWords(a.v6) : [0, 0, 0, 0];
    m.set(ifindex, { v4: a.v4 ? addrWords(a.v4)[0] : 0, v6, has4: a.v4 ? 1 : 0, has6: a.v6 ? 1 : 0, _pad: 0 });
  }

  /** @internal write the conntrack seed (load) and the masquerade addresses given. */
  writeConntrackConfig(seed: number | undefined, ifaddrs: LoadFilterOptions['ifaddrs'] = {}): void {
    const m = this.object.maps['tsbpf_ct_config'] as BpfMap<number, Record<string, unknown>> | undefined;
    const spec = this.compiled.maps.find((x) => x.name === 'tsbpf_ct_config');
    if (!m || !spec?.value || !spec.initial?.[0]) return;
    // Timeouts and flags from this definition; a seed kept from pinned maps (a reload) unless one is given.
    const want = spec.value.decode(spec.initial[0].value, 0) as Record<string, unknown>;
    const kept = Number(m.get(0)?.seed ?? 0);
    this.#ctSeed = seed ?? (kept !== 0 ? kept : randomInt(1, 0xffffffff));
    m.set(0, { ...want, seed: this.#ctSeed });
    for (const [ifindex, a] of Object.entries(ifaddrs)) this.setIfaddr(Number(ifindex), a);
  }

  /** Run one packet through the hook's program in the kernel (BPF_PROG_TEST_RUN). */
  testRun(hook: Hook, data: Buffer, options: { mark?: number; ifindex?: number; repeat?: number } = {}): FilterTestRun {
    const ctx: SkbContext | undefined =
      hook !== 'xdp' && (options.mark || options.ifindex) ? { ...(options.mark ? { mark: options.mark } : {}), ...(options.ifindex ? { ifindex: options.ifindex } : {}) } : undefined;
    const r = this.object.testRun(this.entryProgram(hook), { data, ...(ctx ? { ctx } : {}), ...(options.repeat ? { repeat: options.repeat } : {}) });
    let filterVerdict: Verdict;
    if (hook === 'xdp') filterVerdict = XDP_RETVAL[r.retval] ?? 'drop';
    // At TC a reject leaves as a redirect of the rewritten packet: tell them apart by the bytes.
    else if (r.retval === 7) filterVerdict = r.data.equals(data) ? 'redirect' : 'reject';
    else filterVerdict = TC_RETVAL[r.retval] ?? 'drop';
    return { ...r, filterVerdict };
  }

  /** Per-rule packet and byte counters, summed over CPUs (rules as they are now; a rule keeps its counters across updates). */
  counters(): RuleCounter[] {
    const map = this.object.maps['tsbpf_counters'] as BpfMap<number, Array<{ packets: bigint; bytes: bigint }>> | undefined;
    const rules = this.definition.chains.flatMap((c) => c.rules);
    // Large rulesets: one batch read instead of a lookup per rule.
    let all: Map<number, Array<{ packets: bigint; bytes: bigint }>> | undefined;
    if (map && rules.length > 256) all = new Map(map.lookupBatch() as Array<[number, Array<{ packets: bigint; bytes: bigint }>]>);
    return rules.map((r) => {
      let packets = 0n;
      let bytes = 0n;
      const slot = this.slotOf(r.id);
      const perCpu = all ? all.get(slot) : map?.get(slot);
      for (const c of perCpu ?? []) {
        packets += c.packets;
        bytes += c.bytes;
      }
      return { id: r.id, name: r.name, chain: r.chain, packets, bytes };
    });
  }

  /** @internal the counter and log slot of a rule (its id until live updates move ids). */
  slotOf(ruleId: number): number {
    return this.#live ? this.#live.slotOf(ruleId) : this.#compiled.ruleSlots?.[ruleId] ?? ruleId;
  }

  /** @internal the rule holding a slot now. */
  ruleOfSlot(slot: number): RuleDef | undefined {
    if (this.#live) return this.#live.ruleOfSlot(slot);
    const slots = this.#compiled.ruleSlots;
    const id = slots ? slots.indexOf(slot) : slot;
    return this.#compiled.definition.chains.flatMap((c) => c.rules)[id];
  }

  /**
   * @internal swap in a regenerated object (runtime/rules.ts has already moved
   * the attachments to it): sets and log subscriptions follow, the old object closes.
   */
  swap(object: BpfObject, compiled: CompileResult): void {
    const old = this.#object;
    this.#object = object;
    this.#compiled = compiled;
    for (const s of Object.values(this.sets)) {
      const m = object.maps[s.name];
      if (m) s.rebind(m);
    }
    for (const l of [...this.#logs]) l.reopen();
    old.close();
  }

  /** Log events (rules with `.log()`), delivered on the event loop; the subscription survives rule updates. */
  onLog(callback: (event: FilterLogEvent) => void): LogSubscription {
    if (!this.object.maps['tsbpf_events']) {
      throw new TsbpfError('MAP_NOT_FOUND', `filter '${this.name}' has no rule with .log(), so it sends no log events`);
    }
    const deliver = (raw: Buffer) => {
      const e = LOG_EVENT.decode(raw, 0);
      // Events carry the rule's slot: the rule that holds it now.
      const rule = this.ruleOfSlot(e.rule_id);
      const action = rule?.actions[e.action];
      const addr = (b: Buffer) => (e.family === 6 ? formatIpv6(b) : e.family === 4 ? [...b.subarray(0, 4)].join('.') : '');
      callback({
        ruleId: rule?.id ?? e.rule_id,
        rule: rule?.name ?? `#${e.rule_id}`,
        prefix: action?.kind === 'log' ? (action.prefix ?? '') : '',
        verdict: VERDICT_NAME[e.verdict] ?? 'continue',
        family: e.family,
        ifindex: e.ifindex,
        mark: e.mark,
        proto: e.proto,
        src: addr(e.src),
        dst: addr(e.dst),
        sport: e.sport,
        dport: e.dport,
        len: e.len,
        tsNs: e.ts_ns,
      });
    };
    return new LogSubscription(() => this.object.ringBuffer('tsbpf_events', deliver), this.#logs);
  }

  pin(dir: string): void {
    this.object.pin(dir);
  }

  close(): void {
    for (const l of [...this.#logs]) l.close();
    this.object.close();
  }

  /** @internal write the slots of the interface names given in `interfaces` (others stay 0: no match). */
  writeKnownInterfaces(object: BpfObject = this.object, compiled: CompileResult = this.compiled): void {
    const slots = object.maps['tsbpf_ifindex'];
    if (!slots) return;
    compiled.ifnames.forEach((name, slot) => {
      const idx = this.interfaces[name];
      if (idx !== undefined) slots.raw.set(encode(u32, slot), encode(u32, idx));
    });
  }

  /** @internal write the interface slots of an object (this one's by default), names resolved in `netns`. */
  resolveInterfaces(netns: string | undefined, object: BpfObject = this.object, compiled: CompileResult = this.compiled): void {
    const slots = object.maps['tsbpf_ifindex'];
    if (!slots) return;
    compiled.ifnames.forEach((name, slot) => {
      let idx = this.interfaces[name];
      if (idx === undefined) {
        try {
          idx = native().ifIndex(name, netns);
        } catch {
          idx = 0; // an interface that does not exist matches nothing
        }
      }
      slots.raw.set(encode(u32, slot), encode(u32, idx));
    });
  }
}

/** Compile a filter (cached by content) and load it into the kernel. */
export function loadFilter(filter: DefinitionLike, options: LoadFilterOptions = {}): LoadedFilter {
  const compiled = compile(filter, options);
  const object = loadCompiled(compiled, options);
  try {
    const f = new LoadedFilter(object, compiled, options.interfaces ?? {}, options);
    // Names given up front hold from the start, so test runs see them too (attach resolves the rest).
    f.writeKnownInterfaces();
    f.writeConntrackConfig(options.conntrackSeed, options.ifaddrs);
    return f;
  } catch (e) {
    object.close();
    throw e;
  }
}

/**
 * Load a compiled filter and write the maps' initial contents. Maps in
 * `reuse` (name -> fd of a live map of the same shape) are taken over as
 * they are: their contents stay.
 */
export function loadCompiled(compiled: CompileResult, options: LoadFilterOptions, reuse: Record<string, number> = {}): BpfObject {
  const layouts = Object.fromEntries(compiled.maps.map((m) => [m.name, { ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}) }]));
  let object: BpfObject;
  try {
    object = load(compiled.object, {
      name: compiled.definition.name,
      layouts,
      ...(options.pinRoot ? { pinRoot: options.pinRoot } : {}),
      ...(options.logLevel ? { logLevel: options.logLevel } : {}),
      ...(Object.keys(reuse).length ? { reuseMaps: reuse } : {}),
    });
  } catch (e) {
    // Say which stage, chain and rules the rejected program holds.
    if (e instanceof VerifierError) throw verifierError(compiled, e.program, e.log);
    throw e;
  }
  try {
    // Sets start with their declared elements, unless the maps came back from pins or were handed over.
    for (const m of compiled.maps) {
      const bpf = object.maps[m.name];
      if (!bpf || reuse[m.name] !== undefined) continue;
      // Classifier contents come packed: one batch update however many rules.
      if (m.initialBatch) {
        writeBatch(bpf, m.initialBatch);
        continue;
      }
      if (!m.initial?.length) continue;
      for (const e of m.initial) if (!options.pinRoot || !bpf.raw.has(e.key)) bpf.raw.set(e.key, e.value);
    }
    return object;
  } catch (e) {
    object.close();
    throw e;
  }
}

/** Write packed entries with BPF_MAP_UPDATE_BATCH (entry by entry where the kernel has no batch op for the map). */
export function writeBatch(map: BpfMap<unknown, unknown>, batch: { keys: Buffer; values: Buffer; count: number }): void {
  if (batch.count === 0) return;
  try {
    native().mapUpdateBatch(map.fd, batch.keys, batch.values, batch.count, 0);
  } catch (e) {
    if ((e as { updated?: number }).updated) throw wrapNative(e, { code: 'MAP_OP_FAILED', what: `batch update of map '${map.name}'` });
    const ks = batch.keys.length / batch.count;
    const vs = batch.values.length / batch.count;
    for (let i = 0; i < batch.count; i++) map.raw.set(batch.keys.subarray(i * ks, (i + 1) * ks), batch.values.subarray(i * vs, (i + 1) * vs));
  }
}
