/**
 * BPF ring buffers: records reach a JS callback from the event loop, decoded
 * with a layout when one is known (given, or a struct looked up by name in
 * the object's BTF).
 */
import { TsbpfError } from '../sdk/errors.js';
import type { Layout } from '../sdk/layout.js';
import { layoutOfType } from './btf.js';
import { guard } from './errors.js';
import { MapTypes, type BpfMap } from './map.js';
import { native, type NativeRingBufferHandle } from './native.js';

export interface RingBufferOptions<T> {
  /** Decodes each record. */
  layout?: Layout<T>;
  /** Or: the name of a struct in the map's BTF ('event' for `struct event`). */
  type?: string;
  /** Whether the open ring buffer keeps the process alive (default true, like a socket). */
  ref?: boolean;
}

export type RingBufferCallback<T> = (event: T, raw: Buffer) => void;

export class RingBuffer<T = Buffer> {
  readonly map: BpfMap<unknown, unknown>;
  readonly layout: Layout<T> | undefined;
  #handle: NativeRingBufferHandle | undefined;

  /** @internal use ringBuffer() or obj.ringBuffer() */
  constructor(map: BpfMap<unknown, unknown>, callback: RingBufferCallback<T>, options: RingBufferOptions<T> = {}) {
    if (map.typeId !== MapTypes.ringbuf) {
      throw new TsbpfError('INVALID_ARGUMENT', `map '${map.name}' is a ${map.type} map, not a ringbuf`);
    }
    if (typeof callback !== 'function') throw new TsbpfError('INVALID_ARGUMENT', 'ringBuffer needs a callback');
    this.map = map;
    this.layout = options.layout ?? (options.type !== undefined ? layoutByName<T>(map, options.type) : undefined);
    const layout = this.layout;
    const deliver = (raw: Buffer) => {
      if (!layout) {
        callback(raw as unknown as T, raw);
        return;
      }
      // Shorter records (variable-size output) decode as if zero-padded.
      const buf = raw.length >= layout.size ? raw : Buffer.concat([raw, Buffer.alloc(layout.size - raw.length)]);
      callback(layout.decode(buf, 0), raw);
    };
    this.#handle = guard({ code: 'RINGBUF_FAILED', what: `ring buffer '${map.name}'` }, () => native().ringBufferOpen(map.fd, deliver));
    // Closed with its map (or the map's object).
    map.dependents.add(this);
    if (options.ref === false) native().ringBufferRef(this.#handle, false);
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  /** Delivers what is in the buffer now, synchronously; returns how many records. */
  consume(): number {
    const h = this.#open();
    return guard({ code: 'RINGBUF_FAILED', what: `ring buffer '${this.map.name}'` }, () => native().ringBufferConsume(h));
  }

  /** Let the process exit while the ring buffer is open. */
  unref(): this {
    native().ringBufferRef(this.#open(), false);
    return this;
  }

  ref(): this {
    native().ringBufferRef(this.#open(), true);
    return this;
  }

  close(): void {
    const h = this.#handle;
    if (!h) return;
    this.#handle = undefined;
    native().ringBufferClose(h);
    this.map.dependents.delete(this);
  }

  #open(): NativeRingBufferHandle {
    if (!this.#handle) throw new TsbpfError('CLOSED', `ring buffer '${this.map.name}' is closed`);
    return this.#handle;
  }
}

function layoutByName<T>(map: BpfMap<unknown, unknown>, name: string): Layout<T> {
  const btf = map.btf;
  if (!btf) {
    throw new TsbpfError('BTF_INVALID', `map '${map.name}' comes without BTF, so type '${name}' cannot be found`, {
      hint: 'pass { layout } instead, or build the object with clang -g',
    });
  }
  const bare = name.replace(/^(struct|union)\s+/, '');
  const t = btf.find(bare, 'struct') ?? btf.find(bare, 'union') ?? btf.find(bare, 'typedef');
  if (!t) throw new TsbpfError('BTF_INVALID', `the BTF of map '${map.name}' has no type '${name}'`);
  return layoutOfType(btf, t.id) as Layout<T>;
}

/** Reads a ringbuf map: `callback(event, raw)` for every record, on the event loop. */
export function ringBuffer<T = Buffer>(map: BpfMap<unknown, unknown>, callback: RingBufferCallback<T>, options: RingBufferOptions<T> = {}): RingBuffer<T> {
  return new RingBuffer<T>(map, callback, options);
}
