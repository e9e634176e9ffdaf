/**
 * Port redirect with DSCP marking (TC), for a router in front of a backend.
 *
 * Clients connect to FRONT_PORT; the backend listens on BACK_PORT. On the
 * router's interface towards the backend:
 * - toBackend (tc-egress) rewrites the destination port FRONT_PORT -> BACK_PORT
 *   and marks the packets DSCP AF21,
 * - fromBackend (tc-ingress) rewrites the answers' source port back.
 * Every write fixes the checksums it touches (the IPv4 header checksum for
 * DSCP, the TCP/UDP checksum for ports), which a real TCP connection through
 * the router proves (test/fn/traffic.test.ts).
 */
import { perCpuArray, tcEgress, tcIngress, u64, TC_ACT_OK } from '../../sdk/fn/index.js';

export const FRONT_PORT = 8080;
export const BACK_PORT = 8000;
/** AF21: low-latency data. */
export const DSCP_AF21 = 18;

export const STAT_TO_BACKEND = 0;
export const STAT_FROM_BACKEND = 1;

export const portRedirectMaps = {
  rewritten: perCpuArray(u64, { maxEntries: 2 }),
};

export const toBackend = tcEgress({ maps: portRedirectMaps }, (pkt, { rewritten }) => {
  if (pkt.tcp && pkt.tcp.dport === FRONT_PORT) {
    pkt.tcp.dport = BACK_PORT;
  } else if (pkt.udp && pkt.udp.dport === FRONT_PORT) {
    pkt.udp.dport = BACK_PORT;
  } else {
    return TC_ACT_OK;
  }
  if (pkt.ipv4) pkt.ipv4.dscp = DSCP_AF21;
  else if (pkt.ipv6) pkt.ipv6.dscp = DSCP_AF21;
  rewritten.increment(STAT_TO_BACKEND);
  return TC_ACT_OK;
});

export const fromBackend = tcIngress({ maps: portRedirectMaps }, (pkt, { rewritten }) => {
  if (pkt.tcp && pkt.tcp.sport === BACK_PORT) {
    pkt.tcp.sport = FRONT_PORT;
  } else if (pkt.udp && pkt.udp.sport === BACK_PORT) {
    pkt.udp.sport = FRONT_PORT;
  } else {
    return TC_ACT_OK;
  }
  rewritten.increment(STAT_FROM_BACKEND);
  return TC_ACT_OK;
});
