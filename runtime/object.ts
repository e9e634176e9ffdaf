/**
 * A loaded BPF object: its programs, its typed maps, and everything it
 * attached, pinned or opened. close() releases all of it; so does process
 * exit for whatever was not closed.
 */
import { TsbpfError } from '../sdk/errors.js';
import { attachmentsOf, attachProgram, chooseProgram, detachAllOf, validateAttachOptions, type Attachment, type AttachOptions } from './attach.js';
import type { Btf } from './btf.js';
import type { BpfMap } from './map.js';
import { native, type NativeObjectHandle } from './native.js';
import { pinAll, unpinAll, type PinSet } from './pin.js';
import { BpfProgram, type ProgramOwner } from './program.js';
import { RingBuffer, type RingBufferCallback, type RingBufferOptions } from './ringbuf.js';
import { testRunProgram, type TestRunOptions, type TestRunResult } from './test-run.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyMaps = Record<string, BpfMap<any, any>>;

const open = new Set<BpfObject<AnyMaps>>();
let exitHookInstalled = false;

/** Objects still open at exit are closed: their attachments detached, their fds released. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const o of [...open]) {
      try {
        o.close();
      } catch {
        /* exiting: nothing better to do */
      }
    }
  });
}

export class BpfObject<M extends AnyMaps = AnyMaps> implements ProgramOwner {
  readonly name: string;
  readonly programs: Readonly<Record<string, BpfProgram>>;
  readonly maps: M;
  /** The object's BTF, when it has one. */
  readonly btf: Btf | undefined;
  #handle: NativeObjectHandle | undefined;
  #pins: PinSet | undefined;

  /** @internal use load() */
  constructor(init: {
    name: string;
    handle: NativeObjectHandle;
    programs: (owner: BpfObject<M>) => BpfProgram[];
    maps: M;
    btf: Btf | undefined;
  }) {
    this.name = init.name;
    this.#handle = init.handle;
    this.btf = init.btf;
    this.maps = init.maps;
    const programs: Record<string, BpfProgram> = {};
    for (const p of init.programs(this)) programs[p.name] = p;
    this.programs = programs;
    open.add(this as BpfObject<AnyMaps>);
    installExitHook();
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  /** A program by name; without a name, the only program. */
  program(name?: string): BpfProgram {
    this.#checkOpen();
    const all = Object.values(this.programs);
    if (name === undefined) {
      if (all.length === 1) return all[0]!;
      throw new TsbpfError('PROGRAM_NOT_FOUND', `object '${this.name}' has ${all.length} programs (${all.map((p) => p.name).join(', ')}); name one`);
    }
    const p = this.programs[name];
    if (!p) {
      throw new TsbpfError('PROGRAM_NOT_FOUND', `object '${this.name}' has no program '${name}'`, {
        hint: `its programs: ${all.map((x) => x.name).join(', ') || 'none'}`,
      });
    }
    return p;
  }

  /** A map by name, typed as the caller says. */
  map<K = unknown, V = unknown>(name: string): BpfMap<K, V> {
    this.#checkOpen();
    const m = this.maps[name];
    if (!m) {
      throw new TsbpfError('MAP_NOT_FOUND', `object '${this.name}' has no map '${name}'`, {
        hint: `its maps: ${Object.keys(this.maps).join(', ') || 'none'}`,
      });
    }
    return m as BpfMap<K, V>;
  }

  /** Attaches a program at a hook; see AttachOptions. */
  attach(options: AttachOptions): Attachment {
    this.#checkOpen();
    validateAttachOptions(options);
    const program = chooseProgram(Object.values(this.programs), options?.hook, options?.program, this.name);
    if (program.owner !== this) {
      throw new TsbpfError('INVALID_ARGUMENT', `program '${program.name}' belongs to object '${program.owner.name}'; attach it from there`);
    }
    return attachProgram(program, options);
  }

  /** What this object's programs are attached to now. */
  get attachments(): Attachment[] {
    return attachmentsOf(this);
  }

  /** Detaches one attachment, or all of them (persistent ones included). */
  detach(attachment?: Attachment): void {
    if (attachment) {
      if (attachment.program.owner !== this) throw new TsbpfError('INVALID_ARGUMENT', `that attachment belongs to object '${attachment.program.owner.name}'`);
      attachment.detach();
      return;
    }
    detachAllOf(this, { includePersistent: true });
  }

  /** Runs a program on a packet in the kernel (BPF_PROG_TEST_RUN). */
  testRun(options: TestRunOptions): TestRunResult;
  testRun(program: string | BpfProgram | undefined, options: TestRunOptions): TestRunResult;
  testRun(a: string | BpfProgram | TestRunOptions | undefined, b?: TestRunOptions): TestRunResult {
    this.#checkOpen();
    let program: BpfProgram;
    let options: TestRunOptions;
    if (b === undefined && a !== undefined && typeof a === 'object' && !isProgram(a)) {
      program = this.program();
      options = a;
    } else {
      program = isProgram(a) ? a : this.program(a as string | undefined);
      options = b as TestRunOptions;
    }
    return testRunProgram(program, options);
  }

  /** Reads a ringbuf map of this object; see RingBufferOptions. */
  ringBuffer<T = Buffer>(map: string | BpfMap<unknown, unknown>, callback: RingBufferCallback<T>, options: RingBufferOptions<T> = {}): RingBuffer<T> {
    this.#checkOpen();
    const m = typeof map === 'string' ? this.map(map) : map;
    return new RingBuffer<T>(m as BpfMap<unknown, unknown>, callback, options);
  }

  /**
   * Pins every map at `<dir>/<map>` and every program at
   * `<dir>/programs/<program>` (dir must be on bpffs). They then outlive
   * this process until unpin().
   */
  pin(dir: string): PinSet {
    this.#checkOpen();
    if (this.#pins) throw new TsbpfError('PIN_FAILED', `object '${this.name}' is pinned already at ${this.#pins.dir}`, { hint: 'unpin() first' });
    const maps = Object.values(this.maps)
      .filter((m) => !internalMaps.has(m))
      .map((m) => ({ name: m.name, fd: m.fd }));
    const programs = Object.values(this.programs).map((p) => ({ name: p.name, fd: p.fd }));
    this.#pins = pinAll(dir, maps, programs);
    return this.#pins;
  }

  /** Removes the pins made by pin(). */
  unpin(): void {
    const pins = this.#pins;
    if (!pins) return;
    this.#pins = undefined;
    unpinAll(pins);
  }

  get pinned(): PinSet | undefined {
    return this.#pins;
  }

  /**
   * Detaches what this object attached (except persistent attachments),
   * closes its ring buffers and releases its programs and maps. Pins stay:
   * outliving the process is what they are for.
   */
  close(): void {
    const h = this.#handle;
    if (!h) return;
    let first: unknown;
    try {
      detachAllOf(this);
    } catch (e) {
      first = e;
    }
    for (const m of Object.values(this.maps)) {
      try {
        m.closeDependents();
      } catch (e) {
        first ??= e;
      }
    }
    this.#handle = undefined;
    open.delete(this as BpfObject<AnyMaps>);
    native().objectClose(h);
    if (first !== undefined) throw first;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      programs: Object.values(this.programs).map((p) => p.toJSON()),
      maps: Object.values(this.maps).map((m) => ({ name: m.name, type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries })),
      attachments: this.attachments.map((a) => a.toJSON()),
    };
  }

  #checkOpen(): void {
    if (!this.#handle) throw new TsbpfError('CLOSED', `object '${this.name}' is closed`);
  }
}

/** libbpf's global-data maps (.bss, .data, .rodata): not pinned. */
export const internalMaps = new WeakSet<BpfMap<unknown, unknown>>();

function isProgram(x: unknown): x is BpfProgram {
  return x instanceof BpfProgram;
}
