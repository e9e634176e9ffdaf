/** bpffs pin directories as the CLI lays them out: <dir>/<map>, <dir>/programs/<program>. */
import { existsSync, readdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';

/** Removes every pin under `dir` (maps and programs) and the directories, when empty. */
export function removePins(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const entry of readdirSync(dir)) {
    const p = path.join(dir, entry);
    if (statSync(p).isDirectory()) {
      n += removePins(p);
    } else {
      unlinkSync(p);
      n++;
    }
  }
  try {
    rmdirSync(dir);
  } catch {
    /* not empty: someone else's */
  }
  return n;
}

/** Names of the maps pinned directly under `dir`. */
export function pinnedMaps(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((e) => !statSync(path.join(dir, e)).isDirectory()).sort();
}

export function pinnedPrograms(dir: string): string[] {
  const p = path.join(dir, 'programs');
  return existsSync(p) ? readdirSync(p).sort() : [];
}
