/**
 * BPF_PROG_TEST_RUN: run a loaded program on a packet in the kernel, without
 * attaching it, and get its verdict and the packet it leaves behind.
 */
import { TsbpfError } from '../sdk/errors.js';
import { guard } from './errors.js';
import { native } from './native.js';
import type { BpfProgram } from './program.js';

export type XdpVerdict = 'aborted' | 'drop' | 'pass' | 'tx' | 'redirect';
export type TcVerdict = 'unspec' | 'ok' | 'reclassify' | 'shot' | 'pipe' | 'stolen' | 'queued' | 'repeat' | 'redirect' | 'trap';
/** The return value by its name for the program's hook; `retval:N` when it has none. */
export type KernelVerdict = XdpVerdict | TcVerdict | `retval:${number}`;

const XDP_VERDICTS: readonly XdpVerdict[] = ['aborted', 'drop', 'pass', 'tx', 'redirect'];
const TC_VERDICTS: Record<number, TcVerdict> = {
  [-1]: 'unspec',
  0: 'ok',
  1: 'reclassify',
  2: 'shot',
  3: 'pipe',
  4: 'stolen',
  5: 'queued',
  6: 'repeat',
  7: 'redirect',
  8: 'trap',
};

/** The verdict name of a return value for a program type ('xdp', 'sched_cls', ...). */
export function verdictOf(type: string, retval: number): KernelVerdict {
  if (type === 'xdp') return XDP_VERDICTS[retval] ?? `retval:${retval}`;
  if (type === 'sched_cls' || type === 'sched_act') return TC_VERDICTS[retval] ?? `retval:${retval}`;
  return `retval:${retval}`;
}

/**
 * The fields of `struct __sk_buff` that BPF_PROG_TEST_RUN lets a test set
 * for TC programs (the kernel rejects non-zero values anywhere else).
 */
export interface SkbContext {
  mark?: number;
  priority?: number;
  ingressIfindex?: number;
  ifindex?: number;
  /** cb[0..4] */
  cb?: number[];
  tstamp?: bigint;
  wireLen?: number;
  gsoSegs?: number;
  gsoSize?: number;
  hwtstamp?: bigint;
}

/** sizeof(struct __sk_buff) and the offsets of the settable fields (linux/bpf.h). */
const SKB = {
  size: 192,
  mark: 8,
  priority: 32,
  ingressIfindex: 36,
  ifindex: 40,
  cb: 48,
  tstamp: 152,
  wireLen: 160,
  gsoSegs: 164,
  gsoSize: 176,
  hwtstamp: 184,
} as const;

export function encodeSkbContext(ctx: SkbContext): Buffer {
  const b = Buffer.alloc(SKB.size);
  const u32 = (v: number | undefined, off: number, name: string) => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TsbpfError('INVALID_ARGUMENT', `ctx.${name} must be a u32, got ${v}`);
    b.writeUInt32LE(v, off);
  };
  u32(ctx.mark, SKB.mark, 'mark');
  u32(ctx.priority, SKB.priority, 'priority');
  u32(ctx.ingressIfindex, SKB.ingressIfindex, 'ingressIfindex');
  u32(ctx.ifindex, SKB.ifindex, 'ifindex');
  if (ctx.cb) {
    if (ctx.cb.length > 5) throw new TsbpfError('INVALID_ARGUMENT', `ctx.cb has 5 slots, got ${ctx.cb.length}`);
    ctx.cb.forEach((v, i) => u32(v, SKB.cb + 4 * i, `cb[${i}]`));
  }
  if (ctx.tstamp !== undefined) b.writeBigUInt64LE(ctx.tstamp, SKB.tstamp);
  u32(ctx.wireLen, SKB.wireLen, 'wireLen');
  u32(ctx.gsoSegs, SKB.gsoSegs, 'gsoSegs');
  u32(ctx.gsoSize, SKB.gsoSize, 'gsoSize');
  if (ctx.hwtstamp !== undefined) b.writeBigUInt64LE(ctx.hwtstamp, SKB.hwtstamp);
  return b;
}

export function decodeSkbContext(b: Buffer): Required<SkbContext> {
  const full = b.length >= SKB.size ? b : Buffer.concat([b, Buffer.alloc(SKB.size - b.length)]);
  return {
    mark: full.readUInt32LE(SKB.mark),
    priority: full.readUInt32LE(SKB.priority),
    ingressIfindex: full.readUInt32LE(SKB.ingressIfindex),
    ifindex: full.readUInt32LE(SKB.ifindex),
    cb: [0, 1, 2, 3, 4].map((i) => full.readUInt32LE(SKB.cb + 4 * i)),
    tstamp: full.readBigUInt64LE(SKB.tstamp),
    wireLen: full.readUInt32LE(SKB.wireLen),
    gsoSegs: full.readUInt32LE(SKB.gsoSegs),
    gsoSize: full.readUInt32LE(SKB.gsoSize),
    hwtstamp: full.readBigUInt64LE(SKB.hwtstamp),
  };
}

export interface TestRunOptions {
  /** The packet, from the Ethernet header on. */
  data: Buffer | Uint8Array;
  /** __sk_buff fields for TC programs, or a raw context (xdp_md, __sk_buff) as bytes. */
  ctx?: SkbContext | Buffer;
  /** Run it this many times (duration is the average). Default 1. */
  repeat?: number;
  /** Room for the packet out; default data.length + 256 (XDP may grow the head). */
  dataSizeOut?: number;
}

export interface TestRunResult {
  retval: number;
  verdict: KernelVerdict;
  /** The packet as the program left it. */
  data: Buffer;
  /** Average duration of one run, in ns, as the kernel measured it. */
  durationNs: number;
  /** The context after the run, when one was given. */
  ctx?: Required<SkbContext> | Buffer;
}

/** Runs `program` once (or `repeat` times) on `options.data` in the kernel. */
export function testRunProgram(program: BpfProgram, options: TestRunOptions): TestRunResult {
  if (!options || !(options.data instanceof Uint8Array)) {
    throw new TsbpfError('INVALID_ARGUMENT', 'testRun needs { data: Buffer } with the packet to run');
  }
  const data = Buffer.isBuffer(options.data) ? options.data : Buffer.from(options.data);
  if ((program.type === 'sched_cls' || program.type === 'sched_act') && data.length < 14) {
    throw new TsbpfError('INVALID_ARGUMENT', `a TC test run needs at least an Ethernet header (14 bytes), got ${data.length}`);
  }
  if (options.repeat !== undefined && (!Number.isInteger(options.repeat) || options.repeat < 1)) {
    throw new TsbpfError('INVALID_ARGUMENT', `repeat must be a positive integer, got ${options.repeat}`);
  }
  let ctx: Buffer | undefined;
  let ctxIsSkb = false;
  if (Buffer.isBuffer(options.ctx)) ctx = options.ctx;
  else if (options.ctx) {
    ctx = encodeSkbContext(options.ctx);
    ctxIsSkb = true;
  }
  const r = guard({ code: 'TEST_RUN_FAILED', what: `test run of program '${program.name}'` }, () =>
    native().testRun(program.fd, {
      data,
      dataSizeOut: options.dataSizeOut ?? data.length + 256,
      ...(ctx ? { ctx, ctxSizeOut: ctx.length } : {}),
      repeat: options.repeat ?? 1,
    }),
  );
  const result: TestRunResult = {
    retval: r.retval,
    verdict: verdictOf(program.type, r.retval),
    data: r.data,
    durationNs: r.duration,
  };
  if (r.ctx) result.ctx = ctxIsSkb ? decodeSkbContext(r.ctx) : r.ctx;
  return result;
}
