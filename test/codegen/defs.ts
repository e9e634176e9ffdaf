/**
 * Model definitions the codegen tests share, written as plain model data (not
 * through the DSL) so source positions and ids are fixed for golden files.
 */
import { filter, type Filter } from '../../sdk/dsl/filter.js';
import { match, range } from '../../sdk/dsl/match.js';
import { rule } from '../../sdk/dsl/rule.js';
import { array, be16, ipv4, ipv6, struct, u16, u32, u64, u8 } from '../../sdk/layout.js';
import type { Definition, Hook, RuleDef } from '../../sdk/model.js';
import { MODEL_VERSION } from '../../sdk/model.js';

const at = (line: number, column = 5) => ({ file: 'fw.ts', line, column });

function rules(chain: string, firstId: number, specs: Array<Omit<RuleDef, 'id' | 'chain' | 'index' | 'name'> & { name?: string }>): RuleDef[] {
  return specs.map((s, index) => ({ ...s, id: firstId + index, chain, index, name: s.name ?? `${chain}#${index}` }));
}

/** A small host firewall: every kind of rule once, two chains. */
export function smallDefinition(hooks: Hook[] = ['tc-ingress']): Definition {
  const input = rules('input', 0, [
    { name: 'blocked', match: { kind: 'addrSet', field: 'ip4.src', set: 'blocklist' }, actions: [{ kind: 'count' }, { kind: 'drop' }], source: at(10) },
    {
      name: 'ssh',
      match: { kind: 'and', args: [{ kind: 'has', layer: 'tcp' }, { kind: 'num', field: 'l4.dport', ranges: [[22, 22]] }, { kind: 'addr', field: 'ip4.src', cidrs: ['10.0.0.0/8', '192.168.1.0/24'] }] },
      actions: [{ kind: 'limit', limitId: 0, rate: 10, interval: 'second', burst: 5, costNs: 100_000_000, mode: 'under' }, { kind: 'accept' }],
      source: at(11),
      comment: 'admins only, 10/s',
    },
    { match: { kind: 'has', layer: 'ip6' }, actions: [{ kind: 'jump', chain: 'v6' }], source: at(12) },
    { name: 'smtp', match: { kind: 'and', args: [{ kind: 'has', layer: 'tcp' }, { kind: 'num', field: 'l4.dport', ranges: [[25, 25]] }] }, actions: [{ kind: 'log', prefix: 'smtp' }, { kind: 'reject' }], source: at(13) },
    { match: { kind: 'num', field: 'meta.mark', ranges: [[1, 1]] }, actions: [{ kind: 'redirect', ifname: 'veth1' }], source: at(14) },
  ]);
  const v6 = rules('v6', 5, [
    { match: { kind: 'and', args: [{ kind: 'has', layer: 'icmp6' }, { kind: 'num', field: 'icmp6.type', ranges: [[128, 129]] }] }, actions: [{ kind: 'accept' }], source: at(20) },
    { match: { kind: 'not', arg: { kind: 'addr', field: 'ip6.src', cidrs: ['fd00::/8'] } }, actions: [{ kind: 'mark', value: 0x10, mask: 0xff }, { kind: 'return' }], source: at(21) },
    { match: { kind: 'numSet', field: 'l4.dport', set: 'web' }, actions: [{ kind: 'count' }, { kind: 'accept' }], source: at(22) },
  ]);
  return {
    version: MODEL_VERSION,
    name: 'host',
    programs: hooks.map((hook) => ({ name: `host_${hook.replace('-', '_')}`, hook, entry: 'input' })),
    chains: [
      { name: 'input', policy: 'drop', rules: input, source: at(9, 3) },
      { name: 'v6', policy: 'return', rules: v6, source: at(19, 3) },
    ],
    sets: [
      { name: 'blocklist', type: 'ipv4', maxEntries: 1024, elements: ['192.0.2.0/24', '198.51.100.7/32'], source: at(5, 3) },
      { name: 'web', type: 'port', maxEntries: 64, elements: [80, 443], source: at(6, 3) },
    ],
    maps: [],
    source: { file: 'fw.ts', line: 3, column: 1 },
  };
}

/**
 * Every feature the DSL has, for the verifier: all hooks, sets of each kind,
 * user maps of each kind, limits (shared and per address), log, mark, reject,
 * redirect by index and name, VLAN, MAC, fragments, and jumps nested 8 deep.
 */
export function richFilter(): Filter {
  return filter('rich', { hook: ['xdp', 'tc-ingress', 'tc-egress'] }, ({ chain, set, map }) => {
    const bad4 = set.ipv4('bad4', { elements: ['192.0.2.0/24'] });
    const bad6 = set.ipv6('bad6', { elements: ['2001:db8::/32'] });
    const admin = set.port('admin', { elements: [22, 2222] });
    const flowKey = struct({ src: ipv4, dst: ipv4, sport: be16, dport: be16, proto: u8 }, { name: 'flow_key' });
    map('flows', { kind: 'lru_hash', key: flowKey, value: struct({ packets: u64, bytes: u64 }), maxEntries: 1024 });
    map('by_port', { kind: 'hash', key: u16, value: u32, maxEntries: 64 });
    map('slots', { kind: 'array', key: u32, value: array(u8, 6), maxEntries: 8 });
    map('pcpu', { kind: 'percpu_array', key: u32, value: u64, maxEntries: 4 });
    map('pcpuh', { kind: 'percpu_hash', key: u32, value: u64, maxEntries: 4 });
    map('prefixes', { kind: 'lpm_trie', key: struct({ prefixlen: u32, addr: ipv6 }), value: u32, maxEntries: 16 });
    map('events', { kind: 'ringbuf', maxEntries: 4096 });
    // d1 -> d2 -> ... -> d8: the deepest nesting a definition may have.
    const deep: ReturnType<typeof chain>[] = [];
    for (let i = 8; i >= 1; i--) {
      const next = deep[deep.length - 1];
      deep.push(chain(`d${i}`, {}, [
        rule(match.udp.dport(1000 + i)).count().accept(),
        ...(next ? [rule(match.udp).jump(next)] : []),
        rule(match.tcp.dport(2000 + i)).return(),
      ]));
    }
    const big = chain('big', { policy: 'return' }, Array.from({ length: 40 }, (_, i) => rule(match.tcp.dport(3000 + i).and(match.ip4.src(`10.${i}.0.0/16`))).drop()));
    const svc = chain('svc', {}, [
      rule(match.tcp.dport([80, 443])).count().log('web').accept(),
      rule(match.sctp.dport(range(5000, 5100))).accept(),
      rule(match.icmp6.type([128, 129])).accept(),
    ]);
    return chain('input', { policy: 'drop' }, [
      rule(match.ip4.src.in(bad4)).count().drop(),
      rule(match.ip6.src.in(bad6)).count().drop(),
      rule(match.tcp.dport.in(admin)).limit({ rate: 10, burst: 5 }).accept(),
      rule(match.icmp).limit({ rate: 5, by: 'src', maxKeys: 128 }).accept(),
      rule(match.icmp6).limit({ rate: 100, per: 'minute', over: true, by: 'dst' }).drop(),
      rule(match.vlan.id(10)).mark(0x10).jump(svc),
      rule(match.eth.src('02:00:00:00:00:99')).redirect(3),
      rule(match.ifname('lo').and(match.mark(7))).redirect('lo'),
      rule(match.frag).drop(),
      rule(match.tcp.flags('syn', ['syn', 'ack'])).jump(big),
      rule(match.udp).jump(deep[deep.length - 1]!),
      rule(match.ip.ttl(range(0, 1))).reject(),
      rule(match.tcp.dport(25)).reject(),
      rule().goto(svc),
    ]);
  });
}
