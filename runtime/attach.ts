/**
 * Attaching programs at TC (clsact ingress/egress) and XDP, optionally in
 * another network namespace, and detaching them again. Every attachment is
 * tracked so that close() and process exit leave nothing attached, and so
 * that a replace at the same hook hands the hook over instead of leaving two
 * owners.
 */
import { TsbpfError } from '../sdk/errors.js';
import { guard, isGone, wrapNative } from './errors.js';
import { native } from './native.js';
import { HOOKS, hookFamily, type BpfProgram, type Hook, type ProgramOwner } from './program.js';

export type XdpMode = 'generic' | 'driver' | 'offload';

export interface AttachOptions {
  /** The program (name or handle); may be left out when exactly one program fits the hook. */
  program?: string | BpfProgram;
  hook: Hook;
  ifname: string;
  /** A netns name (/var/run/netns/NAME) or a path such as /proc/PID/ns/net. */
  netns?: string;
  /** TC filter priority, 1..65535 (default: the kernel picks). */
  priority?: number;
  /** TC filter handle (default: the kernel picks). */
  handle?: number;
  /** XDP mode (default: driver when the device supports it, else generic). */
  mode?: XdpMode;
  /**
   * Replace what is attached at the same place, atomically: for TC the
   * filter with this priority and handle (both required), for XDP the
   * program attached in this mode. Without it, an occupied hook is an error.
   */
  replace?: boolean;
  /** Stay attached after close() and process exit (detach explicitly, or pin and detach later). */
  persistent?: boolean;
}

const live = new Set<Attachment>();
const byOwner = new Map<ProgramOwner, Set<Attachment>>();
/** clsact qdiscs this process created, by `netns|ifname`: removed again when the last filter goes. */
const createdQdiscs = new Set<string>();

function qdiscKey(netns: string | undefined, ifname: string): string {
  return `${netns ?? ''}|${ifname}`;
}

function own(owner: ProgramOwner, a: Attachment): void {
  let set = byOwner.get(owner);
  if (!set) byOwner.set(owner, (set = new Set()));
  set.add(a);
}

function disown(owner: ProgramOwner, a: Attachment): void {
  const set = byOwner.get(owner);
  if (!set) return;
  set.delete(a);
  if (set.size === 0) byOwner.delete(owner);
}

/** Whether two attachments sit at the same place, so one replaces the other. */
function samePlace(a: Attachment, b: { hook: Hook; ifname: string; netns: string | undefined; priority?: number; handle?: number; mode?: XdpMode }): boolean {
  if (a.ifname !== b.ifname || (a.netns ?? '') !== (b.netns ?? '')) return false;
  if (a.hook === 'xdp') return b.hook === 'xdp' && a.mode === b.mode;
  return a.hook === b.hook && a.priority === b.priority && a.handle === b.handle;
}

export class Attachment {
  readonly hook: Hook;
  readonly ifname: string;
  readonly netns: string | undefined;
  readonly ifindex: number;
  /** TC only: the filter's priority and handle. */
  readonly priority: number | undefined;
  readonly handle: number | undefined;
  /** XDP only: the mode the program runs in. */
  readonly mode: XdpMode | undefined;
  readonly persistent: boolean;
  #program: BpfProgram;
  #attached = true;

  /** @internal use obj.attach() */
  constructor(init: {
    hook: Hook;
    ifname: string;
    netns: string | undefined;
    ifindex: number;
    priority?: number;
    handle?: number;
    mode?: XdpMode;
    persistent: boolean;
    program: BpfProgram;
  }) {
    this.hook = init.hook;
    this.ifname = init.ifname;
    this.netns = init.netns;
    this.ifindex = init.ifindex;
    this.priority = init.priority;
    this.handle = init.handle;
    this.mode = init.mode;
    this.persistent = init.persistent;
    this.#program = init.program;
  }

  get program(): BpfProgram {
    return this.#program;
  }

  get attached(): boolean {
    return this.#attached;
  }

  /** Where it is attached, for messages. */
  get where(): string {
    return `${this.hook} of '${this.ifname}'${this.netns ? ` in netns '${this.netns}'` : ''}`;
  }

  /**
   * Puts `program` at this hook in place of the current one, atomically:
   * packets see either the old or the new program, never none. The
   * attachment then belongs to the new program's object.
   */
  replace(program: BpfProgram): void {
    this.#checkAttached();
    checkFits(program, this.hook);
    const old = this.#program;
    const what = `replace '${old.name}' by '${program.name}' at ${this.where}`;
    if (hookFamily(this.hook) === 'tc') {
      guard({ code: 'ATTACH_FAILED', what }, () =>
        native().tcAttach({
          ifname: this.ifname,
          direction: this.hook === 'tc-ingress' ? 'ingress' : 'egress',
          progFd: program.fd,
          priority: this.priority,
          handle: this.handle,
          replace: true,
          netns: this.netns,
        }),
      );
    } else {
      guard({ code: 'ATTACH_FAILED', what }, () =>
        native().xdpAttach({
          ifname: this.ifname,
          progFd: program.fd,
          mode: this.mode,
          ...(old.owner.closed ? {} : { expectedFd: old.fd }),
          netns: this.netns,
        }),
      );
    }
    disown(old.owner, this);
    this.#program = program;
    own(program.owner, this);
  }

  /** Removes the program from the hook (and the clsact qdisc, if this process created it and it is now empty). */
  detach(): void {
    if (!this.#attached) return;
    const what = `detach '${this.#program.name}' from ${this.where}`;
    try {
      if (hookFamily(this.hook) === 'tc') {
        const key = qdiscKey(this.netns, this.ifname);
        native().tcDetach({
          ifname: this.ifname,
          direction: this.hook === 'tc-ingress' ? 'ingress' : 'egress',
          priority: this.priority ?? 0,
          handle: this.handle ?? 0,
          removeQdiscIfEmpty: createdQdiscs.has(key),
          netns: this.netns,
        });
        this.#forget();
        const ours = [...live].some((a) => a.hook !== 'xdp' && qdiscKey(a.netns, a.ifname) === key);
        if (!ours) createdQdiscs.delete(key);
      } else {
        native().xdpDetach({
          ifname: this.ifname,
          mode: this.mode,
          ...(this.#program.owner.closed ? {} : { expectedFd: this.#program.fd }),
          netns: this.netns,
        });
        this.#forget();
      }
    } catch (e) {
      const err = wrapNative(e, { code: 'DETACH_FAILED', what });
      // The netns, interface or filter is gone: so is the attachment.
      if (isGone(err)) {
        this.#forget();
        return;
      }
      throw err;
    }
  }

  /** @internal another attachment took this place over */
  supersede(): void {
    this.#forget();
  }

  toJSON(): Record<string, unknown> {
    return {
      hook: this.hook,
      ifname: this.ifname,
      netns: this.netns,
      ifindex: this.ifindex,
      program: this.#program.name,
      priority: this.priority,
      handle: this.handle,
      mode: this.mode,
      attached: this.#attached,
    };
  }

  #forget(): void {
    this.#attached = false;
    live.delete(this);
    disown(this.#program.owner, this);
  }

  #checkAttached(): void {
    if (!this.#attached) throw new TsbpfError('DETACH_FAILED', `the attachment at ${this.where} is detached already`);
  }
}

function checkFits(program: BpfProgram, hook: Hook): void {
  if (!program.hooks.includes(hook)) {
    throw new TsbpfError('ATTACH_FAILED', `program '${program.name}' is a ${program.type} program and cannot attach at ${hook}`, {
      hint: program.hooks.length ? `it attaches at ${program.hooks.join(', ')}` : undefined,
    });
  }
}

/** Picks the program for a hook: the one named, or the only one that fits. */
export function chooseProgram(programs: readonly BpfProgram[], hook: Hook, wanted: string | BpfProgram | undefined, objectName: string): BpfProgram {
  if (wanted !== undefined && typeof wanted !== 'string') return wanted;
  if (wanted !== undefined) {
    const p = programs.find((x) => x.name === wanted);
    if (!p) {
      throw new TsbpfError('PROGRAM_NOT_FOUND', `object '${objectName}' has no program '${wanted}'`, {
        hint: `its programs: ${programs.map((x) => x.name).join(', ') || 'none'}`,
      });
    }
    return p;
  }
  const fits = programs.filter((p) => p.hooks.includes(hook));
  if (fits.length === 1) return fits[0]!;
  throw new TsbpfError(
    'PROGRAM_NOT_FOUND',
    fits.length === 0
      ? `object '${objectName}' has no program that attaches at ${hook}`
      : `object '${objectName}' has ${fits.length} programs for ${hook} (${fits.map((p) => p.name).join(', ')}); name one with { program }`,
  );
}

/** Throws INVALID_ARGUMENT for options that cannot work, before anything reaches the kernel. */
export function validateAttachOptions(options: AttachOptions): void {
  if (!options || typeof options !== 'object') throw new TsbpfError('INVALID_ARGUMENT', 'attach needs { hook, ifname }');
  if (!HOOKS.includes(options.hook)) {
    throw new TsbpfError('INVALID_ARGUMENT', `unknown hook '${String(options.hook)}'`, { hint: `hooks: ${HOOKS.join(', ')}` });
  }
  if (typeof options.ifname !== 'string' || options.ifname === '' || options.ifname.length > 15 || /[\s/]/.test(options.ifname)) {
    throw new TsbpfError('INVALID_ARGUMENT', `invalid interface name '${String(options.ifname)}'`);
  }
  if (options.netns !== undefined && (typeof options.netns !== 'string' || options.netns === '')) {
    throw new TsbpfError('INVALID_ARGUMENT', `invalid netns '${String(options.netns)}'`);
  }
  const tc = hookFamily(options.hook) === 'tc';
  if (!tc && (options.priority !== undefined || options.handle !== undefined)) {
    throw new TsbpfError('INVALID_ARGUMENT', 'priority and handle are TC options; XDP has one program per interface and mode');
  }
  if (tc && options.mode !== undefined) throw new TsbpfError('INVALID_ARGUMENT', 'mode is an XDP option');
  if (options.priority !== undefined && (!Number.isInteger(options.priority) || options.priority < 1 || options.priority > 0xffff)) {
    throw new TsbpfError('INVALID_ARGUMENT', `priority must be within 1..65535, got ${options.priority}`);
  }
  if (options.handle !== undefined && (!Number.isInteger(options.handle) || options.handle < 1 || options.handle > 0xffffffff)) {
    throw new TsbpfError('INVALID_ARGUMENT', `handle must be a positive 32-bit integer, got ${options.handle}`);
  }
  if (tc && options.replace && (options.priority === undefined || options.handle === undefined)) {
    throw new TsbpfError('INVALID_ARGUMENT', 'replace at a TC hook needs the priority and handle of the filter to replace');
  }
  if (options.mode !== undefined && !['generic', 'driver', 'offload'].includes(options.mode)) {
    throw new TsbpfError('INVALID_ARGUMENT', `XDP mode must be 'generic', 'driver' or 'offload', got '${String(options.mode)}'`);
  }
}

/** Attaches `program` as `options` say; on failure nothing is left attached. */
export function attachProgram(program: BpfProgram, options: AttachOptions): Attachment {
  validateAttachOptions(options);
  checkFits(program, options.hook);
  const { hook, ifname, netns } = options;
  const what = `attach '${program.name}' at ${hook} of '${ifname}'${netns ? ` in netns '${netns}'` : ''}`;
  let attachment: Attachment;
  if (hookFamily(hook) === 'tc') {
    const r = guard({ code: 'ATTACH_FAILED', what }, () =>
      native().tcAttach({
        ifname,
        direction: hook === 'tc-ingress' ? 'ingress' : 'egress',
        progFd: program.fd,
        priority: options.priority ?? 0,
        handle: options.handle ?? 0,
        replace: options.replace === true,
        netns,
      }),
    );
    if (r.createdQdisc) createdQdiscs.add(qdiscKey(netns, ifname));
    attachment = new Attachment({ hook, ifname, netns, ifindex: r.ifindex, priority: r.priority, handle: r.handle, persistent: options.persistent === true, program });
  } else {
    const r = guard({ code: 'ATTACH_FAILED', what }, () =>
      native().xdpAttach({ ifname, progFd: program.fd, mode: options.mode, noReplace: options.replace !== true, netns }),
    );
    attachment = new Attachment({ hook, ifname, netns, ifindex: r.ifindex, mode: r.mode, persistent: options.persistent === true, program });
  }
  // A replace took the place of whatever this process had attached there.
  for (const other of [...live]) if (samePlace(other, attachment)) other.supersede();
  live.add(attachment);
  own(program.owner, attachment);
  return attachment;
}

/** The live attachments of an object's programs. */
export function attachmentsOf(owner: ProgramOwner): Attachment[] {
  return [...(byOwner.get(owner) ?? [])];
}

/**
 * Detaches every attachment of an object's programs (persistent ones only
 * when asked). Tries them all; throws the first failure afterwards.
 */
export function detachAllOf(owner: ProgramOwner, options: { includePersistent?: boolean } = {}): void {
  let first: unknown;
  for (const a of attachmentsOf(owner)) {
    if (a.persistent && !options.includePersistent) continue;
    try {
      a.detach();
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}
