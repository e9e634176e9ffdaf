/**
 * A per-source rate limiter at tc-ingress: each source address gets its own
 * token bucket (an LRU hash of buckets), so one noisy client cannot starve
 * the others. New TCP connections (SYN without ACK) above 20/s with a burst
 * of 40 per source are dropped, and so are DNS queries above 50/s per source.
 */
import { filter, match, rule } from '../sdk/index.js';

export const rateLimiter = filter('ratelimit', { hook: 'tc-ingress' }, ({ chain }) =>
  chain('input', { policy: 'accept' }, [
    rule(match.tcp.flags(['syn'], ['syn', 'ack']))
      .named('syn-flood')
      .limit({ rate: 20, burst: 40, by: 'src', over: true })
      .count()
      .log('syn rate exceeded')
      .drop(),
    rule(match.udp.dport(53)).named('dns-flood').limit({ rate: 50, burst: 100, by: 'src', over: true }).count().drop(),
    rule(match.icmp.type('echo-request')).named('ping-flood').limit({ rate: 5, burst: 10, by: 'src', over: true }).count().drop(),
  ]),
);
