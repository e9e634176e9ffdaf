/**
 * nftables, natively: a table `ip tsbpf_bench` with a forward base chain,
 * policy drop, loaded by one `nft -f` transaction.
 * - nft-linear: N rules `ip saddr A <proto> dport P drop`, then the accept
 *   rule; a rule is added with `nft insert rule` (at the head).
 * - nft-set: the best practice, one rule looking up a concatenated hash set
 *   `ipv4_addr . inet_proto . inet_service` of N elements, then the accept
 *   rule; a rule is added with `nft add element`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../proc.js';
import { nonMatchingRule, nonMatchingRules, type NonMatchingRule } from '../rules.js';
import type { BenchTopology } from '../topology.js';
import type { Contender } from './index.js';

const TABLE = 'tsbpf_bench';

function ruleText(r: NonMatchingRule): string {
  return `ip saddr ${r.saddr} ${r.proto} dport ${r.dport} drop`;
}

function elementText(r: NonMatchingRule): string {
  return `${r.saddr} . ${r.proto} . ${r.dport}`;
}

function acceptText(topo: Pick<BenchTopology, 'trafficCidr'>): string {
  return `ip saddr ${topo.trafficCidr} ip daddr ${topo.trafficCidr} accept`;
}

const CHAIN_HEAD = 'type filter hook forward priority filter; policy drop;';

/** `nft -f` input: a linear chain of n rules. */
export function nftLinearRuleset(topo: Pick<BenchTopology, 'trafficCidr'>, n: number): string {
  const lines = [`table ip ${TABLE} {`, '  chain forward {', `    ${CHAIN_HEAD}`];
  for (const r of nonMatchingRules(n)) lines.push(`    ${ruleText(r)}`);
  lines.push(`    ${acceptText(topo)}`, '  }', '}', '');
  return lines.join('\n');
}

/** `nft -f` input: one set lookup over n elements. */
export function nftSetRuleset(topo: Pick<BenchTopology, 'trafficCidr'>, n: number): string {
  const lines = [`table ip ${TABLE} {`, '  set blocked {', '    type ipv4_addr . inet_proto . inet_service'];
  if (n > 0) {
    const elements: string[] = [];
    for (const r of nonMatchingRules(n)) elements.push(elementText(r));
    lines.push(`    elements = { ${elements.join(', ')} }`);
  }
  lines.push('  }', '  chain forward {', `    ${CHAIN_HEAD}`, '    ip saddr . meta l4proto . th dport @blocked drop', `    ${acceptText(topo)}`, '  }', '}', '');
  return lines.join('\n');
}

async function nftAvailable(): Promise<string | null> {
  try {
    const r = await run('nft', ['--version']);
    return r.code === 0 ? null : `nft --version failed: ${r.stderr.trim()}`;
  } catch {
    return 'nft not found (Debian: apt-get install nftables)';
  }
}

/** `nft -f FILE` in the router netns; the file lives only for the call. */
async function loadFile(topo: BenchTopology, what: string, text: string): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsbpf-bench-'));
  try {
    const file = path.join(dir, 'ruleset.nft');
    writeFileSync(file, text);
    const r = await topo.routerRunOk(what, 'nft', ['-f', file], { timeoutMs: 600_000 });
    return r.ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dropTable(topo: BenchTopology): Promise<void> {
  const r = await topo.routerRun('nft', ['delete', 'table', 'ip', TABLE], { timeoutMs: 120_000 });
  if (r.code !== 0 && !/No such file/.test(r.stderr)) throw new Error(`nft delete table failed: ${r.stderr.trim()}`);
}

export const nftablesLinear: Contender = {
  name: 'nft-linear',
  description: 'nftables: one forward chain of N rules, linear, loaded by nft -f',
  available: nftAvailable,
  async setup(topo, n) {
    return { loadMs: await loadFile(topo, `nft -f (${n} rules)`, nftLinearRuleset(topo, n)) };
  },
  async addOneRule(topo, index) {
    const args = ['insert', 'rule', 'ip', TABLE, 'forward', ...ruleText(nonMatchingRule(index)).split(' ')];
    return (await topo.routerRunOk('nft insert rule', 'nft', args)).ms;
  },
  teardown: dropTable,
};

export const nftablesSet: Contender = {
  name: 'nft-set',
  description: 'nftables best practice: one rule, a concatenated hash set of N elements',
  available: nftAvailable,
  async setup(topo, n) {
    return { loadMs: await loadFile(topo, `nft -f (set of ${n})`, nftSetRuleset(topo, n)) };
  },
  async addOneRule(topo, index) {
    const args = ['add', 'element', 'ip', TABLE, 'blocked', `{ ${elementText(nonMatchingRule(index))} }`];
    return (await topo.routerRunOk('nft add element', 'nft', args)).ms;
  },
  async addManyRules(topo, _n, from, count) {
    const elements: string[] = [];
    for (let i = from; i < from + count; i++) elements.push(elementText(nonMatchingRule(i)));
    return loadFile(topo, `nft -f (add ${count} elements)`, `add element ip ${TABLE} blocked { ${elements.join(', ')} }\n`);
  },
  teardown: dropTable,
};
