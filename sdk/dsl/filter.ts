/**
 * `filter(name, { hook }, ({ chain, set, map }) => entryChain)`: declares
 * chains, sets and maps, assembles the model (rule ids, names, limit ids),
 * validates it and hands back a Filter whose `toModel()` is the Definition
 * codegen and the evaluator consume. Problems throw DslError at filter().
 */
import { DslError, type SourcePosition } from '../errors.js';
import { parseCidr } from '../addr.js';
import {
  MODEL_VERSION,
  type ActionDef,
  type ChainDef,
  type ChainPolicy,
  type ConntrackDef,
  type Definition,
  DEFAULT_CT_ENTRIES,
  ruleUsesCt,
  type Hook,
  type MapDecl,
  type ProgramDef,
  type RuleDef,
  type SetDecl,
} from '../model.js';
import { callerPosition } from '../source.js';
import { match } from './match.js';
import type { Ipv4Cidr, Ipv6Cidr } from '../addr.js';
import { isMapRef, isSetRef, MapRef, SetRef, type MapOptions, type SetType } from './refs.js';
import { RULE_DATA, rule, type RuleLike } from './rule.js';
import { throwProblems, validateDefinition, type Problem } from './validate.js';

export interface ChainOptions {
  /** Default: 'accept' for an entry chain, 'return' for the others. */
  policy?: ChainPolicy;
}

/** A chain being declared; add rules at declaration or later with `add`. */
export class Chain {
  /** @internal */
  readonly rules: RuleLike[] = [];
  /** @internal set when the filter has been built: later additions would be lost. */
  sealed = false;

  constructor(
    readonly name: string,
    readonly policy: ChainPolicy | undefined,
    readonly source: SourcePosition | undefined,
  ) {}

  /** Append rules (only while the filter's build function runs). */
  add(...rules: RuleLike[]): this {
    if (this.sealed) {
      throw new DslError(`rules can only be added to chain '${this.name}' while the filter's build function runs`, { source: callerPosition() });
    }
    // A loop, not push(...rules): a spread of 100,000 rules overflows the stack.
    for (const r of rules) this.rules.push(r);
    return this;
  }
}

export interface SetOptions<K extends SetType> {
  /** Capacity of the kernel map (default 1024). */
  maxEntries?: number;
  /** Initial contents. */
  elements?: ReadonlyArray<K extends 'port' ? number : K extends 'ipv4' ? Ipv4Cidr : Ipv6Cidr>;
}

/** What the build function gets. */
export interface FilterContext {
  /** Declare a chain; pass its rules now or add them later with `chain.add()`. */
  chain(name: string, options?: ChainOptions, rules?: readonly RuleLike[]): Chain;
  set: {
    /** A set of IPv4 addresses and CIDRs (an LPM trie). */
    ipv4(name: string, options?: SetOptions<'ipv4'>): SetRef<'ipv4'>;
    /** A set of IPv6 addresses and CIDRs (an LPM trie). */
    ipv6(name: string, options?: SetOptions<'ipv6'>): SetRef<'ipv6'>;
    /** A set of ports (a hash). */
    port(name: string, options?: SetOptions<'port'>): SetRef<'port'>;
  };
  /** Declare a typed user map. */
  map<K, V>(name: string, options: MapOptions<K, V>): MapRef<K, V>;
  rule: typeof rule;
  match: typeof match;
}

/** The entry chain for every hook, or one entry chain per hook. */
export type BuildResult = Chain | Partial<Record<Hook, Chain>>;

export interface FilterOptions {
  /** Hook(s) to build a program for; may be omitted when build returns a per-hook record. */
  hook?: Hook | readonly Hook[];
  /**
   * The filter's conntrack table (tc hooks only). A filter whose rules use
   * `match.ct`, `ctMark` or a NAT action gets one of DEFAULT_CT_ENTRIES
   * entries without asking; `true` or an object asks for one anyway (replies
   * of accepted connections are then accepted before the rules); `false`
   * refuses one (and ct rules are then an error).
   */
  conntrack?: boolean | { maxEntries?: number; timeouts?: ConntrackDef['timeouts']; tcpLoose?: boolean };
  /**
   * Sets and maps declared on their own (declareSet, declareMap) that this
   * filter has too: its rules can match against the sets, and function
   * programs that take the same values share the kernel maps with it.
   */
  uses?: ReadonlyArray<SetRef<any> | MapRef<any, any>>;
}

const FILTER = Symbol.for('tsbpf.dsl.filter');

/** A validated filter. */
export class Filter {
  /** @internal a brand that survives two copies of this module (see isFilter) */
  readonly [FILTER] = true;

  constructor(
    readonly definition: Definition,
    /** The sets by name, for run-time updates. */
    readonly sets: Readonly<Record<string, SetRef>>,
    /** The user maps by name. */
    readonly maps: Readonly<Record<string, MapRef>>,
  ) {}

  get name(): string {
    return this.definition.name;
  }

  /** The model for codegen and evaluate(). */
  toModel(): Definition {
    return this.definition;
  }
}

/** A Filter made by filter(), whichever copy of tsbpf made it (a user's file imported from the sources, tsbpf compiled). */
export function isFilter(x: unknown): x is Filter {
  return !!x && typeof x === 'object' && (x as { [FILTER]?: unknown })[FILTER] === true;
}

/** A Filter or a plain Definition: what compile() and evaluate() accept. */
export type DefinitionLike = Filter | Definition | { toModel(): Definition };

export function toDefinition(d: DefinitionLike): Definition {
  return 'toModel' in d && typeof d.toModel === 'function' ? d.toModel() : (d as Definition);
}

/** Declare a filter. Throws DslError (naming the rule and source position) when it is not valid. */
export function filter(name: string, options: FilterOptions, build: (ctx: FilterContext) => BuildResult): Filter;
export function filter(name: string, build: (ctx: FilterContext) => BuildResult): Filter;
export function filter(name: string, a: FilterOptions | ((ctx: FilterContext) => BuildResult), b?: (ctx: FilterContext) => BuildResult): Filter {
  const source = callerPosition();
  const options = typeof a === 'function' ? {} : a;
  const build = (typeof a === 'function' ? a : b)!;
  const chains: Chain[] = [];
  const sets: SetRef[] = [];
  const maps: MapRef[] = [];
  for (const u of options.uses ?? []) {
    if (isSetRef(u)) sets.push(u as SetRef);
    else if (isMapRef(u)) maps.push(u as MapRef);
    else throw new DslError('uses takes sets and maps made by declareSet() and declareMap()', { ...(source ? { source } : {}) });
  }
  let building = true;
  const declaredOutside = (what: string) => {
    if (!building) throw new DslError(`${what} can only be declared while the filter's build function runs`, { source: callerPosition() });
  };

  const ctx: FilterContext = {
    chain(chainName, opts = {}, rules = []) {
      declaredOutside('a chain');
      const c = new Chain(chainName, opts.policy, callerPosition());
      for (const r of rules) c.add(r);
      chains.push(c);
      return c;
    },
    set: {
      ipv4: (n, o = {}) => addSet(n, 'ipv4', o),
      ipv6: (n, o = {}) => addSet(n, 'ipv6', o),
      port: (n, o = {}) => addSet(n, 'port', o),
    },
    map(mapName, opts) {
      declaredOutside('a map');
      const m = new MapRef(mapName, opts, callerPosition());
      maps.push(m as MapRef);
      return m;
    },
    rule,
    match,
  };
  function addSet<K extends SetType>(n: string, type: K, o: SetOptions<K>): SetRef<K> {
    declaredOutside('a set');
    const s = new SetRef<K>(n, type, o.maxEntries ?? 1024, (o.elements ?? []) as never, callerPosition());
    sets.push(s as unknown as SetRef);
    return s;
  }

  const result = build(ctx);
  building = false;
  for (const c of chains) c.sealed = true;

  const problems: Problem[] = [];
  const programs: ProgramDef[] = [];
  const hooks = options.hook === undefined ? [] : typeof options.hook === 'string' ? [options.hook] : [...options.hook];
  if (result instanceof Chain) {
    if (hooks.length === 0) problems.push({ message: "no hook given: use filter(name, { hook: 'tc-ingress' }, ...)", source });
    for (const h of hooks) programs.push({ name: programName(name, h), hook: h, entry: result.name });
  } else if (result && typeof result === 'object') {
    for (const [h, c] of Object.entries(result) as Array<[Hook, Chain | undefined]>) {
      if (c instanceof Chain) programs.push({ name: programName(name, h), hook: h, entry: c.name });
      else problems.push({ message: `the entry for hook '${h}' is not a chain from chain()`, source });
    }
    if (programs.length === 0) problems.push({ message: 'the build function returned no entry chain', source });
  } else {
    problems.push({ message: 'the build function must return the entry chain (or one per hook)', source, hint: "end it with: return chain('input', { policy: 'drop' }, [...rules])" });
  }
  const entries = new Set(programs.map((p) => p.entry));

  let id = 0;
  let limitId = 0;
  const chainDefs: ChainDef[] = chains.map((c) => {
    const rules: RuleDef[] = c.rules.map((r, index) => {
      const data = (r as { [RULE_DATA]?: import('./rule.js').RuleData })?.[RULE_DATA];
      const ruleName = data?.name ?? `${c.name}#${index}`;
      if (!data) {
        problems.push({ message: `rule ${index} of chain '${c.name}' is not a rule() (got ${typeof r})`, rule: ruleName, source: c.source });
        return { id: id++, name: ruleName, chain: c.name, index, match: { kind: 'all' }, actions: [] };
      }
      for (const m of data.match.problems) problems.push({ message: m, rule: ruleName, source: data.source });
      const actions: ActionDef[] = data.actions.map((a) => (a.kind === 'limit' ? { ...a, limitId: limitId++ } : { ...a }));
      const def: RuleDef = { id: id++, name: ruleName, chain: c.name, index, match: data.match.expr, actions };
      if (data.comment !== undefined) def.comment = data.comment;
      if (data.source) def.source = data.source;
      return def;
    });
    const def: ChainDef = { name: c.name, policy: c.policy ?? (entries.has(c.name) ? 'accept' : 'return'), rules };
    if (c.source) def.source = c.source;
    return def;
  });

  const setDecls: SetDecl[] = sets.map((s) => {
    const d: SetDecl = {
      name: s.name,
      type: s.type,
      maxEntries: s.maxEntries,
      elements: s.elements.map((e) => {
        if (s.type === 'port' || typeof e !== 'string') return e;
        const c = parseCidr(e);
        return 'error' in c ? e : c.text;
      }),
    };
    if (s.source) d.source = s.source;
    return d;
  });
  const mapDecls: MapDecl[] = maps.map((m) => {
    const d: MapDecl = { name: m.name, kind: m.options.kind, maxEntries: m.options.maxEntries };
    if (m.options.key) d.key = m.options.key;
    if (m.options.value) d.value = m.options.value;
    if (m.source) d.source = m.source;
    return d;
  });

  const definition: Definition = { version: MODEL_VERSION, name, programs, chains: chainDefs, sets: setDecls, maps: mapDecls };
  if (source) definition.source = source;
  const ctOpt = options.conntrack;
  const usesCt = chainDefs.some((c) => c.rules.some(ruleUsesCt));
  if (ctOpt === false) {
    if (usesCt) problems.push({ message: 'rules use conntrack (ct matches, ctMark or NAT), but the filter says conntrack: false', source });
  } else if (ctOpt !== undefined || usesCt) {
    const o = typeof ctOpt === 'object' ? ctOpt : {};
    const ct: ConntrackDef = { maxEntries: o.maxEntries ?? DEFAULT_CT_ENTRIES };
    if (o.timeouts) ct.timeouts = { ...o.timeouts };
    if (o.tcpLoose !== undefined) ct.tcpLoose = o.tcpLoose;
    definition.conntrack = ct;
  }
  throwProblems(validateDefinition(definition, problems));
  return new Filter(
    definition,
    Object.fromEntries(sets.map((s) => [s.name, s])),
    Object.fromEntries(maps.map((m) => [m.name, m])),
  );
}

function programName(filterName: string, hook: Hook): string {
  return `${filterName}_${hook}`.replace(/[^A-Za-z0-9_]/g, '_');
}
