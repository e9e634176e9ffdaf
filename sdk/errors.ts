/**
 * The one error family of tsbpf. Every failure a user can hit carries a stable
 * `code` (for programs to branch on), a message that says what went wrong,
 * `hint` (what to do about it) and, where there is one, the underlying `cause`.
 */
export type TsbpfErrorCode =
  // set-up and environment
  | 'ENV_MISSING'
  | 'NOT_PRIVILEGED'
  | 'NATIVE_UNAVAILABLE'
  // objects, programs and the verifier
  | 'OBJECT_NOT_FOUND'
  | 'OBJECT_INVALID'
  | 'LOAD_FAILED'
  | 'VERIFIER_REJECTED'
  | 'PROGRAM_NOT_FOUND'
  // attach points
  | 'IFACE_NOT_FOUND'
  | 'NETNS_NOT_FOUND'
  | 'ATTACH_FAILED'
  | 'DETACH_FAILED'
  // maps
  | 'MAP_NOT_FOUND'
  | 'MAP_KEY_SIZE'
  | 'MAP_VALUE_SIZE'
  | 'MAP_OP_FAILED'
  | 'LAYOUT_INVALID'
  | 'BTF_INVALID'
  // pinning
  | 'PIN_FAILED'
  | 'PIN_NOT_FOUND'
  // test runs, ring buffers
  | 'TEST_RUN_FAILED'
  | 'RINGBUF_FAILED'
  // DSL and codegen
  | 'DSL_INVALID'
  | 'COMPILE_FAILED'
  | 'CLANG_MISSING'
  // generic
  | 'INVALID_ARGUMENT'
  | 'CLOSED'
  | 'INTERNAL';

export interface TsbpfErrorOptions {
  /** What the user can do about it. */
  hint?: string;
  /** The error this one wraps. */
  cause?: unknown;
  /** errno from the kernel or libbpf, positive. */
  errno?: number;
  /** Extra structured detail (verifier log, program name, source position...). */
  details?: Record<string, unknown>;
}

export class TsbpfError extends Error {
  readonly code: TsbpfErrorCode;
  readonly hint: string | undefined;
  readonly errno: number | undefined;
  /**
   * Structured detail (verifier log, program, source position, ...). Not named
   * `details`: test reporters treat `error.details` as a diff string.
   */
  readonly info: Record<string, unknown>;

  constructor(code: TsbpfErrorCode, message: string, options: TsbpfErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TsbpfError';
    this.code = code;
    this.hint = options.hint;
    this.errno = options.errno;
    this.info = options.details ?? {};
  }

  /** Message plus hint, as the CLI prints it. */
  describe(): string {
    return this.hint ? `${this.message}\n  hint: ${this.hint}` : this.message;
  }
}

/** A verifier rejection: names the program and carries the verifier's log. */
export class VerifierError extends TsbpfError {
  readonly program: string;
  /** The whole verifier log. */
  readonly log: string;

  constructor(program: string, log: string, options: TsbpfErrorOptions = {}) {
    const tail = logTail(log, 12);
    super(
      'VERIFIER_REJECTED',
      `the verifier rejected program '${program}'${tail ? `:\n${tail}` : ''}`,
      {
        hint: options.hint ?? 'read the verifier log above (the whole log is on error.log); the last lines give the reason',
        ...options,
        details: { program, ...(options.details ?? {}) },
      },
    );
    this.name = 'VerifierError';
    this.program = program;
    this.log = log;
  }
}

/** A DSL definition that cannot compile: names the rule and where the user wrote it. */
export class DslError extends TsbpfError {
  readonly rule: string | undefined;
  readonly source: SourcePosition | undefined;

  constructor(message: string, at: { rule?: string; source?: SourcePosition }, options: TsbpfErrorOptions = {}) {
    const where = at.source ? `${at.source.file}:${at.source.line}:${at.source.column}: ` : '';
    const rule = at.rule ? `rule '${at.rule}': ` : '';
    super('DSL_INVALID', `${where}${rule}${message}`, {
      ...options,
      details: { rule: at.rule, source: at.source, ...(options.details ?? {}) },
    });
    this.name = 'DslError';
    this.rule = at.rule;
    this.source = at.source;
  }
}

export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

/** The last `n` non-empty lines of a verifier log. */
export function logTail(log: string, n: number): string {
  const lines = log.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).join('\n');
}

export function isTsbpfError(e: unknown): e is TsbpfError {
  return e instanceof TsbpfError;
}
