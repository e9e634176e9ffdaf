import { parseArgs } from 'node:util';
import { compile } from '../../codegen/compile.js';
import { describePlan } from '../../codegen/classify/describe.js';
import type { ClassifyMode } from '../../codegen/classify/plan.js';
import { evaluate, EvalState } from '../../sdk/evaluate.js';
import type { Hook } from '../../sdk/model.js';
import { parsePacketSpec, PACKET_SPEC_SYNTAX } from '../../sdk/packet-spec.js';
import type { Command, Io } from '../command.js';
import { oneFilterOf } from '../definitions.js';
import { describePacket } from '../describe-packet.js';
import type { Filter } from '../../sdk/dsl/filter.js';
import { formatTable } from '../table.js';
import { parseHook } from './load.js';

export const explain: Command = {
  name: 'explain',
  summary: 'say which rules a packet meets and why, and how the filter is compiled (--plan)',
  usage: [
    'usage: tsbpf explain FILE.ts --packet SPEC [--hook H] [--export NAME]',
    '       tsbpf explain FILE.ts --plan [--classify auto|always|never] [--export NAME]',
    '',
    'With --packet: walks the rules as the kernel does (the reference evaluator) and',
    'prints each rule considered, whether it matched and why, and the verdict.',
    'With --plan: the BPF programs, tail-call slots and maps the filter compiles to,',
    'and the classification plan: which runs of rules become tuple-space search',
    'lookups (and why), their tuples and entries, and which rules stay tests.',
    '',
    PACKET_SPEC_SYNTAX,
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { packet: { type: 'string', multiple: true }, hook: { type: 'string' }, export: { type: 'string' }, plan: { type: 'boolean' }, classify: { type: 'string' } },
    });
    const file = positionals[0];
    if (!file || (!values.packet?.length && !values.plan)) {
      io.err(this.usage);
      return 2;
    }
    const packets = (values.packet ?? []).map((spec) => ({ spec, ...parsePacketSpec(spec) }));
    const { filter } = await oneFilterOf(file, values.export);
    const classify = values.classify;
    if (classify !== undefined && classify !== 'auto' && classify !== 'always' && classify !== 'never') {
      io.err(`--classify must be auto, always or never, not '${classify}'`);
      return 2;
    }
    if (values.plan) printPlan(filter, io, classify);
    const model = filter.toModel();
    const hook: Hook = values.hook ? parseHook(values.hook) : model.programs[0]!.hook;
    // One state for all the packets: with conntrack, later packets see the connections earlier ones opened.
    const state = new EvalState(filter);
    for (const p of packets) {
      const r = evaluate(filter, p.data, {
        hook,
        state,
        ...(p.context.ifindex !== undefined ? { ifindex: p.context.ifindex } : {}),
        ...(p.context.ifname !== undefined ? { ifname: p.context.ifname } : {}),
        ...(p.context.mark !== undefined ? { mark: p.context.mark } : {}),
      });
      io.out(`packet: ${describePacket(p.data)}`);
      io.out(`hook:   ${hook}`);
      for (const t of r.trace) {
        const mark = t.matched ? (t.limited ? '~' : '✓') : '✗';
        io.out(`  ${mark} ${t.chain}/${t.rule}: ${t.why}${t.matched && t.actions.length ? `  => ${t.actions.join(', ')}` : ''}${t.limited ? ' (over its limit: skipped)' : ''}`);
      }
      if (r.ct) io.out(`ct:     ${r.ct.state}${r.ct.mark ? `, mark 0x${r.ct.mark.toString(16)}` : ''}${r.ct.dropped ? `, dropped (${r.ct.dropped})` : ''}`);
      const by = r.decidedBy === 'rule' ? `rule '${r.rule}'` : r.decidedBy === 'conntrack' ? 'conntrack: a reply of an accepted connection' : `the policy of chain '${r.policyChain}'`;
      io.out(`verdict: ${r.verdict} (by ${by}; chains ${r.chainPath.join(' -> ')})`);
      if (r.packet && r.verdict === 'accept' && !r.packet.equals(Buffer.from(p.data))) io.out(`out:    ${describePacket(r.packet)}`);
      if (r.verdict === 'reject') io.out(r.data ? `reply:   ${describePacket(r.data)}` : `reply:   none (${r.rejectSuppressed ?? 'suppressed'})`);
      io.out('');
    }
    return 0;
  },
};

function printPlan(filter: Filter, io: Io, classify?: ClassifyMode): void {
  const r = compile(filter, { emitOnly: true, ...(classify ? { classify } : {}) });
  io.out(`filter ${r.definition.name}: ${r.ruleTable.length} rules in ${r.definition.chains.length} chains, inline mode '${r.inline}'`);
  io.out('');
  io.out('programs (the first of each hook is attached; the others are reached by tail call):');
  io.out(
    formatTable(
      ['program', 'hook', 'stage', 'chain', 'slot', 'rules'],
      r.programs.map((p) => [p.name, p.hook, p.stage, p.chain ?? '-', p.tailCallSlot ?? 'entry', p.rules.length ? `${p.rules[0]}..${p.rules[p.rules.length - 1]}` : '-']),
    ),
  );
  io.out('');
  io.out(`worst-case tail calls per packet: ${Object.entries(r.tailCalls).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  io.out('');
  io.out('maps:');
  io.out(formatTable(['map', 'type', 'entries', 'what'], r.maps.map((m) => [m.name, m.kind, m.maxEntries, m.description])));
  io.out('');
  const plan = describePlan(r.classification, (id) => r.ruleTable[id]?.name ?? `#${id}`);
  io.out(plan.summary);
  if (plan.rows.length) io.out(formatTable(plan.headers, plan.rows));
  for (const n of plan.notes) io.out(n);
  io.out('');
}
