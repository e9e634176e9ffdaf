/**
 * iptables, both back ends: the FORWARD chain of the filter table, policy
 * DROP, N non-matching rules and the accept rule last; the whole ruleset is
 * loaded by one iptables-restore (the fast way), and a rule is added with
 * `iptables -I FORWARD 1` (which rewrites the whole table with legacy, and
 * re-reads the ruleset with the nft back end).
 */
import { run } from '../proc.js';
import { nonMatchingRule, nonMatchingRules, type NonMatchingRule } from '../rules.js';
import type { BenchTopology } from '../topology.js';
import type { Contender } from './index.js';

function ruleArgs(r: NonMatchingRule): string[] {
  return ['-s', `${r.saddr}/32`, '-p', r.proto, '-m', r.proto, '--dport', String(r.dport), '-j', 'DROP'];
}

/** The iptables-restore input for n rules. */
export function iptablesRuleset(topo: Pick<BenchTopology, 'trafficCidr'>, n: number): string {
  const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]'];
  for (const r of nonMatchingRules(n)) lines.push(`-A FORWARD ${ruleArgs(r).join(' ')}`);
  lines.push(`-A FORWARD -s ${topo.trafficCidr} -d ${topo.trafficCidr} -j ACCEPT`, 'COMMIT', '');
  return lines.join('\n');
}

const EMPTY = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT', ''].join('\n');

function iptables(name: string, backend: 'legacy' | 'nft', description: string): Contender {
  const bin = `iptables-${backend}`;
  const restore = `iptables-${backend}-restore`;
  return {
    name,
    description,
    async available() {
      try {
        const r = await run(bin, ['--version']);
        if (r.code !== 0) return `${bin} --version failed: ${r.stderr.trim()}`;
        // `iptables v1.8.9 (legacy)` or `iptables v1.8.9 (nf_tables)`
        const tag = backend === 'legacy' ? '(legacy)' : '(nf_tables)';
        return r.stdout.includes(tag) ? null : `${bin} is not the ${backend} back end: ${r.stdout.trim()}`;
      } catch {
        return `${bin} not found (Debian: apt-get install iptables)`;
      }
    },
    async setup(topo, n) {
      const text = iptablesRuleset(topo, n);
      const r = await topo.routerRunOk(`${restore} of ${n} rules`, restore, ['-w'], { stdin: text, timeoutMs: 600_000 });
      return { loadMs: r.ms };
    },
    async addOneRule(topo, index) {
      const r = await topo.routerRunOk(`${bin} -I`, bin, ['-w', '-I', 'FORWARD', '1', ...ruleArgs(nonMatchingRule(index))]);
      return r.ms;
    },
    async addManyRules(topo, _n, from, count) {
      // One restore that keeps the ruleset (--noflush) and appends the rules (after the accept: they never match).
      const lines = ['*filter'];
      for (let i = from; i < from + count; i++) lines.push(`-A FORWARD ${ruleArgs(nonMatchingRule(i)).join(' ')}`);
      lines.push('COMMIT', '');
      const r = await topo.routerRunOk(`${restore} --noflush of ${count} rules`, restore, ['-w', '--noflush'], { stdin: lines.join('\n'), timeoutMs: 600_000 });
      return r.ms;
    },
    async teardown(topo) {
      await topo.routerRunOk(`${restore} (flush)`, restore, ['-w'], { stdin: EMPTY, timeoutMs: 120_000 });
    },
  };
}

export const iptablesLegacy = iptables('iptables-legacy', 'legacy', 'iptables (legacy x_tables): FORWARD chain, linear, loaded by iptables-legacy-restore');
export const iptablesNft = iptables('iptables-nft', 'nft', 'iptables (nf_tables back end): FORWARD chain, linear, loaded by iptables-nft-restore');
