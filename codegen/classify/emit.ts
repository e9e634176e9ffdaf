/**
 * The C of classification: the key and tuple structs (before the maps), the
 * key builder, the lookup loop and the action step (after the maps), and the
 * few lines each block puts into its chain. The lookup is one global
 * (non-inlined) BPF function, so the verifier checks its loop once per
 * program however many blocks call it.
 */
import { FIELDS, keyStructC, PRES, type ClsField, type KeyLayout } from './fields.js';
import { T_MAX, type ClsBlock, type ClsPlan } from './plan.js';

/** Struct declarations; printed before the maps that use them. */
export function clsTypesC(plan: ClsPlan): string {
  return [
    '/* ---- classifier types (docs/classification.md) ---- */',
    '#include <tsbpf/classify.h>',
    '',
    `#define TSBPF_CLS_TMAX ${T_MAX}`,
    '',
    keyStructC(plan.key),
    '',
    '/* A tuple: the masks of its fields (tag = the tag of its entries) and the lowest priority it holds. */',
    'struct tsbpf_cls_tuple {',
    '\tstruct tsbpf_cls_key mask;',
    '\t__u32 minprio;',
    '};',
    '',
  ].join('\n');
}

const has = (f: ClsField, k: KeyLayout) => k.fields.some((x) => x.field === f);

function keyOfC(k: KeyLayout): string {
  const L: string[] = [];
  L.push('/*');
  L.push(" * The packet's classifier key: every field, 0 when absent, and what is present.");
  L.push(' * Branch-free (presence bits become all-ones or zero masks), so the verifier');
  L.push(' * enters the lookup loop with one state, not one per kind of packet. Absent');
  L.push(' * fields of struct tsbpf_pkt are zero, and the masks zero them anyway.');
  L.push(' */');
  L.push('static __always_inline void tsbpf_cls_key_of(const struct tsbpf_pkt *p, struct tsbpf_cls_key *k)');
  L.push('{');
  L.push('\t__u32 has = p->present;');
  L.push('\t__u32 tcp = (has / TSBPF_HAS_TCP) & 1, udp = (has / TSBPF_HAS_UDP) & 1, sctp = (has / TSBPF_HAS_SCTP) & 1;');
  L.push('\t__u32 icmp = (has / TSBPF_HAS_ICMP) & 1, icmp6 = (has / TSBPF_HAS_ICMPV6) & 1;');
  L.push('\t__u32 v4 = (has / TSBPF_HAS_IPV4) & 1, v6 = (has / TSBPF_HAS_IPV6) & 1, ports = tcp | udp | sctp;');
  L.push('');
  L.push('\t__builtin_memset(k, 0, sizeof(*k));');
  L.push(
    `\tk->pres = ((has / TSBPF_HAS_L3) & 1) * ${PRES.L3} | ((has / TSBPF_HAS_PROTO) & 1) * ${PRES.IP} | v4 * ${PRES.IP4} | v6 * ${PRES.IP6} | ports * ${PRES.PORTS};`,
  );
  if (has('l4', k)) L.push('\tk->l4 = tcp * 6 + udp * 17 + sctp * 132 + icmp * 1 + icmp6 * 58;');
  if (has('proto', k)) L.push('\tk->proto = p->proto & -((has / TSBPF_HAS_PROTO) & 1);');
  if (has('tflags', k)) L.push('\tk->tflags = p->tcp_flags & -tcp;');
  if (has('itype', k)) L.push('\tk->itype = p->icmp_type & -(icmp | icmp6);');
  if (has('icode', k)) L.push('\tk->icode = p->icmp_code & -(icmp | icmp6);');
  if (has('etype', k)) L.push('\tk->etype = p->ethertype & -((has / TSBPF_HAS_L3) & 1);');
  if (has('sport', k)) L.push('\tk->sport = p->sport & -ports;');
  if (has('dport', k)) L.push('\tk->dport = p->dport & -ports;');
  for (const f of ['src', 'dst'] as const) {
    if (!has(f, k)) continue;
    // A key without IPv6 rules keeps the first word only: IPv6 prefixes up to /32 still classify.
    L.push(`\tk->${f}[0] = (p->ip4_${f} & -v4) | (p->ip6_${f}[0] & -v6);`);
    if (k.v6) for (let i = 1; i < 4; i++) L.push(`\tk->${f}[${i}] = p->ip6_${f}[${i}] & -v6;`);
  }
  L.push('}');
  return L.join('\n');
}

function blockFnC(k: KeyLayout, usesLog: boolean): string {
  const L: string[] = [];
  L.push('/* The walk over a block\'s tuples (bpf_loop context). */');
  L.push('struct tsbpf_cls_walk {');
  L.push('\tstruct tsbpf_cls_key pk;  /* the packet\'s key */');
  L.push('\tstruct tsbpf_cls_key k;   /* pk masked by the current tuple */');
  L.push('\t__u32 g;                  /* active generation */');
  L.push('\t__u32 base;               /* first tuple slot of the block in this generation */');
  L.push('\t__u32 best;               /* lowest priority found */');
  L.push('\t__u32 slot;               /* its rule slot */');
  L.push('};');
  L.push('');
  L.push('/*');
  L.push(' * One tuple: mask the packet key, look it up, keep the lower priority. Tuples');
  L.push(' * come sorted by the lowest priority they hold, so the walk stops (returns 1)');
  L.push(' * when none can beat the best so far.');
  L.push(' */');
  L.push('static int tsbpf_cls_step(__u32 i, void *arg)');
  L.push('{');
  L.push('\tstruct tsbpf_cls_walk *w = arg;');
  L.push('\tconst struct tsbpf_cls_tuple *t;');
  L.push('\tconst struct tsbpf_cls_val *v;');
  L.push('\t__u32 ti = w->base + i, g = w->g & 1;');
  L.push('');
  L.push('\tt = bpf_map_lookup_elem(&tsbpf_cls_tup, &ti);');
  L.push('\tif (!t || w->best <= t->minprio)');
  L.push('\t\treturn 1;');
  L.push('\tw->k.tag = t->mask.tag;');
  for (const f of k.fields) {
    if (f.field === 'src' || f.field === 'dst') {
      for (let i = 0; i < f.size / 4; i++) L.push(`\tw->k.${f.field}[${i}] = w->pk.${f.field}[${i}] & t->mask.${f.field}[${i}];`);
    } else L.push(`\tw->k.${f.field} = w->pk.${f.field} & t->mask.${f.field};`);
  }
  L.push('\tv = bpf_map_lookup_elem(&tsbpf_cls, &w->k);');
  L.push('\tif (v && v->prio[g] < w->best) {');
  L.push('\t\tw->best = v->prio[g];');
  L.push('\t\tw->slot = v->slot[g];');
  L.push('\t}');
  L.push('\treturn 0;');
  L.push('}');
  L.push('');
  L.push('/*');
  L.push(" * One classifier block: tuple-space search, then the winning rule's actions");
  L.push(' * (count, mark in the state and at TC in the skb, log, in the rule\'s order).');
  L.push(' * Returns -1 when no rule of the block matches, else the verdict');
  L.push(' * (TSBPF_V_*, or TSBPF_V_RETURN).');
  L.push(' */');
  L.push('static __always_inline int tsbpf_cls_run(void *ctx, const int hook, struct tsbpf_state *st, __u32 block)');
  L.push('{');
  L.push('\tstruct tsbpf_cls_walk w;');
  L.push('\tconst struct tsbpf_cls_act *a;');
  L.push('\t__u32 zero = 0, idx, n;');
  L.push('\t__u32 *gp, *np;');
  L.push('\t__u8 mark;');
  L.push('');
  L.push('\tif (!st)');
  L.push('\t\treturn -1;');
  L.push('\tgp = bpf_map_lookup_elem(&tsbpf_cls_ctl, &zero);');
  L.push('\tif (!gp)');
  L.push('\t\treturn -1;');
  L.push('\t__builtin_memset(&w, 0, sizeof(w));');
  L.push('\tw.g = *gp & 1;');
  L.push('\tidx = 1 + block * 2 + w.g;');
  L.push('\tnp = bpf_map_lookup_elem(&tsbpf_cls_ctl, &idx);');
  L.push('\tif (!np)');
  L.push('\t\treturn -1;');
  L.push('\tn = *np;');
  L.push('\tif (n > TSBPF_CLS_TMAX)');
  L.push('\t\tn = TSBPF_CLS_TMAX;');
  L.push('\tw.base = (block * 2 + w.g) * TSBPF_CLS_TMAX;');
  L.push('\tw.best = 0xffffffff;');
  L.push('\ttsbpf_cls_key_of(&st->pkt, &w.pk);');
  L.push('\tbpf_loop(n, tsbpf_cls_step, &w, 0);');
  L.push('\tif (w.best == 0xffffffff)');
  L.push('\t\treturn -1;');
  L.push('');
  L.push('\ta = bpf_map_lookup_elem(&tsbpf_cls_act, &w.slot);');
  L.push('\tif (!a || a->verdict < TSBPF_V_ACCEPT || a->verdict > TSBPF_V_RETURN) {');
  L.push('\t\ttsbpf_error(&tsbpf_errors, TSBPF_ERR_CLS);');
  L.push('\t\treturn TSBPF_V_DROP;');
  L.push('\t}');
  L.push('\tif (a->flags & TSBPF_CLS_COUNT)');
  L.push('\t\ttsbpf_count(&tsbpf_counters, a->rule, st);');
  L.push('\tmark = a->flags & (TSBPF_CLS_MARK | TSBPF_CLS_MARK_FIRST);');
  L.push('\tif (mark == (TSBPF_CLS_MARK | TSBPF_CLS_MARK_FIRST))');
  L.push('\t\ttsbpf_set_mark(ctx, hook, st, a->mark_value, a->mark_mask);');
  if (usesLog) {
    L.push('\tif (a->flags & TSBPF_CLS_LOG)');
    L.push('\t\ttsbpf_log(&tsbpf_events, st, a->rule, a->log_action, a->log_verdict);');
  }
  L.push('\tif (mark == TSBPF_CLS_MARK)');
  L.push('\t\ttsbpf_set_mark(ctx, hook, st, a->mark_value, a->mark_mask);');
  L.push('\tif (a->verdict == TSBPF_V_REDIRECT)');
  L.push('\t\tst->redirect_ifindex = a->ifindex;');
  L.push('\treturn a->verdict;');
  L.push('}');
  return L.join('\n');
}

/** The block function of a hook family: global, so the verifier checks it once per program. */
function familyFnC(family: 'tc' | 'xdp'): string {
  const [ctx, macro] = family === 'tc' ? ['struct __sk_buff', 'TSBPF_HOOK_TC'] : ['struct xdp_md', 'TSBPF_HOOK_XDP'];
  return [
    `__attribute__((noinline)) int tsbpf_cls_block_${family}(${ctx} *ctx, struct tsbpf_state *st, __u32 block)`,
    '{',
    `\treturn tsbpf_cls_run(ctx, ${macro}, st, block);`,
    '}',
  ].join('\n');
}

/** Functions; printed after the maps, before the programs. */
export function clsFunctionsC(plan: ClsPlan, usesLog: boolean, families: ReadonlySet<'tc' | 'xdp'>): string {
  const out = ['/* ---- classifier (tuple-space search) ---- */', '', keyOfC(plan.key), '', blockFnC(plan.key, usesLog), ''];
  for (const f of ['tc', 'xdp'] as const) if (families.has(f)) out.push(familyFnC(f), '');
  return out.join('\n');
}

/** A block's lines in its chain: the lookup, and on a match the chain's shared tail (blockTailC). */
export function blockC(block: ClsBlock, hookMacro: string, quote: (name: string) => string): string[] {
  const first = block.members[0]!.rule;
  const last = block.members[block.members.length - 1]!.rule;
  const n = block.members.length;
  return [
    `\t/* block ${block.id}: rules ${first.id}..${last.id} (${quote(first.name)}${n > 1 ? ` .. ${quote(last.name)}` : ''}), ${n} rule${n === 1 ? '' : 's'}, ` +
      `${block.entries} entr${block.entries === 1 ? 'y' : 'ies'} in ${block.tuples.length} tuple${block.tuples.length === 1 ? '' : 's'}: tuple-space search */`,
    `\tv = tsbpf_cls_block_${hookMacro === 'TSBPF_HOOK_TC' ? 'tc' : 'xdp'}(ctx, st, ${block.id});`,
    '\tif (v >= 0)',
    '\t\tgoto cls_done;',
  ];
}

/**
 * The end of a chain function with blocks, reached by goto from each: a
 * classified rule's verdict ends the chain (`finish`, with the verdict in v),
 * its return leaves it (`leave`). One copy per function, however many blocks.
 */
export function blockTailC(finish: string, leave: string): string[] {
  return ['cls_done:', '\t/* a classified rule matched: its verdict in v */', '\tif (v == TSBPF_V_RETURN)', `\t\t${leave}`, `\t${finish}`];
}

/** Fields the key builder reads, in order (for explain). */
export function keyFieldsText(k: KeyLayout): string {
  return FIELDS.filter((f) => has(f, k)).map((f) => (f === 'src' || f === 'dst' ? `${f}${k.v6 ? '(v4/v6)' : '(v4)'}` : f)).join(', ');
}
