/**
 * The action half of the DSL: `rule(match).count().limit({ rate: 10 }).accept()`.
 * Builders are immutable (each call returns a new rule), so a half-built rule
 * can be reused as a prefix. A verdict or jump/goto/return ends the rule: the
 * returned FinalRule has no further action methods, so adding one fails in the
 * editor. Each rule records where `rule()` was called.
 */
import type { SourcePosition } from '../errors.js';
import type { ActionDef, LimitAction } from '../model.js';
import { INTERVAL_NS } from '../model.js';
import { parseCidr } from '../addr.js';
import { callerPosition } from '../source.js';
import { Match } from './match.js';

/** Something that names a chain: the handle from `chain()`, or its name. */
export type ChainRef = string | { readonly name: string };

export interface LimitOptions {
  /** Packets per `per` (a positive integer). */
  rate: number;
  /** The interval of `rate`; default 'second'. */
  per?: 'second' | 'minute' | 'hour' | 'day';
  /** Bucket size in packets (default 5, as iptables and nftables). */
  burst?: number;
  /** Match when the rate is exceeded instead of when under it (`limit rate over`). */
  over?: boolean;
  /** One bucket per source or destination address instead of one per rule. */
  by?: 'src' | 'dst';
  /** Buckets kept when `by` is set (LRU); default 65536. */
  maxKeys?: number;
}

/** An address, or an inclusive range of addresses: `'10.0.0.1'`, `'10.0.0.1-10.0.0.8'`, `['10.0.0.1', '10.0.0.8']`. */
export type AddrRangeSpec = string | readonly [string, string];
/** A port, or an inclusive range: `8080`, `[20000, 29999]`. */
export type PortRangeSpec = number | readonly [number, number];

export interface SnatOptions {
  /** Source address(es) to translate to. */
  to: AddrRangeSpec;
  /** Source ports to use (default: keep the port when free, else 1024-65535). */
  ports?: PortRangeSpec;
}

export interface DnatOptions {
  /** Destination address(es) (a range is spread by flow hash). */
  to: AddrRangeSpec;
  /** Destination port or range (default: keep the port). */
  port?: PortRangeSpec;
}

export interface MasqueradeOptions {
  /** Source ports to use (default as for snat). */
  ports?: PortRangeSpec;
}

/** Canonical address text ('fd00:0::1' -> 'fd00::1'); anything else is kept for validation to report. */
function canonicalAddr(text: string): string {
  if (text.includes('/')) return text;
  const c = parseCidr(text);
  return 'error' in c ? text : c.text.slice(0, c.text.indexOf('/'));
}

function addrRange(to: AddrRangeSpec): [string, string] {
  if (Array.isArray(to)) return [canonicalAddr(String(to[0])), canonicalAddr(String(to[1]))];
  const text = String(to);
  // IPv6 text has no '-', so a dash separates a range.
  const dash = text.indexOf('-');
  const [a, b] = dash < 0 ? [text.trim(), text.trim()] : [text.slice(0, dash).trim(), text.slice(dash + 1).trim()];
  return [canonicalAddr(a), canonicalAddr(b)];
}

function portRange(p: PortRangeSpec): [number, number] {
  return typeof p === 'number' ? [p, p] : [p[0], p[1]];
}

/** The action as written; jump/goto targets resolved to names at build. */
export type ActionSpec = Exclude<ActionDef, LimitAction> | Omit<LimitAction, 'limitId'>;

/** @internal What a rule holds; read by filter() when it assembles the model. */
export interface RuleData {
  readonly match: Match;
  readonly actions: readonly ActionSpec[];
  readonly name: string | undefined;
  readonly comment: string | undefined;
  readonly source: SourcePosition | undefined;
}

export const RULE_DATA: unique symbol = Symbol('tsbpf.rule');

/** A rule that ends in a verdict or jump/goto/return: only naming is left. */
export interface FinalRule {
  readonly [RULE_DATA]: RuleData;
  /** Give the rule a name (default `<chain>#<index>`). */
  named(name: string): FinalRule;
  /** Free text shown by explain and in the generated C. */
  comment(text: string): FinalRule;
}

export interface RuleOptions {
  name?: string;
  comment?: string;
}

export class RuleBuilder implements FinalRule {
  readonly [RULE_DATA]: RuleData;

  /** @internal use rule() */
  constructor(data: RuleData) {
    this[RULE_DATA] = data;
  }

  private with(action: ActionSpec): RuleBuilder {
    const d = this[RULE_DATA];
    return new RuleBuilder({ ...d, actions: [...d.actions, action] });
  }

  named(name: string): RuleBuilder {
    return new RuleBuilder({ ...this[RULE_DATA], name });
  }

  comment(text: string): RuleBuilder {
    return new RuleBuilder({ ...this[RULE_DATA], comment: text });
  }

  /** Count matching packets and bytes (per rule, per CPU). */
  count(): RuleBuilder {
    return this.with({ kind: 'count' });
  }

  /** Send an event with the rule id and the packet's 5-tuple to the filter's ring buffer. */
  log(prefix?: string): RuleBuilder {
    return this.with(prefix === undefined ? { kind: 'log' } : { kind: 'log', prefix });
  }

  /** Set the mark: mark = (mark & ~mask) | value. */
  mark(value: number, mask = 0xffffffff): RuleBuilder {
    return this.with({ kind: 'mark', value, mask });
  }

  /**
   * Token bucket: the rule continues only while under the rate (or only when
   * over it, with `over: true`). Acts as a match at this point of the actions.
   */
  limit(options: LimitOptions): RuleBuilder {
    const per = options.per ?? 'second';
    const rate = options.rate;
    const costNs = Number.isInteger(rate) && rate >= 1 ? Number(INTERVAL_NS[per] / BigInt(rate)) : 0;
    const spec: Omit<LimitAction, 'limitId'> = {
      kind: 'limit',
      rate,
      interval: per,
      burst: options.burst ?? 5,
      costNs,
      mode: options.over ? 'over' : 'under',
    };
    if (options.by) {
      spec.key = options.by === 'src' ? 'ip.src' : 'ip.dst';
      spec.maxKeys = options.maxKeys ?? 65536;
    }
    return this.with(spec);
  }

  /**
   * Set the connection's mark: ctmark = (ctmark & ~mask) | value. Stored in
   * the conntrack entry when the packet is accepted; later packets see it
   * with `match.ct.mark`.
   */
  ctMark(value: number, mask = 0xffffffff): RuleBuilder {
    return this.with({ kind: 'ctMark', value, mask });
  }

  accept(): FinalRule {
    return this.with({ kind: 'accept' });
  }

  /**
   * Accept and translate the connection's source address (and port) at
   * tc-egress; replies are translated back through conntrack.
   */
  snat(options: SnatOptions): FinalRule {
    return this.with({ kind: 'snat', to: addrRange(options.to), ...(options.ports !== undefined ? { ports: portRange(options.ports) } : {}) });
  }

  /** Accept and translate the connection's destination (a port forward) at tc-ingress. */
  dnat(options: DnatOptions): FinalRule {
    return this.with({ kind: 'dnat', to: addrRange(options.to), ...(options.port !== undefined ? { port: portRange(options.port) } : {}) });
  }

  /** Accept and translate the source to the address of the interface the packet leaves by (tc-egress). */
  masquerade(options: MasqueradeOptions = {}): FinalRule {
    return this.with({ kind: 'masquerade', ...(options.ports !== undefined ? { ports: portRange(options.ports) } : {}) });
  }

  drop(): FinalRule {
    return this.with({ kind: 'drop' });
  }

  /** TCP: answer with RST; otherwise ICMP/ICMPv6 port unreachable. The packet is dropped. */
  reject(): FinalRule {
    return this.with({ kind: 'reject' });
  }

  /** Send the packet out of another interface, by index or name. */
  redirect(target: number | string): FinalRule {
    return this.with(typeof target === 'number' ? { kind: 'redirect', ifindex: target } : { kind: 'redirect', ifname: target });
  }

  /** Run `chain`; continue with the next rule if it ends without a verdict. */
  jump(chain: ChainRef): FinalRule {
    return this.with({ kind: 'jump', chain: chainName(chain) });
  }

  /** Continue in `chain`, never coming back to this one. */
  goto(chain: ChainRef): FinalRule {
    return this.with({ kind: 'goto', chain: chainName(chain) });
  }

  /** Leave this chain (to the caller; in an entry chain the policy decides). */
  return(): FinalRule {
    return this.with({ kind: 'return' });
  }
}

function chainName(c: ChainRef): string {
  return typeof c === 'string' ? c : c?.name;
}

/** A rule. Without a match it applies to every packet. */
export function rule(m?: Match | RuleOptions, options?: RuleOptions): RuleBuilder {
  const source = callerPosition();
  let matchArg: Match | undefined;
  let opts: RuleOptions = options ?? {};
  if (m instanceof Match) matchArg = m;
  else if (m !== undefined) opts = m;
  return new RuleBuilder({
    match: matchArg ?? new Match({ kind: 'all' }),
    actions: [],
    name: opts.name,
    comment: opts.comment,
    source,
  });
}

export type RuleLike = FinalRule | RuleBuilder;
