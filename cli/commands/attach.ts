import path from 'node:path';
import { parseArgs } from 'node:util';
import { native } from '../../runtime/native.js';
import { wrapNative } from '../../runtime/errors.js';
import { TsbpfError } from '../../sdk/errors.js';
import type { Command } from '../command.js';
import { pinnedPrograms } from '../pins.js';
import { DEFAULT_PIN_BASE, readRecord, saveRecord, type AttachRecord } from '../state.js';
import { ATTACH_OPTIONS, parseHook, parseIntOption, parseXdpMode } from './load.js';

export const attach: Command = {
  name: 'attach',
  summary: 'attach a program pinned by tsbpf load to another hook or interface',
  usage: [
    'usage: tsbpf attach (NAME | --pin DIR) --hook H --ifname IF [--netns NS] [--program P]',
    '                    [--priority N] [--mode generic|driver]',
    '',
    'The program comes from DIR/programs (default: the entry program for the hook).',
    'tsbpf detach removes every attachment of NAME.',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: ATTACH_OPTIONS,
    });
    if ((!values.pin && !positionals[0]) || !values.ifname) {
      io.err(this.usage);
      return 2;
    }
    const hook = parseHook(values.hook);
    const mode = parseXdpMode(values.mode);
    const priority = parseIntOption('priority', values.priority, 1, 65535);
    const dir = path.resolve(values.pin ?? path.join(DEFAULT_PIN_BASE, positionals[0]!));
    const record = readRecord(dir);
    const programs = pinnedPrograms(dir);
    if (programs.length === 0) throw new TsbpfError('PIN_NOT_FOUND', `no programs are pinned under ${dir}/programs`, { hint: 'pin with tsbpf load ... --pin DIR' });
    const family = hook === 'xdp' ? 'xdp' : 'tc';
    const program =
      values.program ??
      record?.attachments.find((a) => (a.hook === 'xdp') === (family === 'xdp'))?.program ??
      (programs.length === 1 ? programs[0] : undefined);
    if (!program || !programs.includes(program)) {
      throw new TsbpfError('PROGRAM_NOT_FOUND', program ? `no program '${program}' under ${dir}/programs` : `several programs are pinned under ${dir}/programs`, {
        hint: `choose one with --program: ${programs.join(', ')}`,
      });
    }
    const fd = native().objGet(path.join(dir, 'programs', program));
    try {
      const where = { ifname: values.ifname, ...(values.netns ? { netns: values.netns } : {}) };
      let rec: AttachRecord;
      try {
        if (hook === 'xdp') {
          const r = native().xdpAttach({ ...where, progFd: fd, ...(mode ? { mode } : {}) });
          rec = { hook, ...where, program, mode: r.mode };
        } else {
          const r = native().tcAttach({ ...where, progFd: fd, direction: hook === 'tc-ingress' ? 'ingress' : 'egress', ...(priority ? { priority } : {}) });
          rec = { hook, ...where, program, priority: r.priority, handle: r.handle };
        }
      } catch (e) {
        throw wrapNative(e, { code: 'ATTACH_FAILED', what: `attach ${program} at ${hook} on ${values.ifname}` });
      }
      if (record) saveRecord({ ...record, attachments: [...record.attachments, rec] });
      io.out(`${program}: attached at ${hook} on ${values.ifname}${values.netns ? ` in ${values.netns}` : ''}`);
    } finally {
      native().closeFd(fd);
    }
    return 0;
  },
};
