/**
 * The classification plan in words, for `tsbpf explain --plan`: which runs of
 * rules became classifier blocks and why, their tuples and entries, and
 * which rules stay linear code and why.
 */
import { keyFieldsText } from './emit.js';
import type { ClsPlan } from './plan.js';

export interface PlanText {
  /** One summary line. */
  summary: string;
  /** Table rows: block, chain, rules, plan, tuples, entries, why. */
  headers: string[];
  rows: Array<Array<string | number>>;
  /** Further lines: tuples of the classifier blocks, linear reasons. */
  notes: string[];
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;

/** Describe a plan; long lists are cut to `maxRows` rows. */
export function describePlan(plan: ClsPlan, names: (id: number) => string, maxRows = 40): PlanText {
  const classified = plan.byRule.size;
  const inLinearBlocks = plan.blocks.filter((b) => b.plan === 'linear').reduce((n, b) => n + b.ruleIds.length, 0);
  const summary =
    `classification (${plan.mode}): ${plural(classified, 'rule')} in ${plural(plan.tss.length, 'tuple-space search block')}, ` +
    `${plural(inLinearBlocks, 'classifiable rule')} kept as tests, ${plural(plan.linear.length, 'rule')} not classifiable` +
    (plan.tss.length ? `; key: ${keyFieldsText(plan.key)} (${plan.key.size} bytes)` : '');
  const headers = ['block', 'chain', 'rules', 'plan', 'tuples', 'entries', 'why'];
  const rows: Array<Array<string | number>> = [];
  for (const b of plan.blocks.slice(0, maxRows)) {
    const first = b.ruleIds[0]!;
    const last = b.ruleIds[b.ruleIds.length - 1]!;
    rows.push([
      b.id ?? '-',
      b.chain,
      first === last ? names(first) : `${names(first)}..${names(last)} (${b.ruleIds.length})`,
      b.plan === 'tss' ? 'lookup' : 'tests',
      b.plan === 'tss' ? b.tuples.length : '-',
      b.plan === 'tss' ? b.entries : '-',
      b.why,
    ]);
  }
  if (plan.blocks.length > maxRows) rows.push(['...', `${plan.blocks.length - maxRows} more`, '', '', '', '', '']);
  const notes: string[] = [];
  for (const b of plan.tss.slice(0, Math.min(8, maxRows))) {
    const per = new Map<number, number>();
    for (const m of b.members) for (const t of m.tids) per.set(t, (per.get(t) ?? 0) + 1);
    const shown = b.tuples.slice(0, 6).map((t) => `${t.text} (${plural(per.get(t.tid) ?? 0, 'entry', 'entries')})`);
    notes.push(`block ${b.id} tuples: ${shown.join(', ')}${b.tuples.length > 6 ? `, and ${b.tuples.length - 6} more` : ''}`);
  }
  if (plan.linear.length) {
    const why = new Map<string, number>();
    for (const l of plan.linear) why.set(l.why, (why.get(l.why) ?? 0) + 1);
    notes.push(`not classifiable: ${[...why].sort((a, b) => b[1] - a[1]).map(([w, n]) => `${w} (${n})`).join('; ')}`);
  }
  return { summary, headers, rows, notes };
}
