import path from 'node:path';
import { parseArgs } from 'node:util';
import { CT_ENTRY, CT_KEY } from '../../codegen/stateful/layouts.js';
import { ConntrackMap, connectionsIn, monotonicNs } from '../../runtime/conntrack.js';
import type { BpfMap } from '../../runtime/map.js';
import { openPinnedMap } from '../../runtime/pin.js';
import { CT_STATE_NAMES, type CtFilter, type CtStateName } from '../../sdk/ct.js';
import { TsbpfError } from '../../sdk/errors.js';
import type { Command } from '../command.js';
import { toPlain } from '../format.js';
import { DEFAULT_PIN_BASE } from '../state.js';
import { formatTable } from '../table.js';

const USAGE = [
  'usage: tsbpf ct list   [NAME | --pin DIR] [FILTER] [--json] [--limit N]',
  '       tsbpf ct delete [NAME | --pin DIR] FILTER',
  '       tsbpf ct flush  [NAME | --pin DIR]',
  '       tsbpf ct gc     [NAME | --pin DIR]',
  '',
  '  The conntrack table of a program whose maps are pinned: a filter with conntrack loaded by',
  '  `tsbpf load` (or LoadedFilter.pin(dir)), or a services program (LoadedServices.pin(dir)).',
  '  NAME           pinned under /sys/fs/bpf/tsbpf/NAME',
  '  --pin DIR      the pin directory (it holds tsbpf_ct)',
  '  FILTER         --src A --dst A --sport N --dport N --proto tcp|udp|icmp|icmp6 --state S',
  '                 --backend A (translated destination) --nat / --no-nat --expired',
  '  gc             deletes expired connections and NAT keys left without a connection',
].join('\n');

/** Nanoseconds as a short duration. */
function ago(ns: bigint): string {
  const s = Number(ns / 1_000_000n) / 1000;
  if (s < 0) return `-${ago(-ns)}`;
  if (s < 120) return `${s.toFixed(1)}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

function endpoints(e: { src: string; sport: number; dst: string; dport: number }, proto: string): string {
  const p = (a: string, port: number) => (proto.startsWith('icmp') ? a : a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`);
  return `${p(e.src, e.sport)} > ${p(e.dst, e.dport)}`;
}

export const ct: Command = {
  name: 'ct',
  summary: 'list, delete, flush and collect conntrack entries of a pinned filter or services program',
  usage: USAGE,
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        pin: { type: 'string' },
        json: { type: 'boolean' },
        limit: { type: 'string' },
        src: { type: 'string' },
        dst: { type: 'string' },
        sport: { type: 'string' },
        dport: { type: 'string' },
        proto: { type: 'string' },
        state: { type: 'string' },
        backend: { type: 'string' },
        nat: { type: 'boolean' },
        'no-nat': { type: 'boolean' },
        expired: { type: 'boolean' },
      },
    });
    const sub = positionals.shift();
    if (!sub || !['list', 'delete', 'flush', 'gc'].includes(sub)) throw new TsbpfError('INVALID_ARGUMENT', `tsbpf ct needs list, delete, flush or gc${sub ? ` (got '${sub}')` : ''}\n${USAGE}`);
    const name = positionals.shift();
    if (!values.pin && !name) throw new TsbpfError('INVALID_ARGUMENT', `say which program: a NAME or --pin DIR\n${USAGE}`);
    const dir = path.resolve(values.pin ?? path.join(DEFAULT_PIN_BASE, name!));
    const port = (v: string | undefined, what: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new TsbpfError('INVALID_ARGUMENT', `--${what} must be a port (got '${v}')`);
      return n;
    };
    const filter: CtFilter = {};
    if (values.src) filter.src = values.src;
    if (values.dst) filter.dst = values.dst;
    if (values.backend) filter.xdst = values.backend;
    const sport = port(values.sport, 'sport');
    const dport = port(values.dport, 'dport');
    if (sport !== undefined) filter.sport = sport;
    if (dport !== undefined) filter.dport = dport;
    if (values.proto) {
      if (!['tcp', 'udp', 'icmp', 'icmp6'].includes(values.proto)) throw new TsbpfError('INVALID_ARGUMENT', `--proto must be tcp, udp, icmp or icmp6 (got '${values.proto}')`);
      filter.protocol = values.proto as CtFilter['protocol'] & string;
    }
    if (values.state) {
      const states = values.state.split(',');
      for (const s of states) if (!(CT_STATE_NAMES as string[]).includes(s)) throw new TsbpfError('INVALID_ARGUMENT', `unknown state '${s}' (states: ${CT_STATE_NAMES.slice(1).join(', ')})`);
      filter.state = states as CtStateName[];
    }
    if (values.nat) filter.nat = true;
    if (values['no-nat']) filter.nat = false;
    if (values.expired) filter.expired = true;
    const limit = values.limit ? Number(values.limit) : 100;
    if (!Number.isInteger(limit) || limit < 1) throw new TsbpfError('INVALID_ARGUMENT', `--limit must be a positive integer (got '${values.limit}')`);
    if (sub === 'delete' && Object.keys(filter).filter((k) => k !== 'expired').length === 0) {
      throw new TsbpfError('INVALID_ARGUMENT', 'ct delete needs a filter (ct flush deletes everything)');
    }

    let map: BpfMap<unknown, unknown>;
    try {
      map = openPinnedMap(path.join(dir, 'tsbpf_ct'), { key: CT_KEY, value: CT_ENTRY }) as BpfMap<unknown, unknown>;
    } catch (e) {
      throw new TsbpfError('PIN_NOT_FOUND', `no conntrack map pinned at ${path.join(dir, 'tsbpf_ct')}`, { hint: 'load a filter that uses conntrack with tsbpf load (or pin a services program) and name that directory', cause: e });
    }
    try {
      if (sub === 'flush') {
        const n = new ConntrackMap(map).flush();
        io.out(`deleted ${n} entries`);
        return 0;
      }
      const ct = new ConntrackMap(map);
      const now = monotonicNs();
      if (sub === 'gc') {
        io.out(`deleted ${ct.gc(now)} expired entries`);
        return 0;
      }
      const table = ct.table();
      const conns = connectionsIn(table, filter, now);
      if (sub === 'delete') {
        const n = ct.deleteKeys(conns);
        io.out(`deleted ${conns.length} connections (${n} entries)`);
        return 0;
      }
      if (values.json) {
        io.out(JSON.stringify(conns.slice(0, limit).map(({ entry: _e, key: _k, ...c }) => toPlain(c)), null, 2));
        return 0;
      }
      if (conns.length === 0) {
        io.out(`no connections${Object.keys(filter).length ? ' match' : ''} (${table.entries.size} entries in the map)`);
        return 0;
      }
      io.out(
        formatTable(
          ['proto', 'state', 'original', 'translated', 'flags', 'packets', 'bytes', 'age', 'expires'],
          conns.slice(0, limit).map((c) => [
            c.protocol,
            c.state,
            endpoints(c.original, c.protocol),
            c.flags.includes('dnat') || c.flags.includes('snat') ? endpoints(c.translated, c.protocol) : '-',
            c.flags.filter((f) => !f.startsWith('fin')).join(',') || '-',
            `${c.packets.original}/${c.packets.reply}`,
            `${c.bytes.original}/${c.bytes.reply}`,
            ago(now - c.createdNs),
            c.expired ? 'expired' : ago(c.expiresNs - now),
          ]),
        ),
      );
      if (conns.length > limit) io.out(`... ${conns.length - limit} more (--limit)`);
      return 0;
    } finally {
      map.close();
    }
  },
};
