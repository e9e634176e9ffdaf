/**
 * DNS amplification guard (XDP).
 *
 * In a DNS amplification attack, open resolvers are sent small queries with
 * the victim's address forged as the source, and flood the victim with
 * large answers it never asked for. This program runs on the victim's
 * interface and drops, before the kernel spends anything on them:
 * - DNS answers (UDP from port 53) larger than MAX_ANSWER bytes of UDP,
 * - non-first fragments of UDP datagrams (large answers arrive fragmented),
 * and counts what it saw and dropped, plus the answer bytes per resolver,
 * so an operator can see who reflects the traffic.
 */
import { lruHash, perCpuArray, u32, u64, xdp, XDP_DROP, XDP_PASS, IPPROTO_UDP } from '../../sdk/fn/index.js';

/** Classic DNS limit over UDP without EDNS. */
export const MAX_ANSWER = 512;

/** Slots of the stats map. */
export const STAT_ANSWERS = 0;
export const STAT_DROPPED_LARGE = 1;
export const STAT_DROPPED_FRAGMENT = 2;

export const dnsGuardMaps = {
  stats: perCpuArray(u64, { maxEntries: 4 }),
  /** IPv4 resolver address -> answer bytes seen from it. */
  resolvers: lruHash(u32, u64, { maxEntries: 16384 }),
};

export const dnsGuard = xdp({ maps: dnsGuardMaps }, (pkt, { stats, resolvers }) => {
  // Later fragments carry no UDP header: they are the tail of large datagrams.
  if (pkt.fragment && pkt.fragment.offset !== 0 && pkt.proto === IPPROTO_UDP) {
    stats.increment(STAT_DROPPED_FRAGMENT);
    return XDP_DROP;
  }
  if (!pkt.udp || pkt.udp.sport !== 53) return XDP_PASS;

  stats.increment(STAT_ANSWERS);
  if (pkt.ipv4) resolvers.increment(pkt.ipv4.src, u64(pkt.udp.length));
  if (pkt.udp.length > MAX_ANSWER) {
    stats.increment(STAT_DROPPED_LARGE);
    return XDP_DROP;
  }
  return XDP_PASS;
});
