/**
 * BPF helpers as typed functions. In the kernel each is one helper call (or a
 * constant, for ip4/ip6/mac); in Node they act on the run that runInNode set
 * up (its clock, its random source, its maps).
 */
import { TsbpfError } from '../errors.js';
import { parseIpv4Bytes, parseIpv6Bytes } from '../layout.js';
import type { Ipv6Address } from './packet.js';
import type { u32, u64 } from './int.js';
import type { ProgArray } from './maps.js';
import type { TcAction, XdpAction } from './verdicts.js';
import type { Packet, TcPacket } from './packet.js';
import type { DefinitionLike } from '../dsl/filter.js';
export { csumUpdate16, csumUpdate32 } from './csum.js';

/** What a run in Node provides to the helpers. */
export interface RunContext {
  hook: 'xdp' | 'tc-ingress' | 'tc-egress';
  now(): bigint;
  random(): number;
  redirect?: { ifindex: number; flags: number };
  tailCall(progs: ProgArray, index: number): void;
  runChain(filter: DefinitionLike): number;
  tailChain(filter: DefinitionLike): number;
}

/*
 * The run in progress lives on globalThis under a registered symbol: a user's
 * file may import its own copy of these helpers (the CLI loads it from the
 * sources) while runInNode comes from tsbpf's compiled copy; both must see it.
 */
const CURRENT = Symbol.for('tsbpf.fn.runContext');
const slot = globalThis as { [CURRENT]?: RunContext | undefined };

/** @internal runInNode sets the context around one call of the function. */
export function withRunContext<T>(ctx: RunContext, fn: () => T): T {
  const prev = slot[CURRENT];
  slot[CURRENT] = ctx;
  try {
    return fn();
  } finally {
    slot[CURRENT] = prev;
  }
}

function ctx(what: string): RunContext {
  const current = slot[CURRENT];
  if (!current) {
    throw new TsbpfError('INVALID_ARGUMENT', `${what} can only be called while a function program runs (runInNode or in the kernel)`);
  }
  return current;
}

/** Nanoseconds since boot (CLOCK_MONOTONIC): bpf_ktime_get_ns(). */
export function ktimeNs(): u64 {
  return ctx('ktimeNs()').now();
}

/** A pseudo-random u32: bpf_get_prandom_u32(). */
export function randomU32(): u32 {
  return ctx('randomU32()').random() >>> 0;
}

/**
 * Send the packet out of interface `ifindex` (bpf_redirect); return its
 * result from the program: `return redirect(ifindex)`. At TC, flags may be
 * BPF_F_INGRESS to deliver it as received on that interface.
 */
export function redirect(ifindex: u32, flags: u32 = 0): XdpAction & TcAction {
  const c = ctx('redirect()');
  c.redirect = { ifindex, flags };
  return (c.hook === 'xdp' ? 4 : 7) as XdpAction & TcAction;
}

/** bpf_redirect flag: deliver on the target's ingress (TC only). */
export const BPF_F_INGRESS = 1;

/**
 * Jump to the program in slot `index` of `progs` (bpf_tail_call). It does not
 * come back when the slot holds a program; when the slot is empty the
 * function carries on after the call.
 */
export function tailCall(progs: ProgArray, index: u32): void {
  ctx('tailCall()').tailCall(progs, index);
}

/** An IPv4 address constant as the u32 packet fields use: ip4('10.0.0.1'). */
export function ip4(text: string): u32 {
  const b = parseIpv4Bytes(text);
  if (!b) throw new TsbpfError('DSL_INVALID', `'${text}' is not an IPv4 address`);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** An IPv6 address constant: ip6('fd00::1'). */
export function ip6(text: string): Ipv6Address {
  const b = parseIpv6Bytes(text);
  if (!b) throw new TsbpfError('DSL_INVALID', `'${text}' is not an IPv6 address`);
  let hi = 0n;
  let lo = 0n;
  for (let i = 0; i < 8; i++) hi = (hi << 8n) | BigInt(b[i]!);
  for (let i = 8; i < 16; i++) lo = (lo << 8n) | BigInt(b[i]!);
  return { hi, lo };
}

/** A MAC address constant as the 48-bit numbers of pkt.eth: mac('02:00:00:00:00:01'). */
export function mac(text: string): number {
  const m = /^([0-9a-fA-F]{2})(?::([0-9a-fA-F]{2})){5}$/.test(text) ? text.split(':') : undefined;
  if (!m) throw new TsbpfError('DSL_INVALID', `'${text}' is not a MAC address like 'aa:bb:cc:dd:ee:ff'`);
  return m.reduce((acc, h) => acc * 256 + parseInt(h, 16), 0);
}

/** Whether two IPv6 addresses are equal. */
export function sameIpv6(a: Ipv6Address, b: Ipv6Address): boolean {
  return a.hi === b.hi && a.lo === b.lo;
}

/**
 * Run a filter declared with the DSL (`filter(...)`) on this packet: its
 * entry chain for the program's hook, with its sets, counters, limits and
 * marks, and get its verdict as this hook's action: accept -> XDP_PASS /
 * TC_ACT_OK, drop -> XDP_DROP / TC_ACT_SHOT, redirect -> the redirect. A
 * reject is a drop here (the reply is the filter's own program's job).
 *
 *   return runChain(fw, pkt);                        // the filter decides
 *   if (runChain(fw, pkt) !== XDP_PASS) return XDP_DROP;
 *
 * In the kernel the chain's code is compiled into the function's object
 * (inline, no tail call), and the filter's maps are the same kernel maps.
 */
export function runChain<P extends Packet>(filter: DefinitionLike, pkt: P): P extends TcPacket ? TcAction : XdpAction {
  void pkt;
  return ctx('runChain()').runChain(filter) as P extends TcPacket ? TcAction : XdpAction;
}

/**
 * Hand the packet to a filter for good: `return tailChain(fw, pkt)`. As
 * runChain, except that a reject is carried out: the filter's act program
 * (a tail call in the kernel) turns the packet into the reply (TCP RST or
 * ICMP unreachable) and sends it back (XDP_TX; at TC a redirect). Only as
 * the value of a return: nothing runs after it.
 */
export function tailChain<P extends Packet>(filter: DefinitionLike, pkt: P): P extends TcPacket ? TcAction : XdpAction {
  void pkt;
  return ctx('tailChain()').tailChain(filter) as P extends TcPacket ? TcAction : XdpAction;
}
