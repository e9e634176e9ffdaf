/**
 * Seeded random (ruleset, packets) cases for differential tests: the kernel
 * and evaluate() must agree on every one. Rulesets draw from a small universe
 * of addresses and ports so CIDRs overlap and ranges collide; chains jump and
 * goto forward only (no cycles). Packets are built to hit a chosen rule's
 * fields (then sometimes nudged off them), plus random and malformed ones.
 * Everything is a function of the seed.
 */
import { parseCidr, mask4, mask6 } from './addr.js';
import { filter, type Chain, type Filter, type FilterContext } from './dsl/filter.js';
import { match, range, type Match } from './dsl/match.js';
import type { SetRef } from './dsl/refs.js';
import { rule, type RuleBuilder, type RuleLike } from './dsl/rule.js';
import type { Definition, FieldPredicate, Hook, MatchExpr, NumRange, SetDecl } from './model.js';
import { allRules } from './model.js';
import { PacketBuilder } from './packet.js';
import { formatIpv4, formatIpv6 } from './parse.js';
import { setSourceCapture } from './source.js';

/** xorshift32: small, fast, deterministic. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    // Spread the seed so nearby seeds start far apart; never 0.
    let x = (seed ^ 0x9e3779b9) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    this.s = (x ^ (x >>> 16)) >>> 0 || 1;
  }

  /** Uniform u32. */
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 2 ** 32) * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
}

export interface GenerateOptions {
  /** Program hook (default 'tc-ingress'). */
  hook?: Hook;
  /** Rules in the entry chain, at most (default 12). */
  maxRules?: number;
  /** Sub-chains, at most (default 3). */
  maxChains?: number;
  /** Packets per case (default 8). */
  packets?: number;
  /** Share of packets made malformed or truncated (default 0.15). */
  malformed?: number;
  /** Use limit actions (with a burst no test run exhausts; default true). */
  limits?: boolean;
  /** Use redirect verdicts (to ifindex 1; default true). */
  redirect?: boolean;
  /** Use reject verdicts (default true). */
  reject?: boolean;
}

export interface GeneratedPacket {
  data: Buffer;
  /** What the packet was made to look like, for failure messages. */
  intent: string;
  /** Pass to evaluate() (and mirror in the kernel test run). */
  options: { ifindex: number; interfaces: Record<string, number>; mark: number };
}

export interface GeneratedCase {
  seed: number;
  filter: Filter;
  definition: Definition;
  packets: GeneratedPacket[];
}

// --- the universe ----------------------------------------------------------

const PORTS = [22, 53, 80, 443, 1000, 1001, 1005, 8080, 65535, 0];
const V4_LENS = [8, 12, 16, 20, 24, 25, 28, 30, 32];
const V6_LENS = [8, 16, 24, 32, 48, 64, 120, 128];
const MACS = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03'];

function addr4(r: Rng): number {
  // 10.{0..3}.{0..3}.{0..255} and a little of 192.168.{0..1}.x
  return r.chance(0.85) ? ((10 << 24) | (r.int(0, 3) << 16) | (r.int(0, 3) << 8) | r.int(0, 255)) >>> 0 : ((192 << 24) | (168 << 16) | (r.int(0, 1) << 8) | r.int(0, 255)) >>> 0;
}

function addr6(r: Rng): bigint {
  // fd00:{0..3}:{0..3}::{0..ff}
  return (0xfd00n << 112n) | (BigInt(r.int(0, 3)) << 96n) | (BigInt(r.int(0, 3)) << 80n) | BigInt(r.int(0, 255));
}

function cidr4(r: Rng): string {
  const len = r.pick(V4_LENS);
  return `${formatIpv4((addr4(r) & mask4(len)) >>> 0)}/${len}`;
}

function cidr6(r: Rng): string {
  const len = r.pick(V6_LENS);
  return `${formatIpv6(addr6(r) & mask6(len))}/${len}`;
}

function portSpec(r: Rng): number | ReturnType<typeof range> | number[] {
  switch (r.int(0, 3)) {
    case 0:
      return r.pick(PORTS);
    case 1: {
      const a = r.pick(PORTS);
      return range(a, Math.min(65535, a + r.int(0, 600)));
    }
    default:
      return [r.pick(PORTS), r.pick(PORTS), r.int(1000, 1010)];
  }
}

// --- rulesets --------------------------------------------------------------

interface Sets {
  v4?: SetRef<'ipv4'>;
  v6?: SetRef<'ipv6'>;
  ports?: SetRef<'port'>;
}

function atom(r: Rng, sets: Sets): Match {
  const dir = r.chance(0.5) ? 'src' : 'dst';
  switch (r.int(0, 19)) {
    case 0:
    case 1:
      return match.ip4[dir](Array.from({ length: r.int(1, 3) }, () => cidr4(r)) as `${number}.${number}.${number}.${number}`[]);
    case 2:
      return sets.v4 ? match.ip4[dir].in(sets.v4) : match.ip4[dir](cidr4(r) as `${number}.${number}.${number}.${number}`);
    case 3:
    case 4:
      return match.ip6[dir](Array.from({ length: r.int(1, 2) }, () => cidr6(r)) as `${string}:${string}`[]);
    case 5:
      return sets.v6 ? match.ip6[dir].in(sets.v6) : match.ip6[dir](cidr6(r) as `${string}:${string}`);
    case 6:
      return r.pick([match.ip.proto, match.ip4.proto, match.ip6.proto])(r.pick(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp'] as const));
    case 7:
    case 8:
    case 9: {
      const l4 = r.pick([match.tcp, match.udp, match.sctp, match.l4, match.tcp, match.udp]);
      const f = l4[r.chance(0.7) ? 'dport' : 'sport'];
      if (sets.ports && r.chance(0.2)) return f.in(sets.ports);
      if (r.chance(0.15)) return r.chance(0.5) ? f.lt(r.pick(PORTS)) : f.ge(r.pick(PORTS));
      return f(portSpec(r));
    }
    case 10:
      return match.tcp.flags(r.pick([['syn'], ['ack'], ['syn', 'ack'], ['rst'], ['fin']] as const), r.chance(0.5) ? ['syn', 'ack', 'rst', 'fin'] : undefined);
    case 11:
      return r.chance(0.5) ? match.icmp.type(r.pick(['echo-request', 'echo-reply', 'destination-unreachable'] as const)) : match.icmp.code(r.int(0, 3));
    case 12:
      return match.icmp6.type(r.pick(['echo-request', 'echo-reply', 'nd-neighbor-solicit'] as const));
    case 13:
      return r.pick([match.ip.ttl, match.ip4.ttl, match.ip6.hopLimit])(range(r.int(0, 64), r.int(64, 255)));
    case 14:
      return r.chance(0.5) ? match.len.lt(r.int(40, 200)) : match.len.between(r.int(40, 100), r.int(100, 300));
    case 15:
      return r.chance(0.5) ? match.vlan.id(r.int(1, 4)) : match.vlan;
    case 16:
      return r.chance(0.5) ? match.mark(r.int(0, 3)) : match.mark.bits(r.int(0, 1), 1);
    case 17:
      return r.chance(0.5) ? match.ifindex(r.int(1, 2)) : match.ifname(r.pick(['lo', 'eth0']));
    case 18:
      return r.chance(0.5) ? match.frag : match.ip.dscp(r.pick([0, 10, 46]));
    default:
      return r.chance(0.5) ? match.eth.type(r.pick(['ipv4', 'ipv6', 'arp'] as const)) : match.eth[dir](r.pick(MACS) as `${string}:${string}:${string}:${string}:${string}:${string}`);
  }
}

function randomMatch(r: Rng, sets: Sets): Match | undefined {
  if (r.chance(0.05)) return undefined;
  const parts: Match[] = [];
  const n = r.int(1, 3);
  for (let i = 0; i < n; i++) {
    let m = atom(r, sets);
    if (r.chance(0.1)) m = m.not();
    else if (r.chance(0.1)) m = m.or(atom(r, sets));
    parts.push(m);
  }
  return match.and(...parts);
}

function randomRule(r: Rng, sets: Sets, later: Chain[], o: Required<GenerateOptions>, limits: { n: number }): RuleLike {
  const m = randomMatch(r, sets);
  let b: RuleBuilder = m ? rule(m) : rule();
  if (r.chance(0.25)) b = b.count();
  if (r.chance(0.1)) b = b.log(r.chance(0.5) ? `r${r.int(0, 99)}` : undefined);
  if (r.chance(0.15)) b = r.chance(0.5) ? b.mark(r.int(0, 3)) : b.mark(r.int(0, 1), 1);
  if (o.limits && r.chance(0.08) && limits.n < 4) {
    limits.n++;
    // A burst no test run exhausts: the kernel's clock is real, ours is not.
    b = b.limit({ rate: r.int(1, 1000), burst: 100_000, ...(r.chance(0.3) ? { by: 'src' as const } : {}), ...(r.chance(0.2) ? { over: true } : {}) });
  }
  const choices: Array<() => RuleLike> = [() => b.accept(), () => b.drop(), () => b, () => b.return()];
  if (o.reject) choices.push(() => b.reject());
  if (o.redirect && r.chance(0.3)) choices.push(() => b.redirect(1));
  if (later.length) choices.push(() => b.jump(r.pick(later)), () => b.jump(r.pick(later)), () => b.goto(r.pick(later)));
  return r.pick(choices)();
}

function buildFilter(seed: number, r: Rng, o: Required<GenerateOptions>): Filter {
  const was = setSourceCapture(false);
  try {
    return filter(`gen${seed >>> 0}`, { hook: o.hook }, (ctx: FilterContext) => {
      const sets: Sets = {};
      if (r.chance(0.5)) sets.v4 = ctx.set.ipv4('set4', { maxEntries: 64, elements: Array.from({ length: r.int(0, 4) }, () => cidr4(r)) as `${number}.${number}.${number}.${number}`[] });
      if (r.chance(0.4)) sets.v6 = ctx.set.ipv6('set6', { maxEntries: 64, elements: Array.from({ length: r.int(0, 3) }, () => cidr6(r)) as `${string}:${string}`[] });
      if (r.chance(0.4)) sets.ports = ctx.set.port('setp', { maxEntries: 64, elements: [...new Set(Array.from({ length: r.int(0, 4) }, () => r.pick(PORTS)))] });
      const limits = { n: 0 };
      // Sub-chains c1..cN: each may jump/goto only to later ones (no cycles).
      const subs: Chain[] = [];
      const nSubs = r.int(0, o.maxChains);
      for (let i = 1; i <= nSubs; i++) {
        subs.push(ctx.chain(`c${i}`, { policy: r.pick(['return', 'return', 'return', 'accept', 'drop'] as const) }));
      }
      subs.forEach((c, i) => {
        const n = r.int(1, 6);
        for (let k = 0; k < n; k++) c.add(randomRule(r, sets, subs.slice(i + 1), o, limits));
      });
      const n = r.int(1, o.maxRules);
      const rules = Array.from({ length: n }, () => randomRule(r, sets, subs, o, limits));
      return ctx.chain('main', { policy: r.pick(['accept', 'drop', 'reject'] as const) }, rules);
    });
  } finally {
    setSourceCapture(was);
  }
}

// --- packets ---------------------------------------------------------------

interface Hints {
  family?: 4 | 6;
  l4?: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmp6' | 'other';
  proto?: number;
  src4?: number;
  dst4?: number;
  src6?: bigint;
  dst6?: bigint;
  sport?: number;
  dport?: number;
  flags?: number;
  icmpType?: number;
  icmpCode?: number;
  ttl?: number;
  dscp?: number;
  len?: number;
  vlan?: number;
  frag?: boolean;
  mark?: number;
  ethType?: number;
  ethSrc?: string;
  ethDst?: string;
}

const L4_PROTO: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, icmp6: 58 };

function pickIn(r: Rng, ranges: readonly NumRange[]): number | undefined {
  if (ranges.length === 0) return undefined;
  const [a, b] = r.pick(ranges);
  return r.chance(0.3) ? a : r.chance(0.3) ? b : r.int(a, Math.min(b, a + 4096));
}

function hostIn(r: Rng, text: string): { v4?: number; v6?: bigint } {
  const c = parseCidr(text);
  if ('error' in c) return {};
  if (c.family === 4) return { v4: (c.addr | (r.u32() & ~mask4(c.len) & 0xff)) >>> 0 };
  return { v6: c.addr | (BigInt(r.u32() & 0xff) & ~mask6(c.len)) };
}

/** Positive constraints of a match: every arg of an and, one branch of an or, nothing under not. */
function collect(e: MatchExpr, r: Rng, sets: Map<string, SetDecl>, h: Hints): void {
  switch (e.kind) {
    case 'all':
      return;
    case 'and':
      for (const a of e.args) collect(a, r, sets, h);
      return;
    case 'or':
      if (e.args.length) collect(r.pick(e.args), r, sets, h);
      return;
    case 'not':
      return;
    default:
      constrain(e, r, sets, h);
  }
}

function setFamily(h: Hints, f: 4 | 6): void {
  h.family ??= f;
}

function setL4(h: Hints, l4: NonNullable<Hints['l4']>): void {
  if (h.l4) return;
  h.l4 = l4;
  if (l4 === 'icmp') setFamily(h, 4);
  if (l4 === 'icmp6') setFamily(h, 6);
}

function constrain(p: FieldPredicate, r: Rng, sets: Map<string, SetDecl>, h: Hints): void {
  switch (p.kind) {
    case 'has':
      if (p.layer === 'ip4') setFamily(h, 4);
      else if (p.layer === 'ip6') setFamily(h, 6);
      else if (p.layer === 'vlan') h.vlan ??= r.int(1, 4);
      else if (p.layer === 'frag') h.frag = true;
      else if (p.layer !== 'eth') setL4(h, p.layer);
      return;
    case 'num': {
      const v = pickIn(r, p.ranges);
      if (v === undefined) return;
      switch (p.field) {
        case 'ip.proto': {
          const l4 = Object.entries(L4_PROTO).find(([, n]) => n === v)?.[0] as Hints['l4'] | undefined;
          if (l4) setL4(h, l4);
          else if (!h.l4) {
            h.l4 = 'other';
            h.proto = v;
          }
          return;
        }
        case 'l4.sport':
          h.sport ??= v;
          if (!h.l4) setL4(h, r.pick(['tcp', 'udp', 'sctp'] as const));
          return;
        case 'l4.dport':
          h.dport ??= v;
          if (!h.l4) setL4(h, r.pick(['tcp', 'udp', 'sctp'] as const));
          return;
        case 'icmp.type':
          h.icmpType ??= v;
          return setL4(h, 'icmp');
        case 'icmp.code':
          h.icmpCode ??= v;
          return setL4(h, 'icmp');
        case 'icmp6.type':
          h.icmpType ??= v;
          return setL4(h, 'icmp6');
        case 'icmp6.code':
          h.icmpCode ??= v;
          return setL4(h, 'icmp6');
        case 'ip.ttl':
          h.ttl ??= v;
          return;
        case 'ip.dscp':
          h.dscp ??= v;
          return;
        case 'pkt.len':
          h.len ??= v;
          return;
        case 'vlan.id':
          h.vlan ??= v;
          return;
        case 'meta.mark':
          h.mark ??= v;
          return;
        case 'eth.type':
          h.ethType ??= v;
          if (v === 0x0800) setFamily(h, 4);
          if (v === 0x86dd) setFamily(h, 6);
          return;
        default:
          return;
      }
    }
    case 'bits':
      if (p.field === 'tcp.flags') {
        h.flags ??= (p.value | (r.int(0, 255) & ~p.mask)) & 0xff;
        setL4(h, 'tcp');
      } else if (p.field === 'meta.mark') h.mark ??= (p.value | (r.int(0, 3) & ~p.mask)) >>> 0;
      return;
    case 'numSet': {
      const s = sets.get(p.set);
      const ports = (s?.elements ?? []) as number[];
      if (ports.length) h[p.field === 'l4.sport' ? 'sport' : 'dport'] ??= r.pick(ports);
      if (!h.l4) setL4(h, r.pick(['tcp', 'udp', 'sctp'] as const));
      return;
    }
    case 'addr':
    case 'addrSet': {
      const texts = p.kind === 'addr' ? p.cidrs : ((sets.get(p.set)?.elements ?? []) as string[]);
      const four = p.field.startsWith('ip4');
      setFamily(h, four ? 4 : 6);
      if (!texts.length) return;
      const host = hostIn(r, r.pick(texts));
      const dst = p.field.endsWith('dst');
      if (host.v4 !== undefined) h[dst ? 'dst4' : 'src4'] ??= host.v4;
      if (host.v6 !== undefined) h[dst ? 'dst6' : 'src6'] ??= host.v6;
      return;
    }
    case 'mac':
      if (p.addrs.length) h[p.field === 'eth.src' ? 'ethSrc' : 'ethDst'] ??= r.pick(p.addrs);
      return;
    default:
      return;
  }
}

/** Move one hint off its value, so the packet just misses. */
function nudge(r: Rng, h: Hints): string {
  const options: Array<[string, () => void]> = [];
  if (h.dport !== undefined) options.push(['dport+1', () => (h.dport = (h.dport! + 1) & 0xffff)]);
  if (h.sport !== undefined) options.push(['sport-1', () => (h.sport = (h.sport! + 0xffff) & 0xffff)]);
  if (h.src4 !== undefined) options.push(['src4 flipped', () => (h.src4 = (h.src4! ^ (1 << r.int(0, 20))) >>> 0)]);
  if (h.dst4 !== undefined) options.push(['dst4 flipped', () => (h.dst4 = (h.dst4! ^ (1 << r.int(0, 20))) >>> 0)]);
  if (h.src6 !== undefined) options.push(['src6 flipped', () => (h.src6 = h.src6! ^ (1n << BigInt(r.int(0, 100))))]);
  if (h.family !== undefined) options.push(['family swapped', () => (h.family = h.family === 4 ? 6 : 4)]);
  if (h.l4 !== undefined) options.push(['protocol changed', () => (h.l4 = r.pick(['tcp', 'udp', 'sctp', 'icmp', 'icmp6'] as const))]);
  if (h.flags !== undefined) options.push(['flags changed', () => (h.flags = r.int(0, 255))]);
  if (h.mark !== undefined) options.push(['mark changed', () => (h.mark = (h.mark! + 1) >>> 0)]);
  if (options.length === 0) return '';
  const [what, fn] = r.pick(options);
  fn();
  return `, nudged: ${what}`;
}

function buildPacket(r: Rng, h: Hints): { data: Buffer; what: string } {
  let b = new PacketBuilder().eth({ ...(h.ethSrc ? { src: h.ethSrc } : {}), ...(h.ethDst ? { dst: h.ethDst } : {}), ...(h.ethType !== undefined && h.ethType !== 0x0800 && h.ethType !== 0x86dd ? { type: h.ethType } : {}) });
  const parts: string[] = [];
  if (h.vlan !== undefined) {
    b = b.vlan({ id: h.vlan & 0xfff });
    parts.push(`vlan ${h.vlan}`);
    if (r.chance(0.2)) b = b.vlan({ id: r.int(0, 4095) });
  }
  if (h.ethType !== undefined && h.ethType !== 0x0800 && h.ethType !== 0x86dd) {
    parts.push(`ethertype 0x${h.ethType.toString(16)}`);
    return { data: b.payload(r.int(28, 64)).build(), what: parts.join(' ') };
  }
  const family = h.family ?? (r.chance(0.6) ? 4 : 6);
  let l4 = h.l4 ?? r.pick(['tcp', 'udp', 'icmp', 'sctp'] as const);
  if (l4 === 'icmp' && family === 6) l4 = 'icmp6';
  if (l4 === 'icmp6' && family === 4) l4 = 'icmp';
  const frag = h.frag ? { mf: true } : {};
  if (family === 4) {
    const src = formatIpv4(h.src4 ?? addr4(r));
    const dst = formatIpv4(h.dst4 ?? addr4(r));
    b = b.ipv4({ src, dst, ttl: h.ttl ?? 64, dscp: h.dscp ?? 0, ...frag, ...(l4 === 'other' ? { proto: h.proto ?? 253 } : {}) });
    parts.push(`ipv4 ${src} -> ${dst}`);
  } else {
    const src = formatIpv6(h.src6 ?? addr6(r));
    const dst = formatIpv6(h.dst6 ?? addr6(r));
    b = b.ipv6({
      src,
      dst,
      hopLimit: h.ttl ?? 64,
      dscp: h.dscp ?? 0,
      ...(h.frag ? { extensions: [{ type: 'fragment' as const, mf: true }] } : {}),
      ...(l4 === 'other' ? { proto: h.proto ?? 253 } : {}),
    });
    parts.push(`ipv6 ${src} -> ${dst}`);
  }
  const sport = h.sport ?? r.pick([...PORTS, r.int(1024, 65535)]);
  const dport = h.dport ?? r.pick([...PORTS, r.int(1, 65535)]);
  switch (l4) {
    case 'tcp': {
      const flags = h.flags ?? r.pick([0x02, 0x10, 0x12, 0x18, 0x04, 0x11]);
      b = b.tcp({ sport, dport, flags });
      parts.push(`tcp ${sport} -> ${dport} flags 0x${flags.toString(16)}`);
      break;
    }
    case 'udp':
      b = b.udp({ sport, dport });
      parts.push(`udp ${sport} -> ${dport}`);
      break;
    case 'sctp':
      b = b.sctp({ sport, dport });
      parts.push(`sctp ${sport} -> ${dport}`);
      break;
    case 'icmp':
    case 'icmp6': {
      const type = h.icmpType ?? (l4 === 'icmp' ? r.pick([0, 3, 8]) : r.pick([1, 128, 129, 135]));
      const code = h.icmpCode ?? (r.chance(0.8) ? 0 : r.int(0, 3));
      b = l4 === 'icmp' ? b.icmp({ type, code }) : b.icmpv6({ type, code });
      parts.push(`${l4} type ${type} code ${code}`);
      break;
    }
    default:
      parts.push(`proto ${h.proto ?? 253}`);
      b = b.payload(8);
  }
  let data = b.build();
  if (h.len !== undefined && h.len > data.length && h.len < 1600) {
    data = b.payload(h.len - data.length).build();
    parts.push(`len ${data.length}`);
  }
  return { data, what: parts.join(', ') };
}

/** Make a packet malformed in one random way. */
function malform(r: Rng, data: Buffer): { data: Buffer; what: string } {
  switch (r.int(0, 4)) {
    case 0:
    case 1: {
      const n = r.int(0, Math.max(0, data.length - 1));
      return { data: data.subarray(0, n), what: `truncated to ${n}` };
    }
    case 2: {
      // Bad IP version or header length, at the L3 offset of an untagged frame.
      const d = Buffer.from(data);
      if (d.length > 14) d[14] = r.pick([0x35, 0x44, 0x4f, 0x65, 0x00]);
      return { data: d, what: `bad first IP byte 0x${(d[14] ?? 0).toString(16)}` };
    }
    case 3: {
      const d = Buffer.from(data);
      // Non-first fragment offset in an IPv4 header (no effect elsewhere).
      if (d.length > 21 && d.readUInt16BE(12) === 0x0800) {
        d.writeUInt16BE(r.int(1, 0x1fff), 20);
        return { data: d, what: 'ipv4 non-first fragment' };
      }
      return { data: d.subarray(0, r.int(0, 13)), what: 'shorter than ethernet' };
    }
    default: {
      const extra = Buffer.alloc(r.int(1, 40), r.int(0, 255));
      return { data: Buffer.concat([data, extra]), what: `${extra.length} trailing bytes` };
    }
  }
}

const DEFAULTS: Required<GenerateOptions> = {
  hook: 'tc-ingress',
  maxRules: 12,
  maxChains: 3,
  packets: 8,
  malformed: 0.15,
  limits: true,
  redirect: true,
  reject: true,
};

/** One case: a random valid filter and packets aimed at its rules. Deterministic in `seed`. */
export function generateCase(seed: number, options: GenerateOptions = {}): GeneratedCase {
  const o = { ...DEFAULTS, ...options };
  const r = new Rng(seed);
  const f = buildFilter(seed, r, o);
  const def = f.toModel();
  const rules = allRules(def);
  const sets = new Map(def.sets.map((s) => [s.name, s]));
  const packets: GeneratedPacket[] = [];
  for (let i = 0; i < o.packets; i++) {
    const h: Hints = {};
    let intent: string;
    if (rules.length && r.chance(0.8)) {
      const target = r.pick(rules);
      collect(target.match, r, sets, h);
      intent = `aimed at rule ${target.id} '${target.name}'`;
      if (r.chance(0.3)) intent += nudge(r, h);
    } else intent = 'random';
    let { data, what } = buildPacket(r, h);
    if (r.chance(o.malformed)) {
      const m = malform(r, data);
      data = m.data;
      what += `; ${m.what}`;
    }
    packets.push({ data, intent: `${intent}: ${what}`, options: { ifindex: 1, interfaces: { lo: 1 }, mark: h.mark ?? (r.chance(0.2) ? r.int(0, 3) : 0) } });
  }
  return { seed, filter: f, definition: def, packets };
}

/** `count` cases from consecutive seeds starting at `seed`. */
export function generateCases(seed: number, count: number, options: GenerateOptions = {}): GeneratedCase[] {
  return Array.from({ length: count }, (_, i) => generateCase((seed + i) >>> 0, options));
}

// --- large rulesets (classification at scale) -------------------------------

export interface LargeOptions {
  /** Rules in all (default 10,000). */
  rules?: number;
  hook?: Hook;
  /** Packets (default 200). */
  packets?: number;
  /** Share of rules that are not classifiable (limits, negations, TTL, sets, no verdict; default 0.003). */
  linear?: number;
  /**
   * Jump or goto rules into sub-chains, in the entry chain (default 4; each
   * sub-chain has at most 1). Kept small: every jump a packet may take costs
   * tail calls, and the kernel allows 33 per packet.
   */
  jumps?: number;
}

/** 10.a.b.c over the whole 10/8, so specific rules rarely overlap by chance; broad ones do. */
function wideAddr4(r: Rng): number {
  return ((10 << 24) | (r.int(0, 255) << 16) | (r.int(0, 255) << 8) | r.int(0, 255)) >>> 0;
}

function wideCidr4(r: Rng, lens: readonly number[]): Ipv4Text {
  const len = r.pick(lens);
  return `${formatIpv4((wideAddr4(r) & mask4(len)) >>> 0)}/${len}` as Ipv4Text;
}

function wideCidr6(r: Rng, lens: readonly number[]): Ipv6Text {
  const len = r.pick(lens);
  const a = (0xfd00n << 112n) | (BigInt(r.int(0, 255)) << 96n) | (BigInt(r.int(0, 255)) << 80n) | (BigInt(r.int(0, 65535)) << 16n) | BigInt(r.int(0, 65535));
  return `${formatIpv6(a & mask6(len))}/${len}` as Ipv6Text;
}

type Ipv4Text = `${number}.${number}.${number}.${number}`;
type Ipv6Text = `${string}:${string}`;

function widePort(r: Rng): number | ReturnType<typeof range> | number[] {
  switch (r.int(0, 5)) {
    case 0:
    case 1:
    case 2:
      return r.int(1, 65535);
    case 3: {
      const a = r.int(1, 65000);
      return range(a, a + r.int(1, 500));
    }
    case 4:
      return [r.int(1, 65535), r.int(1, 65535), r.int(1, 65535)];
    default:
      return r.pick(PORTS);
  }
}

/** A classifiable match: mostly specific (addresses, protocol, ports), sometimes broad. */
function largeMatch(r: Rng): Match {
  const parts: Match[] = [];
  const kind = r.int(0, 999);
  if (kind < 750) {
    // IPv4 5-tuple-ish, mostly /24 or longer.
    const specific = [24, 28, 30, 32, 32, 32];
    const src = r.chance(0.8);
    if (src) parts.push(match.ip4.src(wideCidr4(r, specific)));
    // A wide destination only next to a specific source.
    if (!src || r.chance(0.6)) parts.push(match.ip4.dst(wideCidr4(r, src && r.chance(0.3) ? [8, 12, 16] : specific)));
  } else if (kind < 930) {
    if (r.chance(0.8)) parts.push(match.ip6.src(wideCidr6(r, [48, 64, 96, 128])));
    if (r.chance(0.5) || parts.length === 0) parts.push(match.ip6.dst(wideCidr6(r, [32, 48, 64, 128])));
  } else if (kind < 950) {
    // Broad: overlaps much of what comes after it (a /16 holds 1/256 of the universe).
    parts.push(r.chance(0.5) ? match.ip4.src(wideCidr4(r, [16, 18, 20])) : match.ip4.dst(wideCidr4(r, [16, 20, 24])));
  } else if (kind < 990) {
    if (r.chance(0.5)) parts.push(match.icmp.type(r.pick(['echo-request', 'echo-reply', 'destination-unreachable'] as const)), match.ip4.src(wideCidr4(r, [24, 32])));
    else parts.push(match.icmp6.type(r.pick(['echo-request', 'nd-neighbor-solicit'] as const)), match.ip6.src(wideCidr6(r, [64, 128])));
  }
  // Protocol and ports (alone, only rare values: 1 in 60,000 packets).
  if (parts.length === 0) {
    parts.push(r.chance(0.5) ? match.tcp.dport(r.int(1024, 65535)) : match.udp.dport(r.int(1024, 65535)));
    parts.push(match.l4.sport(r.int(1024, 65535)));
    return match.and(...parts);
  }
  const l4 = r.int(0, 9);
  if (l4 < 4) parts.push(match.tcp.dport(widePort(r)));
  else if (l4 < 7) parts.push(match.udp.dport(widePort(r)));
  else if (l4 === 7) parts.push(match.l4.sport(widePort(r)));
  else if (l4 === 8) parts.push(match.tcp.flags(r.pick([['syn'], ['syn', 'ack'], ['rst']] as const), ['syn', 'ack', 'rst', 'fin']).and(match.tcp.dport(widePort(r))));
  let m = match.and(...parts);
  if (r.chance(0.03)) m = m.or(match.and(match.ip4.src(wideCidr4(r, [24, 32])), match.udp.dport(r.int(1, 65535))));
  return m;
}

/** A rule no classifier holds: limit, negation, TTL, a set, or no verdict. */
function largeLinearRule(r: Rng, sets: Sets, limits: { n: number }): RuleLike {
  const base = largeMatch(r);
  switch (r.int(0, 4)) {
    case 0:
      if (limits.n < 8) {
        limits.n++;
        return rule(base).limit({ rate: r.int(1, 1000), burst: 1_000_000 }).accept();
      }
      return rule(base).count();
    case 1:
      return rule(base.and(match.not(match.udp.dport(r.int(1, 65535))))).drop();
    case 2:
      return rule(base.and(match.ip.ttl.lt(r.int(1, 3)))).reject();
    case 3:
      return sets.v4 ? rule(match.ip4.src.in(sets.v4).and(match.tcp.dport(r.int(1, 65535)))).drop() : rule(base).mark(r.int(1, 3));
    default:
      return rule(base).count().mark(r.int(0, 7), 7);
  }
}

function largeRule(r: Rng, jumpTo: Chain | undefined, o: Required<LargeOptions>, sets: Sets, limits: { n: number }): RuleLike {
  if (!jumpTo && r.chance(o.linear)) return largeLinearRule(r, sets, limits);
  const m = largeMatch(r);
  let b: RuleBuilder = rule(m);
  if (r.chance(0.2)) b = b.count();
  if (r.chance(0.02)) b = b.log(`l${r.int(0, 9)}`);
  if (r.chance(0.05)) b = b.mark(r.int(1, 255), 0xff);
  if (jumpTo) return r.chance(0.7) ? b.jump(jumpTo) : b.goto(jumpTo);
  const v = r.int(0, 99);
  if (v < 45) return b.drop();
  if (v < 85) return b.accept();
  if (v < 93) return b.reject();
  if (v < 97) return b.return();
  return b.redirect(1);
}

/**
 * A large random ruleset for differential tests of classification: `rules`
 * rules, mostly specific multi-field ones (so a packet aimed at rule k is
 * usually decided there, deep in the chain), some broad and overlapping,
 * port ranges and lists, v4 and v6, mixed actions; a small share of rules
 * that stay linear code (limits, negations, sets) and of jumps and gotos
 * into sub-chains. Packets aim at random rules. Deterministic in `seed`.
 */
export function generateLargeCase(seed: number, options: LargeOptions = {}): GeneratedCase {
  const o: Required<LargeOptions> = { rules: 10_000, hook: 'tc-ingress', packets: 200, linear: 0.003, jumps: 4, ...options };
  const r = new Rng(seed);
  const was = setSourceCapture(false);
  let f: Filter;
  try {
    f = filter(`large${seed >>> 0}`, { hook: o.hook }, (ctx: FilterContext) => {
      const sets: Sets = { v4: ctx.set.ipv4('big4', { maxEntries: 1024, elements: Array.from({ length: 16 }, () => wideCidr4(r, [16, 24, 32])) }) };
      const limits = { n: 0 };
      // Sub-chains hold a few percent of the rules; each may jump only to later ones.
      const subs: Chain[] = [];
      const nSubs = Math.min(6, Math.max(1, Math.floor(o.rules / 5000)));
      for (let i = 1; i <= nSubs; i++) subs.push(ctx.chain(`s${i}`, { policy: r.pick(['return', 'return', 'accept', 'drop'] as const) }));
      let left = o.rules;
      // Where the jumps go: a few positions per chain, each to a later sub-chain.
      const jumpsAt = (n: number, count: number, targets: Chain[]) => {
        const at = new Map<number, Chain>();
        for (let k = 0; k < count && targets.length; k++) at.set(r.int(0, n - 1), r.pick(targets));
        return at;
      };
      subs.forEach((c, i) => {
        const n = Math.max(1, Math.floor(o.rules * 0.02));
        const at = jumpsAt(n, r.int(0, 1), subs.slice(i + 1));
        for (let k = 0; k < n && left > 1; k++, left--) c.add(largeRule(r, at.get(k), o, sets, limits));
      });
      const main: RuleLike[] = [];
      const at = jumpsAt(left, o.jumps, subs);
      for (let k = 0; left > 0; left--, k++) main.push(largeRule(r, at.get(k), o, sets, limits));
      return ctx.chain('main', { policy: r.pick(['accept', 'drop'] as const) }, main);
    });
  } finally {
    setSourceCapture(was);
  }
  const def = f.toModel();
  const rules = allRules(def);
  const sets = new Map(def.sets.map((s) => [s.name, s]));
  const packets: GeneratedPacket[] = [];
  for (let i = 0; i < o.packets; i++) {
    const h: Hints = {};
    let intent = 'random';
    if (rules.length && r.chance(0.9)) {
      const target = r.pick(rules);
      collect(target.match, r, sets, h);
      intent = `aimed at rule ${target.id} '${target.name}'`;
      if (r.chance(0.2)) intent += nudge(r, h);
    }
    h.src4 ??= wideAddr4(r);
    h.dst4 ??= wideAddr4(r);
    let { data, what } = buildPacket(r, h);
    if (r.chance(0.05)) {
      const m = malform(r, data);
      data = m.data;
      what += `; ${m.what}`;
    }
    packets.push({ data, intent: `${intent}: ${what}`, options: { ifindex: 1, interfaces: { lo: 1 }, mark: 0 } });
  }
  return { seed, filter: f, definition: def, packets };
}
