/**
 * A DDoS drop list at XDP: packets from listed sources are dropped before
 * the kernel allocates anything for them. The lists are sets (LPM tries), so
 * adding or removing a source is a map update while the program runs:
 *
 *   const f = load(droplist); f.attach({ hook: 'xdp', ifname: 'eth0' });
 *   f.sets.deny4.add('203.0.113.0/24');
 */
import { filter, match, rule } from '../sdk/index.js';

export const droplist = filter('droplist', { hook: 'xdp' }, ({ chain, set }) => {
  const deny4 = set.ipv4('deny4', { maxEntries: 65536 });
  const deny6 = set.ipv6('deny6', { maxEntries: 65536 });
  return chain('input', { policy: 'accept' }, [
    rule(match.ip4.src.in(deny4)).named('deny4').count().drop(),
    rule(match.ip6.src.in(deny6)).named('deny6').count().drop(),
    // Fragments cannot be matched on ports; a drop list keeps them only from allowed sources.
    rule().named('passed').count().accept(),
  ]);
});
