/**
 * An egress allow-list at tc-egress: a workload may only talk to the
 * destinations in `allowed` (a set, updatable at run time) and to DNS;
 * anything else is rejected locally, so the application gets an immediate
 * error (ECONNREFUSED / EHOSTUNREACH) rather than a timeout.
 */
import { filter, match, rule } from '../sdk/index.js';

export const egressAllow = filter('egress', { hook: 'tc-egress' }, ({ chain, set }) => {
  const allowed4 = set.ipv4('allowed4', { maxEntries: 1024, elements: ['10.0.0.0/8'] });
  const allowed6 = set.ipv6('allowed6', { maxEntries: 1024 });
  return chain('output', { policy: 'reject' }, [
    rule(match.eth.type('arp')).named('arp').accept(),
    rule(match.icmp6.type(['nd-neighbor-solicit', 'nd-neighbor-advert', 'nd-router-solicit'])).named('ndp').accept(),
    rule(match.udp.dport(53).or(match.tcp.dport(53))).named('dns').count().accept(),
    rule(match.ip4.dst.in(allowed4)).named('allowed4').count().accept(),
    rule(match.ip6.dst.in(allowed6)).named('allowed6').count().accept(),
    rule().named('denied').count().log('egress denied').reject(),
  ]);
});
