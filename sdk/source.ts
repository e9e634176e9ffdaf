/**
 * Where did the user write this? The DSL records, for every rule, chain and set,
 * the first stack frame outside sdk/, mapped back to the TypeScript source when a
 * source map is available: either Node already mapped the stack
 * (--enable-source-maps) or we read the `.js.map` beside the emitted file.
 * Best effort: undefined when nothing usable is found.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SourcePosition } from './errors.js';

interface Frame {
  file: string;
  line: number;
  column: number;
}

const FRAME_RE = /\(?((?:file:\/\/|\/|[A-Za-z]:[\\/])[^()]*?):(\d+):(\d+)\)?\s*$/;

function frames(stack: string | undefined): Frame[] {
  if (!stack) return [];
  const out: Frame[] = [];
  for (const line of stack.split('\n').slice(1)) {
    const m = FRAME_RE.exec(line.trim());
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith('file://')) {
      try {
        file = fileURLToPath(file);
      } catch {
        continue;
      }
    }
    out.push({ file, line: Number(m[2]), column: Number(m[3]) });
  }
  return out;
}

// How this module's own directory looks in stack traces (mapped or not): frames
// under it belong to the sdk and are skipped.
const sdkDir = (() => {
  const self = frames(new Error().stack)[0];
  return self ? path.dirname(self.file) + path.sep : undefined;
})();

let enabled = true;

/** Turn capture off (returns the previous setting); generators building many rules use it. */
export function setSourceCapture(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** The position of the nearest caller outside sdk/. */
export function callerPosition(): SourcePosition | undefined {
  if (!enabled) return undefined;
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const stack = new Error().stack;
  Error.stackTraceLimit = limit;
  for (const f of frames(stack)) {
    if (sdkDir && f.file.startsWith(sdkDir)) continue;
    if (f.file.startsWith('node:')) continue;
    const mapped = mapPosition(f) ?? f;
    return { file: displayPath(mapped.file), line: mapped.line, column: mapped.column };
  }
  return undefined;
}

function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

// --- source maps -----------------------------------------------------------

interface Segment {
  col: number;
  source: number;
  line: number;
  origCol: number;
}

interface LoadedMap {
  sources: string[];
  lines: Segment[][];
}

const mapCache = new Map<string, LoadedMap | null>();

function mapPosition(f: Frame): Frame | undefined {
  if (!f.file.endsWith('.js') && !f.file.endsWith('.mjs')) return undefined;
  let m = mapCache.get(f.file);
  if (m === undefined) {
    m = loadMap(f.file);
    mapCache.set(f.file, m);
  }
  if (!m) return undefined;
  const segs = m.lines[f.line - 1];
  if (!segs || segs.length === 0) return undefined;
  // The last segment starting at or before the column.
  let best: Segment | undefined;
  for (const s of segs) {
    if (s.col <= f.column - 1) best = s;
    else break;
  }
  best ??= segs[0]!;
  const source = m.sources[best.source];
  if (!source) return undefined;
  return { file: source, line: best.line + 1, column: best.origCol + 1 };
}

function loadMap(jsFile: string): LoadedMap | null {
  try {
    const js = readFileSync(jsFile, 'utf8');
    const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(js)?.[1];
    if (!url) return null;
    let raw: string;
    let base = path.dirname(jsFile);
    if (url.startsWith('data:')) {
      const comma = url.indexOf(',');
      raw = Buffer.from(url.slice(comma + 1), url.slice(0, comma).endsWith(';base64') ? 'base64' : 'utf8').toString('utf8');
    } else {
      const mapFile = path.resolve(base, url);
      raw = readFileSync(mapFile, 'utf8');
      base = path.dirname(mapFile);
    }
    const json = JSON.parse(raw) as { sources: string[]; sourceRoot?: string; mappings: string };
    const root = json.sourceRoot ? path.resolve(base, json.sourceRoot) : base;
    return { sources: json.sources.map((s) => path.resolve(root, s)), lines: decodeMappings(json.mappings) };
  } catch {
    return null;
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decode the VLQ `mappings` field of a v3 source map into per-line segments. */
function decodeMappings(mappings: string): Segment[][] {
  const lines: Segment[][] = [];
  let source = 0;
  let line = 0;
  let origCol = 0;
  for (const lineText of mappings.split(';')) {
    const segs: Segment[] = [];
    let col = 0;
    for (const segText of lineText.split(',')) {
      if (!segText) continue;
      const vals: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of segText) {
        const digit = B64.indexOf(ch);
        if (digit < 0) break;
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
        } else {
          vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      col += vals[0] ?? 0;
      if (vals.length >= 4) {
        source += vals[1]!;
        line += vals[2]!;
        origCol += vals[3]!;
        segs.push({ col, source, line, origCol });
      }
    }
    segs.sort((a, b) => a.col - b.col);
    lines.push(segs);
  }
  return lines;
}
