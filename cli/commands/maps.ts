import path from 'node:path';
import { parseArgs } from 'node:util';
import { openPinnedMap } from '../../runtime/pin.js';
import type { BpfMap } from '../../runtime/map.js';
import { TsbpfError } from '../../sdk/errors.js';
import type { Command } from '../command.js';
import { inline, toPlain } from '../format.js';
import { pinnedMaps, pinnedPrograms } from '../pins.js';
import { allRecords, DEFAULT_PIN_BASE, readRecord } from '../state.js';
import { formatTable } from '../table.js';

const INTERNAL = /^tsbpf_(state|reject_scratch|jmp_)/;

export const maps: Command = {
  name: 'maps',
  summary: "show a loaded or pinned object's maps, typed, and per-rule counters",
  usage: [
    'usage: tsbpf maps [NAME | --pin DIR] [MAP ...] [--json] [--limit N] [--all]',
    '',
    '  (no argument)  list what tsbpf has loaded',
    '  NAME           a filter loaded with the default pin dir',
    '  --pin DIR      any directory of pinned maps',
    '  MAP ...        only these maps',
    '  --limit N      entries shown per map (default 50)',
    '  --all          also the internal maps (parse state, tail-call tables, scratch)',
  ].join('\n'),
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { pin: { type: 'string' }, json: { type: 'boolean' }, limit: { type: 'string' }, all: { type: 'boolean' } },
    });
    const limit = values.limit ? Number(values.limit) : 50;
    if (!Number.isInteger(limit) || limit < 1) throw new TsbpfError('INVALID_ARGUMENT', `--limit must be a positive integer (got '${values.limit}')`);
    if (!values.pin && positionals.length === 0) {
      const records = allRecords();
      if (values.json) io.out(JSON.stringify(records, null, 2));
      else if (records.length === 0) io.out('tsbpf has loaded nothing (tsbpf load FILE --hook H --ifname IF)');
      else
        io.out(
          formatTable(
            ['name', 'attached', 'pinned at', 'maps', 'programs'],
            records.map((r) => [
              r.name,
              r.attachments.map((a) => `${a.hook}:${a.ifname}${a.netns ? `@${a.netns}` : ''}`).join(', '),
              r.pinDir,
              pinnedMaps(r.pinDir).length,
              pinnedPrograms(r.pinDir).length,
            ]),
          ),
        );
      return 0;
    }
    const dir = path.resolve(values.pin ?? path.join(DEFAULT_PIN_BASE, positionals.shift()!));
    if (values.pin === undefined && positionals.length === 0 && !readRecord(dir) && pinnedMaps(dir).length === 0) {
      throw new TsbpfError('PIN_NOT_FOUND', `nothing is pinned at ${dir}`, { hint: 'tsbpf maps (no argument) lists what is loaded' });
    }
    // tsbpf's scratch maps (parse state, tail-call tables) mean nothing to a reader: --all shows them.
    const names = positionals.length ? positionals : pinnedMaps(dir).filter((n) => values.all || !INTERNAL.test(n));
    if (names.length === 0) throw new TsbpfError('PIN_NOT_FOUND', `no maps are pinned under ${dir}`);
    const record = readRecord(dir);
    const json: Record<string, unknown> = {};
    for (const name of names) {
      const map = openPinnedMap(path.join(dir, name)) as BpfMap<unknown, unknown>;
      try {
        if (name === 'tsbpf_counters' && record?.rules.length) {
          const rows = record.rules.map((r) => {
            const perCpu = (map.get(r.slot ?? r.id) ?? []) as Array<{ packets: bigint; bytes: bigint }>;
            const packets = perCpu.reduce((s, c) => s + c.packets, 0n);
            const bytes = perCpu.reduce((s, c) => s + c.bytes, 0n);
            return { id: r.id, rule: r.name, chain: r.chain, packets, bytes, text: r.text };
          });
          json[name] = rows.map(toPlain);
          if (!values.json) {
            io.out(`${name}: per-rule counters (${map.type}, summed over CPUs)`);
            io.out(formatTable(['id', 'rule', 'chain', 'packets', 'bytes', 'match and actions'], rows.map((r) => [r.id, r.rule, r.chain, r.packets, r.bytes, r.text])));
            io.out('');
          }
          continue;
        }
        const entries: Array<[unknown, unknown]> = [];
        let total = 0;
        if (map.type !== 'ringbuf' && map.type !== 'prog_array') {
          for (const [k, v] of map.entries()) {
            total++;
            if (entries.length < limit) entries.push([k, map.perCpu && Array.isArray(v) ? sumIfNumeric(v) : v]);
          }
        }
        json[name] = { type: map.type, maxEntries: map.maxEntries, entries: entries.map(([k, v]) => ({ key: toPlain(k), value: toPlain(v) })), total };
        if (!values.json) {
          io.out(`${name}: ${map.type}, ${total}/${map.maxEntries} entries${total > entries.length ? ` (first ${entries.length} shown)` : ''}`);
          if (entries.length) io.out(formatTable(['key', map.perCpu ? 'value (all CPUs)' : 'value'], entries.map(([k, v]) => [inline(k), inline(v)])));
          io.out('');
        }
      } finally {
        map.close();
      }
    }
    if (values.json) io.out(JSON.stringify(json, null, 2));
    return 0;
  },
};

/** Per-CPU values: numbers and structs of numbers are summed; anything else is shown per CPU. */
function sumIfNumeric(values: unknown[]): unknown {
  if (values.every((v) => typeof v === 'bigint' || typeof v === 'number')) return values.reduce((s: bigint, v) => s + BigInt(v as number | bigint), 0n);
  if (values.every((v) => v && typeof v === 'object' && Object.values(v).every((x) => typeof x === 'bigint' || typeof x === 'number'))) {
    const out: Record<string, bigint> = {};
    for (const v of values as Array<Record<string, number | bigint>>) for (const [k, x] of Object.entries(v)) out[k] = (out[k] ?? 0n) + BigInt(x);
    return out;
  }
  return values;
}
