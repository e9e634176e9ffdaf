/**
 * SYN-flood limiter per source (XDP).
 *
 * Each source address may open at most MAX_SYNS new TCP connections (SYN
 * without ACK) per WINDOW_NS; further SYNs in the window are dropped before
 * the kernel allocates anything for them. Sources live in an LRU map, so a
 * flood from many forged addresses evicts old entries instead of filling the
 * map. IPv4 sources are keyed in their IPv4-mapped IPv6 form (::ffff:a.b.c.d),
 * so one map holds both families.
 */
import { ktimeNs, lruHash, perCpuArray, struct, u32, u64, xdp, XDP_DROP, XDP_PASS } from '../../sdk/fn/index.js';

export const WINDOW_NS = 1_000_000_000n;
export const MAX_SYNS = 8;

export const STAT_PASSED = 0;
export const STAT_DROPPED = 1;

export const synLimiterMaps = {
  sources: lruHash(struct({ hi: u64, lo: u64 }), struct({ syns: u32, windowStart: u64 }), { maxEntries: 65536 }),
  stats: perCpuArray(u64, { maxEntries: 2 }),
};

/** The low 64 bits of ::ffff:a.b.c.d. */
function mappedIpv4(src: u32): u64 {
  return 0xffff00000000n | u64(src);
}

export const synLimiter = xdp({ maps: synLimiterMaps }, (pkt, { sources, stats }) => {
  if (!pkt.tcp || !pkt.tcp.isSyn || pkt.tcp.isAck) return XDP_PASS;

  let hi = 0n;
  let lo = 0n;
  if (pkt.ipv4) {
    lo = mappedIpv4(pkt.ipv4.src);
  } else if (pkt.ipv6) {
    hi = pkt.ipv6.src.hi;
    lo = pkt.ipv6.src.lo;
  } else {
    return XDP_PASS;
  }

  const now = ktimeNs();
  const seen = sources.lookup({ hi, lo });
  if (seen === undefined || u64(now - seen.windowStart) >= WINDOW_NS) {
    // A new window for this source.
    sources.update({ hi, lo }, { syns: 1, windowStart: now });
    stats.increment(STAT_PASSED);
    return XDP_PASS;
  }
  if (seen.syns >= MAX_SYNS) {
    stats.increment(STAT_DROPPED);
    return XDP_DROP;
  }
  sources.update({ hi, lo }, { ...seen, syns: u32(seen.syns + 1) });
  stats.increment(STAT_PASSED);
  return XDP_PASS;
});
