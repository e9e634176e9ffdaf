/**
 * What `tsbpf load` leaves for later commands (maps, detach): where the
 * programs are attached and the rule table, kept in /run/tsbpf (the pins
 * themselves live on bpffs, which holds only BPF objects).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Hook } from '../sdk/model.js';

export const DEFAULT_PIN_BASE = '/sys/fs/bpf/tsbpf';
const STATE_DIR = process.env.TSBPF_STATE_DIR ?? '/run/tsbpf';

export interface AttachRecord {
  hook: Hook;
  ifname: string;
  netns?: string;
  program: string;
  priority?: number;
  handle?: number;
  mode?: string;
}

export interface LoadRecord {
  name: string;
  pinDir: string;
  source: string;
  attachments: AttachRecord[];
  /** Counter slots differ from rule ids once classification or live updates move rules. */
  rules: Array<{ id: number; slot?: number; name: string; chain: string; text: string }>;
  loadedAt: string;
}

function fileFor(pinDir: string): string {
  return path.join(STATE_DIR, `${pinDir.replace(/[^A-Za-z0-9_.-]+/g, '_')}.json`);
}

export function saveRecord(r: LoadRecord): void {
  mkdirSync(STATE_DIR, { recursive: true });
  const f = fileFor(r.pinDir);
  writeFileSync(`${f}.tmp`, JSON.stringify(r, null, 2));
  renameSync(`${f}.tmp`, f);
}

export function readRecord(pinDir: string): LoadRecord | undefined {
  const f = fileFor(pinDir);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as LoadRecord) : undefined;
}

export function removeRecord(pinDir: string): void {
  try {
    unlinkSync(fileFor(pinDir));
  } catch {
    /* none */
  }
}

export function allRecords(): LoadRecord[] {
  if (!existsSync(STATE_DIR)) return [];
  return readdirSync(STATE_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(path.join(STATE_DIR, f), 'utf8')) as LoadRecord);
}
