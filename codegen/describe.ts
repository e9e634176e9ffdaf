/**
 * One-line text of a rule (match -> actions), for comments in the generated
 * C and for the rule table. Close to how the DSL reads, not a parser input.
 */
import type { ActionDef, MatchExpr, NumRange, RuleDef } from '../sdk/model.js';

export function describeMatch(m: MatchExpr): string {
  switch (m.kind) {
    case 'all':
      return 'all';
    case 'and':
      return m.args.length === 0 ? 'all' : m.args.map((a) => paren(a, 'and')).join(' and ');
    case 'or':
      return m.args.length === 0 ? 'none' : m.args.map((a) => paren(a, 'or')).join(' or ');
    case 'not':
      return `not ${paren(m.arg, 'not')}`;
    case 'has':
      return m.layer;
    case 'num':
      return `${m.field} ${ranges(m.ranges, HEX.has(m.field))}`;
    case 'bits':
      return `${m.field} & 0x${m.mask.toString(16)} == 0x${m.value.toString(16)}`;
    case 'numSet':
      return `${m.field} in @${m.set}`;
    case 'addr':
      return `${m.field} ${m.cidrs.length === 1 ? m.cidrs[0] : `{${m.cidrs.join(', ')}}`}`;
    case 'addrSet':
      return `${m.field} in @${m.set}`;
    case 'mac':
      return `${m.field} ${m.addrs.length === 1 ? m.addrs[0] : `{${m.addrs.join(', ')}}`}`;
    case 'ifname':
      return `iif ${m.names.length === 1 ? m.names[0] : `{${m.names.join(', ')}}`}`;
    case 'ct':
      return `ct state {${m.states.join(', ')}}`;
  }
}

function paren(m: MatchExpr, outer: 'and' | 'or' | 'not'): string {
  const s = describeMatch(m);
  const needs = (m.kind === 'or' && outer !== 'or') || (m.kind === 'and' && outer === 'not' && m.args.length > 1);
  return needs ? `(${s})` : s;
}

// Ethertypes, marks and flags read better in hex.
const HEX = new Set(['eth.type', 'meta.mark', 'tcp.flags', 'ct.mark']);

function ranges(rs: NumRange[], hex: boolean): string {
  const n = (x: number) => (hex ? `0x${x.toString(16)}` : String(x));
  const one = ([a, b]: NumRange) => (a === b ? n(a) : `${n(a)}-${n(b)}`);
  return rs.length === 1 ? one(rs[0]!) : `{${rs.map(one).join(', ')}}`;
}

export function describeAction(a: ActionDef): string {
  switch (a.kind) {
    case 'log':
      return a.prefix ? `log "${a.prefix}"` : 'log';
    case 'mark':
      return a.mask === 0xffffffff ? `mark 0x${a.value.toString(16)}` : `mark 0x${a.value.toString(16)}/0x${a.mask.toString(16)}`;
    case 'limit':
      return `limit ${a.mode === 'over' ? 'over ' : ''}${a.rate}/${a.interval} burst ${a.burst}${a.key ? ` by ${a.key}` : ''}`;
    case 'redirect':
      return `redirect ${a.ifname ?? `ifindex ${a.ifindex}`}`;
    case 'ctMark':
      return a.mask === 0xffffffff ? `ct mark 0x${a.value.toString(16)}` : `ct mark 0x${a.value.toString(16)}/0x${a.mask.toString(16)}`;
    case 'snat':
    case 'dnat': {
      const to = a.to[0] === a.to[1] ? a.to[0] : `${a.to[0]}-${a.to[1]}`;
      const ports = a.kind === 'snat' ? a.ports : a.port;
      return `${a.kind} to ${to}${ports ? `:${ports[0] === ports[1] ? ports[0] : `${ports[0]}-${ports[1]}`}` : ''}`;
    }
    case 'masquerade':
      return a.ports ? `masquerade to :${a.ports[0]}-${a.ports[1]}` : 'masquerade';
    case 'jump':
    case 'goto':
      return `${a.kind} ${a.chain}`;
    default:
      return a.kind;
  }
}

export function describeRule(r: RuleDef): string {
  const acts = r.actions.length ? r.actions.map(describeAction).join(', ') : 'continue';
  return `${describeMatch(r.match)} -> ${acts}`;
}
