/**
 * A port forward (DNAT): TCP connections to `port` on the interface are sent
 * on to a server behind it. The destination is rewritten at tc-ingress;
 * the server's replies leave through the same interface's tc-egress and
 * are translated back there by conntrack, so the client only ever sees the
 * address and port it connected to.
 *
 *   tsbpf load examples/port-forward.ts --hook tc-ingress --ifname eth0
 *   tsbpf attach portfwd --hook tc-egress --ifname eth0
 */
import { filter, match, rule } from '../sdk/index.js';

export interface PortForwardOptions {
  /** The port clients connect to. */
  port: number;
  /** The server's address (or a range, spread by flow hash). */
  to: string;
  /** The server's port (default: the same). */
  toPort?: number;
  /** Only connections to this address (default: any address the interface receives). */
  dst?: `${number}.${number}.${number}.${number}`;
}

export function portForward(options: PortForwardOptions) {
  const m = options.dst ? match.ip4.dst(options.dst).and(match.tcp.dport(options.port)) : match.tcp.dport(options.port);
  return filter('portfwd', { hook: ['tc-ingress', 'tc-egress'] }, ({ chain }) => ({
    'tc-ingress': chain('in', { policy: 'accept' }, [
      rule(m).named('forward').count().dnat({ to: options.to, ...(options.toPort !== undefined ? { port: options.toPort } : {}) }),
    ]),
    'tc-egress': chain('out', { policy: 'accept' }, []),
  }));
}

export const portfwd = portForward({ port: 8080, to: '10.0.2.2', toPort: 80 });
