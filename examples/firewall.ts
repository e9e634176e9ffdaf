/**
 * A host firewall for a web server, at tc-ingress: web ports open to all,
 * SSH only from the admin network, ping rate-limited, a run-time block list,
 * every other TCP connection attempt answered with a RST.
 *
 *   tsbpf load examples/firewall.ts --hook tc-ingress --ifname eth0
 *   tsbpf maps --pin /sys/fs/bpf/tsbpf/webfw
 */
import { filter, match, rule } from '../sdk/index.js';

export interface FirewallOptions {
  /** Where SSH may come from. */
  adminNet?: `${number}.${number}.${number}.${number}/${number}`;
  /** Ports open to everyone. */
  webPorts?: number[];
}

export function webFirewall(options: FirewallOptions = {}) {
  const adminNet = options.adminNet ?? '10.0.0.0/8';
  const webPorts = options.webPorts ?? [80, 443];
  return filter('webfw', { hook: 'tc-ingress' }, ({ chain, set }) => {
    const blocked = set.ipv4('blocked', { maxEntries: 4096 });
    const ssh = chain('ssh', { policy: 'drop' }, [
      rule(match.ip4.src(adminNet)).named('ssh-admin').count().accept(),
      rule().named('ssh-denied').count().log('ssh denied').drop(),
    ]);
    return chain('input', { policy: 'drop' }, [
      rule(match.ip4.src.in(blocked)).named('blocklist').count().log('blocked').drop(),
      // Address resolution and IPv6 neighbour discovery keep the link working.
      rule(match.eth.type('arp')).named('arp').accept(),
      rule(match.icmp6.type(['nd-neighbor-solicit', 'nd-neighbor-advert'])).named('ndp').accept(),
      rule(match.tcp.dport(webPorts)).named('web').count().accept(),
      rule(match.tcp.dport(22)).named('ssh').jump(ssh),
      // Replies to connections this host opened (stateless: no SYN, ACK set).
      rule(match.tcp.flags(['ack'], ['syn', 'ack'])).named('tcp-replies').count().accept(),
      rule(match.icmp.type('echo-request')).named('ping').limit({ rate: 10, burst: 20 }).count().accept(),
      rule(match.icmp.type('echo-reply')).named('pong').accept(),
      rule(match.tcp).named('tcp-refused').count().reject(),
      rule(match.udp).named('udp-refused').count().reject(),
    ]);
  });
}

export const firewall = webFirewall();
