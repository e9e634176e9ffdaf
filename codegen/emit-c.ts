/**
 * IR -> one readable C translation unit. The layout of the output:
 *   header comment, includes, maps, then per program: its prog_array, its
 *   finish/return helpers, inline chains, the act program (reject), the chain
 *   programs, and the entry (parse) program.
 * Every rule is preceded by a comment naming it, its id, where it was
 * written and what it does; emit records the C lines of each rule so a
 * verifier log can be traced back (verifier.ts).
 */
import { C_PRELUDE } from '../sdk/layout.js';
import type { Definition, Hook } from '../sdk/model.js';
import { describeRule } from './describe.js';
import type { CField, Final, Ir, IrProgram, IrProgramChain, IrRule, Step, Test } from './ir.js';
import { HAS } from './layouts.js';
import { mapDeclC, type MapPlan } from './maps.js';
import { blockC, blockTailC, clsFunctionsC, clsTypesC } from './classify/emit.js';

/** Where a rule's code is in the generated C (1-based lines, inclusive). */
export interface RuleLines {
  ruleId: number;
  /** The C function (BPF program or inline function) holding it. */
  fn: string;
  program: string;
  start: number;
  end: number;
}

/** Where each C function is (1-based lines, inclusive). */
export interface FnLines {
  fn: string;
  program: string;
  chain?: string;
  start: number;
  end: number;
}

export interface Emitted {
  c: string;
  rules: RuleLines[];
  fns: FnLines[];
}

const HAS_NAMES: Array<[number, string]> = [
  [HAS.ETH, 'TSBPF_HAS_ETH'],
  [HAS.L3, 'TSBPF_HAS_L3'],
  [HAS.IPV4, 'TSBPF_HAS_IPV4'],
  [HAS.IPV6, 'TSBPF_HAS_IPV6'],
  [HAS.PROTO, 'TSBPF_HAS_PROTO'],
  [HAS.L4OFF, 'TSBPF_HAS_L4OFF'],
  [HAS.FRAG, 'TSBPF_HAS_FRAG'],
  [HAS.TCP, 'TSBPF_HAS_TCP'],
  [HAS.UDP, 'TSBPF_HAS_UDP'],
  [HAS.SCTP, 'TSBPF_HAS_SCTP'],
  [HAS.ICMP, 'TSBPF_HAS_ICMP'],
  [HAS.ICMPV6, 'TSBPF_HAS_ICMPV6'],
];

const FIELD_C: Record<CField, string> = {
  len: 'p->len',
  ifindex: 'st->ifindex',
  mark: 'st->mark',
  ethertype: 'p->ethertype',
  vlan_id: '(p->vlan_tci[0] & 0xfff)',
  proto: 'p->proto',
  ttl: 'p->ip_ttl',
  dscp: 'p->ip_dscp',
  sport: 'p->sport',
  dport: 'p->dport',
  tcp_flags: 'p->tcp_flags',
  icmp_type: 'p->icmp_type',
  icmp_code: 'p->icmp_code',
  ip4_src: 'p->ip4_src',
  ip4_dst: 'p->ip4_dst',
  ip6_src: 'p->ip6_src',
  ip6_dst: 'p->ip6_dst',
  eth_src: 'p->eth_src',
  eth_dst: 'p->eth_dst',
  ct_mark: 'cs->mark',
};

class Writer {
  readonly lines: string[] = [];
  line(s = ''): void {
    for (const l of s.split('\n')) this.lines.push(l);
  }
  /** 1-based number of the next line. */
  get next(): number {
    return this.lines.length + 1;
  }
}

/** C comment text: one line, no comment terminators. */
export function commentText(s: string): string {
  return s.replace(/\*\//g, '* /').replace(/\/\*/g, '/ *').replace(/[\r\n]+/g, ' ');
}

function num(n: number): string {
  return n > 0x7fffffff ? `${n}u` : String(n);
}

function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}u`;
}

export function testC(t: Test): string {
  switch (t.t) {
    case 'true':
      return '1';
    case 'false':
      return '0';
    case 'and':
      return t.args.map((a) => wrap(a, 'and')).join(' && ');
    case 'or':
      return t.args.map((a) => wrap(a, 'or')).join(' || ');
    case 'not':
      return `!${wrap(t.arg, 'not')}`;
    case 'present': {
      const names = HAS_NAMES.filter(([bit]) => t.mask & bit).map(([, n]) => n);
      return `(p->present & ${names.length === 1 ? names[0] : `(${names.join(' | ')})`})`;
    }
    case 'vlan':
      return '(p->nvlan != 0)';
    case 'ranges': {
      const f = FIELD_C[t.field];
      const parts = t.ranges.map(([lo, hi]) => {
        if (lo === hi) return `${f} == ${num(lo)}`;
        if (lo === 0 && hi >= t.max) return '1';
        if (lo === 0) return `${f} <= ${num(hi)}`;
        if (hi >= t.max) return `${f} >= ${num(lo)}`;
        return `(${f} >= ${num(lo)} && ${f} <= ${num(hi)})`;
      });
      if (parts.includes('1')) return '1';
      return parts.length === 1 ? `(${parts[0]})` : `(${parts.join(' || ')})`;
    }
    case 'bits':
      return `((${FIELD_C[t.field]} & ${hex32(t.mask)}) == ${hex32(t.value)})`;
    case 'cidr4': {
      const f = FIELD_C[t.field];
      if (t.len === 0) return `1 /* ${t.text} */`;
      const mask = t.len === 32 ? 0xffffffff : (0xffffffff << (32 - t.len)) >>> 0;
      return t.len === 32 ? `(${f} == ${hex32(t.net)} /* ${t.text} */)` : `((${f} & ${hex32(mask)}) == ${hex32(t.net)} /* ${t.text} */)`;
    }
    case 'cidr6': {
      if (t.len === 0) return `1 /* ${t.text} */`;
      const words = (x: bigint) => [0, 1, 2, 3].map((i) => Number((x >> BigInt(96 - 32 * i)) & 0xffffffffn));
      const all = (1n << 128n) - 1n;
      const mask = (all << BigInt(128 - t.len)) & all;
      const args = [...words(t.net), ...words(mask)].map(hex32).join(', ');
      return `tsbpf_ip6_in(${FIELD_C[t.field]}, ${args}) /* ${t.text} */`;
    }
    case 'mac':
      return `(${FIELD_C[t.field]} == 0x${t.value.toString(16).padStart(12, '0')}ULL /* ${t.text} */)`;
    case 'lpm':
      return t.family === 4 ? `tsbpf_in_lpm4(&${t.map}, ${FIELD_C[t.field]})` : `tsbpf_in_lpm6(&${t.map}, ${FIELD_C[t.field]})`;
    case 'portset':
      return `tsbpf_in_ports(&${t.map}, ${FIELD_C[t.field]})`;
    case 'ifslot':
      return `(st->ifindex == tsbpf_ifslot(&tsbpf_ifindex, ${t.slot}) /* ${commentText(t.name)} */)`;
    case 'ct':
      return `((1u << cs->state) & 0x${t.mask.toString(16)}u) /* ${commentText(t.what)} */`;
  }
}

function wrap(t: Test, outer: 'and' | 'or' | 'not'): string {
  const s = testC(t);
  if (t.t === 'or' && outer !== 'or') return `(${s})`;
  if (t.t === 'and' && outer !== 'and') return `(${s})`;
  return s;
}

/** The condition of an `if`, one top-level conjunct per line. */
function conditionC(t: Test, indent: string): string {
  if (t.t !== 'and') return testC(t);
  return t.args.map((a) => wrap(a, 'and')).join(` &&\n${indent}    `);
}

const HOOK_C: Record<Hook, { macro: string; ctx: string; section: string; egress: number }> = {
  xdp: { macro: 'TSBPF_HOOK_XDP', ctx: 'struct xdp_md', section: 'xdp', egress: 0 },
  'tc-ingress': { macro: 'TSBPF_HOOK_TC', ctx: 'struct __sk_buff', section: 'tc', egress: 0 },
  'tc-egress': { macro: 'TSBPF_HOOK_TC', ctx: 'struct __sk_buff', section: 'tc', egress: 1 },
};

export function sectionOf(hook: Hook): string {
  return HOOK_C[hook].section;
}

const VERDICT_MACRO = { accept: 'TSBPF_V_ACCEPT', drop: 'TSBPF_V_DROP', reject: 'TSBPF_V_REJECT' } as const;

export interface EmitOptions {
  /**
   * Also emit each program's entry chain as an inline function
   * `<program>__call(ctx, st)` returning a TSBPF_V_* verdict (TSBPF_V_CONTINUE:
   * the entry policy decides), for function programs that run the filter
   * (runChain). Needs every other chain inline (inline: 'all').
   */
  callable?: boolean;
}

export function emitC(def: Definition, ir: Ir, maps: MapPlan, options: EmitOptions = {}): Emitted {
  const w = new Writer();
  const rules: RuleLines[] = [];
  const fns: FnLines[] = [];

  const src = def.source ? ` (${def.source.file}:${def.source.line}:${def.source.column})` : '';
  w.line(`// SPDX-License-Identifier: GPL-2.0`);
  w.line(`/*`);
  w.line(` * Generated by tsbpf from filter '${commentText(def.name)}'${commentText(src)}. Do not edit: change the`);
  w.line(` * TypeScript definition and rebuild.`);
  w.line(` *`);
  for (const p of ir.programs) {
    const chainList = p.chains.map((c) => (c.slot !== undefined ? `${c.chain.name} [slot ${c.slot}]` : `${c.chain.name} [inline]`)).join(', ');
    w.line(` * Program ${p.fn} (${p.hook}): parse -> ${commentText(chainList)}${p.actSlot !== undefined ? ` -> act [slot ${p.actSlot}]` : ''}`);
  }
  w.line(` *`);
  w.line(` * Each program parses the packet once into a per-CPU tsbpf_state; chains that`);
  w.line(` * are programs of their own are entered by tail call, and a jump pushes the`);
  w.line(` * rule to resume at on the state's return stack (see docs/codegen.md).`);
  w.line(` */`);
  if (maps.userTypes) {
    w.line(C_PRELUDE.trimEnd());
  }
  w.line('#include <linux/bpf.h>');
  w.line('#include <bpf/bpf_helpers.h>');
  w.line('#include <tsbpf/filter.h>');
  if (ir.conntrack) {
    w.line(`#define TSBPF_CT_MAX ${ir.conntrack.maxEntries}`);
    w.line(`#define TSBPF_FCT_SNAT ${ir.conntrack.snat ? 1 : 0}`);
    w.line('#include <tsbpf/ctfilter.h> /* conntrack and NAT for rules (ct.h, nat.h) */');
  }
  w.line();
  if (maps.userTypes) {
    w.line('/* Key and value types of user maps. */');
    w.line(maps.userTypes.trimEnd());
    w.line();
  }
  if (ir.cls) w.line(clsTypesC(ir.cls));
  w.line('/* ---- maps ---- */');
  w.line();
  for (const s of maps.specs) {
    if (s.kind === 'prog_array' || s.external) continue; // declared with its program (needs the functions), or by a header
    w.line(`/* ${commentText(s.description)} */`);
    w.line(mapDeclC(s));
    w.line();
  }

  if (ir.cls) w.line(clsFunctionsC(ir.cls, ir.usesLog, new Set(ir.programs.map((p) => (p.hook === 'xdp' ? 'xdp' : 'tc')))));
  for (const p of ir.programs) emitProgram(w, ir, p, maps, rules, fns, options);

  w.line('char LICENSE[] SEC("license") = "GPL";');
  return { c: w.lines.join('\n') + '\n', rules, fns };
}

/** The conntrack hook constant (ct.h) of a program with conntrack, or undefined. */
function ctHook(p: IrProgram): string | undefined {
  if (p.ctSlot === undefined) return undefined;
  return p.hook === 'tc-egress' ? 'TSBPF_CT_HOOK_EGRESS' : 'TSBPF_CT_HOOK_INGRESS';
}

function emitProgram(w: Writer, ir: Ir, p: IrProgram, maps: MapPlan, rules: RuleLines[], fns: FnLines[], options: EmitOptions): void {
  const h = HOOK_C[p.hook];
  const cth = ctHook(p);
  const entry = p.chains[0]!;
  const entryPolicy = entry.chain.policy === 'return' ? 'accept' : entry.chain.policy;
  w.line(`/* ======== program ${p.fn} (${p.hook}), entry chain '${commentText(p.entry)}' ======== */`);
  w.line();
  // Forward declarations for the prog_array initialiser.
  if (p.actSlot !== undefined) w.line(`int ${p.actFn}(${h.ctx} *ctx);`);
  if (p.ctSlot !== undefined) w.line(`int ${p.ctFn}(${h.ctx} *ctx);`);
  for (const c of p.chains) if (c.slot !== undefined) w.line(`int ${c.fn}(${h.ctx} *ctx);`);
  w.line();
  const arr = maps.specs.find((s) => s.name === p.progArray && s.role === 'prog-array')!;
  w.line(`/* ${commentText(arr.description)} */`);
  w.line(mapDeclC(arr));
  w.line();

  // finish: apply a verdict.
  w.line(`/* Apply a verdict; reject continues in the act program (slot ${p.actSlot ?? 'none'}). */`);
  w.line(`static __always_inline int ${p.fn}__finish(void *ctx, struct tsbpf_state *st, int v)`);
  w.line('{');
  if (p.actSlot !== undefined) {
    w.line('\tif (v == TSBPF_V_REJECT) {');
    w.line(`\t\ttsbpf_tail(ctx, &${p.progArray}, st, ${p.actSlot});`);
    w.line(`\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_TAIL_CALL);`);
    w.line('\t}');
  }
  if (cth) {
    w.line('\tif (v == TSBPF_V_ACCEPT) {');
    w.line(`\t\tstruct tsbpf_fct *cs = tsbpf_fct_get(&tsbpf_fct, ${p.stateKey});`);
    w.line();
    w.line('\t\t/* A connection to commit or a packet to translate: the ct program. */');
    w.line(`\t\tif (cs && tsbpf_fct_need(cs, ${cth})) {`);
    w.line(`\t\t\ttsbpf_tail(ctx, &${p.progArray}, st, ${p.ctSlot});`);
    w.line(`\t\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_TAIL_CALL);`);
    w.line('\t\t}');
    w.line('\t}');
  }
  w.line(`\treturn tsbpf_verdict_ret(${h.macro}, st, v);`);
  w.line('}');
  w.line();
  // return: leave a chain program.
  w.line(`/* Leave a chain without a verdict: resume the caller, or apply the entry policy (${entryPolicy}). */`);
  w.line(`static __always_inline int ${p.fn}__return(void *ctx, struct tsbpf_state *st)`);
  w.line('{');
  w.line('\t__u32 d = st->depth;');
  w.line();
  w.line('\tif (d == 0)');
  w.line(`\t\treturn ${p.fn}__finish(ctx, st, ${VERDICT_MACRO[entryPolicy]});`);
  w.line('\td = (d - 1) & (TSBPF_MAX_DEPTH - 1);');
  w.line('\tst->depth = d;');
  w.line('\tst->resume = st->stack[d].rule;');
  w.line(`\ttsbpf_tail(ctx, &${p.progArray}, st, st->stack[d].slot);`);
  w.line(`\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_TAIL_CALL);`);
  w.line('}');
  w.line();

  // Inline chains, callees first.
  const byName = new Map(p.chains.map((c) => [c.chain.name, c]));
  const emitted = new Set<string>();
  const emitInline = (c: IrProgramChain) => {
    if (emitted.has(c.chain.name)) return;
    emitted.add(c.chain.name);
    for (const r of c.chain.rules) {
      if (r.final.f === 'jump' || r.final.f === 'goto') {
        const t = byName.get(r.final.chain)!;
        if (t.slot === undefined) emitInline(t);
      }
    }
    emitChain(w, ir, p, c, byName, rules, fns);
  };
  for (const c of p.chains) if (c.slot === undefined) emitInline(c);
  if (options.callable) {
    // The entry chain once more, as a function: it reaches only inline chains (inline: 'all').
    w.line(`/* The entry chain as a function, for function programs that run this filter (runChain). */`);
    emitChain(w, ir, p, { chain: entry.chain, fn: `${p.fn}__call`, resumeAt: [] }, byName, rules, fns);
  }

  if (p.actSlot !== undefined) {
    const start = w.next;
    w.line(`/* act: build the reject reply in place and send it back (codegen/include/tsbpf/reject.h). */`);
    w.line(`SEC("${h.section}")`);
    w.line(`int ${p.actFn}(${h.ctx} *ctx)`);
    w.line('{');
    w.line(`\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${p.stateKey});`);
    w.line();
    w.line('\tif (!st)');
    w.line(`\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);`);
    w.line(`\treturn tsbpf_reject(ctx, ${h.macro}, ${h.egress}, &st->pkt);`);
    w.line('}');
    fns.push({ fn: p.actFn, program: p.name, start, end: w.next - 1 });
    w.line();
  }

  if (p.ctSlot !== undefined) {
    const start = w.next;
    w.line(`/* ct: commit an accepted connection (with its NAT) and translate the packet (codegen/include/tsbpf/ctfilter.h). */`);
    w.line(`SEC("${h.section}")`);
    w.line(`int ${p.ctFn}(${h.ctx} *ctx)`);
    w.line('{');
    w.line(`\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${p.stateKey});`);
    w.line(`\tstruct tsbpf_fct *cs = tsbpf_fct_get(&tsbpf_fct, ${p.stateKey});`);
    w.line();
    w.line('\tif (!st || !cs)');
    w.line(`\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);`);
    w.line(`\treturn tsbpf_fct_commit(ctx, &st->pkt, cs, ${cth});`);
    w.line('}');
    fns.push({ fn: p.ctFn, program: p.name, start, end: w.next - 1 });
    w.line();
  }

  for (const c of p.chains) if (c.slot !== undefined) emitChain(w, ir, p, c, byName, rules, fns);

  const start = w.next;
  w.line(`/* parse: the program attached at ${p.hook}. Parses once, then enters chain '${commentText(p.entry)}'. */`);
  w.line(`SEC("${h.section}")`);
  w.line(`int ${p.fn}(${h.ctx} *ctx)`);
  w.line('{');
  w.line(`\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${p.stateKey});`);
  w.line();
  w.line('\tif (!st)');
  w.line(`\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);`);
  w.line(`\ttsbpf_parse(ctx, ${h.macro}, &st->pkt);`);
  if (p.hook === 'xdp') {
    w.line('\tst->mark = 0; /* XDP has no skb mark: marks live for this run only */');
    w.line('\tst->ifindex = ctx->ingress_ifindex;');
  } else {
    w.line('\tst->mark = ctx->mark;');
    w.line('\tst->ifindex = ctx->ifindex;');
  }
  w.line('\tst->resume = 0;');
  w.line('\tst->depth = 0;');
  w.line('\tst->redirect_ifindex = 0;');
  w.line('\tst->tail_calls = 0;');
  if (cth) {
    w.line('\t/* Conntrack before the rules: a reply of an accepted connection is translated back and accepted here. */');
    w.line('\t{');
    w.line(`\t\tstruct tsbpf_fct *cs = tsbpf_fct_get(&tsbpf_fct, ${p.stateKey});`);
    w.line('\t\tint r;');
    w.line();
    w.line('\t\tif (!cs)');
    w.line(`\t\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);`);
    w.line(`\t\tr = tsbpf_fct_pre(ctx, &st->pkt, cs, ${cth});`);
    w.line('\t\tif (r >= 0)');
    w.line('\t\t\treturn r;');
    w.line('\t}');
  }
  w.line(`\ttsbpf_tail(ctx, &${p.progArray}, st, ${entry.slot});`);
  w.line(`\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_TAIL_CALL);`);
  w.line('}');
  fns.push({ fn: p.fn, program: p.name, start, end: w.next - 1 });
  w.line();
}

function emitChain(
  w: Writer,
  ir: Ir,
  p: IrProgram,
  c: IrProgramChain,
  byName: Map<string, IrProgramChain>,
  rules: RuleLines[],
  fns: FnLines[],
): void {
  const h = HOOK_C[p.hook];
  const ch = c.chain;
  const isProg = c.slot !== undefined;
  const start = w.next;
  const where = ch.source ? ` (${ch.source.file}:${ch.source.line}:${ch.source.column})` : '';
  w.line(
    `/* chain '${commentText(ch.name)}'${commentText(where)}: ${ch.rules.length} rule${ch.rules.length === 1 ? '' : 's'}, policy ${ch.policy}, ` +
      (isProg ? `program in slot ${c.slot} */` : 'inline */'),
  );
  if (isProg) {
    w.line(`SEC("${h.section}")`);
    w.line(`int ${c.fn}(${h.ctx} *ctx)`);
  } else {
    w.line(`static __always_inline int ${c.fn}(void *ctx, struct tsbpf_state *st)`);
  }
  w.line('{');
  if (isProg) {
    w.line(`\tstruct tsbpf_state *st = tsbpf_state_get(&tsbpf_state, ${p.stateKey});`);
  }
  if (p.ctSlot !== undefined) w.line(`\tstruct tsbpf_fct *cs = tsbpf_fct_get(&tsbpf_fct, ${p.stateKey});`);
  w.line('\tstruct tsbpf_pkt *p;');
  w.line('\tint v;');
  w.line();
  if (isProg) {
    w.line('\tif (!st)');
    w.line(`\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);`);
  }
  if (p.ctSlot !== undefined) {
    w.line('\tif (!cs)');
    w.line(isProg ? `\t\treturn tsbpf_fail(${h.macro}, &tsbpf_errors, TSBPF_ERR_STATE);` : '\t\treturn TSBPF_V_DROP;');
    w.line('\t(void)cs;');
  }
  w.line('\tp = &st->pkt;');
  w.line('\t(void)p;');
  w.line('\t(void)v;');
  if (isProg && c.resumeAt.length > 0) {
    w.line('\t/* Coming back from a jump: continue after the jumping rule. */');
    w.line('\tswitch (st->resume) {');
    for (const r of c.resumeAt) w.line(`\tcase ${r}: goto resume_${r};`);
    w.line('\t}');
  }
  w.line();
  const resumes = new Set(c.resumeAt);
  for (const r of ch.rules) {
    if (resumes.has(r.index)) w.line(`resume_${r.index}:`);
    const rs = w.next;
    if (r.cls) {
      // A classifier block: its first rule emits the lookup for all of them.
      if (!r.cls.first) continue;
      for (const l of blockC(r.cls.block, h.macro, (name) => `'${commentText(name)}'`)) w.line(l);
      rules.push({ ruleId: r.id, fn: c.fn, program: p.name, start: rs, end: w.next - 1 });
      w.line();
      continue;
    }
    emitRule(w, ir, p, c, r, byName);
    rules.push({ ruleId: r.id, fn: c.fn, program: p.name, start: rs, end: w.next - 1 });
    w.line();
  }
  if (resumes.has(ch.rules.length)) w.line(`resume_${ch.rules.length}:`);
  w.line(`\t/* end of chain '${commentText(ch.name)}': policy ${ch.policy} */`);
  if (ch.policy === 'return') w.line(isProg ? `\treturn ${p.fn}__return(ctx, st);` : '\treturn TSBPF_V_CONTINUE;');
  else w.line(isProg ? `\treturn ${p.fn}__finish(ctx, st, ${VERDICT_MACRO[ch.policy]});` : `\treturn ${VERDICT_MACRO[ch.policy]};`);
  if (ch.rules.some((r) => r.cls)) {
    const finish = isProg ? `return ${p.fn}__finish(ctx, st, v);` : 'return v;';
    const leave = isProg ? `return ${p.fn}__return(ctx, st);` : 'return TSBPF_V_CONTINUE;';
    for (const l of blockTailC(finish, leave)) w.line(l);
  }
  w.line('}');
  fns.push({ fn: c.fn, program: p.name, chain: ch.name, start, end: w.next - 1 });
  w.line();
}

function emitRule(w: Writer, ir: Ir, p: IrProgram, c: IrProgramChain, r: IrRule, byName: Map<string, IrProgramChain>): void {
  const h = HOOK_C[p.hook];
  const where = r.source ? ` at ${r.source.file}:${r.source.line}:${r.source.column}` : '';
  w.line(`\t/* rule ${r.id} '${commentText(r.name)}'${commentText(where)}: ${commentText(describeRule(r.def))} */`);
  if (r.comment) w.line(`\t/* ${commentText(r.comment)} */`);
  let depth = 1;
  const ind = () => '\t'.repeat(depth);
  const open = (cond: string) => {
    w.line(`${ind()}if (${cond}) {`);
    depth++;
  };
  if (r.test.t !== 'true') open(conditionC(r.test, ind()));
  else if (r.steps.length > 0 || r.final.f !== 'none') {
    w.line(`${ind()}{`);
    depth++;
  }
  for (const s of r.steps) {
    const line = stepC(s, r, h.macro);
    if (s.s === 'limit') open(line);
    else w.line(`${ind()}${line}`);
  }
  for (const l of finalC(r.final, ir, p, c, r, byName)) w.line(`${ind()}${l}`);
  while (depth > 1) {
    depth--;
    w.line(`${ind()}}`);
  }
}

function stepC(s: Step, r: IrRule, hookMacro: string): string {
  switch (s.s) {
    case 'count':
      return `tsbpf_count(&tsbpf_counters, ${r.slot ?? r.id}, st);`;
    case 'log':
      return `tsbpf_log(&tsbpf_events, st, ${r.slot ?? r.id}, ${s.action}, ${s.verdict});${s.prefix ? ` /* "${commentText(s.prefix)}" */` : ''}`;
    case 'mark':
      return `tsbpf_set_mark(ctx, ${hookMacro}, st, ${hex32(s.value)}, ${hex32(s.mask)});`;
    case 'ctMark':
      return `tsbpf_fct_set_mark(cs, ${hex32(s.value)}, ${hex32(s.mask)});`;
    case 'limit': {
      const call = s.map
        ? `tsbpf_limit_keyed(&${s.map}, &tsbpf_errors, p, ${s.key === 'dst' ? 1 : 0}, ${s.costNs}ULL, ${s.capacity}ULL)`
        : `tsbpf_limit(&tsbpf_limits, ${s.slot}, ${s.costNs}ULL, ${s.capacity}ULL)`;
      return `${s.mode === 'over' ? '!' : ''}${call} /* limit #${s.limitId} ${s.mode} */`;
    }
  }
}

function finalC(f: Final, ir: Ir, p: IrProgram, c: IrProgramChain, r: IrRule, byName: Map<string, IrProgramChain>): string[] {
  const h = HOOK_C[p.hook];
  const isProg = c.slot !== undefined;
  const fin = (v: string) => (isProg ? `return ${p.fn}__finish(ctx, st, ${v});` : `return ${v};`);
  const fail = (why: string) => `return tsbpf_fail(${h.macro}, &tsbpf_errors, ${why});`;
  switch (f.f) {
    case 'none':
      return [];
    case 'accept':
    case 'drop':
    case 'reject':
      return [fin(VERDICT_MACRO[f.f])];
    case 'redirect':
      return [
        f.ifindex !== undefined
          ? `st->redirect_ifindex = ${num(f.ifindex)};`
          : `st->redirect_ifindex = tsbpf_ifslot(&tsbpf_ifindex, ${f.slot}); /* ${commentText(f.ifname ?? '')} */`,
        fin('TSBPF_V_REDIRECT'),
      ];
    case 'return':
      return [isProg ? `return ${p.fn}__return(ctx, st);` : 'return TSBPF_V_CONTINUE;'];
    case 'nat': {
      const args = [f.kind, f.family, ...f.lo.map(hex32), ...f.hi.map(hex32), f.pmin, f.pmax, r.id].join(', ');
      return [`tsbpf_fct_set_nat(cs, ${args}); /* ${commentText(f.text)} */`, fin('TSBPF_V_ACCEPT')];
    }
    case 'jump':
    case 'goto': {
      const t = byName.get(f.chain)!;
      if (t.slot === undefined) {
        // Inline callee: a plain call; CONTINUE means it ended without a verdict.
        if (f.f === 'jump') {
          return [`v = ${t.fn}(ctx, st);`, `if (v != TSBPF_V_CONTINUE)`, `\t${isProg ? `return ${p.fn}__finish(ctx, st, v);` : 'return v;'}`];
        }
        return isProg
          ? [`v = ${t.fn}(ctx, st);`, `if (v != TSBPF_V_CONTINUE)`, `\treturn ${p.fn}__finish(ctx, st, v);`, `return ${p.fn}__return(ctx, st);`]
          : [`return ${t.fn}(ctx, st);`];
      }
      // Program callee (the caller is a program chain too, by construction).
      const out: string[] = [];
      if (f.f === 'jump') {
        out.push(`if (!tsbpf_push(st, ${c.slot}, ${r.index + 1}))`, `\t${fail('TSBPF_ERR_STACK')}`);
      }
      out.push('st->resume = 0;', `tsbpf_tail(ctx, &${p.progArray}, st, ${t.slot}); /* ${f.f} ${commentText(f.chain)} */`, fail('TSBPF_ERR_TAIL_CALL'));
      return out;
    }
  }
}
