/**
 * The rulesets every contender installs, in its own syntax: N rules that never
 * match the test traffic, followed by the rule that accepts it. The N rules
 * come first, so a linear matcher walks all of them for every packet (the
 * shape kube-proxy's chains give iptables). Each is one source /32 from
 * 172.16.0.0/12 (the test traffic uses 10.x addresses) with a protocol and a
 * destination port, so classifiers see a realistic multi-field ruleset.
 */

export interface NonMatchingRule {
  /** Source address, a /32. */
  saddr: string;
  proto: 'tcp' | 'udp';
  dport: number;
}

const BASE = (172 << 24) | (16 << 16); // 172.16.0.0
/** 172.16.0.0/12 minus its first and last address. */
export const MAX_RULES = (1 << 20) - 2;

export function ipv4FromInt(v: number): string {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/**
 * The i-th non-matching rule (i >= 0). Distinct i give distinct rules; the
 * harness uses i = N, N+1, ... for the rules it adds one at a time.
 */
export function nonMatchingRule(i: number): NonMatchingRule {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_RULES) throw new RangeError(`rule index ${i} out of range 0..${MAX_RULES - 1}`);
  return {
    saddr: ipv4FromInt((BASE + 1 + i) >>> 0),
    proto: i % 2 === 0 ? 'tcp' : 'udp',
    dport: 1024 + (i % 50_000),
  };
}

/** Rules 0..n-1. */
export function* nonMatchingRules(n: number): Generator<NonMatchingRule> {
  for (let i = 0; i < n; i++) yield nonMatchingRule(i);
}
