/**
 * The benchmark's network: client netns -> router netns (forwarding on, the
 * filter under test sits on its forward path) -> server netns, from
 * test/net/topology.ts, plus an iperf3 server in the server netns. Every
 * topology made here is registered so that `destroyAllTopologies` (run on
 * failure, on Ctrl-C and at exit) can remove whatever is left.
 */
import { createRouter, type RouterTopology } from '../test/net/topology.js';
import { run, runOk, startDaemon, type Daemon, type RunOptions, type RunResult } from './proc.js';

/** The TCP and UDP port iperf3 listens on in the server netns. */
export const IPERF_PORT = 5201;

export interface BenchTopology extends RouterTopology {
  /**
   * A CIDR that holds both the client's and the server's address and nothing
   * that the non-matching rules use: the accept rule matches source and
   * destination in it, so both directions of the test traffic pass.
   */
  readonly trafficCidr: string;
  readonly iperfPort: number;
  /** Run a command in the router netns (where the filter lives). */
  routerRun(cmd: string, args: string[], options?: Omit<RunOptions, 'netns'>): Promise<RunResult>;
  /** Like routerRun, but throws with the command's stderr when it fails. */
  routerRunOk(what: string, cmd: string, args: string[], options?: Omit<RunOptions, 'netns'>): Promise<RunResult>;
  /** Register cleanup that must run before the namespaces go (a contender's loaded programs, say). */
  onDestroy(fn: () => void | Promise<void>): void;
  /** Stop iperf3, run the onDestroy hooks, delete the namespaces. Idempotent. */
  close(): Promise<void>;
}

const open = new Set<RouterTopology>();

/** Netns names start with `${prefix}C-`, `${prefix}R-`, `${prefix}S-`. */
export async function createBenchTopology(prefix: string): Promise<BenchTopology> {
  const base = createRouter({ prefix });
  open.add(base);
  const hooks: Array<() => void | Promise<void>> = [];
  let iperf: Daemon | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      for (const fn of hooks.reverse()) {
        try {
          await fn();
        } catch {
          /* the namespaces go anyway */
        }
      }
      await iperf?.stop();
    } finally {
      base.destroy();
      open.delete(base);
    }
  };
  try {
    const octets = base.client.ipv4.split('.');
    const topo: BenchTopology = {
      ...base,
      trafficCidr: `${octets[0]}.${octets[1]}.0.0/16`,
      iperfPort: IPERF_PORT,
      routerRun: (cmd, args, options = {}) => run(cmd, args, { ...options, netns: base.router.ns }),
      routerRunOk: (what, cmd, args, options = {}) => runOk(what, cmd, args, { ...options, netns: base.router.ns }),
      onDestroy: (fn) => void hooks.push(fn),
      close,
    };
    iperf = startDaemon('iperf3', ['-s', '-p', String(IPERF_PORT), '-B', base.server.ipv4, '--forceflush'], { netns: base.server.ns });
    await iperf.ready(/listening/i);
    return topo;
  } catch (e) {
    await close();
    throw e;
  }
}

/** Remove every namespace still open (synchronous, for signal and exit handlers). */
export function destroyAllTopologies(): number {
  let n = 0;
  for (const t of open) {
    t.destroy();
    n++;
  }
  open.clear();
  return n;
}
