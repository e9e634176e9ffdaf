/**
 * Throwaway network topologies for tests, demos and benchmarks: uniquely named
 * network namespaces joined by veth pairs, removed again by `destroy()` (also
 * when a test fails: use `withTopology`). Addresses live only inside the
 * namespaces made here.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function ip(args: string[], netns?: string): string {
  const full = netns ? ['-n', netns, ...args] : args;
  return execFileSync('ip', full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Run a command inside a netns and return stdout (throws on non-zero exit). */
export function nsExec(netns: string, cmd: string, args: string[], timeoutMs = 30_000): string {
  return execFileSync('ip', ['netns', 'exec', netns, cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  });
}

/** Like nsExec but never throws: returns the exit status and output. */
export function nsTry(netns: string, cmd: string, args: string[], timeoutMs = 30_000): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = nsExec(netns, cmd, args, timeoutMs);
    return { status: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status?: number | null; stdout?: string; stderr?: string };
    return { status: err.status ?? 1, stdout: String(err.stdout ?? ''), stderr: String(err.stderr ?? '') };
  }
}

/** Start a long-running process inside a netns (a server); kill it with `proc.kill()`. */
export function nsSpawn(netns: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A short unique suffix; names must stay within IFNAMSIZ (15 chars). */
export function uniqueId(): string {
  return randomBytes(3).toString('hex');
}

export interface Host {
  /** netns name */
  ns: string;
  /** interface name inside the netns */
  ifname: string;
  /** IPv4 address without prefix */
  ipv4: string;
  ipv6: string;
  mac: string;
}

export interface PairTopology {
  id: string;
  a: Host;
  b: Host;
  /** Every netns made, in creation order. */
  namespaces: string[];
  destroy(): void;
}

/**
 * Two namespaces `tsA-<id>` and `tsB-<id>` joined by one veth pair, with
 * 10.<x>.<y>.1/24 and .2/24 and fd00:<x>:<y>::1/64 and ::2/64.
 */
export function createPair(options: { prefix?: string } = {}): PairTopology {
  const id = uniqueId();
  const prefix = options.prefix ?? 'ts';
  const nsA = `${prefix}A-${id}`;
  const nsB = `${prefix}B-${id}`;
  const x = parseInt(id.slice(0, 2), 16);
  const y = parseInt(id.slice(2, 4), 16);
  const { namespaces, destroy } = namespaceGroup();
  try {
    for (const ns of [nsA, nsB]) {
      ip(['netns', 'add', ns]);
      namespaces.push(ns);
      ip(['link', 'set', 'lo', 'up'], ns);
    }
    ip(['link', 'add', 'eth0', 'netns', nsA, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsB]);
    const a: Host = { ns: nsA, ifname: 'eth0', ipv4: `10.${x}.${y}.1`, ipv6: `fd00:${x}:${y}::1`, mac: '' };
    const b: Host = { ns: nsB, ifname: 'eth0', ipv4: `10.${x}.${y}.2`, ipv6: `fd00:${x}:${y}::2`, mac: '' };
    for (const h of [a, b]) {
      ip(['addr', 'add', `${h.ipv4}/24`, 'dev', h.ifname], h.ns);
      ip(['-6', 'addr', 'add', `${h.ipv6}/64`, 'dev', h.ifname, 'nodad'], h.ns);
      ip(['link', 'set', h.ifname, 'up'], h.ns);
      h.mac = linkMac(h.ns, h.ifname);
    }
    return { id, a, b, namespaces: [nsA, nsB], destroy };
  } catch (e) {
    destroy();
    throw e;
  }
}

export interface RouterTopology {
  id: string;
  client: Host;
  server: Host;
  /** The router's two interfaces: `toClient` faces the client, `toServer` the server. */
  router: { ns: string; toClient: Host; toServer: Host };
  namespaces: string[];
  destroy(): void;
}

/**
 * client <-> router <-> server, with forwarding on in the router: the shape of
 * a filter on the forwarding path (benchmarks, NAT tests).
 * client 10.<x>.1.2/24 via 10.<x>.1.1; server 10.<x>.2.2/24 via 10.<x>.2.1.
 */
export function createRouter(options: { prefix?: string } = {}): RouterTopology {
  const id = uniqueId();
  const prefix = options.prefix ?? 'ts';
  const x = parseInt(id.slice(0, 2), 16) % 250;
  const y = (parseInt(id.slice(2, 4), 16) % 200) + 1;
  const nsC = `${prefix}C-${id}`;
  const nsR = `${prefix}R-${id}`;
  const nsS = `${prefix}S-${id}`;
  const { namespaces, destroy } = namespaceGroup();
  try {
    for (const ns of [nsC, nsR, nsS]) {
      ip(['netns', 'add', ns]);
      namespaces.push(ns);
      ip(['link', 'set', 'lo', 'up'], ns);
    }
    ip(['link', 'add', 'eth0', 'netns', nsC, 'type', 'veth', 'peer', 'name', 'rc0', 'netns', nsR]);
    ip(['link', 'add', 'eth0', 'netns', nsS, 'type', 'veth', 'peer', 'name', 'rs0', 'netns', nsR]);
    const client: Host = { ns: nsC, ifname: 'eth0', ipv4: `10.${x}.${y}.2`, ipv6: `fd01:${x}:${y}::2`, mac: '' };
    const toClient: Host = { ns: nsR, ifname: 'rc0', ipv4: `10.${x}.${y}.1`, ipv6: `fd01:${x}:${y}::1`, mac: '' };
    const server: Host = { ns: nsS, ifname: 'eth0', ipv4: `10.${x}.${y + 1}.2`, ipv6: `fd02:${x}:${y}::2`, mac: '' };
    const toServer: Host = { ns: nsR, ifname: 'rs0', ipv4: `10.${x}.${y + 1}.1`, ipv6: `fd02:${x}:${y}::1`, mac: '' };
    for (const h of [client, toClient, server, toServer]) {
      ip(['addr', 'add', `${h.ipv4}/24`, 'dev', h.ifname], h.ns);
      ip(['-6', 'addr', 'add', `${h.ipv6}/64`, 'dev', h.ifname, 'nodad'], h.ns);
      ip(['link', 'set', h.ifname, 'up'], h.ns);
      h.mac = linkMac(h.ns, h.ifname);
    }
    ip(['route', 'add', 'default', 'via', toClient.ipv4], nsC);
    ip(['-6', 'route', 'add', 'default', 'via', toClient.ipv6], nsC);
    ip(['route', 'add', 'default', 'via', toServer.ipv4], nsS);
    ip(['-6', 'route', 'add', 'default', 'via', toServer.ipv6], nsS);
    nsExec(nsR, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    nsExec(nsR, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    return { id, client, server, router: { ns: nsR, toClient, toServer }, namespaces: [nsC, nsR, nsS], destroy };
  } catch (e) {
    destroy();
    throw e;
  }
}

/**
 * The namespaces one topology makes, in creation order; destroy() deletes
 * them newest first and tolerates ones already gone.
 */
export function namespaceGroup(): { namespaces: string[]; destroy(): void } {
  const namespaces: string[] = [];
  return {
    namespaces,
    destroy() {
      for (const ns of namespaces.reverse()) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
        } catch {
          /* already gone */
        }
      }
      namespaces.length = 0;
    },
  };
}

/** Run `fn` with a topology and always destroy it afterwards. */
export async function withTopology<T extends { destroy(): void }, R>(make: () => T, fn: (t: T) => Promise<R> | R): Promise<R> {
  const t = make();
  try {
    return await fn(t);
  } finally {
    t.destroy();
  }
}

export function linkMac(netns: string, ifname: string): string {
  const out = JSON.parse(ip(['-j', 'link', 'show', ifname], netns)) as Array<{ address: string }>;
  return out[0]?.address ?? '';
}

/** ping from a netns; returns how many replies came back. */
export function ping(netns: string, target: string, count = 3, options: { intervalS?: number; timeoutS?: number } = {}): number {
  const args = ['-c', String(count), '-i', String(options.intervalS ?? 0.05), '-W', String(options.timeoutS ?? 1), '-q', target];
  const r = nsTry(netns, 'ping', args, (count * (options.intervalS ?? 0.05) + (options.timeoutS ?? 1) + 5) * 1000);
  const m = /(\d+) (?:packets )?received/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/** All netns names that exist now (for leak checks in tests). */
export function listNetns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((s) => s !== '');
  } catch {
    return [];
  }
}
