/**
 * Lowering of a function program (the restricted TypeScript subset) to C.
 *
 * The subset: fixed-width integers (u8..u32 numbers, u64 bigints) with
 * explicit conversions, booleans, const and let, if/else, switch, ternaries,
 * for loops with constant bounds, early return, calls to pure helper
 * functions (emitted as always-inline C functions), typed map operations, the
 * packet view (fields.ts) and tsbpf's helpers. Everything else is reported
 * at its exact position with what to write instead.
 *
 * Every value keeps the meaning it has in Node: see types.ts for how integer
 * intervals keep JS numbers, JS bigints and C integers equal.
 */
import { Node, SyntaxKind, type ArrowFunction, type Expression, type FunctionDeclaration, type FunctionExpression, type Statement } from 'ts-morph';
import { FIELDS, HEADER_NAMES, HEADER_PRESENT_C, L4_CSUM, PACKET_FIELDS, type FieldSpec, type HeaderName } from '../../sdk/fn/fields.js';
import type { MapDecl } from '../../sdk/fn/maps.js';
import { isFilter, type Filter } from '../../sdk/dsl/filter.js';
import type { MapRef, SetRef, SetType } from '../../sdk/dsl/refs.js';
import { cIdent } from '../ir.js';
import type { FnHook } from '../../sdk/fn/program.js';
import { VERDICT_CONSTANTS } from '../../sdk/fn/verdicts.js';
import { isStructLayout, type Layout, type StructLayout } from '../../sdk/layout.js';
import { Reported, type Diagnostics } from './diagnostics.js';
import { declarationOf, tsbpfName, type TsbpfModule } from './project.js';
import { NOT_CONSTANT, type StaticEvaluator } from './static.js';
import { big, C_INT, describeTy, isExactBig, layoutIntKind, MAX_SAFE, num, U64_MAX, WIDTH_MAX, type CNum, type Ty, type Val } from './types.js';

type FnNode = ArrowFunction | FunctionExpression | FunctionDeclaration;

export interface MapInfo {
  name: string;
  decl: MapDecl;
  /** C type of keys and values ('__u32', 'struct flows_key'). */
  keyC?: string;
  valueC?: string;
  /** A set of the filter DSL (an LPM trie, or a hash of ports): its handle has has(). */
  set?: SetType;
  /** Declared with the filter DSL (a filter's set or user map). */
  dsl?: SetRef | MapRef;
}

/** runChain calls: per filter, the hooks it runs at and the first call (for diagnostics). */
export type ChainCalls = Map<Filter, { hooks: Set<FnHook>; node: Node }>;

interface VarInfo {
  cname: string;
  ty: Ty;
  mutable: boolean;
  /** For lets of numbers: the declared width. */
  width?: 'u8' | 'u16' | 'u32' | 'u64';
  /** A const holding a lookup result: the C name of its "found" flag. */
  has?: string;
  /** Aliases without C storage: a header, a map, the packet, the maps. */
  alias?: Ty;
  /** Its declaration failed (already reported): uses are silently skipped. */
  poisoned?: boolean;
}

interface Scope {
  kind: 'main' | 'helper';
  hook?: FnHook;
  vars: Map<Node, VarInfo>;
  /** C names in use in the current function (to keep generated names unique). */
  used: Set<string>;
  out: string[];
  indent: number;
  loops: number;
  switches: number;
  /** For helpers: the declared return width, and what returns were seen. */
  retWidth?: 'u8' | 'u16' | 'u32' | 'u64' | 'bool';
  returns: Val[];
  helperName?: string;
  /** The source line of the last comment written. */
  lastLine?: number;
}

interface HelperInfo {
  cname: string;
  params: Array<{ width: 'u8' | 'u16' | 'u32' | 'u64' | 'bool'; cname: string }>;
  ret: Ty;
  text: string;
}

export interface LoweredProgram {
  name: string;
  hook: FnHook;
  /** The C function (SEC(...) int name(ctx) { ... }). */
  text: string;
}

const C_RESERVED = new Set(
  ('auto break case char const continue default do double else enum extern float for goto if inline int long register restrict return short ' +
    'signed sizeof static struct switch typedef union unsigned void volatile while _Bool asm typeof p ctx main').split(' '),
);

const VERDICT_C: Record<string, string> = Object.fromEntries(Object.keys(VERDICT_CONSTANTS).map((k) => [k, k]));

const HOOK_C = (hook: FnHook) => (hook === 'xdp' ? 'TSBPF_HOOK_XDP' : 'TSBPF_HOOK_TC');

/** Loops may run at most this many times (the verifier walks every iteration). */
export const MAX_LOOP_ITERATIONS = 1024;

export class Lowerer {
  readonly helpers = new Map<Node, HelperInfo>();
  readonly helperOrder: HelperInfo[] = [];
  readonly #helperBusy: Node[] = [];
  /** Names of C globals (maps, programs, helpers): locals must not shadow them. */
  readonly globals = new Set<string>();
  /** Filters the programs run with runChain. */
  readonly chainCalls: ChainCalls = new Map();
  #tmp = 0;

  constructor(
    private readonly diags: Diagnostics,
    private readonly statics: StaticEvaluator,
    private readonly maps: Map<string, MapInfo>,
  ) {
    for (const m of maps.keys()) this.globals.add(m);
  }

  // -------------------------------------------------------------------------
  // programs

  /** Lowers the program function `fn` bound to map handles `mapNames` (param 2). */
  lowerProgram(name: string, hook: FnHook, fn: FnNode, programMaps: string[]): LoweredProgram {
    const scope: Scope = { kind: 'main', hook, vars: new Map(), used: new Set(), out: [], indent: 1, loops: 0, switches: 0, returns: [] };
    const params = fn.getParameters();
    if (params.length > 2) this.diags.error(params[2]!, 'a program function takes (pkt, maps): nothing more', 'remove the extra parameters');
    const pktParam = params[0];
    if (pktParam) {
      const n = pktParam.getNameNode();
      if (!Node.isIdentifier(n)) this.diags.error(n, 'the packet parameter must be a plain name', 'write (pkt, maps) => ...');
      else scope.vars.set(pktParam, { cname: 'p', ty: { t: 'pkt' }, mutable: false, alias: { t: 'pkt' } });
    }
    const mapsParam = params[1];
    if (mapsParam) {
      const n = mapsParam.getNameNode();
      if (Node.isIdentifier(n)) {
        scope.vars.set(mapsParam, { cname: '', ty: { t: 'maps' }, mutable: false, alias: { t: 'maps' } });
      } else if (Node.isObjectBindingPattern(n)) {
        for (const el of n.getElements()) {
          const prop = el.getPropertyNameNode()?.getText() ?? el.getName();
          if (el.getDotDotDotToken() || el.getInitializer() || !Node.isIdentifier(el.getNameNode())) {
            this.diags.error(el, 'only plain names can be taken from the maps parameter', 'write (pkt, { hits, events }) => ...');
            continue;
          }
          if (!programMaps.includes(prop)) {
            this.diags.error(el, `there is no map '${prop}' in this program's maps`, `declare it in the program's options: { maps: { ${prop}: hash(...) } }`);
            continue;
          }
          scope.vars.set(el, { cname: '', ty: { t: 'map', name: prop }, mutable: false, alias: { t: 'map', name: prop } });
        }
      } else {
        this.diags.error(n, 'the maps parameter must be a name or { a, b }', 'write (pkt, maps) => ... or (pkt, { hits }) => ...');
      }
    }
    const body = fn.getBody();
    if (!body) throw this.diags.error(fn, 'the program function has no body');
    if (fn.isAsync()) this.diags.error(fn, 'a program function cannot be async: the kernel runs it to completion', 'remove async (and await)');
    if (Node.isFunctionExpression(fn) || Node.isFunctionDeclaration(fn)) {
      if (fn.isGenerator()) this.diags.error(fn, 'a program function cannot be a generator', 'write a plain function');
    }
    if (Node.isBlock(body)) {
      this.block(body.getStatements(), scope);
      if (!alwaysReturns(body.getStatements())) {
        this.diags.error(body.getLastChild() ?? body, 'the program can reach its end without returning a verdict', `end every path with return ${hook === 'xdp' ? 'XDP_PASS' : 'TC_ACT_OK'} (or another verdict)`);
      }
    } else {
      const v = this.expr(body as Expression, scope);
      this.checkVerdict(v, body, hook);
      this.line(scope, `return ${v.c};`);
    }
    const ctxType = hook === 'xdp' ? 'struct xdp_md' : 'struct __sk_buff';
    const section = hook === 'xdp' ? 'xdp' : 'tc';
    const pos = fn.getSourceFile().getLineAndColumnAtPos(fn.getStart());
    const text = [
      `/* ${fn.getSourceFile().getBaseName()}:${pos.line}: export ${name} = ${hook === 'xdp' ? 'xdp' : hook === 'tc-ingress' ? 'tcIngress' : 'tcEgress'}(...) */`,
      `SEC("${section}")`,
      `int ${name}(${ctxType} *ctx)`,
      '{',
      '\tstruct tsbpf_pkt p;',
      '',
      `\ttsbpf_parse(ctx, ${HOOK_C(hook)}, &p);`,
      ...scope.out,
      '}',
    ].join('\n');
    return { name, hook, text };
  }

  // -------------------------------------------------------------------------
  // statements

  line(scope: Scope, text: string): void {
    scope.out.push('\t'.repeat(scope.indent) + text);
  }

  comment(scope: Scope, node: Node): void {
    // One comment per source line: `if (x) return y;` is commented once.
    const at = node.getStartLineNumber();
    if (scope.lastLine === at) return;
    scope.lastLine = at;
    const first = node.getText().split('\n')[0]!.trim();
    const short = first.length > 90 ? `${first.slice(0, 87)}...` : first;
    this.line(scope, `/* ${node.getStartLineNumber()}: ${short.replace(/\*\//g, '* /')} */`);
  }

  block(stmts: Statement[], scope: Scope): void {
    for (const s of stmts) {
      try {
        this.statement(s, scope);
      } catch (e) {
        if (!(e instanceof Reported)) throw e;
      }
    }
  }

  /** A nested block with its own scope for declarations. */
  nested(stmt: Statement, scope: Scope): void {
    scope.indent++;
    if (Node.isBlock(stmt)) this.block(stmt.getStatements(), scope);
    else this.block([stmt], scope);
    scope.indent--;
  }

  statement(s: Statement, scope: Scope): void {
    if (Node.isBlock(s)) {
      this.line(scope, '{');
      this.nested(s, scope);
      this.line(scope, '}');
      return;
    }
    if (Node.isEmptyStatement(s)) return;
    if (Node.isVariableStatement(s)) return this.variables(s, scope);
    if (Node.isExpressionStatement(s)) return this.exprStatement(s.getExpression(), scope);
    if (Node.isIfStatement(s)) {
      this.comment(scope, s);
      const c = this.cond(s.getExpression(), scope);
      this.line(scope, `if (${unwrapC(c)}) {`);
      this.nested(s.getThenStatement(), scope);
      let els = s.getElseStatement();
      while (els) {
        if (Node.isIfStatement(els)) {
          const c2 = this.cond(els.getExpression(), scope);
          this.line(scope, `} else if (${unwrapC(c2)}) {`);
          this.nested(els.getThenStatement(), scope);
          els = els.getElseStatement();
        } else {
          this.line(scope, '} else {');
          this.nested(els, scope);
          els = undefined;
        }
      }
      this.line(scope, '}');
      return;
    }
    if (Node.isReturnStatement(s)) return this.returnStatement(s, scope);
    if (Node.isSwitchStatement(s)) return this.switchStatement(s, scope);
    if (Node.isForStatement(s)) return this.forStatement(s, scope);
    if (Node.isBreakStatement(s)) {
      if (s.getLabel()) throw this.diags.error(s, 'labels are not supported', 'restructure the loop, or move it into a helper function and return');
      if (scope.loops === 0 && scope.switches === 0) throw this.diags.error(s, 'break outside a loop or switch');
      this.line(scope, 'break;');
      return;
    }
    if (Node.isContinueStatement(s)) {
      if (s.getLabel()) throw this.diags.error(s, 'labels are not supported', 'restructure the loop');
      this.line(scope, 'continue;');
      return;
    }
    if (Node.isWhileStatement(s) || Node.isDoStatement(s)) {
      throw this.diags.error(s, `${Node.isWhileStatement(s) ? 'while' : 'do...while'} loops have no bound the verifier can see`, 'write a for loop with a constant bound: for (let i = 0; i < 8; i++) { ... if (done) break; }');
    }
    if (Node.isForOfStatement(s) || Node.isForInStatement(s)) {
      throw this.diags.error(s, `${Node.isForOfStatement(s) ? 'for...of' : 'for...in'} iterates over objects, which programs do not have`, 'write a for loop with a constant bound: for (let i = 0; i < 8; i++)');
    }
    if (Node.isThrowStatement(s)) {
      throw this.diags.error(s, 'exceptions do not exist in the kernel', 'return a verdict instead (return XDP_DROP / TC_ACT_SHOT)');
    }
    if (Node.isTryStatement(s)) {
      throw this.diags.error(s, 'try/catch is not supported: nothing in a program can throw', 'remove the try block; check values with if statements');
    }
    if (Node.isLabeledStatement(s)) throw this.diags.error(s, 'labels are not supported', 'restructure the loop');
    if (Node.isFunctionDeclaration(s)) {
      throw this.diags.error(s, 'functions declared inside a program would be closures', 'declare helper functions at the top level of the file and call them');
    }
    if (Node.isClassDeclaration(s)) throw this.diags.error(s, 'classes are not supported in programs', 'use plain values, and maps for state');
    throw this.diags.error(s, `${s.getKindName()} statements are not supported in programs`);
  }

  variables(s: Node & { getDeclarationKind(): string; getDeclarations(): Node[] }, scope: Scope): void {
    const kind = s.getDeclarationKind();
    if (kind === 'var') throw this.diags.error(s, 'var is not supported', 'use const, or let for values that change');
    if (kind !== 'const' && kind !== 'let') throw this.diags.error(s, `${kind} declarations are not supported`, 'use const or let');
    this.comment(scope, s);
    for (const d of s.getDeclarations()) {
      if (!Node.isVariableDeclaration(d)) continue;
      try {
        this.declaration(d, kind === 'let', scope);
      } catch (e) {
        if (!(e instanceof Reported)) throw e;
        scope.vars.set(d, { cname: '', ty: { t: 'void' }, mutable: true, poisoned: true });
      }
    }
  }

  cname(name: string, scope: Scope): string {
    let c = C_RESERVED.has(name) || this.globals.has(name) || /^(tsbpf|fn|bpf)_/.test(name) || name.startsWith('__') ? `${name}_` : name;
    while (this.globals.has(c)) c += '_';
    scope.used.add(c);
    return c;
  }

  tmp(prefix: string): string {
    return `__${prefix}${++this.#tmp}`;
  }

  declaration(d: Node & { getNameNode(): Node; getInitializer(): Expression | undefined; getTypeNode(): Node | undefined }, mutable: boolean, scope: Scope): void {
    const nameNode = d.getNameNode();
    if (!Node.isIdentifier(nameNode)) {
      throw this.diags.error(nameNode, 'destructuring is not supported in programs', 'read the fields one by one: const dport = pkt.tcp.dport');
    }
    const name = nameNode.getText();
    const init = d.getInitializer();
    if (!init) {
      throw this.diags.error(d, `${name} needs an initial value`, `give it one: let ${name}: u32 = 0`);
    }
    const declared = this.declaredWidth(d.getTypeNode());
    // const x = maps.hits / pkt.tcp / pkt: aliases, no storage
    const v = this.expr(init, scope, { allowOpt: !mutable, allowAlias: !mutable });
    if (v.ty.t === 'header' || v.ty.t === 'map' || v.ty.t === 'pkt' || v.ty.t === 'maps') {
      if (mutable) throw this.diags.error(d, `a let cannot hold ${describeTy(v.ty)}`, 'use const');
      scope.vars.set(d, { cname: v.c, ty: v.ty, mutable: false, alias: v.ty });
      return;
    }
    const cname = this.cname(name, scope);
    switch (v.ty.t) {
      case 'num': {
        let width = declared && declared !== 'bool' ? declared : undefined;
        if (!width && mutable) width = conversionWidth(init, this);
        if (mutable && !width) {
          throw this.diags.error(d, `let ${name} holds a number and needs a fixed width`, `write let ${name}: u32 = ... (or u8, u16)`);
        }
        if (width === 'u64') throw this.diags.error(init, `${name} is declared u64, which is a bigint`, 'write a bigint: 0n, or u64(x)');
        if (width) {
          this.fits(v, width, init, name);
          this.line(scope, `${C_INT[width]} ${cname} = ${v.c};`);
          scope.vars.set(d, { cname, ty: { t: 'num', lo: 0n, hi: WIDTH_MAX[width], ct: width }, mutable, width });
        } else {
          const ty = v.ty;
          const ct: CNum = ty.ct === 'u8' || ty.ct === 'u16' || ty.ct === 'u32' ? ty.ct : ty.lo >= 0n && ty.hi <= 0xffffffffn ? 'u32' : 's64';
          this.line(scope, `const ${C_INT[ct]} ${cname} = ${v.c};`);
          scope.vars.set(d, { cname, ty: { ...ty, ct }, mutable: false });
        }
        return;
      }
      case 'big': {
        if (declared && declared !== 'u64') throw this.diags.error(init, `${name} is declared ${declared} but holds a bigint`, `convert: ${declared}(...)`);
        this.exactBig(v, init);
        this.line(scope, `${mutable ? '' : 'const '}__u64 ${cname} = ${v.c};`);
        scope.vars.set(d, { cname, ty: mutable ? { t: 'big', lo: 0n, hi: U64_MAX } : v.ty, mutable, width: 'u64' });
        return;
      }
      case 'bool':
        this.line(scope, `${mutable ? '' : 'const '}int ${cname} = ${v.c};`);
        scope.vars.set(d, { cname, ty: v.ty, mutable });
        return;
      case 'verdict':
        this.line(scope, `${mutable ? '' : 'const '}int ${cname} = ${v.c};`);
        scope.vars.set(d, { cname, ty: v.ty, mutable });
        return;
      case 'ip6':
        if (mutable) throw this.diags.error(d, 'an IPv6 address cannot be a let', 'use const');
        this.line(scope, `const struct fn_ip6 ${cname} = ${v.c};`);
        scope.vars.set(d, { cname, ty: v.ty, mutable: false });
        return;
      case 'struct':
        if (mutable) throw this.diags.error(d, 'a struct value cannot be a let', 'use const, and write changes back with map.update(key, { ...value, field: x })');
        this.line(scope, `const ${v.ty.ctype} ${cname} = ${v.c};`);
        scope.vars.set(d, { cname, ty: v.ty, mutable: false });
        return;
      case 'optptr': {
        const inner = v.ty.inner;
        const has = `${cname}__found`;
        const q = this.tmp('v');
        this.line(scope, `${v.ty.ctype} ${cname} = ${inner.t === 'struct' ? '{}' : '0'};`);
        this.line(scope, `int ${has} = 0;`);
        this.line(scope, `{`);
        this.line(scope, `\t${v.ty.ctype} *${q} = ${v.c};`);
        this.line(scope, `\tif (${q}) {`);
        this.line(scope, `\t\t${cname} = *${q};`);
        this.line(scope, `\t\t${has} = 1;`);
        this.line(scope, `\t}`);
        this.line(scope, `}`);
        scope.vars.set(d, { cname, ty: inner, mutable: false, has });
        return;
      }
      default:
        throw this.diags.error(init, `a variable cannot hold ${describeTy(v.ty)}`);
    }
  }

  /** u8/u16/u32/u64/boolean from a type annotation naming tsbpf's integer types. */
  declaredWidth(typeNode: Node | undefined): 'u8' | 'u16' | 'u32' | 'u64' | 'bool' | undefined {
    if (!typeNode) return undefined;
    if (typeNode.getKind() === SyntaxKind.BooleanKeyword) return 'bool';
    if (typeNode.getKind() === SyntaxKind.BigIntKeyword) return 'u64';
    if (Node.isTypeReference(typeNode)) {
      const api = tsbpfName(typeNode.getTypeName());
      if (api?.module === 'fn' && ['u8', 'u16', 'u32', 'u64'].includes(api.name)) return api.name as 'u8';
    }
    if (typeNode.getKind() === SyntaxKind.NumberKeyword) {
      throw this.diags.error(typeNode, 'number has no fixed width', 'write u8, u16 or u32 (and u64 for bigints)');
    }
    return undefined;
  }

  exprStatement(e: Expression, scope: Scope): void {
    this.comment(scope, e);
    if (Node.isBinaryExpression(e)) {
      const op = e.getOperatorToken().getKind();
      if (op === SyntaxKind.EqualsToken) return this.assign(e.getLeft(), e.getRight(), undefined, scope, e);
      const compound = COMPOUND[op];
      if (compound !== undefined) return this.assign(e.getLeft(), e.getRight(), compound, scope, e);
    }
    if (Node.isPostfixUnaryExpression(e) || Node.isPrefixUnaryExpression(e)) {
      const op = e.getOperatorToken();
      if (op === SyntaxKind.PlusPlusToken || op === SyntaxKind.MinusMinusToken) {
        return this.assign(e.getOperand(), undefined, op === SyntaxKind.PlusPlusToken ? SyntaxKind.PlusToken : SyntaxKind.MinusToken, scope, e);
      }
    }
    if (Node.isCallExpression(e)) {
      const v = this.expr(e, scope, { statement: true, allowOpt: true });
      this.line(scope, v.ty.t === 'void' ? `${v.c};` : `(void)${v.c};`);
      return;
    }
    // Anything else: its own diagnostic if it is outside the subset, else it does nothing.
    this.expr(e, scope, { allowOpt: true, statement: true });
    throw this.diags.error(e, 'this expression does nothing as a statement');
  }

  /** target = value, or target op= value (value undefined for ++/--). */
  assign(target: Expression, valueNode: Expression | undefined, op: SyntaxKind | undefined, scope: Scope, whole: Node): void {
    const rhs = (cur: Val): Val => {
      if (op === undefined) return this.expr(valueNode!, scope);
      const right = valueNode ? this.expr(valueNode, scope) : num('1', 1n, 1n, 'lit');
      return this.binary(op, cur, right, whole, valueNode ?? whole);
    };
    const t = unparen(target);
    if (Node.isIdentifier(t)) {
      const info = this.lookupVar(t, scope);
      if (info?.poisoned) throw new Reported();
      if (!info) throw this.diags.error(t, `${t.getText()} is not a variable of this function`, 'programs can only change their own let variables; keep state in maps');
      if (!info.mutable) throw this.diags.error(t, `${t.getText()} is const`, `declare it with let to change it`);
      const v = rhs(this.varValue(info));
      this.storeCheck(v, info, valueNode ?? whole, t.getText());
      this.line(scope, `${info.cname} = ${v.c};`);
      return;
    }
    if (Node.isPropertyAccessExpression(t)) {
      if (t.hasQuestionDotToken()) throw this.diags.error(t, 'optional chaining cannot be assigned to');
      const objV = this.expr(t.getExpression(), scope, { allowAlias: true });
      const name = t.getName();
      if (objV.ty.t === 'pkt') {
        const pf = PACKET_FIELDS.find((f) => f.name === name);
        if (name === 'mark' && pf) {
          if (scope.hook === 'xdp') throw this.diags.error(t, 'pkt.mark exists at TC only', 'use tcIngress or tcEgress, or keep per-packet state in a map');
          const v = rhs(this.packetField(name, scope, t));
          this.fits(v, 'u32', valueNode ?? whole, 'pkt.mark');
          this.line(scope, `ctx->mark = ${v.c};`);
          return;
        }
        throw this.diags.error(t, `pkt.${name} is read-only`, HEADER_NAMES.includes(name as HeaderName) ? 'assign to its fields: pkt.ipv4.ttl = 63' : undefined);
      }
      if (objV.ty.t === 'header') {
        const h = objV.ty.h;
        this.checkNarrowed(t.getExpression(), h);
        const f = FIELDS.find((x) => x.header === h && x.name === name);
        if (!f) throw this.diags.error(t, `the ${h} header has no field '${name}'`);
        if (!f.write) throw this.diags.error(t, `pkt.${h}.${name} is read-only`, readOnlyHint(f));
        if (scope.kind !== 'main') throw this.diags.error(t, 'helper functions cannot change the packet', 'change it in the program function');
        const v = rhs(this.fieldRead(f));
        if (f.type === 'ipv6') {
          if (v.ty.t !== 'ip6') throw this.diags.error(valueNode ?? whole, `pkt.${h}.${name} takes an IPv6 address, not ${describeTy(v.ty)}`, "ip6('fd00::1'), or another address field");
          this.fieldWrite(f, v, scope);
          return;
        }
        const width = f.type === 'mac' ? 'mac' : f.max === 0xff ? 'u8' : f.max === 0xffff ? 'u16' : f.max === 0xffffffff ? 'u32' : f.max;
        this.fits(v, width, valueNode ?? whole, `pkt.${h}.${name}`);
        this.fieldWrite(f, v, scope);
        return;
      }
      if (objV.ty.t === 'struct') {
        throw this.diags.error(t, 'a looked-up value is a copy: changing it would not change the map', `write it back: map.update(key, { ...value, ${name}: x })`);
      }
      throw this.diags.error(t, `${describeTy(objV.ty)} has no field to assign`);
    }
    if (Node.isElementAccessExpression(t)) throw this.diags.error(t, 'arrays are not supported in programs', 'use separate variables or an array map');
    throw this.diags.error(t, 'only let variables and packet fields can be assigned');
  }

  storeCheck(v: Val, info: VarInfo, node: Node, name: string): void {
    if (info.ty.t === 'num') {
      if (v.ty.t !== 'num') throw this.diags.error(node, `${name} holds a number, not ${describeTy(v.ty)}`);
      this.fits(v, info.width!, node, name);
    } else if (info.ty.t === 'big') {
      if (v.ty.t !== 'big') throw this.diags.error(node, `${name} holds a bigint, not ${describeTy(v.ty)}`, 'convert: u64(x)');
      this.exactBig(v, node);
    } else if (info.ty.t !== v.ty.t) {
      throw this.diags.error(node, `${name} holds ${describeTy(info.ty)}, not ${describeTy(v.ty)}`);
    }
  }

  returnStatement(s: Node & { getExpression(): Expression | undefined }, scope: Scope): void {
    this.comment(scope, s);
    const e = s.getExpression();
    if (scope.kind === 'main') {
      if (!e) throw this.diags.error(s, 'a program must return a verdict', scope.hook === 'xdp' ? 'return XDP_PASS (or XDP_DROP, XDP_TX, redirect(...))' : 'return TC_ACT_OK (or TC_ACT_SHOT, redirect(...))');
      const v = this.expr(e, scope);
      this.checkVerdict(v, e, scope.hook!);
      this.line(scope, `return ${v.c};`);
      return;
    }
    if (!e) throw this.diags.error(s, 'a helper function must return a value', 'return a number, a bigint or a boolean');
    const v = this.expr(e, scope);
    if (v.ty.t === 'num' && scope.retWidth && scope.retWidth !== 'bool') this.fits(v, scope.retWidth, e, 'the return value');
    if (v.ty.t === 'big') this.exactBig(v, e);
    if (v.ty.t !== 'num' && v.ty.t !== 'big' && v.ty.t !== 'bool' && v.ty.t !== 'verdict') {
      throw this.diags.error(e, `helper functions return numbers, bigints, booleans or verdicts, not ${describeTy(v.ty)}`);
    }
    scope.returns.push(v);
    this.line(scope, `return ${v.c};`);
  }

  checkVerdict(v: Val, node: Node, hook: FnHook): void {
    if (v.ty.t !== 'verdict') {
      throw this.diags.error(node, `a program returns a verdict, not ${describeTy(v.ty)}`, hook === 'xdp' ? 'return XDP_PASS, XDP_DROP, XDP_TX or redirect(ifindex)' : 'return TC_ACT_OK, TC_ACT_SHOT or redirect(ifindex)');
    }
  }

  switchStatement(s: Node & { getExpression(): Expression; getCaseBlock(): Node }, scope: Scope): void {
    this.comment(scope, s);
    const d = this.expr(s.getExpression(), scope);
    if (d.ty.t !== 'num' && d.ty.t !== 'big' && d.ty.t !== 'verdict') {
      throw this.diags.error(s.getExpression(), `switch works on numbers here, not ${describeTy(d.ty)}`, 'use if/else');
    }
    if (d.ty.t === 'big') this.exactBig(d, s.getExpression());
    this.line(scope, `switch (${d.c}) {`);
    scope.switches++;
    const clauses = (s.getCaseBlock() as Node & { getClauses(): Node[] }).getClauses();
    const seen = new Set<string>();
    for (const cl of clauses) {
      if (Node.isCaseClause(cl)) {
        const label = this.statics.tryEval(cl.getExpression());
        if (label === NOT_CONSTANT || (typeof label !== 'number' && typeof label !== 'bigint')) {
          this.diags.error(cl.getExpression(), 'case labels must be constant numbers', 'write a literal or a top-level const; use if/else for run-time values');
          continue;
        }
        if ((typeof label === 'bigint') !== (d.ty.t === 'big')) this.diags.error(cl.getExpression(), 'this case can never match: number and bigint are never ===', d.ty.t === 'big' ? 'write a bigint: 6n' : 'write a number');
        if (typeof label === 'number' && !Number.isInteger(label)) this.diags.error(cl.getExpression(), 'case labels must be integers');
        const text = typeof label === 'bigint' ? `${label}ULL` : litC(BigInt(label));
        if (seen.has(text)) this.diags.error(cl, 'duplicate case label');
        seen.add(text);
        this.line(scope, `case ${text}: {`);
      } else {
        this.line(scope, 'default: {');
      }
      scope.indent++;
      this.block((cl as Node & { getStatements(): Statement[] }).getStatements(), scope);
      scope.indent--;
      this.line(scope, '}');
    }
    scope.switches--;
    this.line(scope, '}');
  }

  forStatement(s: Node & { getInitializer(): Node | undefined; getCondition(): Expression | undefined; getIncrementor(): Expression | undefined; getStatement(): Statement }, scope: Scope): void {
    const hint = 'write for (let i = 0; i < 8; i++) with constant bounds, and do not change i in the body';
    const init = s.getInitializer();
    if (!init || !Node.isVariableDeclarationList(init) || init.getDeclarations().length !== 1 || init.getDeclarationKind() !== 'let') {
      throw this.diags.error(s, 'a for loop must declare one counter with let', hint);
    }
    const decl = init.getDeclarations()[0]!;
    const nameNode = decl.getNameNode();
    if (!Node.isIdentifier(nameNode)) throw this.diags.error(decl, 'the loop counter must be a plain name', hint);
    const name = nameNode.getText();
    const startNode = decl.getInitializer();
    const start = startNode ? this.statics.tryEval(startNode) : NOT_CONSTANT;
    if (typeof start !== 'number' || !Number.isInteger(start)) throw this.diags.error(startNode ?? decl, 'the loop counter must start at a constant integer', hint);
    const cond = s.getCondition();
    if (!cond || !Node.isBinaryExpression(cond) || !Node.isIdentifier(unparen(cond.getLeft())) || unparen(cond.getLeft()).getText() !== name) {
      throw this.diags.error(cond ?? s, 'the loop condition must compare the counter with a constant bound', hint);
    }
    const op = cond.getOperatorToken().getKind();
    const endV = this.statics.tryEval(cond.getRight());
    if (typeof endV !== 'number' || !Number.isInteger(endV)) throw this.diags.error(cond.getRight(), 'the loop bound must be a constant integer (a literal or a top-level const)', hint);
    const inc = s.getIncrementor();
    let step = 0;
    if (inc && (Node.isPostfixUnaryExpression(inc) || Node.isPrefixUnaryExpression(inc)) && unparen(inc.getOperand()).getText() === name) {
      step = inc.getOperatorToken() === SyntaxKind.PlusPlusToken ? 1 : inc.getOperatorToken() === SyntaxKind.MinusMinusToken ? -1 : 0;
    } else if (inc && Node.isBinaryExpression(inc) && unparen(inc.getLeft()).getText() === name) {
      const k = this.statics.tryEval(inc.getRight());
      const t = inc.getOperatorToken().getKind();
      if (typeof k === 'number' && Number.isInteger(k) && k > 0) step = t === SyntaxKind.PlusEqualsToken ? k : t === SyntaxKind.MinusEqualsToken ? -k : 0;
    }
    if (step === 0) throw this.diags.error(inc ?? s, 'the loop must step its counter by a constant: i++, i--, i += 2', hint);
    // iteration values
    let last: number;
    let count: number;
    const holds = (i: number) =>
      op === SyntaxKind.LessThanToken ? i < endV : op === SyntaxKind.LessThanEqualsToken ? i <= endV : op === SyntaxKind.GreaterThanToken ? i > endV : op === SyntaxKind.GreaterThanEqualsToken ? i >= endV : undefined;
    if (holds(start) === undefined) throw this.diags.error(cond, 'the loop condition must be <, <=, > or >=', hint);
    if ((step > 0 && (op === SyntaxKind.GreaterThanToken || op === SyntaxKind.GreaterThanEqualsToken)) || (step < 0 && (op === SyntaxKind.LessThanToken || op === SyntaxKind.LessThanEqualsToken))) {
      throw this.diags.error(s, 'this loop never ends: its counter moves away from the bound', hint);
    }
    count = 0;
    last = start;
    for (let i = start; holds(i); i += step) {
      last = i;
      if (++count > MAX_LOOP_ITERATIONS) throw this.diags.error(s, `this loop runs more than ${MAX_LOOP_ITERATIONS} times`, 'keep loops short: the verifier checks every iteration');
    }
    // the body must not change the counter
    for (const id of s.getStatement().getDescendantsOfKind(SyntaxKind.Identifier)) {
      if (id.getText() !== name || declarationOf(id) !== decl) continue;
      const parent = id.getParent();
      const assigned =
        (Node.isBinaryExpression(parent) && parent.getLeft() === id && isAssignmentOp(parent.getOperatorToken().getKind())) ||
        ((Node.isPostfixUnaryExpression(parent) || Node.isPrefixUnaryExpression(parent)) && (parent.getOperatorToken() === SyntaxKind.PlusPlusToken || parent.getOperatorToken() === SyntaxKind.MinusMinusToken));
      if (assigned) throw this.diags.error(id, `the loop counter ${name} is changed in the body, so the loop has no known bound`, hint);
    }
    this.comment(scope, s);
    const cname = this.cname(name, scope);
    const lo = BigInt(Math.min(start, last));
    const hi = BigInt(Math.max(start, last));
    scope.vars.set(decl, { cname, ty: { t: 'num', lo, hi, ct: 's64' }, mutable: false });
    const opText = cond.getOperatorToken().getText();
    const stepText = step === 1 ? `${cname}++` : step === -1 ? `${cname}--` : step > 0 ? `${cname} += ${step}` : `${cname} -= ${-step}`;
    this.line(scope, `for (__s64 ${cname} = ${litC(BigInt(start))}; ${cname} ${opText} ${litC(BigInt(endV))}; ${stepText}) {`);
    scope.loops++;
    this.nested(s.getStatement(), scope);
    scope.loops--;
    this.line(scope, '}');
  }

  // -------------------------------------------------------------------------
  // expressions

  lookupVar(id: Node, scope: Scope): VarInfo | undefined {
    const decl = declarationOf(id);
    if (!decl) return undefined;
    const direct = scope.vars.get(decl);
    if (direct) return direct;
    // parameters are keyed by their ParameterDeclaration, bindings by their element
    const parent = decl.getParent();
    return parent ? scope.vars.get(parent) : undefined;
  }

  varValue(info: VarInfo): Val {
    if (info.alias) return { ty: info.alias, c: info.cname };
    return { ty: info.ty, c: info.cname };
  }

  expr(e: Expression, scope: Scope, opts: { allowOpt?: boolean; allowAlias?: boolean; statement?: boolean } = {}): Val {
    const v = this.exprInner(e, scope, opts);
    if ((v.ty.t === 'optptr' || v.ty.t === 'optvar') && !opts.allowOpt) {
      throw this.diags.error(e, 'this lookup result may be undefined here', 'check it first: const v = map.lookup(k); if (v !== undefined) { ... } or write map.lookup(k) ?? 0');
    }
    if (v.ty.t === 'void' && !opts.statement) throw this.diags.error(e, 'this call gives no value');
    return v;
  }

  exprInner(e: Expression, scope: Scope, opts: { allowOpt?: boolean; allowAlias?: boolean; statement?: boolean }): Val {
    if (Node.isParenthesizedExpression(e)) {
      const v = this.exprInner(e.getExpression(), scope, opts);
      return { ty: v.ty, c: v.c.startsWith('(') && v.c.endsWith(')') ? v.c : `(${v.c})` };
    }
    if (Node.isNumericLiteral(e)) {
      const n = e.getLiteralValue();
      if (!Number.isInteger(n)) throw this.diags.error(e, 'programs have integers only', 'write an integer; scale fractions (e.g. per-mille instead of 0.5%)');
      if (!Number.isSafeInteger(n)) throw this.diags.error(e, 'this number is beyond 2^53, where JS numbers lose precision', `write it as a bigint: ${e.getText()}n`);
      return num(litC(BigInt(n)), BigInt(n), BigInt(n), 'lit');
    }
    if (Node.isBigIntLiteral(e)) {
      const n = e.getLiteralValue() as bigint;
      if (n > U64_MAX) throw this.diags.error(e, 'this bigint does not fit in 64 bits');
      return big(`${n}ULL`, n, n);
    }
    if (Node.isTrueLiteral(e)) return { ty: { t: 'bool' }, c: '1' };
    if (Node.isFalseLiteral(e)) return { ty: { t: 'bool' }, c: '0' };
    if (Node.isStringLiteral(e) || Node.isNoSubstitutionTemplateLiteral(e) || Node.isTemplateExpression(e)) {
      throw this.diags.error(e, 'strings do not exist in the kernel', 'use numbers; for addresses write ip4(\'10.0.0.1\'), ip6(\'fd00::1\') or mac(\'02:00:00:00:00:01\')');
    }
    if (Node.isIdentifier(e)) return this.identifier(e, scope, opts);
    if (Node.isPropertyAccessExpression(e)) return this.property(e, scope, opts);
    if (Node.isCallExpression(e)) return this.call(e, scope, opts);
    if (Node.isPrefixUnaryExpression(e)) return this.prefix(e, scope);
    if (Node.isPostfixUnaryExpression(e)) throw this.diags.error(e, `${e.getText()} changes a variable inside an expression`, 'write it as its own statement');
    if (Node.isBinaryExpression(e)) return this.binaryExpr(e, scope);
    if (Node.isConditionalExpression(e)) return this.conditional(e, scope);
    if (Node.isNonNullExpression(e)) {
      throw this.diags.error(e, 'the ! operator only silences TypeScript: the kernel would read a header that is not there', 'check first: if (pkt.tcp) { ... } or if (!pkt.tcp) return ...');
    }
    if (Node.isAsExpression(e) || Node.isTypeAssertion(e)) {
      throw this.diags.error(e, '`as` changes only the TypeScript type, not the value', 'convert the value with u8(x), u16(x), u32(x) or u64(x)');
    }
    if (Node.isSatisfiesExpression(e)) return this.exprInner(e.getExpression(), scope, opts);
    if (Node.isArrowFunction(e) || Node.isFunctionExpression(e)) {
      throw this.diags.error(e, 'functions inside a program are closures, which the kernel cannot run', 'declare a helper function at the top level of the file and call it');
    }
    if (Node.isObjectLiteralExpression(e)) {
      throw this.diags.error(e, 'objects exist only as map keys, values and events', 'pass the object straight to map.update(...), map.lookup(...) or events.output(...)');
    }
    if (Node.isArrayLiteralExpression(e) || Node.isElementAccessExpression(e)) {
      throw this.diags.error(e, 'arrays are not supported in programs', 'use separate variables, a struct, or an array map');
    }
    if (Node.isAwaitExpression(e)) throw this.diags.error(e, 'await is not supported: programs run to completion in the kernel', 'remove async and await');
    if (Node.isNewExpression(e)) throw this.diags.error(e, 'new creates objects, which programs do not have', 'use numbers, and maps for state');
    if (Node.isTypeOfExpression(e)) throw this.diags.error(e, 'typeof is not supported: every value has a fixed type', 'compare values directly');
    if (Node.isDeleteExpression(e)) throw this.diags.error(e, 'delete is not supported', 'remove map entries with map.delete(key)');
    if (Node.isVoidExpression(e)) throw this.diags.error(e, 'void is not supported');
    if (Node.isYieldExpression(e)) throw this.diags.error(e, 'generators are not supported');
    if (Node.isRegularExpressionLiteral(e)) throw this.diags.error(e, 'regular expressions are not supported', 'compare bytes and fields with numbers');
    if (e.getKind() === SyntaxKind.ThisKeyword) throw this.diags.error(e, 'this is not supported in programs', 'pass values as parameters');
    if (e.getKind() === SyntaxKind.NullKeyword) throw this.diags.error(e, 'null is not supported', 'compare with undefined: if (v === undefined)');
    if (Node.isSpreadElement(e)) throw this.diags.error(e, 'spread is not supported here');
    if (Node.isTaggedTemplateExpression(e)) throw this.diags.error(e, 'strings do not exist in the kernel');
    if (Node.isClassExpression(e)) throw this.diags.error(e, 'classes are not supported in programs');
    throw this.diags.error(e, `${e.getKindName()} is not supported in programs`);
  }

  identifier(e: Node, scope: Scope, opts: { allowOpt?: boolean; allowAlias?: boolean }): Val {
    const text = e.getText();
    if (text === 'undefined') throw this.diags.error(e, 'undefined is only for checks: x === undefined or x !== undefined');
    const info = this.lookupVar(e, scope);
    if (info) {
      if (info.poisoned) throw new Reported();
      if (info.alias) {
        if (info.alias.t === 'header') this.checkNarrowedAlias(e, info.alias.h, opts);
        return { ty: info.alias, c: info.cname };
      }
      if (info.has) {
        if (this.maybeUndefined(e)) return { ty: { t: 'optvar', inner: info.ty, has: info.has }, c: info.cname };
      }
      return { ty: info.ty, c: info.cname };
    }
    const api = tsbpfName(e);
    if (api) return this.apiValue(e, api, scope);
    const decl = declarationOf(e);
    if (decl && (Node.isFunctionDeclaration(decl) || (Node.isVariableDeclaration(decl) && isFunctionInit(decl.getInitializer())))) {
      throw this.diags.error(e, `${text} is a function: call it`, `${text}(...)`);
    }
    if (!decl || decl.getSourceFile().isDeclarationFile() || decl.getSourceFile().isInNodeModules()) {
      throw this.diags.error(e, `${text} is not something a program can use in the kernel`, 'programs use their parameters, local variables, top-level constants and tsbpf helpers');
    }
    if (Node.isVariableDeclaration(decl)) {
      const stmt = decl.getVariableStatement();
      const topLevel = stmt && Node.isSourceFile(stmt.getParent());
      if (topLevel && stmt.getDeclarationKind() !== 'const') {
        throw this.diags.error(e, `${text} is a module-level let: state in Node that the kernel cannot share`, 'keep run-time state in a map; use const for constants');
      }
      if (!topLevel) {
        throw this.diags.error(e, `${text} is a local of another function: programs cannot capture run-time values`, 'pass it as a parameter to a helper function, or keep it in a map');
      }
    }
    return this.constant(e, this.statics.eval(e, `${text}`));
  }

  /** A build-time value as C. */
  constant(node: Node, v: unknown): Val {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw this.diags.error(node, `${node.getText()} is ${v}: programs have safe integers only`);
      return num(litC(BigInt(v)), BigInt(v), BigInt(v), 'lit');
    }
    if (typeof v === 'bigint') {
      if (v < 0n || v > U64_MAX) throw this.diags.error(node, `${node.getText()} does not fit in a u64`);
      return big(`${v}ULL`, v, v);
    }
    if (typeof v === 'boolean') return { ty: { t: 'bool' }, c: v ? '1' : '0' };
    if (v && typeof v === 'object' && typeof (v as { hi?: unknown }).hi === 'bigint' && typeof (v as { lo?: unknown }).lo === 'bigint') {
      const a = v as { hi: bigint; lo: bigint };
      return { ty: { t: 'ip6' }, c: `((struct fn_ip6){ .hi = ${a.hi}ULL, .lo = ${a.lo}ULL })` };
    }
    if (typeof v === 'string') throw this.diags.error(node, 'strings do not exist in the kernel', 'use numbers');
    throw this.diags.error(node, `${node.getText()} is not a value a program can use`, 'programs use numbers, bigints and booleans');
  }

  apiValue(e: Node, api: { module: TsbpfModule; name: string }, scope: Scope): Val {
    const vc = VERDICT_CONSTANTS[api.name];
    if (vc && api.module === 'fn') {
      const family = scope.hook === undefined ? undefined : scope.hook === 'xdp' ? 'xdp' : 'tc';
      if (family && vc.hook !== family) {
        throw this.diags.error(e, `${api.name} is ${vc.hook === 'xdp' ? 'an XDP' : 'a TC'} verdict, and this is ${family === 'xdp' ? 'an XDP' : 'a TC'} program`, family === 'xdp' ? 'return XDP_PASS, XDP_DROP, XDP_TX or XDP_ABORTED' : 'return TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC or TC_ACT_PIPE');
      }
      return { ty: { t: 'verdict' }, c: VERDICT_C[api.name]! };
    }
    return this.constant(e, this.statics.eval(e, api.name));
  }

  property(e: Node & { getExpression(): Expression; getName(): string; hasQuestionDotToken(): boolean }, scope: Scope, opts: { allowOpt?: boolean; allowAlias?: boolean }): Val {
    if (e.hasQuestionDotToken()) {
      throw this.diags.error(e, 'optional chaining (?.) is not supported', 'check the header first: if (pkt.tcp) { ... pkt.tcp.dport ... }');
    }
    const api = tsbpfName(e);
    if (api) return this.apiValue(e, api, scope);
    const objNode = e.getExpression();
    const name = e.getName();
    // CONSTANTS.x of a top-level const object: a build-time value.
    let root: Node = objNode;
    while (Node.isPropertyAccessExpression(root)) root = root.getExpression();
    if (Node.isIdentifier(root) && !this.lookupVar(root, scope) && !tsbpfName(root)) {
      const v = this.statics.tryEval(e);
      if (v !== NOT_CONSTANT) return this.constant(e, v);
    }
    const obj = this.exprInner(objNode, scope, { allowAlias: true, allowOpt: true });
    switch (obj.ty.t) {
      case 'pkt': {
        if ((HEADER_NAMES as readonly string[]).includes(name)) {
          const v: Val = { ty: { t: 'header', h: name as HeaderName }, c: HEADER_PRESENT_C[name as HeaderName] };
          return v;
        }
        return this.packetField(name, scope, e);
      }
      case 'header': {
        const h = obj.ty.h;
        this.checkNarrowed(objNode, h);
        const f = FIELDS.find((x) => x.header === h && x.name === name);
        if (!f) throw this.diags.error(e, `the ${h} header has no field '${name}'`, `its fields: ${FIELDS.filter((x) => x.header === h).map((x) => x.name).join(', ')}`);
        return this.fieldRead(f);
      }
      case 'ip6':
        if (name === 'hi' || name === 'lo') return big(`${obj.c}.${name}`, 0n, U64_MAX);
        throw this.diags.error(e, `an IPv6 address has hi and lo, not ${name}`);
      case 'struct': {
        const f = obj.ty.layout.fields.find((x) => x.name === name);
        if (!f) throw this.diags.error(e, `this struct has no field '${name}'`, `its fields: ${obj.ty.layout.fields.map((x) => x.name).join(', ')}`);
        return this.structField(`${obj.c}.${name}`, f.layout, e);
      }
      case 'maps': {
        const m = this.maps.get(name);
        if (!m) throw this.diags.error(e, `there is no map '${name}' in this program's maps`, `declare it in the program's options: { maps: { ${name}: hash(...) } }`);
        return { ty: { t: 'map', name }, c: name };
      }
      case 'optvar':
      case 'optptr':
        throw this.diags.error(e, 'this lookup result may be undefined here', 'check it first: if (v !== undefined) { ... v.' + name + ' ... }');
      default:
        break;
    }
    if (name === 'length') throw this.diags.error(e, 'arrays and strings are not supported in programs', 'use pkt.len for the packet length');
    throw this.diags.error(e, `${describeTy(obj.ty)} has no property '${name}'`);
  }

  packetField(name: string, scope: Scope, node: Node): Val {
    const pf = PACKET_FIELDS.find((f) => f.name === name);
    if (!pf) throw this.diags.error(node, `the packet has no field '${name}'`, `its fields: ${[...PACKET_FIELDS.map((f) => f.name), ...HEADER_NAMES].join(', ')}`);
    if (pf.tcOnly && scope.hook === 'xdp') throw this.diags.error(node, `pkt.${name} exists at TC only`, 'use tcIngress or tcEgress');
    if (scope.kind !== 'main') throw this.diags.error(node, 'helper functions cannot read the packet', 'pass the fields they need as parameters');
    const c = name === 'ifindex' ? (scope.hook === 'xdp' ? 'ctx->ingress_ifindex' : 'ctx->ifindex') : name === 'mark' ? 'ctx->mark' : pf.c;
    return num(c, 0n, BigInt(pf.max), pf.type === 'u8' ? 'u8' : pf.type === 'u16' ? 'u16' : 'u32');
  }

  fieldRead(f: FieldSpec): Val {
    switch (f.type) {
      case 'bool':
        return { ty: { t: 'bool' }, c: f.c.startsWith('(') ? f.c : `(${f.c} != 0)` };
      case 'ipv6':
        return { ty: { t: 'ip6' }, c: `fn_ip6_of(${f.c})` };
      case 'mac':
        return num(f.c, 0n, (1n << 48n) - 1n, 'u64');
      default:
        return num(f.c, 0n, BigInt(f.max), f.c.startsWith('(') ? 'u32' : f.type);
    }
  }

  fieldWrite(f: FieldSpec, v: Val, scope: Scope): void {
    const wr = f.write!;
    if (f.header === 'vlan') {
      const t = this.tmp('w');
      this.line(scope, `{`);
      this.line(scope, `\tconst __u16 ${t} = ${v.c};`);
      this.line(scope, `\tfn_vlan_write(ctx, ${HOOK_C(scope.hook!)}, &p, ${wr.shift}, 0x${((1 << wr.width) - 1).toString(16)}, ${t});`);
      this.line(scope, `}`);
      return;
    }
    if (wr.bytes === 16) {
      const t = this.tmp('a');
      const l4 = `((p.present & TSBPF_HAS_TCP) ? p.l4_off + ${L4_CSUM.tcp!.offset} : (p.present & TSBPF_HAS_UDP) ? p.l4_off + ${L4_CSUM.udp!.offset} : (p.present & TSBPF_HAS_ICMPV6) ? p.l4_off + ${L4_CSUM.icmpv6!.offset} : 0)`;
      this.line(scope, `{`);
      this.line(scope, `\tconst struct fn_ip6 ${t} = ${v.c};`);
      this.line(scope, `\tfn_write_ip6(ctx, ${HOOK_C(scope.hook!)}, &p, p.l3_off + ${wr.region}, ${t}, ${l4}, FN_CSUM_PSEUDO | ((p.present & TSBPF_HAS_UDP) ? FN_CSUM_MANGLED0 : 0), ${f.cStore});`);
      this.line(scope, `}`);
      return;
    }
    const base = wr.base === 'eth' ? '' : wr.base === 'l3' ? 'p.l3_off + ' : 'p.l4_off + ';
    const off = `${base}${wr.region}`;
    const mask = wr.width === 48 ? '0xffffffffffffULL' : `0x${((1n << BigInt(wr.width)) - 1n).toString(16)}`;
    let ip4 = '0';
    let l4 = '0';
    let flags = '0';
    for (const k of wr.csum) {
      if (k === 'ip4') ip4 = 'p.l3_off + 10';
      if (k === 'l4') {
        const spec = L4_CSUM[f.header]!;
        l4 = `p.l4_off + ${spec.offset}`;
        flags = spec.mangledZero ? 'FN_CSUM_MANGLED0' : '0';
      }
      if (k === 'l4pseudo') {
        l4 = `((p.present & TSBPF_HAS_TCP) ? p.l4_off + ${L4_CSUM.tcp!.offset} : (p.present & TSBPF_HAS_UDP) ? p.l4_off + ${L4_CSUM.udp!.offset} : 0)`;
        flags = 'FN_CSUM_PSEUDO | ((p.present & TSBPF_HAS_UDP) ? FN_CSUM_MANGLED0 : 0)';
      }
    }
    const t = this.tmp('w');
    this.line(scope, '{');
    this.line(scope, `\tconst __u64 ${t} = ${v.c};`);
    const storeFlags = wr.csum.length === 0 && wr.base !== 'eth' ? 'BPF_F_RECOMPUTE_CSUM' : '0';
    this.line(scope, `\tfn_write(ctx, ${HOOK_C(scope.hook!)}, &p, ${off}, ${wr.bytes}, ${wr.shift}, ${mask}, ${t}, ${ip4}, ${l4}, ${flags}, ${storeFlags});`);
    this.line(scope, `\t${f.cStore} = ${t};`);
    this.line(scope, '}');
  }

  structField(c: string, l: Layout<unknown>, node: Node): Val {
    const k = layoutIntKind(l);
    if (!k) throw this.diags.error(node, 'only integer fields of a struct can be read', 'declare map structs with u8, u16, u32 and u64 fields');
    if (k === 'u64') return big(c, 0n, U64_MAX);
    return num(c, 0n, WIDTH_MAX[k], k);
  }

  /** The header under `node` must be narrowed by TypeScript to defined (checked before the read). */
  checkNarrowed(node: Node, h: HeaderName): void {
    if (this.maybeUndefined(node)) {
      throw this.diags.error(node, `${node.getText()} may be absent here: the packet may have no ${h} header`, `check first: if (!${node.getText()}) return ...; or if (${node.getText()}) { ... }`);
    }
  }

  checkNarrowedAlias(_node: Node, _h: HeaderName, _opts: unknown): void {
    // aliases are checked where their fields are read (checkNarrowed on the alias)
  }

  maybeUndefined(node: Node): boolean {
    const t = node.getType();
    if (t.isUndefined()) return true;
    if (t.isUnion()) return t.getUnionTypes().some((u) => u.isUndefined());
    return false;
  }

  // -- calls

  call(e: Node & { getExpression(): Expression; getArguments(): Node[] }, scope: Scope, opts: { statement?: boolean }): Val {
    const callee = e.getExpression();
    const args = e.getArguments() as Expression[];
    for (const a of args) if (Node.isSpreadElement(a)) throw this.diags.error(a, 'spread arguments are not supported', 'pass each argument');
    if (Node.isPropertyAccessExpression(callee) && !tsbpfName(callee)) {
      const root = callee.getExpression().getText();
      if (root === 'console') throw this.diags.error(e, 'console output cannot happen in the kernel', 'send an event to user space: events.output({ ... }) with a ringBuf map');
      if (root === 'Math') throw this.diags.error(e, `Math.${callee.getName()} works on floating point, which the kernel does not have`, 'use integer operations; for min/max write a ? b : c');
      if (root === 'Date') throw this.diags.error(e, 'Date is not available in the kernel', 'use ktimeNs() (nanoseconds since boot)');
      const obj = this.exprInner(callee.getExpression(), scope, { allowAlias: true });
      if (obj.ty.t === 'map') return this.mapCall(obj.ty.name, callee.getName(), args, e, scope);
      throw this.diags.error(e, `${callee.getText()}() cannot be called in a program`, 'call helper functions declared at the top level, map operations, or tsbpf helpers');
    }
    const api = tsbpfName(callee);
    if (api && api.module === 'fn') return this.apiCall(api.name, args, e, scope, opts);
    if (Node.isIdentifier(callee)) {
      const decl = declarationOf(callee);
      const fn = decl && helperFunctionOf(decl);
      if (fn) return this.helperCall(fn, callee.getText(), args, e, scope);
      const text = callee.getText();
      if (['Number', 'BigInt', 'parseInt', 'parseFloat', 'String', 'Boolean'].includes(text)) {
        throw this.diags.error(e, `${text}() is not supported`, 'convert with u8(x), u16(x), u32(x) or u64(x)');
      }
      if (text === 'setTimeout' || text === 'setInterval' || text === 'queueMicrotask') throw this.diags.error(e, `${text} is not supported: programs run to completion`, 'keep state in maps and act on the next packet');
      if (decl && scope.vars.has(decl)) throw this.diags.error(e, `${text} is not a function`);
    }
    throw this.diags.error(e, `${callee.getText()}() cannot be called in a program`, 'call helper functions declared at the top level of your files, map operations, or tsbpf helpers');
  }

  argCount(e: Node, args: Node[], min: number, max: number, usage: string): void {
    if (args.length < min || args.length > max) throw this.diags.error(e, `wrong number of arguments`, usage);
  }

  apiCall(name: string, args: Expression[], e: Node, scope: Scope, opts: { statement?: boolean }): Val {
    switch (name) {
      case 'u8':
      case 'u16':
      case 'u32':
      case 'u64': {
        this.argCount(e, args, 1, 1, `${name}(value)`);
        const v = this.expr(args[0]!, scope);
        if (v.ty.t !== 'num' && v.ty.t !== 'big') throw this.diags.error(args[0]!, `${name}() converts numbers and bigints, not ${describeTy(v.ty)}`);
        const max = WIDTH_MAX[name];
        if (name === 'u64') {
          if (v.ty.t === 'big' && v.ty.lo >= 0n && v.ty.hi <= U64_MAX) return v;
          const lo = v.ty.lo >= 0n && v.ty.hi <= max ? v.ty.lo : 0n;
          const hi = v.ty.lo >= 0n && v.ty.hi <= max ? v.ty.hi : max;
          return big(`((__u64)${wrapC(v.c)})`, lo, hi);
        }
        const inRange = v.ty.lo >= 0n && v.ty.hi <= max;
        if (inRange && v.ty.t === 'num') return num(v.c, v.ty.lo, v.ty.hi, v.ty.ct);
        return num(`((${C_INT[name]})${wrapC(v.c)})`, inRange ? v.ty.lo : 0n, inRange ? v.ty.hi : max, name);
      }
      case 'ktimeNs':
        this.argCount(e, args, 0, 0, 'ktimeNs()');
        return big('bpf_ktime_get_ns()', 0n, U64_MAX);
      case 'randomU32':
        this.argCount(e, args, 0, 0, 'randomU32()');
        return num('bpf_get_prandom_u32()', 0n, 0xffffffffn, 'u32');
      case 'redirect': {
        this.argCount(e, args, 1, 2, 'redirect(ifindex) or redirect(ifindex, BPF_F_INGRESS)');
        if (scope.kind !== 'main') throw this.diags.error(e, 'redirect() belongs in the program function', 'return redirect(ifindex) from the program');
        const ifx = this.expr(args[0]!, scope);
        this.fits(ifx, 'u32', args[0]!, 'the ifindex');
        let flags = 0;
        if (args[1]) {
          const f = this.statics.tryEval(args[1]);
          if (typeof f !== 'number' || (f !== 0 && f !== 1)) throw this.diags.error(args[1], 'redirect flags must be the constant 0 or BPF_F_INGRESS');
          if (f === 1 && scope.hook === 'xdp') throw this.diags.error(args[1], 'BPF_F_INGRESS is for TC programs', 'at XDP, redirect(ifindex) sends the frame out of that interface');
          flags = f;
        }
        return { ty: { t: 'verdict' }, c: `bpf_redirect(${ifx.c}, ${flags})` };
      }
      case 'tailCall': {
        this.argCount(e, args, 2, 2, 'tailCall(maps.programs, slot)');
        if (!opts.statement) throw this.diags.error(e, 'tailCall() gives no value: it jumps away, or carries on when the slot is empty', 'write it as a statement: tailCall(progs, 0); return XDP_PASS;');
        if (scope.kind !== 'main') throw this.diags.error(e, 'tailCall() belongs in the program function');
        const m = this.exprInner(args[0]!, scope, { allowAlias: true });
        if (m.ty.t !== 'map' || this.maps.get(m.ty.name)?.decl.kind !== 'prog_array') throw this.diags.error(args[0]!, 'tailCall() needs a progArray map', 'declare one: progs: progArray({ maxEntries: 4 })');
        const idx = this.expr(args[1]!, scope);
        this.fits(idx, 'u32', args[1]!, 'the slot');
        return { ty: { t: 'void' }, c: `bpf_tail_call(ctx, &${m.ty.name}, ${idx.c})` };
      }
      case 'ip4':
      case 'ip6':
      case 'mac':
        return this.constant(e, this.statics.eval(e, `${name}(...)`));
      case 'sameIpv6': {
        this.argCount(e, args, 2, 2, 'sameIpv6(a, b)');
        const a = this.expr(args[0]!, scope);
        const b = this.expr(args[1]!, scope);
        if (a.ty.t !== 'ip6' || b.ty.t !== 'ip6') throw this.diags.error(e, 'sameIpv6() compares two IPv6 addresses');
        return { ty: { t: 'bool' }, c: `fn_ip6_eq(${a.c}, ${b.c})` };
      }
      case 'csumUpdate16':
      case 'csumUpdate32': {
        this.argCount(e, args, 3, 3, `${name}(checksum, old, new)`);
        const [c, o, n] = args.map((a) => this.expr(a, scope));
        this.fits(c!, 'u16', args[0]!, 'the checksum');
        const w = name === 'csumUpdate16' ? 'u16' : 'u32';
        this.fits(o!, w, args[1]!, 'the old value');
        this.fits(n!, w, args[2]!, 'the new value');
        return num(`fn_csum_replace(${c!.c}, ${o!.c}, ${n!.c}, ${w === 'u16' ? 2 : 4})`, 0n, 0xffffn, 'u16');
      }
      case 'runChain':
        return this.runChain(args, e, scope, false);
      case 'tailChain':
        return this.runChain(args, e, scope, true);
      case 'runInNode':
      case 'xdp':
      case 'tcIngress':
      case 'tcEgress':
        throw this.diags.error(e, `${name}() cannot be called inside a program`);
      default:
        throw this.diags.error(e, `${name}() cannot be called inside a program`, 'see docs/functions.md for the helpers a program can call');
    }
  }

  /** runChain(fw, pkt): the filter's entry chain for this hook, compiled into the object, its verdict as this hook's action. */
  runChain(args: Expression[], e: Node, scope: Scope, tail: boolean): Val {
    const fname = tail ? 'tailChain' : 'runChain';
    this.argCount(e, args, 2, 2, `${fname}(filter, pkt)`);
    if (scope.kind !== 'main') throw this.diags.error(e, `${fname}() belongs in the program function`, `call it from the program: return ${fname}(fw, pkt)`);
    if (tail) {
      let up = e.getParent();
      while (up && Node.isParenthesizedExpression(up)) up = up.getParent();
      if (!up || !Node.isReturnStatement(up)) {
        throw this.diags.error(e, 'tailChain() hands the packet to the filter for good: nothing can follow it', 'return it: return tailChain(fw, pkt); or use runChain(fw, pkt) to act on the verdict');
      }
    }
    const target = args[0]!;
    const v = this.statics.tryEval(target);
    if (!(isFilter(v))) {
      // A filter() the build was not given: say so (the evaluator's message names the fix).
      let root: Node = target;
      while (Node.isPropertyAccessExpression(root)) root = root.getExpression();
      const d = Node.isIdentifier(root) ? declarationOf(root) : undefined;
      const init = d && Node.isVariableDeclaration(d) ? d.getInitializer() : undefined;
      if (init && Node.isCallExpression(init) && tsbpfName(init.getExpression())?.name === 'filter') {
        const nameArg = init.getArguments()[0];
        const name = nameArg ? this.statics.tryEval(nameArg) : undefined;
        throw this.diags.error(
          target,
          `filter '${typeof name === 'string' ? name : target.getText()}' is not among the filters this build was given`,
          'export the filter from the file and pass its module: compileFunctions(file, { module: await import(file) }) (or { filters: [fw] })',
        );
      }
      throw this.diags.error(
        target,
        `${fname}() runs a declared chain, and ${target.getText()} is not one`,
        "pass a filter declared with filter(...) (its entry chain for this hook runs): export const fw = filter('fw', { hook: 'xdp' }, ...); ... return runChain(fw, pkt)",
      );
    }
    const pkt = this.exprInner(args[1]!, scope, { allowAlias: true });
    if (pkt.ty.t !== 'pkt') throw this.diags.error(args[1]!, `${fname}() runs the chain on the program's packet`, `pass the packet parameter: ${fname}(fw, pkt)`);
    const prog = v.definition.programs.find((p) => p.hook === scope.hook);
    if (!prog) {
      throw this.diags.error(target, `filter '${v.name}' has no program for ${scope.hook}`, `declare it for this hook too: filter('${v.name}', { hook: ['${v.definition.programs[0]?.hook ?? 'xdp'}', '${scope.hook}'] }, ...)`);
    }
    const have = this.chainCalls.get(v);
    if (have) have.hooks.add(scope.hook!);
    else this.chainCalls.set(v, { hooks: new Set([scope.hook!]), node: e });
    return { ty: { t: 'verdict' }, c: `fn_${tail ? 'tail' : 'run'}_${cIdent(prog.name)}(ctx, &p)` };
  }

  /** has(key) of a DSL set: the lookups the filter's rules make. */
  setCall(m: MapInfo, method: string, args: Expression[], e: Node, scope: Scope): Val {
    if (method !== 'has') throw this.diags.error(e, `a set of the filter DSL has has(key), not ${method}()`, 'change its contents from user space (the loaded map, or EvalState in Node)');
    this.argCount(e, args, 1, 1, `${m.name}.has(key)`);
    const k = this.expr(args[0]!, scope);
    if (m.set === 'ipv6') {
      if (k.ty.t !== 'ip6') throw this.diags.error(args[0]!, `${m.name} is a set of IPv6 addresses: ask it about one`, `${m.name}.has(pkt.ipv6.src)`);
      const a = this.tmp('a');
      const key = this.tmp('k');
      return {
        ty: { t: 'bool' },
        c: `({ struct fn_ip6 ${a} = ${k.c}; struct tsbpf_lpm6_key ${key} = { .prefixlen = 128 }; tsbpf_put32(${key}.addr, ${a}.hi >> 32); tsbpf_put32(${key}.addr + 4, (__u32)${a}.hi); tsbpf_put32(${key}.addr + 8, ${a}.lo >> 32); tsbpf_put32(${key}.addr + 12, (__u32)${a}.lo); bpf_map_lookup_elem(&${m.name}, &${key}) != 0; })`,
      };
    }
    if (k.ty.t !== 'num') throw this.diags.error(args[0]!, `${m.name} is a set of ${m.set === 'port' ? 'ports' : 'IPv4 addresses'}: ask it about a number`);
    this.fits(k, m.set === 'port' ? 'u16' : 'u32', args[0]!, m.set === 'port' ? 'the port' : 'the address');
    return { ty: { t: 'bool' }, c: m.set === 'port' ? `tsbpf_in_ports(&${m.name}, ${k.c})` : `tsbpf_in_lpm4(&${m.name}, ${k.c})` };
  }

  // -- maps

  mapCall(mapName: string, method: string, args: Expression[], e: Node, scope: Scope): Val {
    const m = this.maps.get(mapName)!;
    if (m.set) return this.setCall(m, method, args, e, scope);
    const kind = m.decl.kind;
    const isArray = kind === 'array' || kind === 'percpu_array';
    const isHash = kind === 'hash' || kind === 'lru_hash' || kind === 'percpu_hash' || kind === 'lru_percpu_hash';
    const perCpu = kind === 'percpu_array' || kind === 'percpu_hash' || kind === 'lru_percpu_hash';
    const valueTy = (): Ty => {
      const l = m.decl.value!;
      if (isStructLayout(l)) return { t: 'struct', layout: l as StructLayout<unknown>, ctype: m.valueC! };
      const k = layoutIntKind(l)!;
      return k === 'u64' ? { t: 'big', lo: 0n, hi: U64_MAX } : { t: 'num', lo: 0n, hi: WIDTH_MAX[k], ct: k };
    };
    if (kind === 'ringbuf') {
      if (method !== 'output') throw this.diags.error(e, `a ring buffer has output(event), not ${method}()`);
      this.argCount(e, args, 1, 1, `${mapName}.output({ ... })`);
      const ev = this.tmp('e');
      const fill = this.fillValue(ev, m.decl.value!, m.valueC!, args[0]!, scope);
      return { ty: { t: 'bool' }, c: `({ ${fill} bpf_ringbuf_output(&${mapName}, &${ev}, sizeof(${ev}), 0) == 0; })` };
    }
    if (kind === 'prog_array') throw this.diags.error(e, `${mapName} holds programs: use tailCall(${mapName}, slot)`);
    const key = this.tmp('k');
    const keyFill = () => this.fillValue(key, m.decl.key!, m.keyC!, args[0]!, scope);
    switch (method) {
      case 'lookup': {
        this.argCount(e, args, 1, 1, `${mapName}.lookup(key)`);
        return { ty: { t: 'optptr', inner: valueTy(), ctype: m.valueC! }, c: `({ ${keyFill()} (${m.valueC} *)bpf_map_lookup_elem(&${mapName}, &${key}); })` };
      }
      case 'has':
        this.argCount(e, args, 1, 1, `${mapName}.has(key)`);
        return { ty: { t: 'bool' }, c: `({ ${keyFill()} bpf_map_lookup_elem(&${mapName}, &${key}) != 0; })` };
      case 'update': {
        this.argCount(e, args, 2, 3, `${mapName}.update(key, value) or ${mapName}.update(key, value, 'noexist')`);
        let flag = 'BPF_ANY';
        if (args[2]) {
          const f = this.statics.tryEval(args[2]);
          const flags: Record<string, string> = { any: 'BPF_ANY', noexist: 'BPF_NOEXIST', exist: 'BPF_EXIST' };
          if (typeof f !== 'string' || !flags[f]) throw this.diags.error(args[2], "the update flag must be 'any', 'noexist' or 'exist'");
          flag = flags[f]!;
        }
        const val = this.tmp('v');
        const kf = keyFill();
        const vf = this.fillValue(val, m.decl.value!, m.valueC!, args[1]!, scope);
        return { ty: { t: 'bool' }, c: `({ ${kf} ${vf} bpf_map_update_elem(&${mapName}, &${key}, &${val}, ${flag}) == 0; })` };
      }
      case 'delete':
        this.argCount(e, args, 1, 1, `${mapName}.delete(key)`);
        if (!isHash) throw this.diags.error(e, 'array elements cannot be deleted', `set them to zero: ${mapName}.update(i, 0)`);
        return { ty: { t: 'bool' }, c: `({ ${keyFill()} bpf_map_delete_elem(&${mapName}, &${key}) == 0; })` };
      case 'increment': {
        this.argCount(e, args, 1, 2, `${mapName}.increment(key) or ${mapName}.increment(key, by)`);
        const vk = layoutIntKind(m.decl.value!);
        if (!vk) throw this.diags.error(e, `increment() needs integer values; ${mapName} holds structs`, `use lookup and update`);
        const by = args[1] ? this.expr(args[1], scope) : vk === 'u64' ? big('1ULL', 1n, 1n) : num('1', 1n, 1n, 'lit');
        if (vk === 'u64') {
          if (by.ty.t !== 'big') throw this.diags.error(args[1]!, `${mapName} holds u64 values: increment by a bigint`, 'write 1n, or u64(x)');
          this.exactBig(by, args[1] ?? e);
        } else {
          if (by.ty.t !== 'num') throw this.diags.error(args[1]!, `${mapName} holds ${vk} values: increment by a number`);
          this.fits(by, vk, args[1] ?? e, 'the increment');
        }
        const q = this.tmp('q');
        const add = !perCpu && (vk === 'u32' || vk === 'u64') ? `__sync_fetch_and_add(${q}, ${by.c})` : `*${q} += ${by.c}`;
        const insert = isHash ? ` else { ${m.valueC} ${q}_init = ${by.c}; bpf_map_update_elem(&${mapName}, &${key}, &${q}_init, BPF_NOEXIST); }` : '';
        return { ty: { t: 'void' }, c: `({ ${keyFill()} ${m.valueC} *${q} = bpf_map_lookup_elem(&${mapName}, &${key}); if (${q}) ${add};${insert} })` };
      }
      default:
        throw this.diags.error(e, `${isArray ? 'an array map' : 'a hash map'} has no ${method}()`, isArray ? 'use lookup, update or increment' : 'use lookup, has, update, delete or increment');
    }
  }

  /** C statements declaring `name` of ctype and filling it from `arg` per `layout`. */
  fillValue(name: string, layout: Layout<unknown>, ctype: string, arg: Expression, scope: Scope): string {
    const k = layoutIntKind(layout);
    if (k) {
      const v = this.expr(arg, scope);
      if (k === 'u64') {
        if (v.ty.t !== 'big') throw this.diags.error(arg, `this map takes u64 (bigint) here, not ${describeTy(v.ty)}`, 'write a bigint: 1n, or u64(x)');
        this.exactBig(v, arg);
      } else {
        if (v.ty.t !== 'num') throw this.diags.error(arg, `this map takes ${k} (a number) here, not ${describeTy(v.ty)}`, v.ty.t === 'big' ? `convert: ${k}(x)` : undefined);
        this.fits(v, k, arg, 'this key or value');
      }
      return `${ctype} ${name} = ${v.c};`;
    }
    if (!isStructLayout(layout)) throw this.diags.error(arg, 'unsupported map layout');
    const sl = layout as StructLayout<unknown>;
    const a = unparen(arg);
    const parts = [`${ctype} ${name};`, `__builtin_memset(&${name}, 0, sizeof(${name}));`];
    if (!Node.isObjectLiteralExpression(a)) {
      const v = this.expr(arg, scope);
      if (v.ty.t !== 'struct' || v.ty.ctype !== ctype) throw this.diags.error(arg, `this map takes a ${ctype} here`, `write an object literal: { ${sl.fields.map((f) => `${f.name}: ...`).join(', ')} }`);
      parts.push(`${name} = ${v.c};`);
      return parts.join(' ');
    }
    const given = new Set<string>();
    for (const p of a.getProperties()) {
      if (Node.isSpreadAssignment(p)) {
        const v = this.expr(p.getExpression(), scope);
        if (v.ty.t !== 'struct' || v.ty.ctype !== ctype) throw this.diags.error(p, `only a ${ctype} value can be spread here`);
        for (const f of sl.fields) given.add(f.name);
        parts.push(`${name} = ${v.c};`);
        continue;
      }
      let fname: string;
      let valueNode: Expression;
      if (Node.isPropertyAssignment(p)) {
        fname = p.getName();
        valueNode = p.getInitializerOrThrow();
      } else if (Node.isShorthandPropertyAssignment(p)) {
        fname = p.getName();
        valueNode = p.getNameNode();
      } else {
        throw this.diags.error(p, 'only plain fields are allowed here');
      }
      const f = sl.fields.find((x) => x.name === fname);
      if (!f) throw this.diags.error(p, `${ctype} has no field '${fname}'`, `its fields: ${sl.fields.map((x) => x.name).join(', ')}`);
      const fk = layoutIntKind(f.layout);
      if (!fk) throw this.diags.error(p, `field '${fname}' is not an integer`);
      const v = this.expr(valueNode, scope);
      if (fk === 'u64') {
        if (v.ty.t !== 'big') throw this.diags.error(valueNode, `${fname} is a u64: give a bigint`, 'write 0n, or u64(x)');
        this.exactBig(v, valueNode);
      } else {
        if (v.ty.t !== 'num') throw this.diags.error(valueNode, `${fname} is a ${fk}: give a number`, v.ty.t === 'big' ? `convert: ${fk}(x)` : undefined);
        this.fits(v, fk, valueNode, fname);
      }
      given.add(fname);
      parts.push(`${name}.${fname} = ${v.c};`);
    }
    const missing = sl.fields.filter((f) => !given.has(f.name)).map((f) => f.name);
    if (missing.length) throw this.diags.error(a, `missing field${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, 'give every field of the struct');
    return parts.join(' ');
  }

  // -- helpers the user writes

  helperCall(fn: FnNode, name: string, args: Expression[], e: Node, scope: Scope): Val {
    if (this.#helperBusy.includes(fn)) {
      throw this.diags.error(e, `${name} calls itself (directly or through other helpers): recursion is not allowed`, 'rewrite it with a for loop with a constant bound');
    }
    const info = this.lowerHelper(fn, name);
    if (!info) throw new Reported();
    if (args.length !== info.params.length) throw this.diags.error(e, `${name} takes ${info.params.length} argument${info.params.length === 1 ? '' : 's'}`);
    const cargs = args.map((a, i) => {
      const w = info.params[i]!.width;
      const v = this.expr(a, scope);
      if (w === 'bool') {
        if (v.ty.t !== 'bool') throw this.diags.error(a, `${name} takes a boolean here`);
      } else if (w === 'u64') {
        if (v.ty.t !== 'big') throw this.diags.error(a, `${name} takes a u64 (bigint) here`);
        this.exactBig(v, a);
      } else {
        if (v.ty.t !== 'num') throw this.diags.error(a, `${name} takes a ${w} here, not ${describeTy(v.ty)}`);
        this.fits(v, w, a, `this argument of ${name}`);
      }
      return v;
    });
    this.sequenced(cargs, e);
    return { ty: info.ret, c: `${info.cname}(${cargs.map((v) => v.c).join(', ')})` };
  }

  lowerHelper(fn: FnNode, name: string): HelperInfo | undefined {
    const known = this.helpers.get(fn);
    if (known) return known;
    const before = this.diags.count;
    this.#helperBusy.push(fn);
    try {
      const scope: Scope = { kind: 'helper', vars: new Map(), used: new Set(), out: [], indent: 1, loops: 0, switches: 0, returns: [], helperName: name };
      if (fn.isAsync()) throw this.diags.error(fn, 'helper functions cannot be async', 'remove async');
      const params: HelperInfo['params'] = [];
      for (const p of fn.getParameters()) {
        const n = p.getNameNode();
        if (!Node.isIdentifier(n)) throw this.diags.error(n, 'helper parameters must be plain names', 'write (a: u32, b: u32) => ...');
        if (p.getInitializer() || p.isRestParameter() || p.hasQuestionToken()) throw this.diags.error(p, 'helper parameters cannot be optional, have defaults or be rest parameters');
        const w = this.declaredWidth(p.getTypeNode());
        if (!w) throw this.diags.error(p, `parameter ${n.getText()} needs a fixed-width type`, `write ${n.getText()}: u32 (or u8, u16, u64, boolean)`);
        const cname = this.cname(n.getText(), scope);
        params.push({ width: w, cname });
        scope.vars.set(p, {
          cname,
          ty: w === 'bool' ? { t: 'bool' } : w === 'u64' ? { t: 'big', lo: 0n, hi: U64_MAX } : { t: 'num', lo: 0n, hi: WIDTH_MAX[w], ct: w },
          mutable: true,
          ...(w !== 'bool' ? { width: w } : {}),
        });
      }
      const rw = this.declaredWidth(fn.getReturnTypeNode());
      if (rw) scope.retWidth = rw;
      const body = fn.getBody();
      if (!body) throw this.diags.error(fn, `${name} has no body`);
      if (Node.isBlock(body)) {
        this.block(body.getStatements(), scope);
        if (!alwaysReturns(body.getStatements())) this.diags.error(body, `${name} can reach its end without returning a value`, 'end every path with a return');
      } else {
        this.returnStatement({ getExpression: () => body as Expression, getText: () => body.getText(), getStartLineNumber: () => body.getStartLineNumber() } as never, scope);
      }
      if (this.diags.count > before) return undefined;
      // the return type: declared, or the union of what is returned
      let ret: Ty;
      const kinds = new Set(scope.returns.map((r) => r.ty.t));
      if (kinds.size !== 1) throw this.diags.error(fn, `${name} returns values of different kinds`, 'return only numbers, only bigints or only booleans');
      const k = [...kinds][0]!;
      if (k === 'num') {
        if (rw && rw !== 'bool' && rw !== 'u64') ret = { t: 'num', lo: 0n, hi: WIDTH_MAX[rw], ct: rw };
        else {
          let lo = (scope.returns[0]!.ty as { lo: bigint }).lo;
          let hi = (scope.returns[0]!.ty as { hi: bigint }).hi;
          for (const r of scope.returns) {
            const t = r.ty as { lo: bigint; hi: bigint };
            if (t.lo < lo) lo = t.lo;
            if (t.hi > hi) hi = t.hi;
          }
          ret = { t: 'num', lo, hi, ct: 's64' };
        }
      } else if (k === 'big') ret = { t: 'big', lo: 0n, hi: U64_MAX };
      else if (k === 'bool') ret = { t: 'bool' };
      else ret = { t: 'verdict' };
      const cret = ret.t === 'num' ? C_INT[ret.ct === 's64' ? 's64' : ret.ct]! : ret.t === 'big' ? '__u64' : 'int';
      const cname = this.uniqueGlobal(`fn_${name}`);
      const paramText = params.length ? params.map((p) => `${p.width === 'bool' ? 'int' : C_INT[p.width]} ${p.cname}`).join(', ') : 'void';
      const pos = fn.getSourceFile().getLineAndColumnAtPos(fn.getStart());
      const text = [`/* ${fn.getSourceFile().getBaseName()}:${pos.line}: ${name} */`, `static __always_inline ${cret} ${cname}(${paramText})`, '{', ...scope.out, '}'].join('\n');
      const info: HelperInfo = { cname, params, ret, text };
      this.helpers.set(fn, info);
      this.helperOrder.push(info);
      return info;
    } catch (e) {
      if (e instanceof Reported) return undefined;
      throw e;
    } finally {
      this.#helperBusy.pop();
    }
  }

  uniqueGlobal(name: string): string {
    let n = name;
    let i = 2;
    while (this.globals.has(n)) n = `${name}_${i++}`;
    this.globals.add(n);
    return n;
  }

  // -- operators

  prefix(e: Node & { getOperatorToken(): SyntaxKind; getOperand(): Expression }, scope: Scope): Val {
    const op = e.getOperatorToken();
    if (op === SyntaxKind.ExclamationToken) return { ty: { t: 'bool' }, c: `!${wrapC(this.cond(e.getOperand(), scope))}` };
    if (op === SyntaxKind.PlusPlusToken || op === SyntaxKind.MinusMinusToken) {
      throw this.diags.error(e, `${e.getText()} changes a variable inside an expression`, 'write it as its own statement');
    }
    const v = this.expr(e.getOperand(), scope);
    if (op === SyntaxKind.PlusToken) throw this.diags.error(e, 'unary + converts to a number, which is not needed here', 'remove the +; convert with u32(x) if you meant a conversion');
    if (op === SyntaxKind.MinusToken) {
      if (v.ty.t === 'num') return num(`(-${s64(v)})`, -v.ty.hi, -v.ty.lo, 's64');
      if (v.ty.t === 'big') return big(`(-${wrapC(v.c)})`, -v.ty.hi, -v.ty.lo);
      throw this.diags.error(e, `cannot negate ${describeTy(v.ty)}`);
    }
    if (op === SyntaxKind.TildeToken) {
      if (v.ty.t === 'num') return num(`((__s64)(__s32)~(__u32)${wrapC(v.c)})`, -(1n << 31n), (1n << 31n) - 1n, 's64');
      if (v.ty.t === 'big') return big(`(~${wrapC(v.c)})`, -v.ty.hi - 1n, -v.ty.lo - 1n);
      throw this.diags.error(e, `~ needs an integer, not ${describeTy(v.ty)}`);
    }
    throw this.diags.error(e, `operator ${e.getText()[0]} is not supported`);
  }

  conditional(e: Node & { getCondition(): Expression; getWhenTrue(): Expression; getWhenFalse(): Expression }, scope: Scope): Val {
    const c = this.cond(e.getCondition(), scope);
    const a = this.expr(e.getWhenTrue(), scope);
    const b = this.expr(e.getWhenFalse(), scope);
    if (a.ty.t !== b.ty.t) throw this.diags.error(e, `both branches must have the same kind (${describeTy(a.ty)} vs ${describeTy(b.ty)})`, 'convert one of them');
    if (a.ty.t === 'num' && b.ty.t === 'num') {
      const ct: CNum = a.ty.ct === b.ty.ct ? a.ty.ct : 's64';
      return num(`(${c} ? ${ct === 's64' ? s64(a) : a.c} : ${ct === 's64' ? s64(b) : b.c})`, minB(a.ty.lo, b.ty.lo), maxB(a.ty.hi, b.ty.hi), ct);
    }
    if (a.ty.t === 'big' && b.ty.t === 'big') return big(`(${c} ? ${a.c} : ${b.c})`, minB(a.ty.lo, b.ty.lo), maxB(a.ty.hi, b.ty.hi));
    if (a.ty.t === 'bool' || a.ty.t === 'verdict') return { ty: a.ty, c: `(${c} ? ${a.c} : ${b.c})` };
    if (a.ty.t === 'ip6') return { ty: a.ty, c: `(${c} ? ${a.c} : ${b.c})` };
    throw this.diags.error(e, `a conditional cannot choose between ${describeTy(a.ty)} values`);
  }

  /** The C truth value of `e` as a JS condition. */
  cond(e: Expression, scope: Scope): string {
    const v = this.exprInner(e, scope, { allowOpt: true, allowAlias: true });
    return this.truth(v, e);
  }

  truth(v: Val, node: Node): string {
    switch (v.ty.t) {
      case 'bool':
        return v.c;
      case 'header':
        return v.c;
      case 'num':
      case 'big':
        return `(${v.c} != 0)`;
      case 'optvar':
        return v.ty.inner.t === 'struct' ? v.ty.has : `(${v.ty.has} && ${v.c} != 0)`;
      case 'optptr': {
        const q = this.tmp('q');
        return v.ty.inner.t === 'struct' ? `(${v.c} != 0)` : `({ ${v.ty.ctype} *${q} = ${v.c}; ${q} && *${q} != 0; })`;
      }
      default:
        throw this.diags.error(node, `${describeTy(v.ty)} is not a condition`, 'compare it: x !== 0, or use a boolean');
    }
  }

  binaryExpr(e: Node & { getLeft(): Expression; getRight(): Expression; getOperatorToken(): Node }, scope: Scope): Val {
    const op = e.getOperatorToken().getKind();
    if (op === SyntaxKind.EqualsToken || COMPOUND[op] !== undefined) {
      throw this.diags.error(e, 'assignments are statements here, not values', 'write the assignment on its own line');
    }
    if (op === SyntaxKind.AmpersandAmpersandToken || op === SyntaxKind.BarBarToken) {
      const t = e.getType();
      if (!isBooleanType(t) && !isCondition(e)) {
        throw this.diags.error(e, `${e.getOperatorToken().getText()} on non-booleans gives one of its operands, not a boolean`, 'compare explicitly (x !== 0), or use a ternary');
      }
      const a = this.cond(e.getLeft(), scope);
      const b = this.cond(e.getRight(), scope);
      return { ty: { t: 'bool' }, c: `(${a} ${op === SyntaxKind.AmpersandAmpersandToken ? '&&' : '||'} ${b})` };
    }
    if (op === SyntaxKind.QuestionQuestionToken) {
      const a = this.exprInner(e.getLeft(), scope, { allowOpt: true });
      const b = this.expr(e.getRight(), scope);
      if (a.ty.t !== 'optptr' && a.ty.t !== 'optvar') throw this.diags.error(e.getLeft(), '?? needs a value that may be undefined (a map lookup)', 'remove the ?? and its default');
      const inner = a.ty.inner;
      if (inner.t !== b.ty.t || (inner.t !== 'num' && inner.t !== 'big')) throw this.diags.error(e.getRight(), `the default must be ${describeTy(inner)}`);
      const ib = b.ty as { lo: bigint; hi: bigint };
      const ii = inner as { lo: bigint; hi: bigint };
      if (a.ty.t === 'optvar') {
        const c = `(${a.ty.has} ? ${a.c} : ${b.c})`;
        return inner.t === 'num' ? num(c, minB(ii.lo, ib.lo), maxB(ii.hi, ib.hi), 's64') : big(c, minB(ii.lo, ib.lo), maxB(ii.hi, ib.hi));
      }
      const q = this.tmp('q');
      const c = `({ ${a.ty.ctype} *${q} = ${a.c}; ${q} ? ${inner.t === 'num' ? '(__s64)' : ''}*${q} : ${b.c}; })`;
      return inner.t === 'num' ? num(c, minB(ii.lo, ib.lo), maxB(ii.hi, ib.hi), 's64') : big(c, minB(ii.lo, ib.lo), maxB(ii.hi, ib.hi));
    }
    if (op === SyntaxKind.EqualsEqualsToken || op === SyntaxKind.ExclamationEqualsToken) {
      throw this.diags.error(e.getOperatorToken(), `${e.getOperatorToken().getText()} converts types before comparing`, `write ${op === SyntaxKind.EqualsEqualsToken ? '===' : '!=='}`);
    }
    if (op === SyntaxKind.InKeyword || op === SyntaxKind.InstanceOfKeyword) {
      throw this.diags.error(e, `${e.getOperatorToken().getText()} works on objects, which programs do not have`);
    }
    if (op === SyntaxKind.CommaToken) throw this.diags.error(e, 'the comma operator is not supported', 'write separate statements');
    // comparisons with undefined
    if (op === SyntaxKind.EqualsEqualsEqualsToken || op === SyntaxKind.ExclamationEqualsEqualsToken) {
      const l = e.getLeft();
      const r = e.getRight();
      const isUndef = (n: Node) => unparen(n).getText() === 'undefined';
      if (isUndef(l) || isUndef(r)) {
        const other = isUndef(l) ? r : l;
        const v = this.exprInner(other, scope, { allowOpt: true, allowAlias: true });
        const present =
          v.ty.t === 'header' ? v.c : v.ty.t === 'optvar' ? v.ty.has : v.ty.t === 'optptr' ? `(${v.c} != 0)` : undefined;
        if (present === undefined) throw this.diags.error(e, `${describeTy(v.ty)} is never undefined`, 'remove the check');
        return { ty: { t: 'bool' }, c: op === SyntaxKind.EqualsEqualsEqualsToken ? `!${wrapC(present)}` : present };
      }
    }
    const a = this.expr(e.getLeft(), scope);
    const b = this.expr(e.getRight(), scope);
    this.sequenced([a, b], e);
    return this.binary(op, a, b, e, e.getRight());
  }

  /**
   * C leaves the order of operands (and of arguments) open where JS goes left
   * to right: two operands that both change state must become two statements.
   */
  sequenced(vals: Val[], node: Node): void {
    const effects = vals.filter((v) => EFFECT_C.test(v.c)).length;
    if (effects > 1) {
      throw this.diags.error(node, 'more than one part of this expression changes state (maps, random numbers), and C does not fix their order', 'compute them in separate statements first: const a = ...; const b = ...;');
    }
  }

  /** The value of `a op b` (shared by expressions and compound assignments). */
  binary(op: SyntaxKind, a: Val, b: Val, node: Node, rightNode: Node): Val {
    const opText = OP_TEXT[op];
    if (!opText) throw this.diags.error(node, `this operator is not supported in programs`);
    // equality of anything comparable
    if (op === SyntaxKind.EqualsEqualsEqualsToken || op === SyntaxKind.ExclamationEqualsEqualsToken) {
      if ((a.ty.t === 'num' && b.ty.t === 'big') || (a.ty.t === 'big' && b.ty.t === 'num')) {
        throw this.diags.error(node, 'a number and a bigint are never ===', 'convert one side: u64(x), or u32(big)');
      }
      if (a.ty.t !== b.ty.t) throw this.diags.error(node, `cannot compare ${describeTy(a.ty)} with ${describeTy(b.ty)}`);
      if (a.ty.t === 'ip6') throw this.diags.error(node, '=== on IPv6 addresses compares objects', 'use sameIpv6(a, b)');
      if (a.ty.t === 'struct' || a.ty.t === 'header' || a.ty.t === 'map') throw this.diags.error(node, `=== on ${describeTy(a.ty)} compares objects, not contents`, 'compare fields');
      if (a.ty.t === 'big') {
        this.exactBig(a, node);
        this.exactBig(b, rightNode);
      }
      const [x, y] = a.ty.t === 'num' ? cmpOperands(a, b) : [a.c, b.c];
      return { ty: { t: 'bool' }, c: `(${x} ${opText} ${y})` };
    }
    const isRel = op === SyntaxKind.LessThanToken || op === SyntaxKind.LessThanEqualsToken || op === SyntaxKind.GreaterThanToken || op === SyntaxKind.GreaterThanEqualsToken;
    if ((a.ty.t !== 'num' && a.ty.t !== 'big') || (b.ty.t !== 'num' && b.ty.t !== 'big')) {
      throw this.diags.error(node, `${opText} needs numbers or bigints, not ${describeTy(a.ty.t === 'num' || a.ty.t === 'big' ? b.ty : a.ty)}`);
    }
    if (a.ty.t !== b.ty.t) throw this.diags.error(node, `${opText} mixes a number and a bigint`, 'convert one side: u64(x), or u32(big)');
    if (isRel) {
      if (a.ty.t === 'big') {
        this.exactBig(a, node);
        this.exactBig(b, rightNode);
        return { ty: { t: 'bool' }, c: `(${a.c} ${opText} ${b.c})` };
      }
      const [x, y] = cmpOperands(a, b);
      return { ty: { t: 'bool' }, c: `(${x} ${opText} ${y})` };
    }
    if (a.ty.t === 'num' && b.ty.t === 'num') return this.numOp(op, a, b, node, rightNode);
    return this.bigOp(op, a, b, node, rightNode);
  }

  numOp(op: SyntaxKind, a: Val, b: Val, node: Node, rightNode: Node): Val {
    const A = a.ty as { lo: bigint; hi: bigint };
    const B = b.ty as { lo: bigint; hi: bigint };
    const I32 = { lo: -(1n << 31n), hi: (1n << 31n) - 1n };
    const nonNeg31 = (t: { lo: bigint; hi: bigint }) => t.lo >= 0n && t.hi <= I32.hi;
    const bconst = B.lo === B.hi ? B.lo : undefined;
    let r: Val;
    switch (op) {
      case SyntaxKind.PlusToken:
        r = num(`(${s64(a)} + ${s64b(b)})`, A.lo + B.lo, A.hi + B.hi, 's64');
        break;
      case SyntaxKind.MinusToken:
        r = num(`(${s64(a)} - ${s64b(b)})`, A.lo - B.hi, A.hi - B.lo, 's64');
        break;
      case SyntaxKind.AsteriskToken: {
        const ps = [A.lo * B.lo, A.lo * B.hi, A.hi * B.lo, A.hi * B.hi];
        r = num(`(${s64(a)} * ${s64b(b)})`, ps.reduce(minB), ps.reduce(maxB), 's64');
        break;
      }
      case SyntaxKind.SlashToken:
        throw this.diags.error(node, '/ on numbers gives fractions in JS', 'shift for powers of two (x >> 3), or divide bigints: u32(u64(a) / 10n)');
      case SyntaxKind.PercentToken: {
        if (bconst === undefined || bconst <= 0n) throw this.diags.error(rightNode, '% needs a constant positive divisor', 'write x % 16 with a literal or a top-level const');
        const lo = A.lo >= 0n ? 0n : -(bconst - 1n);
        const hi = A.hi <= 0n ? 0n : minB(A.hi, bconst - 1n);
        // BPF has no signed modulo: JS's % keeps the dividend's sign.
        if (A.lo >= 0n) r = num(`((__u64)${wrapC(a.c)} % ${bconst}ULL)`, lo, hi, 'u64');
        else r = num(`fn_smod(${s64(a)}, ${bconst}LL)`, lo, hi, 's64');
        break;
      }
      case SyntaxKind.AsteriskAsteriskToken:
        throw this.diags.error(node, '** is not supported', 'multiply, or shift for powers of two');
      case SyntaxKind.AmpersandToken:
      case SyntaxKind.BarToken:
      case SyntaxKind.CaretToken: {
        const t = OP_TEXT[op]!;
        if (nonNeg31(A) && nonNeg31(B)) {
          const bits = bitLength(maxB(A.hi, B.hi));
          const hi = op === SyntaxKind.AmpersandToken ? minB(A.hi, B.hi) : (1n << bits) - 1n;
          r = num(`(${a.c} ${t} ${b.c})`, 0n, hi, 'u32');
        } else {
          // JS: both sides to int32, the result is an int32
          r = num(`((__s64)(__s32)((__u32)${wrapC(a.c)} ${t} (__u32)${wrapC(b.c)}))`, I32.lo, I32.hi, 's64');
          if (op === SyntaxKind.AmpersandToken && B.lo >= 0n && B.hi <= I32.hi) r = num(r.c, 0n, B.hi, 's64');
        }
        break;
      }
      case SyntaxKind.LessThanLessThanToken: {
        if (bconst !== undefined && bconst >= 0n && bconst < 32n && nonNeg31(A) && (A.hi << bconst) <= I32.hi) {
          r = num(`(${s64(a)} << ${bconst})`, A.lo << bconst, A.hi << bconst, 's64');
        } else {
          r = num(`((__s64)(__s32)((__u32)${wrapC(a.c)} << ((__u32)${wrapC(b.c)} & 31)))`, I32.lo, I32.hi, 's64');
        }
        break;
      }
      case SyntaxKind.GreaterThanGreaterThanToken: {
        const k = bconst !== undefined && bconst >= 0n && bconst < 32n ? bconst : undefined;
        if (k !== undefined && nonNeg31(A)) r = num(`(${a.c} >> ${k})`, A.lo >> k, A.hi >> k, a.ty.t === 'num' ? (a.ty as { ct: CNum }).ct : 's64');
        else r = num(`((__s64)((__s32)(__u32)${wrapC(a.c)} >> ((__u32)${wrapC(b.c)} & 31)))`, I32.lo, I32.hi, 's64');
        break;
      }
      case SyntaxKind.GreaterThanGreaterThanGreaterThanToken: {
        const k = bconst !== undefined && bconst >= 0n && bconst < 32n ? bconst : undefined;
        const u32ok = A.lo >= 0n && A.hi <= 0xffffffffn;
        if (k !== undefined) r = num(`((__u32)${wrapC(a.c)} >> ${k})`, u32ok ? A.lo >> k : 0n, u32ok ? A.hi >> k : 0xffffffffn >> k, 'u32');
        else r = num(`((__u32)${wrapC(a.c)} >> ((__u32)${wrapC(b.c)} & 31))`, 0n, 0xffffffffn, 'u32');
        break;
      }
      default:
        throw this.diags.error(node, `operator ${OP_TEXT[op] ?? '?'} is not supported on numbers`);
    }
    const t = r.ty as { lo: bigint; hi: bigint };
    if (t.hi > MAX_SAFE || t.lo < -MAX_SAFE) {
      throw this.diags.error(node, `this can go beyond 2^53, where JS numbers lose precision (and Node and the kernel would disagree)`, 'compute in u64: u64(a) * u64(b), then convert back with u32(...)');
    }
    return r;
  }

  bigOp(op: SyntaxKind, a: Val, b: Val, node: Node, rightNode: Node): Val {
    const A = a.ty as { lo: bigint; hi: bigint };
    const B = b.ty as { lo: bigint; hi: bigint };
    const bconst = B.lo === B.hi ? B.lo : undefined;
    const t = OP_TEXT[op]!;
    switch (op) {
      case SyntaxKind.PlusToken:
        return big(`(${a.c} + ${b.c})`, A.lo + B.lo, A.hi + B.hi);
      case SyntaxKind.MinusToken:
        return big(`(${a.c} - ${b.c})`, A.lo - B.hi, A.hi - B.lo);
      case SyntaxKind.AsteriskToken: {
        const ps = [A.lo * B.lo, A.lo * B.hi, A.hi * B.lo, A.hi * B.hi];
        return big(`(${a.c} * ${b.c})`, ps.reduce(minB), ps.reduce(maxB));
      }
      case SyntaxKind.SlashToken:
      case SyntaxKind.PercentToken: {
        if (bconst === undefined || bconst <= 0n) throw this.diags.error(rightNode, `${t} on bigints needs a constant positive divisor (the kernel gives 0 where JS throws)`, 'divide by a literal or a top-level const: x / 1000n');
        this.exactBig(a, node);
        return op === SyntaxKind.SlashToken ? big(`(${a.c} / ${b.c})`, A.lo / bconst, A.hi / bconst) : big(`(${a.c} % ${b.c})`, 0n, minB(A.hi, bconst - 1n));
      }
      case SyntaxKind.AmpersandToken:
      case SyntaxKind.BarToken:
      case SyntaxKind.CaretToken: {
        const exact = isExactBig(a.ty) && isExactBig(b.ty);
        if (!exact) return big(`(${a.c} ${t} ${b.c})`, -(1n << 64n), U64_MAX);
        const bits = bitLength(maxB(A.hi, B.hi));
        return big(`(${a.c} ${t} ${b.c})`, 0n, op === SyntaxKind.AmpersandToken ? minB(A.hi, B.hi) : (1n << bits) - 1n);
      }
      case SyntaxKind.LessThanLessThanToken:
        if (bconst === undefined || bconst >= 64n) throw this.diags.error(rightNode, '<< on bigints needs a constant shift below 64', 'shift by a literal: x << 8n');
        return big(`(${a.c} << ${bconst})`, A.lo << bconst, A.hi << bconst);
      case SyntaxKind.GreaterThanGreaterThanToken:
        if (bconst === undefined || bconst >= 64n) throw this.diags.error(rightNode, '>> on bigints needs a constant shift below 64', 'shift by a literal: x >> 8n');
        this.exactBig(a, node);
        return big(`(${a.c} >> ${bconst})`, A.lo >> bconst, A.hi >> bconst);
      case SyntaxKind.GreaterThanGreaterThanGreaterThanToken:
        throw this.diags.error(node, '>>> does not exist for bigints', 'use >>');
      default:
        throw this.diags.error(node, `operator ${t} is not supported on bigints`);
    }
  }

  /** `v` (a number) must fit `width` (or 0..max); otherwise a diagnostic asking for a conversion. */
  fits(v: Val, width: 'u8' | 'u16' | 'u32' | 'u64' | 'mac' | number, node: Node, what: string): void {
    if (v.ty.t !== 'num') {
      throw this.diags.error(node, `${what} must be a number, not ${describeTy(v.ty)}`, v.ty.t === 'big' ? `convert: ${typeof width === 'string' && width !== 'mac' ? width : 'u32'}(x)` : undefined);
    }
    const max = typeof width === 'number' ? BigInt(width) : width === 'mac' ? (1n << 48n) - 1n : WIDTH_MAX[width];
    if (v.ty.lo < 0n || v.ty.hi > max) {
      const range = `${v.ty.lo}..${v.ty.hi}`;
      const name = typeof width === 'string' ? width : `0..${width}`;
      const conv = typeof width === 'string' && width !== 'mac' ? `${width}(...)` : `a value in 0..${max} (mask it: x & ${max})`;
      throw this.diags.error(node, `${what} takes ${name}, but this value can be ${range}`, `convert explicitly: ${conv}, which keeps the low bits`);
    }
  }

  exactBig(v: Val, node: Node): void {
    if (v.ty.t === 'big' && !isExactBig(v.ty)) {
      throw this.diags.error(node, `this bigint can leave 0..2^64-1 (it can be ${v.ty.lo < 0n ? 'negative' : 'larger'}), where the kernel's u64 wraps and JS does not`, 'wrap it explicitly: u64(a - b) (wraps modulo 2^64), or compare first');
    }
  }
}

// ---------------------------------------------------------------------------

/** C that changes state: map writes, ring buffer output, atomics, the random source. */
const EFFECT_C = /bpf_map_update_elem|bpf_map_delete_elem|bpf_ringbuf_output|__sync_fetch_and_add|\+= |bpf_get_prandom_u32/;

const COMPOUND: Partial<Record<SyntaxKind, SyntaxKind>> = {
  [SyntaxKind.PlusEqualsToken]: SyntaxKind.PlusToken,
  [SyntaxKind.MinusEqualsToken]: SyntaxKind.MinusToken,
  [SyntaxKind.AsteriskEqualsToken]: SyntaxKind.AsteriskToken,
  [SyntaxKind.SlashEqualsToken]: SyntaxKind.SlashToken,
  [SyntaxKind.PercentEqualsToken]: SyntaxKind.PercentToken,
  [SyntaxKind.AmpersandEqualsToken]: SyntaxKind.AmpersandToken,
  [SyntaxKind.BarEqualsToken]: SyntaxKind.BarToken,
  [SyntaxKind.CaretEqualsToken]: SyntaxKind.CaretToken,
  [SyntaxKind.LessThanLessThanEqualsToken]: SyntaxKind.LessThanLessThanToken,
  [SyntaxKind.GreaterThanGreaterThanEqualsToken]: SyntaxKind.GreaterThanGreaterThanToken,
  [SyntaxKind.GreaterThanGreaterThanGreaterThanEqualsToken]: SyntaxKind.GreaterThanGreaterThanGreaterThanToken,
  [SyntaxKind.AsteriskAsteriskEqualsToken]: SyntaxKind.AsteriskAsteriskToken,
  [SyntaxKind.AmpersandAmpersandEqualsToken]: SyntaxKind.AmpersandAmpersandToken,
  [SyntaxKind.BarBarEqualsToken]: SyntaxKind.BarBarToken,
  [SyntaxKind.QuestionQuestionEqualsToken]: SyntaxKind.QuestionQuestionToken,
};

function isAssignmentOp(k: SyntaxKind): boolean {
  return k === SyntaxKind.EqualsToken || COMPOUND[k] !== undefined;
}

const OP_TEXT: Partial<Record<SyntaxKind, string>> = {
  [SyntaxKind.PlusToken]: '+',
  [SyntaxKind.MinusToken]: '-',
  [SyntaxKind.AsteriskToken]: '*',
  [SyntaxKind.SlashToken]: '/',
  [SyntaxKind.PercentToken]: '%',
  [SyntaxKind.AsteriskAsteriskToken]: '**',
  [SyntaxKind.AmpersandToken]: '&',
  [SyntaxKind.BarToken]: '|',
  [SyntaxKind.CaretToken]: '^',
  [SyntaxKind.LessThanLessThanToken]: '<<',
  [SyntaxKind.GreaterThanGreaterThanToken]: '>>',
  [SyntaxKind.GreaterThanGreaterThanGreaterThanToken]: '>>>',
  [SyntaxKind.EqualsEqualsEqualsToken]: '==',
  [SyntaxKind.ExclamationEqualsEqualsToken]: '!=',
  [SyntaxKind.LessThanToken]: '<',
  [SyntaxKind.LessThanEqualsToken]: '<=',
  [SyntaxKind.GreaterThanToken]: '>',
  [SyntaxKind.GreaterThanEqualsToken]: '>=',
};

/** A condition without its outer parentheses (clang warns on if ((a == b))). */
function unwrapC(c: string): string {
  return c.startsWith('(') && c.endsWith(')') && balancedOuter(c) ? c.slice(1, -1) : c;
}

function unparen(n: Node): Node {
  while (Node.isParenthesizedExpression(n)) n = n.getExpression();
  return n;
}

function wrapC(c: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.]*$/.test(c) || /^\d+$/.test(c) || (c.startsWith('(') && balancedOuter(c)) ? c : `(${c})`;
}

function balancedOuter(c: string): boolean {
  let depth = 0;
  for (let i = 0; i < c.length; i++) {
    if (c[i] === '(') depth++;
    else if (c[i] === ')') {
      depth--;
      if (depth === 0 && i < c.length - 1) return false;
    }
  }
  return true;
}

/** A C integer literal: plain for int range, LL beyond, negative ones parenthesised as s64. */
function litC(v: bigint): string {
  if (v < 0n) return `(${v}LL)`;
  return v > 0x7fffffffn ? `${v}LL` : `${v}`;
}

/** `v` as an __s64 operand (so arithmetic is 64-bit signed, like exact JS integers below 2^53). */
function s64(v: Val): string {
  const t = v.ty as { ct: CNum; lo: bigint };
  if (t.ct === 's64') return v.c;
  if (t.ct === 'lit' && /^\d+$/.test(v.c)) return `${v.c}LL`;
  return `(__s64)${wrapC(v.c)}`;
}

/** The right operand: only u64-typed C needs a cast (a u64 would turn the arithmetic unsigned). */
function s64b(v: Val): string {
  const t = v.ty as { ct: CNum };
  return t.ct === 'u64' ? `(__s64)${wrapC(v.c)}` : v.c;
}

/** Operands of a numeric comparison: exact as long as a u64-typed side is not compared with a negative one. */
function cmpOperands(a: Val, b: Val): [string, string] {
  const ta = a.ty as { ct: CNum; lo: bigint };
  const tb = b.ty as { ct: CNum; lo: bigint };
  const neg = ta.lo < 0n || tb.lo < 0n || ta.ct === 's64' || tb.ct === 's64';
  if (!neg) return [a.c, b.c];
  return [ta.ct === 'u64' ? `(__s64)${wrapC(a.c)}` : a.c, tb.ct === 'u64' ? `(__s64)${wrapC(b.c)}` : b.c];
}

function minB(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function maxB(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function bitLength(v: bigint): bigint {
  let n = 0n;
  while (v > 0n) {
    v >>= 1n;
    n++;
  }
  return n;
}

function isBooleanType(t: { isBoolean(): boolean; isBooleanLiteral(): boolean; isUnion(): boolean; getUnionTypes(): Array<{ isBoolean(): boolean; isBooleanLiteral(): boolean }> }): boolean {
  if (t.isBoolean() || t.isBooleanLiteral()) return true;
  return t.isUnion() && t.getUnionTypes().every((u) => u.isBoolean() || u.isBooleanLiteral());
}

/** Whether a node sits where only its truth matters (if, ternary condition, !, && / || operand of those). */
function isCondition(n: Node): boolean {
  const p = n.getParent();
  if (!p) return false;
  if (Node.isParenthesizedExpression(p)) return isCondition(p);
  if (Node.isIfStatement(p) && p.getExpression() === n) return true;
  if (Node.isConditionalExpression(p) && p.getCondition() === n) return true;
  if (Node.isPrefixUnaryExpression(p) && p.getOperatorToken() === SyntaxKind.ExclamationToken) return true;
  if (Node.isBinaryExpression(p)) {
    const k = p.getOperatorToken().getKind();
    if (k === SyntaxKind.AmpersandAmpersandToken || k === SyntaxKind.BarBarToken) return isCondition(p) || isBooleanType(p.getType());
  }
  if (Node.isForStatement(p) && p.getCondition() === n) return true;
  return false;
}

function isFunctionInit(n: Node | undefined): boolean {
  return !!n && (Node.isArrowFunction(n) || Node.isFunctionExpression(n));
}

/** The helper function a declaration stands for: a top-level function or const arrow. */
function helperFunctionOf(decl: Node): FnNode | undefined {
  if (Node.isFunctionDeclaration(decl)) return Node.isSourceFile(decl.getParent()) ? decl : undefined;
  if (Node.isVariableDeclaration(decl)) {
    const init = decl.getInitializer();
    const stmt = decl.getVariableStatement();
    if (init && (Node.isArrowFunction(init) || Node.isFunctionExpression(init)) && stmt && Node.isSourceFile(stmt.getParent()) && stmt.getDeclarationKind() === 'const') return init;
  }
  return undefined;
}

/** The width given by an explicit conversion initializer: let n = u32(0). */
function conversionWidth(init: Expression, l: Lowerer): 'u8' | 'u16' | 'u32' | undefined {
  const e = unparen(init);
  if (!Node.isCallExpression(e)) return undefined;
  const api = tsbpfName(e.getExpression());
  void l;
  if (api?.module === 'fn' && (api.name === 'u8' || api.name === 'u16' || api.name === 'u32')) return api.name;
  return undefined;
}

/** Whether control can never fall off the end of these statements. */
export function alwaysReturns(stmts: Statement[]): boolean {
  for (const s of stmts) if (stmtReturns(s)) return true;
  return false;
}

function stmtReturns(s: Statement): boolean {
  if (Node.isReturnStatement(s) || Node.isThrowStatement(s)) return true;
  if (Node.isBlock(s)) return alwaysReturns(s.getStatements());
  if (Node.isIfStatement(s)) {
    const e = s.getElseStatement();
    return !!e && stmtReturns(s.getThenStatement()) && stmtReturns(e);
  }
  if (Node.isSwitchStatement(s)) {
    // Clauses fall through, so: a default, no break out of the switch, and the last clause returns.
    const clauses = s.getCaseBlock().getClauses();
    if (!clauses.some((c) => Node.isDefaultClause(c))) return false;
    for (const c of clauses) {
      for (const b of c.getDescendantsOfKind(SyntaxKind.BreakStatement)) if (!b.getLabel() && !insideLoopOrSwitch(b, c)) return false;
    }
    return alwaysReturns(clauses[clauses.length - 1]!.getStatements());
  }
  return false;
}

function insideLoopOrSwitch(b: Node, stop: Node): boolean {
  let p = b.getParent();
  while (p && p !== stop) {
    if (Node.isForStatement(p) || Node.isSwitchStatement(p) || Node.isWhileStatement(p) || Node.isDoStatement(p)) return true;
    p = p.getParent();
  }
  return false;
}

function readOnlyHint(f: FieldSpec): string {
  if (f.name === 'checksum') return 'checksums are fixed for you when you change the fields they cover';
  if (f.flagBit !== undefined) return 'change pkt.tcp.flags instead';
  if (['totalLength', 'payloadLength', 'length'].includes(f.name)) {
    return 'a length must agree with the bytes of the frame, which a program cannot add or remove: it is read-only (docs/functions.md, "Lengths")';
  }
  if (f.name === 'ihl' || f.name === 'doff') return 'a header length decides where the next header starts: it is read-only';
  return 'it decides how the packet parses (or is derived), so it cannot change; see docs/functions.md for the writable fields';
}
