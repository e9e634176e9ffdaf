/**
 * Build-time evaluation of the constant parts of a user's file: map
 * declarations (`hash(u32, struct({...}), { maxEntries: 1024 })`), program
 * options, and top-level constants (`const LIMIT = 20`, `ip4('10.0.0.1')`).
 *
 * Nothing of the user's file is executed: expressions are evaluated from the
 * syntax tree, and calls are allowed only into tsbpf's own declarative
 * functions (layouts, map declarations, address constants, conversions), so
 * the result is exactly what importing the file would compute.
 */
import { Node, SyntaxKind, ts } from 'ts-morph';
import * as layoutApi from '../../sdk/layout.js';
import * as fnApi from '../../sdk/fn/index.js';
import * as dslRefs from '../../sdk/dsl/refs.js';
import type { Diagnostics } from './diagnostics.js';
import { declarationOf, tsbpfName, type TsbpfModule } from './project.js';
import type { Filter } from '../../sdk/dsl/filter.js';

/** Functions of the API that may run at build time (pure, declarative). */
const STATIC_FN = new Set([
  'struct', 'hash', 'lruHash', 'perCpuHash', 'lruPerCpuHash', 'array', 'perCpuArray', 'ringBuf', 'progArray',
  'u8', 'u16', 'u32', 'u64', 'ip4', 'ip6', 'mac', 'csumUpdate16', 'csumUpdate32', 'sameIpv6',
]);
const STATIC_LAYOUT = new Set(['struct', 'union', 'array', 'bytes', 'cstring']);
/** Declarations of the filter DSL that stand alone (filter() itself is taken from the module). */
const STATIC_DSL = new Set(['declareSet', 'declareMap']);

export class StaticEvaluator {
  readonly #cache = new Map<Node, unknown>();
  readonly #busy = new Set<Node>();

  /**
   * `filters`: the filters (DSL) the file's module exports, by name. A
   * `filter(...)` call cannot be evaluated from the syntax tree (its build
   * function is arbitrary code), so it stands for the filter of that name the
   * module made when it was imported.
   */
  constructor(
    private readonly diags: Diagnostics,
    private readonly filters: ReadonlyMap<string, Filter> = new Map(),
  ) {}

  /** The value of `node`, or a recorded diagnostic (thrown as Reported). */
  eval(node: Node, what: string): unknown {
    if (this.#cache.has(node)) return this.#cache.get(node);
    const v = this.#eval(node, what);
    this.#cache.set(node, v);
    return v;
  }

  /** The value of `node` when it is constant, without recording a diagnostic; `NOT_CONSTANT` otherwise. */
  tryEval(node: Node): unknown {
    const before = this.diags.list.length;
    try {
      return this.eval(node, 'value');
    } catch {
      this.diags.list.length = before;
      return NOT_CONSTANT;
    }
  }

  #fail(node: Node, what: string, extra?: string): never {
    throw this.diags.error(
      node,
      `${what} must be known at build time${extra ? `: ${extra}` : ''}`,
      'use literals, constants declared with const at the top level, and tsbpf\'s declarations (struct, hash, u32, ip4, ...)',
    );
  }

  #eval(node: Node, what: string): unknown {
    if (Node.isParenthesizedExpression(node) || Node.isAsExpression(node) || Node.isSatisfiesExpression(node) || Node.isTypeAssertion(node)) {
      return this.eval(node.getExpression(), what);
    }
    if (Node.isNumericLiteral(node)) return node.getLiteralValue();
    if (Node.isBigIntLiteral(node)) return node.getLiteralValue() as bigint;
    if (Node.isStringLiteral(node) || Node.isNoSubstitutionTemplateLiteral(node)) return node.getLiteralValue();
    if (Node.isTrueLiteral(node)) return true;
    if (Node.isFalseLiteral(node)) return false;
    if (node.getKind() === SyntaxKind.UndefinedKeyword || (Node.isIdentifier(node) && node.getText() === 'undefined')) return undefined;
    if (Node.isPrefixUnaryExpression(node)) {
      const v = this.eval(node.getOperand(), what) as never;
      switch (node.getOperatorToken()) {
        case SyntaxKind.MinusToken: return -v;
        case SyntaxKind.PlusToken: return typeof v === 'bigint' ? this.#fail(node, what, 'unary + on a bigint') : +v;
        case SyntaxKind.TildeToken: return ~v;
        case SyntaxKind.ExclamationToken: return !v;
      }
      return this.#fail(node, what);
    }
    if (Node.isBinaryExpression(node)) return this.#binary(node, what);
    if (Node.isConditionalExpression(node)) {
      return this.eval(node.getCondition(), what) ? this.eval(node.getWhenTrue(), what) : this.eval(node.getWhenFalse(), what);
    }
    if (Node.isObjectLiteralExpression(node)) {
      const out: Record<string, unknown> = {};
      for (const p of node.getProperties()) {
        if (Node.isPropertyAssignment(p)) {
          const nameNode = p.getNameNode();
          const key = Node.isComputedPropertyName(nameNode) ? String(this.eval(nameNode.getExpression(), what)) : p.getName().replace(/^['"]|['"]$/g, '');
          out[key] = this.eval(p.getInitializerOrThrow(), what);
        } else if (Node.isShorthandPropertyAssignment(p)) {
          out[p.getName()] = this.eval(p.getNameNode(), what);
        } else if (Node.isSpreadAssignment(p)) {
          Object.assign(out, this.eval(p.getExpression(), what) as object);
        } else {
          this.#fail(p, what, 'only plain properties');
        }
      }
      return out;
    }
    if (Node.isArrayLiteralExpression(node)) return node.getElements().map((e) => this.eval(e, what));
    if (Node.isIdentifier(node)) return this.#identifier(node, what);
    if (Node.isPropertyAccessExpression(node)) {
      const api = tsbpfName(node);
      if (api) return this.#api(node, api, what);
      const obj = this.eval(node.getExpression(), what);
      if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) this.#fail(node, what);
      const name = node.getName();
      if (!Object.prototype.hasOwnProperty.call(obj, name) && !(name in (obj as object))) this.#fail(node, what, `no property '${name}'`);
      return (obj as Record<string, unknown>)[name];
    }
    if (Node.isElementAccessExpression(node)) {
      const obj = this.eval(node.getExpression(), what) as Record<string | number, unknown>;
      const key = this.eval(node.getArgumentExpressionOrThrow(), what) as string | number;
      return obj?.[key];
    }
    if (Node.isCallExpression(node)) {
      const callee = node.getExpression();
      const api = tsbpfName(callee);
      if (api?.module === 'dsl' && api.name === 'filter') return this.#filter(node);
      if (!api || !(api.module === 'fn' ? STATIC_FN : api.module === 'dsl' ? STATIC_DSL : STATIC_LAYOUT).has(api.name)) {
        this.#fail(node, what, `only tsbpf's declarations can be called here, not ${callee.getText()}()`);
      }
      const f = this.#api(callee, api, what) as (...a: unknown[]) => unknown;
      const args = node.getArguments().map((a) => this.eval(a, what));
      try {
        return f(...args);
      } catch (e) {
        throw this.diags.error(node, (e as Error).message);
      }
    }
    return this.#fail(node, what, `${node.getKindName()} is not a constant expression`);
  }

  #filter(node: Node & { getArguments(): Node[] }): unknown {
    const nameNode = node.getArguments()[0];
    const name = nameNode ? this.eval(nameNode, 'the filter name') : undefined;
    if (typeof name !== 'string') throw this.diags.error(node, 'the filter name must be a string known at build time');
    const f = this.filters.get(name);
    if (!f) {
      throw this.diags.error(
        node,
        `filter '${name}' is not among the filters this build was given`,
        "export the filter from the file and pass its module: compileFunctions(file, { module: await import(file) }) (or { filters: [fw] })",
      );
    }
    return f;
  }

  #api(node: Node, api: { module: TsbpfModule; name: string }, what: string): unknown {
    if (api.module === 'dsl' && !STATIC_DSL.has(api.name)) this.#fail(node, what, `'${api.name}' of the filter DSL has no build-time value here`);
    const mod = (api.module === 'fn' ? fnApi : api.module === 'dsl' ? dslRefs : layoutApi) as Record<string, unknown>;
    if (!(api.name in mod)) this.#fail(node, what, `tsbpf has no build-time value for '${api.name}'`);
    return mod[api.name];
  }

  #identifier(node: Node, what: string): unknown {
    const api = tsbpfName(node);
    if (api) return this.#api(node, api, what);
    const decl = declarationOf(node);
    if (!decl) this.#fail(node, what, `'${node.getText()}' is not declared`);
    if (Node.isVariableDeclaration(decl)) {
      const list = decl.getVariableStatement();
      const isConst = decl.getVariableStatement()?.getDeclarationKind() === 'const' || (decl.getParent()?.getFlags() ?? 0) & ts.NodeFlags.Const;
      const topLevel = list !== undefined && Node.isSourceFile(list.getParent());
      if (!isConst || !topLevel) this.#fail(node, what, `'${node.getText()}' is not a top-level const`);
      const init = decl.getInitializer();
      if (!init) this.#fail(node, what, `'${node.getText()}' has no value`);
      if (this.#busy.has(decl)) this.#fail(node, what, `'${node.getText()}' refers to itself`);
      this.#busy.add(decl);
      try {
        return this.eval(init, what);
      } finally {
        this.#busy.delete(decl);
      }
    }
    if (Node.isEnumMember(decl)) {
      const v = decl.getValue();
      if (v === undefined) this.#fail(node, what);
      return v;
    }
    return this.#fail(node, what, `'${node.getText()}' is not a constant`);
  }

  #binary(node: Node & { getLeft(): Node; getRight(): Node; getOperatorToken(): Node }, what: string): unknown {
    const op = node.getOperatorToken().getKind();
    if (op === SyntaxKind.AmpersandAmpersandToken) return this.eval(node.getLeft(), what) && this.eval(node.getRight(), what);
    if (op === SyntaxKind.BarBarToken) return this.eval(node.getLeft(), what) || this.eval(node.getRight(), what);
    if (op === SyntaxKind.QuestionQuestionToken) return this.eval(node.getLeft(), what) ?? this.eval(node.getRight(), what);
    const a = this.eval(node.getLeft(), what) as any;
    const b = this.eval(node.getRight(), what) as any;
    try {
      switch (op) {
        case SyntaxKind.PlusToken: return a + b;
        case SyntaxKind.MinusToken: return a - b;
        case SyntaxKind.AsteriskToken: return a * b;
        case SyntaxKind.SlashToken: return a / b;
        case SyntaxKind.PercentToken: return a % b;
        case SyntaxKind.AsteriskAsteriskToken: return a ** b;
        case SyntaxKind.LessThanLessThanToken: return a << b;
        case SyntaxKind.GreaterThanGreaterThanToken: return a >> b;
        case SyntaxKind.GreaterThanGreaterThanGreaterThanToken: return a >>> b;
        case SyntaxKind.AmpersandToken: return a & b;
        case SyntaxKind.BarToken: return a | b;
        case SyntaxKind.CaretToken: return a ^ b;
        case SyntaxKind.EqualsEqualsEqualsToken: return a === b;
        case SyntaxKind.ExclamationEqualsEqualsToken: return a !== b;
        case SyntaxKind.LessThanToken: return a < b;
        case SyntaxKind.LessThanEqualsToken: return a <= b;
        case SyntaxKind.GreaterThanToken: return a > b;
        case SyntaxKind.GreaterThanEqualsToken: return a >= b;
      }
    } catch (e) {
      throw this.diags.error(node, (e as Error).message);
    }
    return this.#fail(node, what, `operator ${node.getOperatorToken().getText()}`);
  }
}

export const NOT_CONSTANT = Symbol('not constant');
