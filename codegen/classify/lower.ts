/**
 * Classified rules in the IR: a stub per rule (no test, no steps of its own)
 * that marks its block, so the chain still lists every rule (resume points,
 * rule tables, tail-call accounting) while the block's first rule emits the
 * lookup for all of them.
 */
import { bytes, u32 } from '../../sdk/layout.js';
import type { RuleDef } from '../../sdk/model.js';
import type { Final, Ir, IrRule } from '../ir.js';
import type { MapPlan, MapSpec } from '../maps.js';
import { unpack, type ClsPlan } from './plan.js';
import type { MapInfo } from '../maps.js';

function finalOf(r: RuleDef): Final {
  const last = r.actions[r.actions.length - 1];
  switch (last?.kind) {
    case 'accept':
    case 'drop':
    case 'reject':
    case 'return':
      return { f: last.kind };
    case 'redirect':
      return { f: 'redirect', ...(last.ifindex !== undefined ? { ifindex: last.ifindex } : {}) };
    default:
      return { f: 'none' };
  }
}

/** The IR of a rule the plan put in a tuple-space-search block; undefined for the others. */
export function classifiedStub(r: RuleDef, plan: ClsPlan): IrRule | undefined {
  const at = plan.byRule.get(r.id);
  if (!at) return undefined;
  return {
    id: r.id,
    name: r.name,
    index: r.index,
    ...(r.source ? { source: r.source } : {}),
    ...(r.comment ? { comment: r.comment } : {}),
    test: { t: 'true' },
    steps: [],
    final: finalOf(r),
    def: r,
    cls: { block: at.block, first: at.block.members[0] === at.member },
  };
}

/**
 * Record in the plan which blocks may take reject rules later (every program
 * that runs the block's chain has the act program), then add the classifier
 * maps to the object's maps and size the slot-indexed counters.
 */
export function attachPlan(ir: Ir, plan: ClsPlan, maps: MapPlan): void {
  for (const b of plan.tss) b.rejectOk = true;
  for (const p of ir.programs) {
    if (p.actSlot !== undefined) continue;
    const chains = new Set(p.chains.map((c) => c.chain.name));
    for (const b of plan.tss) if (chains.has(b.chain)) b.rejectOk = false;
  }
  const counters = maps.specs.find((s) => s.name === 'tsbpf_counters');
  if (counters) counters.maxEntries = Math.max(counters.maxEntries, plan.slotCapacity);
  for (const m of plan.maps) {
    const spec: MapSpec = {
      name: m.name,
      role: 'classifier',
      kind: m.kind,
      key: m.keySize === 4 ? u32 : bytes(m.keySize),
      value: m.valueSize === 4 ? u32 : bytes(m.valueSize),
      maxEntries: m.maxEntries,
      perCpu: false,
      initialBatch: m.batch,
      description: m.description,
      cType: m.kind === 'hash' ? 'BPF_MAP_TYPE_HASH' : 'BPF_MAP_TYPE_ARRAY',
      cKey: m.cKey,
      cValue: m.cValue,
      ...(m.flags ? { flags: m.flags } : {}),
    };
    maps.specs.push(spec);
  }
}

/** Give map infos with packed contents an `initial` list too, made only when read (loaders that write one by one). */
export function lazyInitial(infos: MapInfo[]): void {
  for (const m of infos) {
    const batch = m.initialBatch;
    if (!batch || m.initial) continue;
    let list: MapInfo['initial'];
    Object.defineProperty(m, 'initial', { enumerable: false, configurable: true, get: () => (list ??= unpack(batch)) });
  }
}
