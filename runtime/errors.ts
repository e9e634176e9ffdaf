/**
 * Turns the addon's plain Errors (errno, op, program, verifierLog) into the
 * TsbpfError family, with a code a program can branch on and a hint a person
 * can act on.
 */
import { constants } from 'node:os';
import { TsbpfError, VerifierError, type TsbpfErrorCode } from '../sdk/errors.js';

const E = constants.errno;
/** Linux's ENOTSUPP (524), which the kernel returns for missing map batch ops; not in os.constants. */
export const ENOTSUPP = 524;

/** The extra properties the addon sets on the Errors it throws. */
export interface NativeErrorFields {
  errno?: number;
  op?: string;
  program?: string;
  verifierLog?: string;
  libbpfLog?: string;
  updated?: number;
}

export type NativeError = Error & NativeErrorFields;

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && !(e instanceof TsbpfError) && typeof (e as NativeErrorFields).op === 'string';
}

export function errnoOf(e: unknown): number | undefined {
  if (e instanceof TsbpfError) return e.errno;
  if (e instanceof Error) {
    const n = (e as NativeErrorFields).errno;
    return typeof n === 'number' ? n : undefined;
  }
  return undefined;
}

/** True for the errnos the kernel uses when an operation does not exist for a map type. */
export function isUnsupported(e: unknown): boolean {
  if (e instanceof Error && (e as NativeErrorFields).op === 'argument') return false;
  const n = errnoOf(e);
  return n === E.EINVAL || n === E.EOPNOTSUPP || n === ENOTSUPP || n === E.ENOSYS;
}

export interface WrapContext {
  /** The code when nothing more specific applies. */
  code: TsbpfErrorCode;
  /** Prefix for the message, e.g. "map 'counters'". */
  what?: string;
  hint?: string;
  details?: Record<string, unknown>;
}

/**
 * A TsbpfError for any error from the addon (TsbpfErrors pass through).
 * Specific causes win over the context's code: a missing netns, a missing
 * interface, a verifier rejection, missing privileges.
 */
export function wrapNative(e: unknown, ctx: WrapContext): TsbpfError {
  if (e instanceof TsbpfError) return e;
  if (!(e instanceof Error)) return new TsbpfError(ctx.code, `${ctx.what ? `${ctx.what}: ` : ''}${String(e)}`, { cause: e });
  const f = e as NativeError;
  const errno = typeof f.errno === 'number' ? f.errno : undefined;
  const message = ctx.what ? `${ctx.what}: ${e.message}` : e.message;
  const details: Record<string, unknown> = { ...(ctx.details ?? {}) };
  if (f.op) details.op = f.op;
  if (f.libbpfLog) details.libbpfLog = f.libbpfLog;
  const base = { cause: e, errno, details };

  if (f.program && f.verifierLog) {
    return new VerifierError(f.program, f.verifierLog, { ...base, details: { ...details, errno } });
  }
  if (f.op === 'argument') return new TsbpfError('INVALID_ARGUMENT', message, { ...base, hint: ctx.hint });
  if ((f.op === 'netns' || f.op === 'setns') && (errno === E.ENOENT || errno === E.EINVAL)) {
    return new TsbpfError('NETNS_NOT_FOUND', message, {
      ...base,
      hint: 'create it with `ip netns add NAME`, or pass a path such as /proc/PID/ns/net',
    });
  }
  if (f.op === 'if_nametoindex' && (errno === E.ENODEV || errno === E.ENXIO || errno === E.EINVAL)) {
    return new TsbpfError('IFACE_NOT_FOUND', message, {
      ...base,
      hint: 'check the interface name (`ip link`), and the netns it lives in',
    });
  }
  if (errno === E.EPERM && f.op !== 'bpf_tc_detach') {
    return new TsbpfError('NOT_PRIVILEGED', message, {
      ...base,
      hint: 'run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON',
    });
  }
  if (f.op === 'bpf_map__reuse_fd' || (f.op === 'bpf_obj_get' && ctx.code === 'OBJECT_INVALID')) {
    return new TsbpfError('PIN_FAILED', message, {
      ...base,
      hint: 'unpin the old map (rm the file) or load without pinRoot to start from fresh maps',
    });
  }
  if (f.op === 'bpf_object__open' && errno === E.ENOENT) {
    return new TsbpfError('OBJECT_NOT_FOUND', message, { ...base, hint: ctx.hint ?? 'check the path of the object file' });
  }
  if (f.op === 'bpf_object__open') {
    return new TsbpfError('OBJECT_INVALID', message, {
      ...base,
      hint: ctx.hint ?? 'expected an ELF object built with clang -O2 -g -target bpf',
    });
  }
  if (f.op === 'bpf_object__load' && f.program) {
    return new TsbpfError('LOAD_FAILED', message, { ...base, details: { ...details, program: f.program }, hint: ctx.hint });
  }
  return new TsbpfError(ctx.code, message, { ...base, hint: ctx.hint });
}

/** Runs `fn`, rethrowing any addon error as a TsbpfError. */
export function guard<T>(ctx: WrapContext, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw wrapNative(e, ctx);
  }
}

/** True when a detach failed only because its target is gone already (netns, interface or filter). */
export function isGone(e: unknown): boolean {
  if (e instanceof TsbpfError && (e.code === 'NETNS_NOT_FOUND' || e.code === 'IFACE_NOT_FOUND')) return true;
  const n = errnoOf(e);
  return n === E.ENOENT || n === E.ENODEV || n === E.ENXIO;
}
