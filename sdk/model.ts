/**
 * The filter model: what the DSL builds and what codegen and the reference
 * evaluator consume. Plain data (strings, numbers, arrays, plain objects), so it
 * can be hashed, serialised and diffed; the one exception is a user map's
 * key/value Layout, which carries its encoder (use `layout.size` / the layout's
 * own description when serialising).
 *
 * Semantics (docs/semantics.md is the long form):
 * - A program runs its entry chain. Rules run in order; a rule matches when its
 *   `match` holds; its actions then run in order. Non-terminal actions (count,
 *   log, mark) continue; a `limit` action stops the rule when it does not pass
 *   (as if the rule had not matched; actions before it have taken effect).
 *   The last action may be a verdict (accept, drop, reject, redirect: the packet's
 *   fate is decided) or a jump/goto/return.
 * - jump pushes a return point; when the called chain ends without a verdict
 *   (its policy is 'return', or a `return` rule) evaluation resumes after the
 *   jumping rule. goto replaces the current chain (no return point). `return` in
 *   an entry chain, or falling off its end, applies the entry chain's policy.
 * - Every field predicate on an absent field is false (see sdk/parse.ts for when
 *   a layer is present); `not` of it is therefore true.
 *
 * Stability: this file is a contract with codegen/. Changes are additive only.
 * Conntrack: `ct` predicates, the `ct.mark` field, `ctMark` and the NAT
 * actions (snat/dnat/masquerade), and Definition.conntrack.
 */
import type { SourcePosition } from './errors.js';
import type { Layout } from './layout.js';

export type { SourcePosition } from './errors.js';

/** Version of this model's shape; bumped only for incompatible changes (none planned). */
export const MODEL_VERSION = 1;

/** Deepest jump nesting a definition may use (frames on the return stack). */
export const MAX_JUMP_DEPTH = 8;

/** Where a program attaches. */
export type Hook = 'xdp' | 'tc-ingress' | 'tc-egress';

export const HOOKS: readonly Hook[] = ['xdp', 'tc-ingress', 'tc-egress'];

/** A whole filter: programs, the chains they run, sets and user maps. */
export interface Definition {
  /** MODEL_VERSION at build time. */
  version: number;
  /** Name of the filter (object file, pin directory, map name prefix). */
  name: string;
  /** One per hook the filter is built for; each starts at an entry chain. */
  programs: ProgramDef[];
  /** All chains, in declaration order. Rule ids follow this order. */
  chains: ChainDef[];
  /** Named sets that rules match against; updatable at run time. */
  sets: SetDecl[];
  /** Typed user maps (not referenced by rules; for user code and run time). */
  maps: MapDecl[];
  /** Where the definition was written (the filter() call). */
  source?: SourcePosition;
  /**
   * Connection tracking for this filter (docs/semantics.md, "Conntrack").
   * Present when a rule uses a `ct` match, `ctMark` or a NAT action, or when
   * the filter asked for it; absent otherwise (the filter then compiles
   * exactly as without conntrack).
   */
  conntrack?: ConntrackDef;
}

/** A filter's conntrack table. */
export interface ConntrackDef {
  /** Entries of the LRU hash (a NAT'd connection takes 2 or 3). */
  maxEntries: number;
  /** Seconds by state name (sdk/ct.ts DEFAULT_TIMEOUTS for the rest). */
  timeouts?: Partial<Record<CtTimeoutName, number>>;
  /**
   * Let a TCP packet other than a SYN open a connection (picked up
   * mid-stream, netfilter's nf_conntrack_tcp_loose=1). Default false: such a
   * packet is `invalid`.
   */
  tcpLoose?: boolean;
}

/** The connection states that have a timeout (sdk/ct.ts CT_STATE without 'none'). */
export type CtTimeoutName =
  | 'tcp-syn-sent' | 'tcp-syn-recv' | 'tcp-established' | 'tcp-fin-wait' | 'tcp-closing' | 'tcp-time-wait' | 'tcp-close'
  | 'udp' | 'udp-replied' | 'icmp' | 'icmp-replied';

/** A BPF program: a hook and the chain it starts in. */
export interface ProgramDef {
  /** Unique within the definition; e.g. `web_tc_ingress`. */
  name: string;
  hook: Hook;
  /** Name of the entry (base) chain. Entry chains cannot be jumped to. */
  entry: string;
}

/**
 * What happens when a chain's rules run out.
 * - accept/drop/reject: a verdict (like an nftables base-chain policy).
 * - return: go back to the rule after the jump that called this chain
 *   (the default for chains that are not an entry chain; invalid for entry chains).
 */
export type ChainPolicy = 'accept' | 'drop' | 'reject' | 'return';

export interface ChainDef {
  /** Unique within the definition; [A-Za-z_][A-Za-z0-9_-]*. */
  name: string;
  policy: ChainPolicy;
  rules: RuleDef[];
  source?: SourcePosition;
}

export interface RuleDef {
  /** Global 0-based index in definition order (chains in order, rules in order). Keys counters and log events. */
  id: number;
  /** User-given, or `<chain>#<index>`. Unique within the definition. */
  name: string;
  /** Name of the chain the rule belongs to. */
  chain: string;
  /** 0-based position within its chain. */
  index: number;
  /** When the rule applies. `{ kind: 'all' }` for a rule without a match. */
  match: MatchExpr;
  /** Run in order when the rule matches; at most one control action, last. */
  actions: ActionDef[];
  /** Free text shown by explain and in generated C comments. */
  comment?: string;
  /** Where the user wrote the rule (file:line:col), best effort. */
  source?: SourcePosition;
}

// ---------------------------------------------------------------------------
// Matches

/** A boolean tree over field predicates. */
export type MatchExpr =
  /** Always true. */
  | { kind: 'all' }
  /** True when every arg is true (empty: true). */
  | { kind: 'and'; args: MatchExpr[] }
  /** True when any arg is true (empty: false). */
  | { kind: 'or'; args: MatchExpr[] }
  /** Negation. Note: not(p) is true when p's field is absent. */
  | { kind: 'not'; arg: MatchExpr }
  | FieldPredicate;

/**
 * A layer whose presence can be tested. Presence follows sdk/parse.ts:
 * eth: 14 bytes; vlan: at least one tag; ip4/ip6: valid header; tcp/udp/sctp/
 * icmp/icmp6: full L4 header and not a non-first fragment;
 * frag: the packet is an IPv4 or IPv6 fragment (first or not).
 */
export type Layer = 'eth' | 'vlan' | 'ip4' | 'ip6' | 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmp6' | 'frag';

/**
 * Numeric fields, with the condition under which each is present.
 * - pkt.len: frame length in bytes (always present).
 * - meta.ifindex: the interface the program runs on (XDP ctx->ingress_ifindex,
 *   TC skb->ifindex) (always present).
 * - meta.mark: packet mark (TC skb->mark; at XDP starts at 0 and lives only for
 *   this program run) (always present).
 * - eth.type: the ethertype after up to 2 VLAN tags (Ethernet present, tags whole).
 * - vlan.id: the outer VLAN tag's 12-bit id (a tag present).
 * - ip.proto: IPv4 protocol or the IPv6 final next header (IPv4 or IPv6 present).
 * - ip.ttl: IPv4 TTL or IPv6 hop limit (IPv4 or IPv6 present).
 * - ip.dscp: 6-bit DSCP of IPv4 TOS / IPv6 traffic class (IPv4 or IPv6 present).
 * - l4.sport, l4.dport: TCP, UDP or SCTP port (one of those headers present).
 * - tcp.flags: the 8 flag bits, FIN=0x01 .. CWR=0x80 (TCP present).
 * - icmp.type, icmp.code: ICMPv4 (ICMP over IPv4 present).
 * - icmp6.type, icmp6.code: ICMPv6 (ICMPv6 over IPv6 present).
 * - ct.mark: the connection's mark (a connection exists or is opened by this
 *   packet: ct state new, established or related; 0 for a new one).
 */
export type NumField =
  | 'pkt.len'
  | 'meta.ifindex'
  | 'meta.mark'
  | 'eth.type'
  | 'vlan.id'
  | 'ip.proto'
  | 'ip.ttl'
  | 'ip.dscp'
  | 'l4.sport'
  | 'l4.dport'
  | 'tcp.flags'
  | 'icmp.type'
  | 'icmp.code'
  | 'icmp6.type'
  | 'icmp6.code'
  | 'ct.mark';

/** Largest value of each numeric field (the smallest is 0). */
export const NUM_FIELD_MAX: Record<NumField, number> = {
  'pkt.len': 0xffffffff,
  'meta.ifindex': 0xffffffff,
  'meta.mark': 0xffffffff,
  'eth.type': 0xffff,
  'vlan.id': 0xfff,
  'ip.proto': 0xff,
  'ip.ttl': 0xff,
  'ip.dscp': 0x3f,
  'l4.sport': 0xffff,
  'l4.dport': 0xffff,
  'tcp.flags': 0xff,
  'icmp.type': 0xff,
  'icmp.code': 0xff,
  'icmp6.type': 0xff,
  'icmp6.code': 0xff,
  'ct.mark': 0xffffffff,
};

/** Fields a port set can be matched against. */
export type PortField = 'l4.sport' | 'l4.dport';

/** IPv4 address fields (present with IPv4) and IPv6 address fields (present with IPv6). */
export type Ip4Field = 'ip4.src' | 'ip4.dst';
export type Ip6Field = 'ip6.src' | 'ip6.dst';
export type AddrField = Ip4Field | Ip6Field;

/** Ethernet addresses (present with Ethernet). */
export type MacField = 'eth.src' | 'eth.dst';

/**
 * What a packet is to conntrack (docs/semantics.md, "Conntrack"):
 * new (opens a connection, or the original direction before any reply),
 * established (a reply was seen), related (an ICMP error about a tracked
 * connection), invalid (cannot open one, or an error about nothing tracked),
 * untracked (not IP, no ports, a non-first fragment).
 */
export type CtState = 'new' | 'established' | 'related' | 'invalid' | 'untracked';

export const CT_STATES: readonly CtState[] = ['new', 'established', 'related', 'invalid', 'untracked'];

/** An inclusive range [min, max] of a numeric field; min <= max. A single value is [v, v]. */
export type NumRange = [min: number, max: number];

export type FieldPredicate =
  /** The layer is present. */
  | { kind: 'has'; layer: Layer }
  /** field is present and its value lies in any of the ranges (ranges sorted, disjoint, non-adjacent). */
  | { kind: 'num'; field: NumField; ranges: NumRange[] }
  /** field is present and (field & mask) === value; mask and value are u32 with (value & ~mask) === 0. */
  | { kind: 'bits'; field: NumField; mask: number; value: number }
  /** port field is present and its value is in the named port set. */
  | { kind: 'numSet'; field: PortField; set: string }
  /**
   * address field is present and inside any of the CIDRs. CIDRs are canonical
   * text: network address with host bits cleared, `/len` always written
   * (e.g. '10.0.0.0/8', '2001:db8::/32', '192.0.2.1/32'); family matches field.
   */
  | { kind: 'addr'; field: AddrField; cidrs: string[] }
  /** address field is present and inside any prefix of the named set (whose family matches field). */
  | { kind: 'addrSet'; field: AddrField; set: string }
  /** MAC field is present and equals one of the addresses (canonical lower-case 'aa:bb:cc:dd:ee:ff'). */
  | { kind: 'mac'; field: MacField; addrs: string[] }
  /** The interface the program runs on has one of these names (resolved to ifindex at load time). */
  | { kind: 'ifname'; names: string[] }
  /** The packet's conntrack state is one of these. */
  | { kind: 'ct'; states: CtState[] };

// ---------------------------------------------------------------------------
// Actions

/**
 * Token-bucket limit with integer-exact refill (the evaluator and the C code
 * implement exactly this):
 * - cost = `costNs` = floor(interval_ns / rate) nanoseconds of credit per packet
 *   (interval_ns = 1e9 for 'second', 60e9 'minute', 3600e9 'hour', 86400e9 'day'),
 *   capacity = burst * cost.
 * - A bucket starts full (credit = capacity) at the first packet that reaches it.
 * - On each packet at time now (ns, bpf_ktime_get_ns): if now > last then
 *   credit = min(capacity, credit + (now - last)) (computed without overflow:
 *   `if (now - last >= capacity - credit) credit = capacity; else credit += now - last;`)
 *   and last = now; then if credit >= cost, credit -= cost and a token was taken.
 *   All u64; validation keeps capacity below 2^62.
 * - mode 'under' (default): the rule continues when a token was taken, else stops.
 *   mode 'over': the rule continues when no token was available (the rate is
 *   exceeded), else stops (the token taken is consumed).
 * - key: one bucket per rule-action (`undefined`), or one per source/destination
 *   IP address (IPv4 and IPv6 keyed separately; non-IP packets share the
 *   all-zero key) in an LRU map of `maxKeys` buckets.
 */
export interface LimitAction {
  kind: 'limit';
  /** Global 0-based index of this limit in definition order (bucket slot). */
  limitId: number;
  /** Packets per interval (>= 1). */
  rate: number;
  interval: 'second' | 'minute' | 'hour' | 'day';
  /** Bucket capacity in packets (>= 1). */
  burst: number;
  /** Nanoseconds of credit per packet: floor(interval_ns / rate) (>= 1). */
  costNs: number;
  mode: 'under' | 'over';
  key?: 'ip.src' | 'ip.dst';
  /** Number of buckets when keyed (LRU). */
  maxKeys?: number;
}

export type ActionDef =
  // non-terminal: the rule continues
  /** Per-rule counters (packets and frame bytes), per CPU, indexed by rule id. */
  | { kind: 'count' }
  /** An event on the filter's ring buffer: rule id, verdict-so-far, 5-tuple, and this prefix. */
  | { kind: 'log'; prefix?: string }
  /** mark = (mark & ~mask) | value (u32; mask defaults to 0xffffffff). */
  | { kind: 'mark'; value: number; mask: number }
  /** Token bucket; stops the rule when it does not pass. */
  | LimitAction
  /** The connection's mark: mark = (mark & ~mask) | value; stored in its entry when the packet is accepted. */
  | { kind: 'ctMark'; value: number; mask: number }
  // verdicts: terminal
  | { kind: 'accept' }
  | { kind: 'drop' }
  /** TCP: RST; otherwise ICMP/ICMPv6 port unreachable (sdk/reject.ts builds it); the original is dropped. */
  | { kind: 'reject' }
  /** Send out of another interface (by index, or by name resolved at load time). */
  | { kind: 'redirect'; ifindex?: number; ifname?: string }
  /** Accept, translating the source of the connection (tc-egress): address range, optional port range. */
  | SnatAction
  /** Accept, translating the destination of the connection (tc-ingress). */
  | DnatAction
  /** Accept, translating the source to the egress interface's address (tc-egress). */
  | MasqueradeAction
  // control flow: last action
  /** Run `chain`; continue after this rule if it ends without a verdict. */
  | { kind: 'jump'; chain: string }
  /** Continue in `chain`; no return to this one. */
  | { kind: 'goto'; chain: string }
  /** Leave this chain (back to the caller; in an entry chain: the policy decides). */
  | { kind: 'return' };

/**
 * NAT actions (accept with translation; docs/semantics.md "NAT"). Addresses
 * are canonical text; `to` is an inclusive address range whose ends differ
 * only in the last 32 bits (one family). Port ranges are inclusive.
 */
export interface SnatAction {
  kind: 'snat';
  to: [first: string, last: string];
  /** Source ports to use (default: keep the port when free, else 1024-65535; ICMP echo ids 0-65535). */
  ports?: NumRange;
}

export interface DnatAction {
  kind: 'dnat';
  to: [first: string, last: string];
  /** Destination port (range: picked by flow hash); default: keep the port. */
  port?: NumRange;
}

export interface MasqueradeAction {
  kind: 'masquerade';
  ports?: NumRange;
}

export type NatAction = SnatAction | DnatAction | MasqueradeAction;
export const NAT_KINDS: readonly ActionKind[] = ['snat', 'dnat', 'masquerade'];

export type ActionKind = ActionDef['kind'];
export type Verdict = 'accept' | 'drop' | 'reject' | 'redirect';

/** Actions that decide the packet's fate (NAT actions accept). */
export const VERDICT_KINDS: readonly ActionKind[] = ['accept', 'drop', 'reject', 'redirect', 'snat', 'dnat', 'masquerade'];
/** Actions that end a rule's action list: verdicts and control flow. */
export const FINAL_KINDS: readonly ActionKind[] = ['accept', 'drop', 'reject', 'redirect', 'snat', 'dnat', 'masquerade', 'jump', 'goto', 'return'];

export function isNatAction(a: ActionDef): a is NatAction {
  return a.kind === 'snat' || a.kind === 'dnat' || a.kind === 'masquerade';
}

export function isVerdictAction(a: ActionDef): a is Extract<ActionDef, { kind: Verdict }> | NatAction {
  return (VERDICT_KINDS as readonly string[]).includes(a.kind);
}

export function isFinalAction(a: ActionDef): boolean {
  return (FINAL_KINDS as readonly string[]).includes(a.kind);
}

// ---------------------------------------------------------------------------
// Sets and user maps

/**
 * A named set rules match against, updatable at run time.
 * - ipv4 / ipv6: prefixes (CIDR text; a bare address means /32 or /128); kernel
 *   map is an LPM trie keyed { u32 prefixlen; u8 addr[4|16] } -> u8 1; membership
 *   = any stored prefix contains the address.
 * - port: u16 values; kernel map a hash keyed by the port in host byte order -> u8 1.
 */
export interface SetDecl {
  name: string;
  type: 'ipv4' | 'ipv6' | 'port';
  maxEntries: number;
  /** Initial contents, canonical (CIDR text for addresses, numbers for ports). */
  elements: Array<string | number>;
  source?: SourcePosition;
}

export type MapKind = 'hash' | 'lru_hash' | 'array' | 'percpu_array' | 'percpu_hash' | 'lpm_trie' | 'ringbuf';

/** A typed user map. For ringbuf, key/value are absent and maxEntries is the size in bytes (power of 2, multiple of the page size). */
export interface MapDecl {
  name: string;
  kind: MapKind;
  key?: Layout<any>;
  value?: Layout<any>;
  maxEntries: number;
  source?: SourcePosition;
}

// ---------------------------------------------------------------------------
// Helpers over the model

/** Every rule of the definition in id order. */
export function allRules(def: Definition): RuleDef[] {
  return def.chains.flatMap((c) => c.rules);
}

/** Every limit action in limitId order, with its rule. */
export function allLimits(def: Definition): Array<{ rule: RuleDef; limit: LimitAction }> {
  const out: Array<{ rule: RuleDef; limit: LimitAction }> = [];
  for (const rule of allRules(def)) for (const a of rule.actions) if (a.kind === 'limit') out.push({ rule, limit: a });
  return out;
}

/** The rule's final action (verdict or jump/goto/return), if any. */
export function finalAction(rule: RuleDef): ActionDef | undefined {
  const last = rule.actions[rule.actions.length - 1];
  return last && isFinalAction(last) ? last : undefined;
}

export const INTERVAL_NS: Record<LimitAction['interval'], bigint> = {
  second: 1_000_000_000n,
  minute: 60_000_000_000n,
  hour: 3_600_000_000_000n,
  day: 86_400_000_000_000n,
};

/** Whether a match uses conntrack (a `ct` state or `ct.mark` predicate). */
export function matchUsesCt(m: MatchExpr): boolean {
  switch (m.kind) {
    case 'and':
    case 'or':
      return m.args.some(matchUsesCt);
    case 'not':
      return matchUsesCt(m.arg);
    case 'ct':
      return true;
    case 'num':
    case 'bits':
      return m.field === 'ct.mark';
    default:
      return false;
  }
}

/** Whether a rule needs conntrack: a ct match, ctMark or a NAT action. */
export function ruleUsesCt(r: RuleDef): boolean {
  return matchUsesCt(r.match) || r.actions.some((a) => a.kind === 'ctMark' || isNatAction(a));
}

/** Default conntrack size of a filter that uses it without saying. */
export const DEFAULT_CT_ENTRIES = 65536;
