import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HOOKS, type Hook } from '../../sdk/model.js';
import { TsbpfError } from '../../sdk/errors.js';
import { load } from '../../runtime/entry.js';
import { loadFunctions } from '../../runtime/functions.js';
import type { FnCompileResult } from '../../codegen/fn/compile.js';
import type { Attachment } from '../../runtime/attach.js';
import { fnCompiler } from '../lazy.js';
import type { Command } from '../command.js';
import { buildablesOf, type FoundFilter } from '../definitions.js';
import { removePins } from '../pins.js';
import { DEFAULT_PIN_BASE, readRecord, saveRecord, type AttachRecord, type LoadRecord } from '../state.js';

export function parseHook(value: string | undefined): Hook {
  if (!value || !(HOOKS as readonly string[]).includes(value)) {
    throw new TsbpfError('INVALID_ARGUMENT', `--hook must be one of ${HOOKS.join(', ')}${value ? ` (got '${value}')` : ''}`);
  }
  return value as Hook;
}

export function parseIntOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new TsbpfError('INVALID_ARGUMENT', `--${name} must be an integer ${min}..${max} (got '${value}')`);
  return n;
}

/** Where and how to attach: the options load and attach share. */
export const ATTACH_OPTIONS = {
  hook: { type: 'string' },
  ifname: { type: 'string' },
  netns: { type: 'string' },
  pin: { type: 'string' },
  program: { type: 'string' },
  priority: { type: 'string' },
  mode: { type: 'string' },
} as const;

export function parseXdpMode(value: string | undefined): 'generic' | 'driver' | undefined {
  if (value !== undefined && value !== 'generic' && value !== 'driver') throw new TsbpfError('INVALID_ARGUMENT', `--mode must be generic or driver (got '${value}')`);
  return value;
}

export const loadCommand: Command = {
  name: 'load',
  summary: 'compile (for .ts), load, attach and pin a filter or BPF object',
  usage: [
    'usage: tsbpf load FILE.ts|FILE.o --hook H --ifname IF [--netns NS] [--pin DIR]',
    '                  [--export NAME] [--program NAME] [--priority N] [--mode generic|driver]',
    '',
    `  --hook H      ${HOOKS.join(' | ')}`,
    '  --ifname IF   interface to attach to',
    '  --netns NS    network namespace (a name in /var/run/netns or a path like /proc/PID/ns/net)',
    `  --pin DIR     pin maps and programs here (default ${DEFAULT_PIN_BASE}/NAME); loading again`,
    '                into the same DIR replaces the program atomically and keeps the maps',
    '  --program     for an object file with several programs: the one to attach',
    '',
    'The program stays attached after tsbpf exits; remove it with tsbpf detach.',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { ...ATTACH_OPTIONS, export: { type: 'string' } },
    });
    const file = positionals[0];
    if (!file || !values.ifname) {
      io.err(this.usage);
      return 2;
    }
    const hook = parseHook(values.hook);
    const priority = parseIntOption('priority', values.priority, 1, 65535);
    const mode = parseXdpMode(values.mode);
    if (!existsSync(file)) throw new TsbpfError('OBJECT_NOT_FOUND', `no such file: ${file}`);

    const isObject = file.endsWith('.o');
    let name: string;
    let rules: LoadRecord['rules'] = [];
    let found: FoundFilter | undefined;
    // A .ts file's function programs compile to one object, loaded like any object file.
    let fnObject: { build: Pick<FnCompileResult, 'object' | 'layouts' | 'maps'>; program: string } | undefined;
    if (!isObject) {
      const all = await buildablesOf(file);
      const filters = all.filters.filter((f) => !values.export || f.exportName === values.export);
      const fns = all.functions.filter((f) => (!values.export || f.exportName === values.export) && f.program.hook === hook);
      if (filters.length > 1) throw new TsbpfError('INVALID_ARGUMENT', `${file} exports several filters: ${filters.map((f) => f.exportName).join(', ')}`, { hint: 'choose one with --export NAME' });
      if (filters.length === 1) found = filters[0];
      else if (fns.length === 1) {
        const step = io.step(`compiling function program ${fns[0]!.exportName}`);
        const r = (await fnCompiler())(file, { exports: [fns[0]!.exportName], module: all.module });
        step();
        fnObject = { build: r, program: r.programs[0]!.name };
      } else if (fns.length > 1) {
        throw new TsbpfError('INVALID_ARGUMENT', `${file} exports several ${hook} programs: ${fns.map((f) => f.exportName).join(', ')}`, { hint: 'choose one with --export NAME' });
      } else {
        throw new TsbpfError('INVALID_ARGUMENT', `${file} exports no filter and no ${hook} function program${values.export ? ` named '${values.export}'` : ''}`);
      }
    }
    if (found) name = found.filter.toModel().name;
    else if (fnObject) name = fnObject.program;
    else name = path.basename(file).replace(/\.o$/, '');
    const pinDir = path.resolve(values.pin ?? path.join(DEFAULT_PIN_BASE, name));
    const previous = readRecord(pinDir);
    const reuse = existsSync(pinDir) ? { pinRoot: pinDir } : {};

    let attachment: Attachment;
    let close: () => void;
    let pin: (dir: string) => void;
    const step = io.step(isObject || fnObject ? `loading ${name}` : `compiling and loading ${name}`);
    if (isObject || fnObject) {
      // loadFunctions: DSL sets start with their declared elements.
      const obj = fnObject ? loadFunctions(fnObject.build, { ...reuse, name }) : load(file, reuse);
      close = () => obj.close();
      pin = (d) => obj.pin(d);
      step(`${Object.keys(obj.programs).length} programs`);
      const program = values.program ?? fnObject?.program;
      attachment = attachWith(previous, hook, values.ifname, values.netns, priority, mode, (o) => obj.attach({ ...o, ...(program ? { program } : {}) }));
    } else {
      const f = load(found!.filter, reuse);
      close = () => f.close();
      pin = (d) => f.pin(d);
      rules = f.compiled.ruleTable.map((r) => ({ id: r.id, slot: f.slotOf(r.id), name: r.name, chain: r.chain, text: r.text }));
      step(`${f.compiled.programs.length} programs, ${rules.length} rules${f.compiled.cached ? ' (clang cached)' : ''}`);
      attachment = attachWith(previous, hook, values.ifname, values.netns, priority, mode, (o) => f.attach(o));
    }
    try {
      // Maps reused from the old pins stay referenced by the new object while re-pinning.
      removePins(pinDir);
      pin(pinDir);
      const record: LoadRecord = {
        name,
        pinDir,
        source: path.resolve(file),
        attachments: [
          ...(previous?.attachments ?? []).filter((a) => !samePlace(a, attachment)),
          {
            hook,
            ifname: attachment.ifname,
            ...(attachment.netns ? { netns: attachment.netns } : {}),
            program: attachment.program.name,
            ...(attachment.priority !== undefined ? { priority: attachment.priority } : {}),
            ...(attachment.handle !== undefined ? { handle: attachment.handle } : {}),
            ...(attachment.mode ? { mode: attachment.mode } : {}),
          },
        ],
        rules,
        loadedAt: new Date().toISOString(),
      };
      saveRecord(record);
      io.out(`${name}: ${previous ? 'replaced' : 'attached'} at ${attachment.where}; pinned at ${pinDir}`);
    } catch (e) {
      attachment.detach();
      throw e;
    } finally {
      close();
    }
    return 0;
  },
};

function samePlace(a: AttachRecord, b: Attachment): boolean {
  return a.hook === b.hook && a.ifname === b.ifname && (a.netns ?? '') === (b.netns ?? '');
}

type AttachFn = (o: { hook: Hook; ifname: string; netns?: string; priority?: number; handle?: number; mode?: 'generic' | 'driver'; replace?: boolean; persistent: boolean }) => Attachment;

/** Attach persistently; where the same pin dir attached before at this place, replace atomically. */
function attachWith(previous: LoadRecord | undefined, hook: Hook, ifname: string, netns: string | undefined, priority: number | undefined, mode: 'generic' | 'driver' | undefined, attach: AttachFn): Attachment {
  const old = previous?.attachments.find((a) => a.hook === hook && a.ifname === ifname && (a.netns ?? '') === (netns ?? ''));
  const base = { hook, ifname, ...(netns ? { netns } : {}), persistent: true };
  if (old) {
    if (hook === 'xdp') return attach({ ...base, ...(old.mode ? { mode: old.mode as 'generic' | 'driver' } : {}), replace: true });
    return attach({ ...base, ...(old.priority !== undefined ? { priority: old.priority } : {}), ...(old.handle !== undefined ? { handle: old.handle } : {}), replace: true });
  }
  return attach({ ...base, ...(priority !== undefined ? { priority } : {}), ...(mode ? { mode } : {}) });
}
