/**
 * Long chains cut into programs the verifier accepts. A chain whose code
 * would be too large for one BPF program (more than SEGMENT_WEIGHT: a linear
 * rule weighs 1, a classifier block 1/10, whatever its number of rules) is cut
 * at rule and block boundaries into a chain and continuation chains
 * `<name>~2`, `<name>~3`, ..., each ending with a synthetic `goto` to the
 * next. A goto leaves no return point, so a continuation behaves exactly as
 * the rest of the original chain: `return` and the policy act as they would
 * have there, and jumps resume within the continuation.
 *
 * Each continuation costs one tail call per packet that reaches it; the
 * kernel allows 33, so a ruleset of mostly classifiable rules fits at any
 * size, while tens of thousands of non-classifiable rules do not
 * (docs/classification.md).
 */
import type { RuleDef } from '../../sdk/model.js';
import { cIdent, type IrChain, type IrRule } from '../ir.js';

/**
 * Weight of the code one chain program may hold: a linear rule is some tens
 * of instructions (1), a block a call and a test (1/10); programs stay well
 * under the 32,767 instructions a BPF jump can span.
 */
export const SEGMENT_WEIGHT = 400;

function weight(r: IrRule): number {
  if (r.cls) return r.cls.first ? 0.1 : 0;
  return 1;
}

/** The synthetic last rule of a segment: continue in the next one. */
function gotoRule(chain: string, next: string, index: number): IrRule {
  const def: RuleDef = { id: -1, name: `${chain} -> ${next}`, chain, index, match: { kind: 'all' }, actions: [{ kind: 'goto', chain: next }] };
  return { id: -1, name: def.name, index, test: { t: 'true' }, steps: [], final: { f: 'goto', chain: next }, def };
}

/** Cut every chain heavier than SEGMENT_WEIGHT; continuations are added to `chains`. */
export function splitLongChains(chains: Map<string, IrChain>): void {
  const idents = new Set([...chains.values()].map((c) => c.ident));
  for (const c of [...chains.values()]) {
    let total = 0;
    for (const r of c.rules) total += weight(r);
    if (total <= SEGMENT_WEIGHT) continue;
    // Cut points: before a linear rule or a block's first rule, once the weight is reached.
    const pieces: IrRule[][] = [[]];
    let w = 0;
    for (const r of c.rules) {
      const rw = weight(r);
      const boundary = !r.cls || r.cls.first;
      if (boundary && w + rw > SEGMENT_WEIGHT && pieces[pieces.length - 1]!.length > 0) {
        pieces.push([]);
        w = 0;
      }
      pieces[pieces.length - 1]!.push(r);
      w += rw;
    }
    if (pieces.length === 1) continue;
    const names = pieces.map((_, i) => (i === 0 ? c.name : `${c.name}~${i + 1}`));
    pieces.forEach((rules, i) => {
      // Indices restart in each continuation: resume points are per program.
      const own = i === 0 ? rules : rules.map((r, k) => ({ ...r, index: k }));
      if (i + 1 < pieces.length) own.push(gotoRule(names[i]!, names[i + 1]!, own.length));
      if (i === 0) {
        c.rules = own;
        return;
      }
      let ident = cIdent(`${c.ident}_${i + 1}`);
      for (let n = 2; idents.has(ident); n++) ident = cIdent(`${c.ident}_${i + 1}_${n}`);
      idents.add(ident);
      chains.set(names[i]!, { name: names[i]!, ident, policy: c.policy, kind: 'program', rules: own, ...(c.source ? { source: c.source } : {}) });
    });
  }
}
