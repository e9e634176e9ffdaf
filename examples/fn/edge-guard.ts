/**
 * Edge guard (XDP): a function program in front of a declarative filter.
 *
 * The filter `edge` says what the host accepts, in rules (blocked sources,
 * web ports, DNS, pings). The function `edgeGuard` adds what rules
 * cannot say: it counts strikes per blocked source (and, on the tenth, keeps
 * the source out of the filter's web rule altogether by answering itself),
 * and per accepted source the bytes it let in. It runs the filter's chain
 * with runChain and acts on its verdict.
 *
 * The set `blocked` and the map `seen` are declared once at the top level:
 * the filter lists them in `uses` (its rules match against `blocked`), the
 * function takes them in its `maps`, typed. Built together (runChain compiles
 * the filter into the function's object) they are one kernel map each, and
 * user space reaches them through the loaded object: obj.maps.blocked,
 * obj.maps.seen.
 */
import { declareMap, declareSet, filter, match, rule } from '../../sdk/index.js';
import { lruHash, runChain, u32, u64, xdp, XDP_DROP, XDP_PASS } from '../../sdk/fn/index.js';

/** Sources (IPv4 CIDRs) the filter drops. */
export const blocked = declareSet('blocked', 'ipv4', { maxEntries: 1024, elements: ['10.66.0.0/16', '192.0.2.7'] });
/** Accepted IPv4 source -> frame bytes let in. */
export const seen = declareMap('seen', { kind: 'hash', key: u32, value: u64, maxEntries: 4096 });

/** Strikes after which a blocked source is dropped before the filter runs. */
export const MAX_STRIKES = 10;

export const edge = filter('edge', { hook: 'xdp', uses: [blocked, seen] }, ({ chain, set }) => {
  const web = set.port('web', { elements: [80, 443] });
  return chain('input', { policy: 'drop' }, [
    rule(match.ip4.src.in(blocked)).named('blocked').count().drop(),
    rule(match.eth.type('arp')).named('arp').accept(),
    rule(match.tcp.dport.in(web)).named('web').count().accept(),
    rule(match.udp.dport(53)).named('dns').count().accept(),
    rule(match.icmp.type('echo-request')).named('ping').count().accept(),
    rule(match.ip6).named('ipv6').accept(),
  ]);
});

export const edgeGuard = xdp(
  { maps: { blocked, seen, strikes: lruHash(u32, u32, { maxEntries: 4096 }) } },
  (pkt, { blocked, seen, strikes }) => {
    if (!pkt.ipv4) return runChain(edge, pkt);
    const src = pkt.ipv4.src;
    if (blocked.has(src)) {
      const s = strikes.lookup(src);
      const n = s === undefined ? 1 : s >= MAX_STRIKES ? MAX_STRIKES : u32(s + 1);
      strikes.update(src, n);
      // Past the limit the filter is not even asked.
      if (n >= MAX_STRIKES) return XDP_DROP;
    }
    const verdict = runChain(edge, pkt);
    if (verdict === XDP_PASS) seen.increment(src, u64(pkt.len));
    return verdict;
  },
);
