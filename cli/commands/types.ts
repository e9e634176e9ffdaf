import { parseArgs } from 'node:util';
import path from 'node:path';
import { writeTypesModule } from '../../codegen/types-module.js';
import type { Command } from '../command.js';

export const types: Command = {
  name: 'types',
  summary: "write a TS module with the key and value types of an object's maps (from its BTF)",
  usage: [
    'usage: tsbpf types FILE.o [-o OUT.ts]',
    '',
    'Reads the BTF of an object compiled anywhere (clang -g) and writes, for every map,',
    'its key and value types and the layouts load() uses to type it. Default OUT: FILE.maps.ts',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string', short: 'o' } } });
    const file = positionals[0];
    if (!file) {
      io.err(this.usage);
      return 2;
    }
    const out = values.out ?? file.replace(/\.o$/, '') + '.maps.ts';
    writeTypesModule(file, out);
    io.out(`wrote ${path.relative(process.cwd(), path.resolve(out))}`);
    return 0;
  },
};
