import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { compile } from '../../codegen/compile.js';
import { typesModuleSource } from '../../codegen/types-module.js';
import { describeLayout } from '../../sdk/layout.js';
import { fnCompiler } from '../lazy.js';
import type { Command } from '../command.js';
import { buildablesOf } from '../definitions.js';
import { TsbpfError } from '../../sdk/errors.js';

export const build: Command = {
  name: 'build',
  summary: 'compile the filters a .ts file exports to C, a BPF object and typed map modules',
  usage: [
    'usage: tsbpf build FILE.ts [-o DIR] [--export NAME] [--inline auto|all|none]',
    '',
    'FILE.ts may export filters (filter(...)) and function programs (xdp(...), tcIngress(...),',
    'tcEgress(...)); function programs of one file go into one object named after the file.',
    '',
    'For every exported filter writes, in DIR (default: ./build/bpf):',
    '  NAME.c          the generated C (readable: each rule is commented with its TS source)',
    '  NAME.o          the BPF object (clang -O2 -g -target bpf; cached by content)',
    '  NAME.maps.json  the map layouts, programs, tail-call slots and rule table',
    '  NAME.maps.ts    a typed TS module for the maps',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { out: { type: 'string', short: 'o' }, export: { type: 'string' }, inline: { type: 'string' } },
    });
    const file = positionals[0];
    if (!file) {
      io.err(this.usage);
      return 2;
    }
    const inline = values.inline as 'auto' | 'all' | 'none' | undefined;
    if (inline && !['auto', 'all', 'none'].includes(inline)) {
      io.err(`tsbpf build: --inline must be auto, all or none (got '${inline}')`);
      return 2;
    }
    const outDir = path.resolve(values.out ?? 'build/bpf');
    const done = io.step(`loading ${file}`);
    const found = await buildablesOf(file);
    const filters = found.filters.filter((f) => !values.export || f.exportName === values.export);
    const functions = found.functions.filter((f) => !values.export || f.exportName === values.export);
    if (filters.length + functions.length === 0) {
      throw new TsbpfError('INVALID_ARGUMENT', values.export ? `${file} exports nothing buildable named '${values.export}'` : `${file} exports no filter and no function program`, {
        hint: "export a filter (filter(...)) or a function program (xdp(...), tcIngress(...), tcEgress(...))",
      });
    }
    done(`${filters.length} filter${filters.length === 1 ? '' : 's'}, ${functions.length} function program${functions.length === 1 ? '' : 's'}`);
    mkdirSync(outDir, { recursive: true });
    if (functions.length > 0) {
      const name = path.basename(file).replace(/\.[cm]?[tj]s$/, '');
      const step = io.step(`compiling ${functions.map((f) => f.exportName).join(', ')} (ts-morph + clang)`);
      const r = (await fnCompiler())(file, { exports: functions.map((f) => f.exportName), module: found.module });
      step(r.object?.cached ? 'cached' : `${r.object?.bytes.length ?? 0} bytes`);
      const base = path.join(outDir, name);
      writeFileSync(`${base}.c`, r.c);
      writeFileSync(`${base}.o`, r.object!.bytes);
      writeFileSync(`${base}.maps.ts`, typesModuleSource(r.object!.bytes, { source: `${name}.o` }));
      io.out(`${name}: ${path.relative(process.cwd(), base)}.{c,o,maps.ts}  (programs ${r.programs.map((p) => `${p.name}@${p.hook}`).join(', ')}; ${r.maps.length} maps)`);
    }
    for (const { filter } of filters) {
      const name = filter.toModel().name;
      const step = io.step(`compiling ${name} (codegen + clang)`);
      const r = compile(filter, inline ? { inline } : {});
      step(r.cached ? 'cached' : `${r.object.bytes.length} bytes`);
      const base = path.join(outDir, name);
      writeFileSync(`${base}.c`, r.c);
      writeFileSync(`${base}.o`, r.object.bytes);
      writeFileSync(
        `${base}.maps.json`,
        JSON.stringify(
          {
            name,
            maps: r.maps.map((m) => ({
              name: m.name,
              kind: m.kind,
              role: m.role,
              maxEntries: m.maxEntries,
              perCpu: m.perCpu,
              key: m.key ? describeLayout(m.key) : undefined,
              value: m.value ? describeLayout(m.value) : undefined,
              description: m.description,
            })),
            programs: r.programs,
            rules: r.ruleTable.map(({ code: _c, ...rest }) => rest),
          },
          null,
          2,
        ),
      );
      writeFileSync(`${base}.maps.ts`, typesModuleSource(r.object.bytes, { source: `${name}.o` }));
      io.out(`${name}: ${path.relative(process.cwd(), base)}.{c,o,maps.json,maps.ts}  (${r.programs.length} programs, ${r.ruleTable.length} rules, ${r.maps.length} maps)`);
    }
    return 0;
  },
};
