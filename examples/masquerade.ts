/**
 * Masquerade: hosts of a private network reach the outside through a router
 * whose outside interface gives them its own address. The source is
 * rewritten at tc-egress of the outside interface (a port per connection,
 * never the same (address, port, peer) twice); replies arriving at its
 * tc-ingress are translated back by conntrack before any rule runs.
 *
 *   tsbpf load examples/masquerade.ts --hook tc-egress --ifname eth0
 *   tsbpf attach masq --hook tc-ingress --ifname eth0
 *
 * The masquerade address is the interface's first IPv4 (and global IPv6)
 * address, read when the egress program is attached (LoadedFilter.setIfaddr
 * changes it).
 */
import { filter, match, rule } from '../sdk/index.js';

export interface MasqueradeOptions {
  /** The private IPv4 network to translate (default 10.0.0.0/8). */
  inside?: `${number}.${number}.${number}.${number}/${number}`;
  /** The private IPv6 network to translate, if any. */
  inside6?: `${string}:${string}`;
  /** Source ports to use (default 1024-65535). */
  ports?: [number, number];
}

export function masquerade(options: MasqueradeOptions = {}) {
  const ports = options.ports ? { ports: options.ports } : {};
  return filter('masq', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => ({
    'tc-ingress': chain('in', { policy: 'accept' }, []),
    'tc-egress': chain('out', { policy: 'accept' }, [
      rule(match.ip4.src(options.inside ?? '10.0.0.0/8')).named('masq4').count().masquerade(ports),
      ...(options.inside6 ? [rule(match.ip6.src(options.inside6)).named('masq6').count().masquerade(ports)] : []),
    ]),
  }));
}

export const masq = masquerade();
