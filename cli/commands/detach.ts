import path from 'node:path';
import { parseArgs } from 'node:util';
import { native } from '../../runtime/native.js';
import { TsbpfError } from '../../sdk/errors.js';
import type { Command } from '../command.js';
import { removePins } from '../pins.js';
import { allRecords, DEFAULT_PIN_BASE, readRecord, removeRecord, saveRecord, type AttachRecord, type LoadRecord } from '../state.js';
import { parseHook } from './load.js';

export const detach: Command = {
  name: 'detach',
  summary: 'detach what tsbpf load attached, and remove its pins',
  usage: [
    'usage: tsbpf detach (NAME | --pin DIR | --hook H --ifname IF [--netns NS]) [--keep-pins]',
    '',
    '  NAME          a filter loaded with the default pin dir',
    '  --pin DIR     the pin dir given to tsbpf load',
    '  --hook/--ifname/--netns   detach only at this place',
    '  --keep-pins   leave maps and programs pinned (state survives for a later load)',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { pin: { type: 'string' }, hook: { type: 'string' }, ifname: { type: 'string' }, netns: { type: 'string' }, 'keep-pins': { type: 'boolean' } },
    });
    const hook = values.hook ? parseHook(values.hook) : undefined;
    let records: LoadRecord[];
    if (values.pin || positionals[0]) {
      const dir = path.resolve(values.pin ?? path.join(DEFAULT_PIN_BASE, positionals[0]!));
      const r = readRecord(dir);
      if (!r) throw new TsbpfError('PIN_NOT_FOUND', `nothing was loaded by tsbpf at ${dir}`, { hint: 'tsbpf maps lists what is loaded' });
      records = [r];
    } else if (hook && values.ifname) {
      records = allRecords().filter((r) => r.attachments.some((a) => matches(a, hook, values.ifname!, values.netns)));
      if (records.length === 0) throw new TsbpfError('INVALID_ARGUMENT', `tsbpf attached nothing at ${hook} on ${values.ifname}${values.netns ? ` in ${values.netns}` : ''}`);
    } else {
      io.err(this.usage);
      return 2;
    }
    for (const r of records) {
      const keep: AttachRecord[] = [];
      for (const a of r.attachments) {
        if (hook && values.ifname && !matches(a, hook, values.ifname, values.netns)) {
          keep.push(a);
          continue;
        }
        detachOne(a);
        io.out(`${r.name}: detached from ${a.hook} on ${a.ifname}${a.netns ? ` in ${a.netns}` : ''}`);
      }
      if (keep.length > 0) {
        saveRecord({ ...r, attachments: keep });
        continue;
      }
      if (!values['keep-pins']) {
        const n = removePins(r.pinDir);
        io.out(`${r.name}: removed ${n} pins under ${r.pinDir}`);
      }
      removeRecord(r.pinDir);
    }
    return 0;
  },
};

function matches(a: AttachRecord, hook: string, ifname: string, netns: string | undefined): boolean {
  return a.hook === hook && a.ifname === ifname && (a.netns ?? '') === (netns ?? '');
}

/** Detach one recorded attachment; one whose interface or netns is gone is gone already. */
export function detachOne(a: AttachRecord): void {
  const where = { ifname: a.ifname, ...(a.netns ? { netns: a.netns } : {}) };
  try {
    if (a.hook === 'xdp') {
      native().xdpDetach({ ...where, ...(a.mode ? { mode: a.mode as 'generic' | 'driver' } : {}) });
    } else {
      native().tcDetach({
        ...where,
        direction: a.hook === 'tc-ingress' ? 'ingress' : 'egress',
        priority: a.priority ?? 0,
        handle: a.handle ?? 0,
        removeQdiscIfEmpty: true,
      });
    }
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    // ENOENT/ENODEV: the filter, interface or netns no longer exists.
    if (errno !== 2 && errno !== 19) throw new TsbpfError('DETACH_FAILED', `cannot detach from ${a.hook} on ${a.ifname}: ${(e as Error).message}`, { cause: e });
  }
}
