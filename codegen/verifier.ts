/**
 * Map a verifier rejection back to the filter: which stage (parse, a chain, act)
 * the program is, which rules it holds, and, from the log's line info
 * (`; ... @ <stdin>:LINE`, present because objects are built with -g), the
 * rule whose code the verifier was walking when it gave up.
 */
import { VerifierError, type SourcePosition } from '../sdk/errors.js';
import type { CompileResult, ProgramInfo, Stage } from './compile.js';

export interface VerifierExplanation {
  program: string;
  /** The model program (hook) it belongs to. */
  modelProgram?: string;
  hook?: string;
  stage?: Stage;
  chain?: string;
  /** Rules whose code is in the program. */
  rules: Array<{ id: number; name: string; source?: SourcePosition }>;
  /** The rule at the last generated-C line the log mentions, when there is one. */
  rule?: { id: number; name: string; chain: string; source?: SourcePosition };
  /** That line of the generated C (1-based) and its text. */
  line?: { number: number; text: string };
  /** A one-paragraph explanation for people. */
  message: string;
}

/** The generated C is compiled from stdin, so its lines are `<stdin>:N` in BTF line info. */
const LINE_RE = /@ (<stdin>|-|generated\.c):(\d+)\s*$/gm;

export function findProgram(result: CompileResult, name: string): ProgramInfo | undefined {
  // The kernel keeps 15 characters of a program name; libbpf the whole.
  return result.programs.find((p) => p.name === name) ?? result.programs.find((p) => name.length >= 15 && p.name.startsWith(name));
}

export function explainVerifierError(result: CompileResult, programName: string, log: string): VerifierExplanation {
  const prog = findProgram(result, programName);
  const byId = new Map(result.ruleTable.map((r) => [r.id, r]));
  const ex: VerifierExplanation = {
    program: programName,
    rules: (prog?.rules ?? []).map((id) => {
      const r = byId.get(id)!;
      return { id, name: r.name, ...(r.source ? { source: r.source } : {}) };
    }),
    message: '',
  };
  if (prog) {
    ex.modelProgram = prog.program;
    ex.hook = prog.hook;
    ex.stage = prog.stage;
    if (prog.chain) ex.chain = prog.chain;
  }

  let lineNo: number | undefined;
  for (const m of log.matchAll(LINE_RE)) lineNo = Number(m[2]);
  if (lineNo !== undefined) {
    const cLines = result.c.split('\n');
    ex.line = { number: lineNo, text: (cLines[lineNo - 1] ?? '').trim() };
    const fnNames = new Set(prog ? [prog.name] : []);
    // Inline chains are separate C functions; any rule range holding the line will do,
    // preferring one in this program's own function.
    const hits = result.ruleLines.filter((l) => lineNo! >= l.start && lineNo! <= l.end);
    const hit = hits.find((l) => fnNames.has(l.fn)) ?? hits.find((l) => !prog || l.program === prog.program) ?? hits[0];
    if (hit) {
      const r = byId.get(hit.ruleId)!;
      ex.rule = { id: r.id, name: r.name, chain: r.chain, ...(r.source ? { source: r.source } : {}) };
    }
  }

  const stage = !prog
    ? 'a program this build does not know'
    : prog.stage === 'parse'
      ? `the parse stage of ${prog.program} (${prog.hook}): header parsing in tsbpf/parse.h`
      : prog.stage === 'act'
        ? `the act stage of ${prog.program} (${prog.hook}): building reject replies in tsbpf/reject.h`
        : `chain '${prog.chain}' of ${prog.program} (${prog.hook}), rules ${ruleList(ex.rules)}`;
  const at = ex.rule
    ? `; it stopped in rule '${ex.rule.name}' (id ${ex.rule.id}${ex.rule.source ? `, ${ex.rule.source.file}:${ex.rule.source.line}:${ex.rule.source.column}` : ''})`
    : ex.line
      ? `; last generated C line ${ex.line.number}: ${ex.line.text}`
      : '';
  ex.message = `the verifier rejected program '${programName}', ${stage}${at}`;
  return ex;
}

/** Rule names for a message: a big chain is named by its first few and a count (all are in explanation.rules). */
function ruleList(rules: ReadonlyArray<{ name: string }>, max = 8): string {
  if (rules.length === 0) return '(none)';
  const shown = rules.slice(0, max).map((r) => `'${r.name}'`).join(', ');
  return rules.length > max ? `${shown} and ${rules.length - max} more` : shown;
}

/** A VerifierError carrying the explanation (for the runtime's load path). */
export function verifierError(result: CompileResult, programName: string, log: string): VerifierError {
  const ex = explainVerifierError(result, programName, log);
  return new VerifierError(programName, log, {
    hint: `${ex.message}. The generated C is result.c; the whole verifier log is on error.log`,
    details: { explanation: ex },
  });
}
