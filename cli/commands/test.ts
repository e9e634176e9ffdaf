import { parseArgs } from 'node:util';
import { evaluate } from '../../sdk/evaluate.js';
import { parsePacketSpec, PACKET_SPEC_SYNTAX } from '../../sdk/packet-spec.js';
import type { Hook } from '../../sdk/model.js';
import { loadFilter } from '../../runtime/filter.js';
import type { Command } from '../command.js';
import { oneFilterOf } from '../definitions.js';
import { parseHook } from './load.js';

export const testCommand: Command = {
  name: 'test',
  summary: "run a packet through a filter in the kernel (test run) beside the evaluator's verdict",
  usage: [
    'usage: tsbpf test FILE.ts --packet SPEC [--packet SPEC ...] [--hook H] [--export NAME]',
    '',
    'Loads the filter (not attached), runs each packet with BPF_PROG_TEST_RUN and',
    "prints the kernel's verdict next to the reference evaluator's. Exit 1 if they differ.",
    '',
    PACKET_SPEC_SYNTAX,
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { packet: { type: 'string', multiple: true }, hook: { type: 'string' }, export: { type: 'string' } },
    });
    const file = positionals[0];
    if (!file || !values.packet?.length) {
      io.err(this.usage);
      return 2;
    }
    const packets = values.packet.map((spec) => ({ spec, ...parsePacketSpec(spec) }));
    const { filter } = await oneFilterOf(file, values.export);
    const model = filter.toModel();
    const hook: Hook = values.hook ? parseHook(values.hook) : model.programs[0]!.hook;
    const done = io.step(`compiling and loading ${model.name}`);
    const f = loadFilter(filter);
    done();
    let differ = 0;
    try {
      for (const p of packets) {
        const ifindex = p.context.ifindex ?? 1;
        const want = evaluate(filter, p.data, { hook, ifindex, ...(p.context.mark !== undefined ? { mark: p.context.mark } : {}) });
        const got = f.testRun(hook, p.data, { ...(p.context.mark !== undefined ? { mark: p.context.mark } : {}), ifindex });
        const same = got.filterVerdict === want.verdict;
        if (!same) differ++;
        const by = want.rule ? `rule ${want.rule}` : `policy of chain ${want.policyChain}`;
        io.out(`${p.spec}`);
        io.out(`  kernel:    ${got.filterVerdict} (retval ${got.retval}, ${got.durationNs} ns)`);
        io.out(`  evaluator: ${want.verdict} by ${by}${same ? '' : '   <-- DIFFERENT'}`);
      }
    } finally {
      f.close();
    }
    return differ ? 1 : 0;
  },
};
