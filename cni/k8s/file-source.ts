/**
 * Kubernetes objects from a local YAML file (multi-document, or `kind: List`):
 * the agent's embedded default when there is no API server. The file is
 * watched; each change is parsed whole and delivered as the diff against the
 * previous contents (add, update, delete). A file that does not parse keeps
 * the last good state and reports the error.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { TsbpfError } from '../../sdk/errors.js';
import { isKind, objectKey, type KubeObject } from './objects.js';
import type { ObjectEvent, ObjectListener, ObjectSource } from './source.js';
import { normalize } from './store.js';

export interface ParsedObjects {
  objects: KubeObject[];
  /** Documents of kinds the agent does not read (Deployments, ConfigMaps, ...), by kind. */
  ignored: Record<string, number>;
}

/** Parse YAML text into the objects the agent reads. Throws TsbpfError on malformed input. */
export function parseObjects(text: string, file = '<yaml>'): ParsedObjects {
  const objects: KubeObject[] = [];
  const ignored: Record<string, number> = {};
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const take = (o: unknown, where: string) => {
    if (o === null || o === undefined) return;
    if (typeof o !== 'object' || Array.isArray(o)) throw new TsbpfError('INVALID_ARGUMENT', `${where}: not a Kubernetes object`);
    const r = o as Record<string, unknown>;
    if (r.kind === 'List' || (typeof r.kind === 'string' && r.kind.endsWith('List') && Array.isArray(r.items))) {
      (r.items as unknown[]).forEach((it, i) => take(it, `${where} items[${i}]`));
      return;
    }
    if (!isKind(r.kind)) {
      const k = typeof r.kind === 'string' ? r.kind : '(no kind)';
      ignored[k] = (ignored[k] ?? 0) + 1;
      return;
    }
    const meta = r.metadata as Record<string, unknown> | undefined;
    if (!meta || typeof meta.name !== 'string' || meta.name === '') throw new TsbpfError('INVALID_ARGUMENT', `${where}: ${r.kind} without metadata.name`);
    if (r.kind === 'NetworkPolicy' && (typeof r.spec !== 'object' || r.spec === null)) {
      throw new TsbpfError('INVALID_ARGUMENT', `${where}: NetworkPolicy ${meta.name} without spec`);
    }
    objects.push(normalize(o as KubeObject));
  };
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      throw new TsbpfError('INVALID_ARGUMENT', `${file}: document ${i + 1}: ${e.message}`, { cause: e });
    }
    take(doc.toJS(), `${file}: document ${i + 1}`);
  });
  const seen = new Set<string>();
  for (const o of objects) {
    const k = objectKey(o);
    if (seen.has(k)) throw new TsbpfError('INVALID_ARGUMENT', `${file}: ${k} appears twice`);
    seen.add(k);
  }
  return { objects, ignored };
}

/** The events that turn `prev` into `next` (both keyed by objectKey). */
export function diffObjects(prev: ReadonlyMap<string, KubeObject>, next: ReadonlyMap<string, KubeObject>): ObjectEvent[] {
  const events: ObjectEvent[] = [];
  for (const [k, o] of next) {
    const old = prev.get(k);
    if (!old) events.push({ type: 'add', object: o });
    else if (JSON.stringify(old) !== JSON.stringify(o)) events.push({ type: 'update', object: o });
  }
  for (const [k, o] of prev) if (!next.has(k)) events.push({ type: 'delete', object: o });
  return events;
}

export interface FileSourceOptions {
  /** Wait this long after the last change event before reading (editors write in steps). Default 50 ms. */
  debounceMs?: number;
}

export class FileObjectSource implements ObjectSource {
  readonly name: string;
  readonly path: string;
  readonly #debounceMs: number;
  #current = new Map<string, KubeObject>();
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #listener: ObjectListener | undefined;
  #reading: Promise<void> = Promise.resolve();
  /** Kinds skipped in the last good read. */
  ignored: Record<string, number> = {};

  constructor(path: string, options: FileSourceOptions = {}) {
    this.path = path;
    this.name = `file:${path}`;
    this.#debounceMs = options.debounceMs ?? 50;
  }

  async start(listener: ObjectListener): Promise<void> {
    this.#listener = listener;
    // Watch the directory: editors and `mv` replace the file, which a file watch would lose.
    this.#watcher = watch(dirname(this.path), (_type, name) => {
      if (name !== null && name !== basename(this.path)) return;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload(), this.#debounceMs);
    });
    this.#watcher.on('error', (e) => listener.error(e));
    await this.reload({ initial: true });
  }

  /** Read the file now and deliver the diff (also called by the watcher). */
  reload(options: { initial?: boolean } = {}): Promise<void> {
    this.#reading = this.#reading.then(async () => {
      const l = this.#listener;
      if (!l) return;
      let parsed: ParsedObjects;
      try {
        const text = await readFile(this.path, 'utf8').catch((e: NodeJS.ErrnoException) => {
          // A missing file is an empty cluster (it may be created later).
          if (e.code === 'ENOENT') return '';
          throw e;
        });
        parsed = parseObjects(text, this.path);
      } catch (e) {
        l.error(e as Error);
        if (options.initial) l.events([]);
        return;
      }
      const next = new Map(parsed.objects.map((o) => [objectKey(o), o]));
      const batch = diffObjects(this.#current, next);
      this.#current = next;
      this.ignored = parsed.ignored;
      if (batch.length > 0 || options.initial) l.events(batch);
    });
    return this.#reading;
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#listener = undefined;
    await this.#reading;
  }
}

/** A source with a fixed set of objects (tests, embedding). `set()` replaces them and delivers the diff. */
export class StaticObjectSource implements ObjectSource {
  readonly name = 'static';
  #current = new Map<string, KubeObject>();
  #listener: ObjectListener | undefined;

  constructor(objects: KubeObject[] = []) {
    this.#current = new Map(objects.map((o) => [objectKey(normalize(o)), normalize(o)]));
  }

  async start(listener: ObjectListener): Promise<void> {
    this.#listener = listener;
    listener.events([...this.#current.values()].map((object) => ({ type: 'add' as const, object })));
  }

  set(objects: KubeObject[]): void {
    const next = new Map(objects.map((o) => [objectKey(normalize(o)), normalize(o)]));
    const batch = diffObjects(this.#current, next);
    this.#current = next;
    if (batch.length > 0) this.#listener?.events(batch);
  }

  async stop(): Promise<void> {
    this.#listener = undefined;
  }
}
