/**
 * runInNode: run a function program on a packet in Node, as its own
 * reference. Same packet view semantics as the kernel (fields.ts, parse.ts),
 * in-memory maps with the kernel's semantics for one CPU, a clock and a
 * random source the caller controls.
 */
import { TsbpfError } from '../errors.js';
import { withRunContext, type RunContext } from './helpers.js';
import { isSetRef } from '../dsl/refs.js';
import { createMemoryMaps, dslState, MemoryMap, MemorySet, type MapHandles, type MemoryMaps, type ProgArray } from './maps.js';
import { evaluate, type EvalState } from '../evaluate.js';
import type { DefinitionLike } from '../dsl/filter.js';
import { isFnProgram, type AnyFnProgram } from './program.js';
import { verdictName } from './verdicts.js';
import { PacketBufferView } from './view.js';

export interface RunOptions {
  /** Maps to run against (kept across runs: pass the same object again). Default: fresh maps. */
  maps?: MemoryMaps;
  /** ktimeNs(): a fixed time or a clock. Default: process.hrtime.bigint() (CLOCK_MONOTONIC, as in the kernel). */
  now?: bigint | (() => bigint);
  /** randomU32(): default a seeded generator. */
  random?: () => number;
  /** pkt.ifindex; default 1 (BPF_PROG_TEST_RUN runs on the loopback device). */
  ifindex?: number;
  /** pkt.mark at TC; default 0. */
  mark?: number;
  /**
   * The state of DSL sets, limits and counters (chains run by runChain, sets in
   * the maps). Default: one kept with `maps` (pass the same maps again to keep it).
   */
  state?: EvalState;
}

export interface RunResult {
  /** What the function returned (after tail calls). */
  retval: number;
  /** Its name at the hook: 'XDP_PASS', 'TC_ACT_SHOT', ... */
  verdict: string;
  /** The packet as the program left it. */
  data: Buffer;
  /** pkt.mark after the run (TC). */
  mark: number;
  /** Set when the program returned redirect(...). */
  redirect?: { ifindex: number; flags: number };
  /** The maps after the run. */
  maps: MemoryMaps;
  /** Programs entered by tail calls, in order. */
  tailCalls: number;
  /** DSL state after the run: set contents, limit buckets, per-rule counters of chains run. */
  state: EvalState;
}

/** Most tail calls in a row the kernel allows (MAX_TAIL_CALL_CNT). */
const MAX_TAIL_CALLS = 33;

class TailCallSignal {
  constructor(readonly program: AnyFnProgram) {}
}

function handles(program: AnyFnProgram, maps: MemoryMaps): MapHandles<any> {
  const out: Record<string, MemoryMap | MemorySet> = {};
  for (const [name, d] of Object.entries(program.maps)) out[name] = isSetRef(d) ? new MemorySet(name, d, dslState(maps)) : maps[name]!;
  return out as MapHandles<any>;
}

let seed = 0x2545f491;
function defaultRandom(): number {
  // xorshift32: deterministic unless the caller gives a source
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

/** Runs `program` once on a copy of `packet`. */
export function runInNode(program: AnyFnProgram, packet: Uint8Array, options: RunOptions = {}): RunResult {
  if (!isFnProgram(program)) throw new TsbpfError('INVALID_ARGUMENT', 'runInNode needs a program made by xdp(), tcIngress() or tcEgress()');
  const data = Buffer.from(packet);
  const maps = options.maps ?? {};
  const state = dslState(maps, options.state);
  createMemoryMaps(program.maps, maps);
  const now = options.now;
  const view = new PacketBufferView(data, { hook: program.hook, ifindex: options.ifindex ?? 1, mark: options.mark ?? 0 });
  let tailCalls = 0;
  /** The reject reply that replaces the frame (tailChain). */
  let reply: Buffer | undefined;
  // The filter's verdict as this hook's action; `final` (tailChain): a reject sends its reply as the act program does.
  const chainAction = (filter: DefinitionLike, final: boolean): number => {
    const xdp = program.hook === 'xdp';
    const r = evaluate(filter, data, {
      hook: program.hook,
      state,
      ifindex: options.ifindex ?? 1,
      ...(xdp ? {} : { mark: view.mark }),
      now: ctx.now(),
      trace: false,
    });
    if (!xdp) view.mark = r.mark;
    switch (r.verdict) {
      case 'accept':
        return xdp ? 2 : 0;
      case 'redirect':
        ctx.redirect = { ifindex: r.redirect?.ifindex ?? 0, flags: 0 };
        return xdp ? 4 : 7;
      case 'reject':
        if (final && r.data) {
          // XDP_TX, or at TC a redirect back out of (egress: into) the interface, as codegen/include/tsbpf/reject.h does.
          reply = r.data;
          if (xdp) return 3;
          ctx.redirect = { ifindex: options.ifindex ?? 1, flags: program.hook === 'tc-egress' ? 1 : 0 };
          return 7;
        }
        return xdp ? 1 : 2;
      default:
        return xdp ? 1 : 2;
    }
  };
  const ctx: RunContext = {
    hook: program.hook,
    now: typeof now === 'bigint' ? () => now : now ?? (() => process.hrtime.bigint()),
    random: options.random ?? defaultRandom,
    tailCall(progs: ProgArray, index: number) {
      const m = progs as unknown as MemoryMap;
      const target = m.programs.get(index);
      if (!isFnProgram(target) || tailCalls >= MAX_TAIL_CALLS) return;
      if (target.hook !== program.hook && (target.hook === 'xdp') !== (program.hook === 'xdp')) return;
      tailCalls++;
      throw new TailCallSignal(target);
    },
    runChain(filter) {
      return chainAction(filter, false);
    },
    tailChain(filter) {
      return chainAction(filter, true);
    },
  };
  let current: AnyFnProgram = program;
  let retval: number;
  for (;;) {
    createMemoryMaps(current.maps, maps);
    try {
      retval = withRunContext(ctx, () => current.fn(view as never, handles(current, maps) as never)) as number;
      break;
    } catch (e) {
      if (e instanceof TailCallSignal) {
        // The kernel keeps a redirect target across a tail call only when the callee redirects again.
        ctx.redirect = undefined;
        current = e.program;
        continue;
      }
      throw e;
    }
  }
  const result: RunResult = {
    retval,
    verdict: verdictName(program.hook, retval),
    data: reply ?? data,
    mark: program.hook === 'xdp' ? 0 : view.mark,
    maps,
    tailCalls,
    state,
  };
  if (ctx.redirect && retval === (program.hook === 'xdp' ? 4 : 7)) result.redirect = ctx.redirect;
  return result;
}
