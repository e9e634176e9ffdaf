/**
 * A stateful firewall for the inside of a router or host: connections the
 * inside opens are allowed out and their replies come back; from outside
 * only new TCP connections to the open ports get in; everything else that
 * arrives unsolicited is dropped. Put both programs on the outside interface.
 *
 *   tsbpf load examples/stateful-firewall.ts --hook tc-ingress --ifname eth0
 *   tsbpf attach statefw --hook tc-egress --ifname eth0
 *   tsbpf ct list statefw
 *
 * The nftables equivalent of the inbound chain:
 *   ct state established,related accept; ct state invalid drop;
 *   tcp dport 80 ct state new accept; drop
 */
import { filter, match, rule } from '../sdk/index.js';

export interface StatefulFirewallOptions {
  /** TCP ports open to new connections from outside (default 80). */
  open?: number[];
  /** Conntrack entries (default 65536). */
  maxEntries?: number;
}

export function statefulFirewall(options: StatefulFirewallOptions = {}) {
  const open = options.open ?? [80];
  return filter('statefw', { hook: ['tc-ingress', 'tc-egress'], conntrack: { maxEntries: options.maxEntries ?? 65536 } }, ({ chain }) => ({
    'tc-ingress': chain('inbound', { policy: 'drop' }, [
      // Replies of accepted connections never get here: conntrack accepts them before the rules.
      rule(match.ct.state(['established', 'related'])).named('established').accept(),
      rule(match.ct.state('invalid')).named('invalid').count().drop(),
      // Address resolution and IPv6 neighbour discovery keep the link working.
      rule(match.eth.type('arp')).named('arp').accept(),
      rule(match.icmp6.type(['nd-neighbor-solicit', 'nd-neighbor-advert', 'nd-router-advert'])).named('ndp').accept(),
      rule(match.ct.state('new').and(match.tcp.dport(open))).named('open-ports').count().accept(),
      rule().named('unsolicited').count().drop(),
    ]),
    // Whatever the inside sends is allowed, and accepting it opens its connection.
    'tc-egress': chain('outbound', { policy: 'accept' }, []),
  }));
}

export const statefw = statefulFirewall();
