/**
 * Where Kubernetes objects come from, behind one small interface: a YAML file
 * now (the embedded default), the Kubernetes API (list and watch) next. The
 * policy and service logic reads only an ObjectStore fed by a source, so it is
 * written once for both.
 */
import type { KubeObject } from './objects.js';

export type ObjectEventType = 'add' | 'update' | 'delete';

export interface ObjectEvent {
  type: ObjectEventType;
  object: KubeObject;
}

export interface ObjectListener {
  /**
   * A batch of changes that belong together (one file save, one watch
   * window), applied atomically. The first batch after start() is the whole
   * current state as 'add' events (possibly empty).
   */
  events(batch: ObjectEvent[]): void;
  /** A problem the source recovers from by itself (an unparsable file keeps the last good state). */
  error(e: Error): void;
}

export interface ObjectSource {
  readonly name: string;
  /** Deliver the current state, then changes, until stop(). Resolves after the first batch. */
  start(listener: ObjectListener): Promise<void>;
  stop(): Promise<void>;
}
