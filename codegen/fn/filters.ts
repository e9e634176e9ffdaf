/**
 * A filter (DSL) compiled into a function program's object, for runChain:
 * the filter's own C (codegen/compile.ts with `callable`: every chain
 * inline, each entry chain also as `<program>__call`), and per hook a runner
 * that fills the filter's per-CPU state from the function's parsed packet,
 * runs the entry chain and turns its verdict into the hook's action.
 *
 * The filter's maps are the object's maps: a function that takes the
 * filter's sets or maps (fw.sets.x, fw.maps.x) uses the very same map, and
 * the filter's own programs are in the object too (attachable as usual).
 */
import { compile, type CompileResult } from '../compile.js';
import { cIdent } from '../ir.js';
import type { Filter } from '../../sdk/dsl/filter.js';
import type { FnHook } from '../../sdk/fn/program.js';
import { DslError } from '../../sdk/errors.js';
import type { Diagnostics } from './diagnostics.js';
import type { MapRef } from '../../sdk/dsl/refs.js';
import type { ChainCalls, MapInfo } from './lower.js';

export interface EmbeddedFilter {
  compiled: CompileResult;
  /** The filter's C, without its license line. */
  c: string;
  /** fn_run_<program>() per hook the functions call it from. */
  runners: string[];
  /** Map names the filter declares (the function side must not declare them again). */
  maps: Set<string>;
  /** C struct names the filter's C declares. */
  typeNames: Set<string>;
}

const VERDICT_MACRO = { accept: 'TSBPF_V_ACCEPT', drop: 'TSBPF_V_DROP', reject: 'TSBPF_V_REJECT', return: 'TSBPF_V_ACCEPT' } as const;

export function embedFilter(calls: ChainCalls, maps: Map<string, MapInfo>, programNames: string[], diags: Diagnostics): EmbeddedFilter | undefined {
  const list = [...calls.entries()];
  if (list.length > 1) {
    const [, second] = list[1]!;
    diags.error(second.node, `a file's programs can run one filter with runChain, and this is a second ('${list[1]![0].name}' after '${list[0]![0].name}')`, 'put the chains in one filter, or the programs in two files');
    return undefined;
  }
  const [filter, use] = list[0]! as [Filter, { hooks: Set<FnHook>; node: import('ts-morph').Node }];
  let compiled: CompileResult;
  try {
    compiled = compile(filter, { emitOnly: true, callable: true, classify: 'never' });
  } catch (e) {
    if (!(e instanceof DslError)) throw e;
    diags.error(use.node, `filter '${filter.name}' does not compile: ${e.message}`);
    return undefined;
  }
  if (compiled.ifnames.length) {
    diags.error(use.node, `filter '${filter.name}' matches or redirects by interface name (${compiled.ifnames.join(', ')}), which runChain cannot resolve`, 'use interface indexes in a filter that functions run');
    return undefined;
  }
  if (compiled.definition.conntrack) {
    // The callable entry chain starts at the rules: the conntrack stage (lookup, replies, commit, NAT) is a program of its own.
    diags.error(use.node, `filter '${filter.name}' uses conntrack (ct matches, ctMark or NAT), which runChain and tailChain cannot run yet`, 'attach the filter itself at the hook (load(fw).attach), and the function at another hook or priority');
    return undefined;
  }
  const filterMaps = new Set(compiled.maps.map((m) => m.name));
  for (const m of maps.values()) {
    if (!filterMaps.has(m.name)) continue;
    // The same declaration, read from the syntax tree here and made by the module's import there: same name and shape.
    const fs = filter.sets[m.name];
    const fm = filter.maps[m.name];
    const own = m.set !== undefined ? fs !== undefined && fs.type === m.set && fs.maxEntries === m.decl.maxEntries : m.dsl !== undefined && fm !== undefined && fm.options.kind === (m.dsl as MapRef).options.kind && fm.options.maxEntries === m.decl.maxEntries && fm.options.key?.size === m.decl.key?.size && fm.options.value?.size === m.decl.value?.size;
    if (!own) diags.error(use.node, `map '${m.name}' of the programs has the name of a map of filter '${filter.name}'`, `take the filter's own (fw.sets.${m.name} / fw.maps.${m.name}) or rename yours`);
  }
  const fnNames = new Set(compiled.programs.map((p) => p.name));
  for (const n of programNames) {
    if (fnNames.has(n) || compiled.programs.some((p) => n.startsWith(`${p.name}__`))) diags.error(use.node, `the program '${n}' has the name of a program of filter '${filter.name}'`, 'rename the export');
  }
  const def = compiled.definition;
  const runners: string[] = [];
  def.programs.forEach((p, i) => {
    if (!use.hooks.has(p.hook)) return;
    const fn = cIdent(p.name);
    const entry = def.chains.find((c) => c.name === p.entry)!;
    const xdp = p.hook === 'xdp';
    const hook = xdp ? 'TSBPF_HOOK_XDP' : 'TSBPF_HOOK_TC';
    const act = compiled.programs.find((q) => q.program === p.name && q.stage === 'act');
    const progArray = compiled.programs.find((q) => q.program === p.name)!.progArray;
    const fail = (why: string) => `\t\treturn tsbpf_fail(${hook}, &tsbpf_errors, ${why});`;
    // The opening of runChain and tailChain: run the chains, then the state they left (or the failure).
    const callChain = ['{', `\tint v = fn_chain_${fn}(ctx, pk);`, `\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${i});`, '', '\tif (v < 0 || !st)', fail('TSBPF_ERR_STATE')];
    runners.push(
      [
        `/* Chain '${entry.name}' of filter '${filter.name}' at ${p.hook} on the program's packet: its TSBPF_V_* verdict (-1: no state). */`,
        '/* A BPF subprogram, not inlined: each call site would otherwise carry its own copy of the chains on the 512-byte stack. */',
        `static __attribute__((noinline)) int fn_chain_${fn}(void *ctx, const struct tsbpf_pkt *pk)`,
        '{',
        `\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${i});`,
        '\tint v;',
        '',
        '\tif (!st)',
        '\t\treturn -1;',
        '\tst->pkt = *pk;',
        xdp ? '\tst->mark = 0;' : '\tst->mark = ((struct __sk_buff *)ctx)->mark;',
        xdp ? '\tst->ifindex = ((struct xdp_md *)ctx)->ingress_ifindex;' : '\tst->ifindex = ((struct __sk_buff *)ctx)->ifindex;',
        '\tst->resume = 0;',
        '\tst->depth = 0;',
        '\tst->redirect_ifindex = 0;',
        '\tst->tail_calls = 0;',
        `\tv = ${fn}__call(ctx, st);`,
        '\tif (v == TSBPF_V_CONTINUE)',
        `\t\tv = ${VERDICT_MACRO[entry.policy]}; /* the entry chain's policy */`,
        '\treturn v;',
        '}',
        '',
        `/* runChain(${filter.name}, pkt): the verdict as this hook's action; a reject is a drop (its reply is tailChain's). */`,
        `static __always_inline int fn_run_${fn}(void *ctx, const struct tsbpf_pkt *pk)`,
        ...callChain,
        '\tif (v == TSBPF_V_REJECT)',
        '\t\tv = TSBPF_V_DROP;',
        `\treturn tsbpf_verdict_ret(${hook}, st, v);`,
        '}',
        '',
        `/* return tailChain(${filter.name}, pkt): the filter decides for good; a reject continues in its act program (the reply). */`,
        `static __always_inline int fn_tail_${fn}(void *ctx, const struct tsbpf_pkt *pk)`,
        ...callChain,
        ...(act
          ? ['\tif (v == TSBPF_V_REJECT) {', `\t\ttsbpf_tail(ctx, &${progArray}, st, ${act.tailCallSlot});`, '\t' + fail('TSBPF_ERR_TAIL_CALL'), '\t}']
          : []),
        `\treturn tsbpf_verdict_ret(${hook}, st, v);`,
        '}',
      ].join('\n'),
    );
  });
  const c = compiled.c.replace(/^char LICENSE\[\] SEC\("license"\) = "GPL";\n?/m, '');
  const typeNames = new Set<string>();
  for (const m of /struct ([A-Za-z_][A-Za-z0-9_]*) \{/g[Symbol.matchAll](c)) typeNames.add(m[1]!);
  return { compiled, c, runners, maps: filterMaps, typeNames };
}
