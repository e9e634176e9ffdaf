import { parseArgs } from 'node:util';
import { evaluate } from '../../sdk/evaluate.js';
import { parsePacketSpec, PACKET_SPEC_SYNTAX } from '../../sdk/packet-spec.js';
import type { Hook } from '../../sdk/model.js';
import { loadFilter } from '../../runtime/filter.js';
import { loadFunctions } from '../../runtime/functions.js';
import { fnCompiler } from '../lazy.js';
import type { Command } from '../command.js';
import { buildablesOf, oneFilterOf } from '../definitions.js';
import { runInNode } from '../../sdk/fn/run.js';
import { parseHook } from './load.js';

export const testCommand: Command = {
  name: 'test',
  summary: "run a packet through a filter in the kernel (test run) beside the evaluator's verdict",
  usage: [
    'usage: tsbpf test FILE.ts --packet SPEC [--packet SPEC ...] [--hook H] [--export NAME]',
    '',
    'For a function program (xdp(...), tcIngress(...), tcEgress(...)), the same function run in',
    'Node stands beside the kernel instead of the evaluator.',
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
    const all = await buildablesOf(file);
    const fn = all.functions.find((f) => (values.export ? f.exportName === values.export : all.filters.length === 0));
    if (fn) {
      // A function program: the same function in Node beside the kernel's test run.
      const done = io.step(`compiling function program ${fn.exportName}`);
      const r = (await fnCompiler())(file, { exports: [fn.exportName], module: all.module });
      const obj = loadFunctions(r, { name: fn.exportName });
      done();
      let differ = 0;
      try {
        for (const p of packets) {
          const node = runInNode(fn.program, p.data, { ...(p.context.mark !== undefined ? { mark: p.context.mark } : {}) });
          const kernel = obj.testRun(r.programs[0]!.name, { data: p.data });
          const same = node.retval === kernel.retval && node.data.equals(kernel.data);
          if (!same) differ++;
          io.out(`${p.spec}`);
          io.out(`  kernel: ${kernel.verdict} (retval ${kernel.retval}, ${kernel.durationNs} ns)`);
          io.out(`  node:   ${node.verdict} (retval ${node.retval})${node.data.equals(kernel.data) ? '' : ', packet bytes differ'}${same ? '' : '   <-- DIFFERENT'}`);
        }
      } finally {
        obj.close();
      }
      return differ ? 1 : 0;
    }
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
