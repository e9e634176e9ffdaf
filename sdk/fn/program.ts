/**
 * `xdp(fn)`, `tcIngress(fn)`, `tcEgress(fn)`: a packet program written as a
 * TypeScript function. The same function is compiled to C by codegen/fn
 * (compileFunctions) and runs in Node as its own reference (runInNode).
 *
 *   export const dnsGuard = xdp({ maps: { hits: perCpuArray(u64, { maxEntries: 2 }) } }, (pkt, { hits }) => {
 *     if (!pkt.udp || pkt.udp.dport !== 53) return XDP_PASS;
 *     hits.increment(0);
 *     return pkt.len > 512 ? XDP_DROP : XDP_PASS;
 *   });
 */
import { TsbpfError, type SourcePosition } from '../errors.js';
import { callerPosition } from '../source.js';
import { dslMapDecl, isDslRef, isMapDecl, type MapDecls, type MapHandles } from './maps.js';
import { isMapRef } from '../dsl/refs.js';
import type { TcPacket, XdpPacket } from './packet.js';
import type { TcAction, XdpAction } from './verdicts.js';

export type FnHook = 'xdp' | 'tc-ingress' | 'tc-egress';

export type PacketOf<H extends FnHook> = H extends 'xdp' ? XdpPacket : TcPacket;
export type ActionOf<H extends FnHook> = H extends 'xdp' ? XdpAction : TcAction;

export type ProgramFn<H extends FnHook, M extends MapDecls> = (pkt: PacketOf<H>, maps: MapHandles<M>) => ActionOf<H>;

export interface FnProgramOptions<M extends MapDecls> {
  /** The maps the function uses; its second parameter gets a handle for each. */
  maps?: M;
}

export interface FnProgram<H extends FnHook = FnHook, M extends MapDecls = MapDecls> {
  readonly kind: 'tsbpf.fn';
  readonly hook: H;
  readonly maps: M;
  readonly fn: ProgramFn<H, M>;
  /** Where the program was declared (the xdp(...) call), for compileProgram. */
  readonly source: SourcePosition | undefined;
}

function define<H extends FnHook, M extends MapDecls>(hook: H, a: FnProgramOptions<M> | ProgramFn<H, M>, b?: ProgramFn<H, M>): FnProgram<H, M> {
  const options = typeof a === 'function' ? {} : a;
  const fn = typeof a === 'function' ? a : b;
  if (typeof fn !== 'function') throw new TsbpfError('DSL_INVALID', `${hookFunctionName(hook)}() needs the program function`);
  const maps = (options?.maps ?? {}) as M;
  for (const [name, d] of Object.entries(maps)) {
    if (!isMapDecl(d) && !isDslRef(d)) throw new TsbpfError('DSL_INVALID', `maps.${name} is not a map declaration (use hash(...), array(...), ringBuf(...), ..., or a filter's fw.sets.x / fw.maps.x)`);
    if (isDslRef(d) && d.name !== name) throw new TsbpfError('DSL_INVALID', `maps.${name} is the DSL map '${d.name}': give it its own name ({ ${d.name}: ... }) so both sides mean one kernel map`);
    if (isMapRef(d)) {
      const m = dslMapDecl(d);
      if (typeof m === 'string') throw new TsbpfError('DSL_INVALID', m);
    }
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new TsbpfError('DSL_INVALID', `map name '${name}' is not a valid C identifier`);
  }
  return Object.freeze({ kind: 'tsbpf.fn' as const, hook, maps, fn, source: callerPosition() });
}

export function hookFunctionName(hook: FnHook): string {
  return hook === 'xdp' ? 'xdp' : hook === 'tc-ingress' ? 'tcIngress' : 'tcEgress';
}

/** An XDP program: runs on received frames before the kernel allocates an skb. */
export function xdp(fn: ProgramFn<'xdp', {}>): FnProgram<'xdp', {}>;
export function xdp<M extends MapDecls>(options: FnProgramOptions<M>, fn: ProgramFn<'xdp', M>): FnProgram<'xdp', M>;
export function xdp<M extends MapDecls>(a: FnProgramOptions<M> | ProgramFn<'xdp', M>, b?: ProgramFn<'xdp', M>): FnProgram<'xdp', M> {
  return define('xdp', a, b);
}

/** A TC program on the ingress path (clsact). */
export function tcIngress(fn: ProgramFn<'tc-ingress', {}>): FnProgram<'tc-ingress', {}>;
export function tcIngress<M extends MapDecls>(options: FnProgramOptions<M>, fn: ProgramFn<'tc-ingress', M>): FnProgram<'tc-ingress', M>;
export function tcIngress<M extends MapDecls>(a: FnProgramOptions<M> | ProgramFn<'tc-ingress', M>, b?: ProgramFn<'tc-ingress', M>): FnProgram<'tc-ingress', M> {
  return define('tc-ingress', a, b);
}

/** A TC program on the egress path (clsact). */
export function tcEgress(fn: ProgramFn<'tc-egress', {}>): FnProgram<'tc-egress', {}>;
export function tcEgress<M extends MapDecls>(options: FnProgramOptions<M>, fn: ProgramFn<'tc-egress', M>): FnProgram<'tc-egress', M>;
export function tcEgress<M extends MapDecls>(a: FnProgramOptions<M> | ProgramFn<'tc-egress', M>, b?: ProgramFn<'tc-egress', M>): FnProgram<'tc-egress', M> {
  return define('tc-egress', a, b);
}

/** Any program, whatever its hook and maps (what runInNode and compileProgram take). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyFnProgram = FnProgram<any, any>;

export function isFnProgram(x: unknown): x is AnyFnProgram {
  const p = x as FnProgram | null;
  return !!p && typeof p === 'object' && p.kind === 'tsbpf.fn' && typeof p.fn === 'function';
}
