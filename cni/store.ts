/**
 * Crash-safe JSON state files (IPAM allocations, endpoints, identities).
 * A save writes a temporary file in the same directory, fsyncs it, renames
 * it over the old file and fsyncs the directory: after a crash at any moment
 * the file holds either the old or the new state, never a mix.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TsbpfError } from '../sdk/errors.js';

/** Points where a save can be interrupted, for crash tests. */
export type SaveStep = 'tmp-partial' | 'tmp-written' | 'renamed';

export interface JsonStoreOptions {
  /** Skip fsync (tests on tmpfs that measure nothing); default false. */
  noSync?: boolean;
  /** Test hook: called at each step of a save; throwing simulates a crash there. */
  onStep?: (step: SaveStep) => void;
}

export class JsonStore<T> {
  readonly path: string;
  readonly #options: JsonStoreOptions;
  #seq = 0;

  constructor(path: string, options: JsonStoreOptions = {}) {
    this.path = path;
    this.#options = options;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  }

  /** The saved state, or undefined when none was ever saved. Leftover temporary files are removed. */
  load(): T | undefined {
    const dir = dirname(this.path);
    const prefix = `.${basename(this.path)}.tmp-`;
    for (const f of readdirSync(dir)) {
      if (f.startsWith(prefix)) {
        try {
          unlinkSync(join(dir, f));
        } catch {
          /* another process removed it */
        }
      }
    }
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new TsbpfError('INTERNAL', `cannot read ${this.path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      // Renames are atomic, so this is damage from outside (a disk fault, an edit by hand).
      throw new TsbpfError('INTERNAL', `state file ${this.path} is corrupt`, {
        cause: e,
        hint: 'restore it from a backup or remove it (its allocations are then rebuilt by CNI GC)',
      });
    }
  }

  save(value: T): void {
    const data = Buffer.from(`${JSON.stringify(value)}\n`);
    const dir = dirname(this.path);
    const tmp = join(dir, `.${basename(this.path)}.tmp-${process.pid}-${this.#seq++}`);
    const step = this.#options.onStep;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      if (step) {
        writeSync(fd, data, 0, Math.floor(data.length / 2));
        step('tmp-partial');
        writeSync(fd, data, Math.floor(data.length / 2));
      } else {
        writeSync(fd, data);
      }
      if (!this.#options.noSync) fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    closeSync(fd);
    step?.('tmp-written');
    renameSync(tmp, this.path);
    step?.('renamed');
    if (!this.#options.noSync) {
      const dfd = openSync(dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    }
  }
}
