/**
 * Build-time diagnostics of function programs: each one has the exact
 * file:line:col of the construct, a sentence saying what is wrong and a hint
 * saying what to write instead. All problems of a build are collected and
 * thrown as one DslError (the first one's position and message, the rest in
 * error.info.diagnostics).
 */
import path from 'node:path';
import type { Node } from 'ts-morph';
import { DslError, type SourcePosition } from '../../sdk/errors.js';

export interface FnDiagnostic {
  source: SourcePosition;
  message: string;
  hint?: string;
  /** 'restricted' for the subset rules, 'type' for TypeScript's own errors. */
  kind: 'restricted' | 'type';
}

export function positionOf(node: Node): SourcePosition {
  const sf = node.getSourceFile();
  const { line, column } = sf.getLineAndColumnAtPos(node.getStart());
  return { file: displayPath(sf.getFilePath()), line, column };
}

export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** Thrown internally to stop lowering one construct after its diagnostic was recorded. */
export class Reported extends Error {
  constructor() {
    super('reported');
  }
}

export class Diagnostics {
  readonly list: FnDiagnostic[] = [];

  /** Records a problem at `node` and returns an exception to throw to abandon the construct. */
  error(node: Node, message: string, hint?: string): Reported {
    const source = positionOf(node);
    if (!this.list.some((d) => d.source.line === source.line && d.source.column === source.column && d.message === message)) {
      this.list.push({ source, message, ...(hint ? { hint } : {}), kind: 'restricted' });
    }
    return new Reported();
  }

  add(d: FnDiagnostic): void {
    this.list.push(d);
  }

  get count(): number {
    return this.list.length;
  }

  throwIfAny(what: string): void {
    if (this.list.length === 0) return;
    throw diagnosticsError(this.list, what);
  }
}

export function diagnosticsError(list: FnDiagnostic[], what: string): DslError {
  // TypeScript's own errors first: the subset's complaints are often their consequences.
  const rank = (d: FnDiagnostic) => (d.kind === 'type' ? 0 : 1);
  const sorted = [...list].sort(
    (a, b) => rank(a) - rank(b) || a.source.file.localeCompare(b.source.file) || a.source.line - b.source.line || a.source.column - b.source.column,
  );
  const first = sorted[0]!;
  const more = sorted.length > 1 ? `\n${sorted.slice(1).map(formatDiagnostic).join('\n')}` : '';
  return new DslError(`${first.message}${more}`, { source: first.source }, {
    hint: first.hint ?? (first.kind === 'type' ? 'fix the type error, or build without type checking' : undefined),
    details: { diagnostics: sorted, what },
  });
}

export function formatDiagnostic(d: FnDiagnostic): string {
  return `${d.source.file}:${d.source.line}:${d.source.column}: ${d.message}${d.hint ? ` (${d.hint})` : ''}`;
}
