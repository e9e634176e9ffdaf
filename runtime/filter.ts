/**
 * loadFilter(): a DSL filter compiled, loaded and ready: the object plus what
 * codegen knows about it (rule table, sets, interface slots), so a user works
 * in terms of rules and sets rather than maps and return codes.
 */
import { compile, type CompileOptions, type CompileResult } from '../codegen/compile.js';
import { setKey } from '../codegen/maps.js';
import { LOG_EVENT, VERDICT_CODE } from '../codegen/layouts.js';
import type { DefinitionLike } from '../sdk/dsl/filter.js';
import { TsbpfError, VerifierError } from '../sdk/errors.js';
import { verifierError } from '../codegen/verifier.js';
import { encode, formatIpv6, u32, u8 } from '../sdk/layout.js';
import type { Hook, SetDecl, Verdict } from '../sdk/model.js';
import type { Attachment, AttachOptions, XdpMode } from './attach.js';
import type { BpfMap } from './map.js';
import { native } from './native.js';
import { load, type LoadOptions } from './load.js';
import type { BpfObject } from './object.js';
import type { RingBuffer } from './ringbuf.js';
import type { SkbContext, TestRunResult } from './test-run.js';

export interface LoadFilterOptions extends CompileOptions {
  /** Reuse maps pinned under this directory (counters and sets survive a reload). */
  pinRoot?: string;
  logLevel?: LoadOptions['logLevel'];
  /** Interface indexes for rules that match interface names, when they are not resolved at attach. */
  interfaces?: Record<string, number>;
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
    private readonly map: BpfMap<unknown, unknown>,
  ) {}

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

export class LoadedFilter {
  readonly sets: Readonly<Record<string, FilterSet>>;

  constructor(
    readonly object: BpfObject,
    readonly compiled: CompileResult,
    private readonly interfaces: Record<string, number>,
  ) {
    const sets: Record<string, FilterSet> = {};
    for (const s of compiled.definition.sets) {
      const m = object.maps[s.name];
      if (m) sets[s.name] = new FilterSet(s, m);
    }
    this.sets = sets;
  }

  get name(): string {
    return this.compiled.definition.name;
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
    const opts: AttachOptions = { ...options, program: this.entryProgram(options.hook) };
    return this.object.attach(opts);
  }

  detach(attachment?: Attachment): void {
    this.object.detach(attachment);
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

  /** Per-rule packet and byte counters, summed over CPUs. */
  counters(): RuleCounter[] {
    const map = this.object.maps['tsbpf_counters'] as BpfMap<number, Array<{ packets: bigint; bytes: bigint }>> | undefined;
    return this.compiled.ruleTable.map((r) => {
      let packets = 0n;
      let bytes = 0n;
      const perCpu = map?.get(r.id);
      for (const c of perCpu ?? []) {
        packets += c.packets;
        bytes += c.bytes;
      }
      return { id: r.id, name: r.name, chain: r.chain, packets, bytes };
    });
  }

  /** Log events (rules with `.log()`), delivered on the event loop. */
  onLog(callback: (event: FilterLogEvent) => void): RingBuffer<Buffer> {
    if (!this.object.maps['tsbpf_events']) {
      throw new TsbpfError('MAP_NOT_FOUND', `filter '${this.name}' has no rule with .log(), so it sends no log events`);
    }
    return this.object.ringBuffer('tsbpf_events', (raw: Buffer) => {
      const e = LOG_EVENT.decode(raw, 0);
      const info = this.compiled.ruleTable[e.rule_id];
      const addr = (b: Buffer) => (e.family === 6 ? formatIpv6(b) : e.family === 4 ? [...b.subarray(0, 4)].join('.') : '');
      callback({
        ruleId: e.rule_id,
        rule: info?.name ?? `#${e.rule_id}`,
        prefix: info?.logPrefixes[e.action] ?? '',
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
    });
  }

  pin(dir: string): void {
    this.object.pin(dir);
  }

  close(): void {
    this.object.close();
  }

  private resolveInterfaces(netns: string | undefined): void {
    const slots = this.object.maps['tsbpf_ifindex'];
    if (!slots) return;
    this.compiled.ifnames.forEach((name, slot) => {
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
  const layouts = Object.fromEntries(compiled.maps.map((m) => [m.name, { ...(m.key ? { key: m.key } : {}), ...(m.value ? { value: m.value } : {}) }]));
  let object: BpfObject;
  try {
    object = load(compiled.object, {
      name: compiled.definition.name,
      layouts,
      ...(options.pinRoot ? { pinRoot: options.pinRoot } : {}),
      ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    });
  } catch (e) {
    // Say which stage, chain and rules the rejected program holds.
    if (e instanceof VerifierError) throw verifierError(compiled, e.program, e.log);
    throw e;
  }
  try {
    // Sets start with their declared elements, unless the maps came back from pins.
    for (const m of compiled.maps) {
      const bpf = object.maps[m.name];
      if (!bpf || !m.initial?.length) continue;
      for (const e of m.initial) if (!options.pinRoot || !bpf.raw.has(e.key)) bpf.raw.set(e.key, e.value);
    }
    const f = new LoadedFilter(object, compiled, options.interfaces ?? {});
    return f;
  } catch (e) {
    object.close();
    throw e;
  }
}
