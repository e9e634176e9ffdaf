/**
 * The contenders of `npm run bench`, in the order they run at each N.
 *
 * A contender is one way of filtering the router's forward path. To add one
 * (tsbpf at tc-ingress or XDP, say), write an object that satisfies
 * `Contender` in its own file here and append it to `contenders` below; the
 * harness, the table, the JSON and the charts pick it up by its name.
 *
 * The life of a contender at one N, in a fresh topology (client netns ->
 * router netns -> server netns, no filter installed, an iperf3 server
 * listening in the server netns):
 *
 *   available()            once per run, before anything: null, or why it cannot run here
 *   setup(topo, N)         install N non-matching rules (bench/rules.ts:
 *                          nonMatchingRule(0..N-1)), then the rule that
 *                          accepts the test traffic (source and destination
 *                          in topo.trafficCidr); resolves when active. Timed
 *                          by the harness ("load time") unless it returns its
 *                          own loadMs.
 *   memoryBytes(topo)?     after setup: what the ruleset costs. Without it the
 *                          harness reports the /proc/meminfo delta across
 *                          setup (bench/memory.ts explains both).
 *   perPacketNs(topo, N)?  after setup: average ns per packet by test run
 *                          (BPF_PROG_TEST_RUN with repeat, on
 *                          bench/packets.ts: udpTestFrame(topo)); only BPF
 *                          contenders have it. null when not measurable.
 *   -- the harness measures TCP throughput and small-packet UDP rate --
 *   addOneRule(topo, i)    several times, i = N, N+1, ...: add
 *                          nonMatchingRule(i) ahead of the accept rule, the
 *                          way a user of this contender would change a live
 *                          ruleset. Timed by the harness unless it returns ms.
 *   teardown(topo)         remove everything setup and addOneRule made.
 *                          Must tolerate nothing being installed.
 *   -- without memoryBytes, setup and teardown then run again a few times
 *      (--memory-cycles) in the same topology, for the meminfo figure --
 *
 * Filters run only in topo.router.ns: use topo.routerRun / routerRunOk (which
 * is `ip netns exec`), or the netns option of the attach API. Never touch the
 * root namespace. Throwing from any step records an error for that N and the
 * run goes on with the next one.
 */
import type { MemoryReport } from '../memory.js';
import type { BenchTopology } from '../topology.js';
import { iptablesLegacy, iptablesNft } from './iptables.js';
import { nftablesLinear, nftablesSet } from './nftables.js';
import { noFilter } from './none.js';
import { tsbpfTc, tsbpfXdp } from './tsbpf.js';

export interface SetupResult {
  /** Load time in ms, when the contender times a narrower span than the whole setup call. */
  loadMs?: number;
  /** Anything else worth keeping in the JSON (compile time, plan chosen, ...). */
  details?: Record<string, string | number | boolean>;
}

export interface Contender {
  /** Unique, short, used on the command line (--contenders), in the table, the JSON and the charts. */
  readonly name: string;
  /** One line: what it is and how rules are applied. */
  readonly description: string;
  /** The reference run (no filter at all): its load, add and memory metrics are not measured. */
  readonly baseline?: boolean;
  available?(): Promise<string | null>;
  setup(topo: BenchTopology, n: number): Promise<SetupResult | void>;
  /** Returns ms when it times its own span, else the harness times the call. */
  addOneRule(topo: BenchTopology, index: number): Promise<number | void>;
  /**
   * Add `count` rules (non-matching rules from index `from`) at once into the live ruleset of n rules;
   * returns ms when it times its own span, else the harness times the call.
   */
  addManyRules?(topo: BenchTopology, n: number, from: number, count: number): Promise<number | void>;
  teardown(topo: BenchTopology): Promise<void>;
  memoryBytes?(topo: BenchTopology): Promise<MemoryReport | null>;
  perPacketNs?(topo: BenchTopology, n: number): Promise<number | null>;
}

export const contenders: Contender[] = [noFilter, iptablesLegacy, iptablesNft, nftablesLinear, nftablesSet, tsbpfTc, tsbpfXdp];

export function contenderByName(name: string, list: readonly Contender[] = contenders): Contender | undefined {
  return list.find((c) => c.name === name);
}
