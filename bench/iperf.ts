/**
 * Traffic through the router, with iperf3: the client runs in the client
 * netns against the server the topology started in the server netns.
 */
import { availableParallelism } from 'node:os';
import { run } from './proc.js';
import { UDP_PAYLOAD } from './packets.js';
import type { BenchTopology } from './topology.js';

export interface TcpSample {
  /** Receiver-side goodput, bits/s. */
  bitsPerSecond: number;
  retransmits: number;
  /** CPU the client got (iperf3's host_total): well under 100 means something else ran on its CPU. */
  senderCpuPercent: number;
}

export interface UdpSample {
  /**
   * Datagrams the router forwarded, per second: counted as they arrive on the
   * server's interface, so the receiving application's own speed (iperf3
   * drops many datagrams at its socket) does not enter into it.
   */
  packetsPerSecond: number;
  /** Datagrams the client sent, per second. */
  sentPerSecond: number;
  /** Datagrams iperf3's receiver got, per second. */
  deliveredPerSecond: number;
  /** iperf3's loss (mostly at the receiving socket). */
  lostPercent: number;
  /** As in TcpSample. */
  senderCpuPercent: number;
}

/** rx packets of the server's interface (its netns's counter). */
async function serverRxPackets(topo: BenchTopology): Promise<number> {
  const r = await run('ip', ['-n', topo.server.ns, '-j', '-s', 'link', 'show', topo.server.ifname], { timeoutMs: 10_000 });
  const link = (JSON.parse(r.stdout) as Array<{ stats64?: { rx?: { packets?: number } } }>)[0];
  const packets = link?.stats64?.rx?.packets;
  if (typeof packets !== 'number') throw new Error(`no rx counter for ${topo.server.ifname} in ${topo.server.ns}`);
  return packets;
}

async function iperfClient(topo: BenchTopology, seconds: number, extra: string[]): Promise<Record<string, any>> {
  // Client on CPU 0, server on the last CPU: fewer scheduling accidents between runs.
  const cpus = availableParallelism();
  const affinity = cpus > 1 ? ['-A', `0,${cpus - 1}`] : [];
  const args = ['-c', topo.server.ipv4, '-p', String(topo.iperfPort), '-t', String(seconds), '-J', '--connect-timeout', '3000', ...affinity, ...extra];
  for (let attempt = 1; ; attempt++) {
    const r = await run('iperf3', args, { netns: topo.client.ns, timeoutMs: seconds * 1000 + 15_000 });
    let json: Record<string, any> | undefined;
    try {
      json = JSON.parse(r.stdout) as Record<string, any>;
    } catch {
      /* no JSON: reported below */
    }
    // Behind a slow filter the server may still be winding up the previous
    // test (its listener is briefly closed after a UDP test): try again.
    if (json?.error && /refused|busy/i.test(String(json.error)) && attempt < 6) {
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      continue;
    }
    if (json?.error) throw new Error(`iperf3: ${json.error}`);
    if (r.code !== 0 || !json) throw new Error(`iperf3 failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-300)}`);
    return json;
  }
}

/** One TCP stream, client -> server, for `seconds`. */
export async function measureTcp(topo: BenchTopology, seconds: number): Promise<TcpSample> {
  const j = await iperfClient(topo, seconds, []);
  const received = j.end?.sum_received;
  if (typeof received?.bits_per_second !== 'number') throw new Error('iperf3 TCP: no end.sum_received in its JSON');
  return {
    bitsPerSecond: received.bits_per_second,
    retransmits: Number(j.end?.sum_sent?.retransmits ?? 0),
    senderCpuPercent: Number(j.end?.cpu_utilization_percent?.host_total ?? NaN),
  };
}

/**
 * Small UDP datagrams (18-byte payload, 60-byte frames) as fast as the
 * client can send them (-b 0), for `seconds`. The forwarding work (and so
 * the filter) runs in the sender's softirq context on the sender's CPU, so a
 * costlier filter shows as fewer packets sent and forwarded per second.
 */
export async function measureUdp(topo: BenchTopology, seconds: number): Promise<UdpSample> {
  const before = await serverRxPackets(topo);
  const j = await iperfClient(topo, seconds, ['-u', '-l', String(UDP_PAYLOAD), '-b', '0']);
  const after = await serverRxPackets(topo);
  const sum = j.end?.sum;
  if (typeof sum?.packets !== 'number' || typeof sum?.seconds !== 'number' || sum.seconds <= 0) throw new Error('iperf3 UDP: no end.sum in its JSON');
  // The client's end.sum carries the server's loss count: delivered = sent - lost.
  // The interface counter also saw the few control-connection packets: noise.
  const lost = Number(sum.lost_packets ?? 0);
  return {
    packetsPerSecond: Math.min(after - before, sum.packets) / sum.seconds,
    sentPerSecond: sum.packets / sum.seconds,
    deliveredPerSecond: Math.max(0, sum.packets - lost) / sum.seconds,
    lostPercent: Number(sum.lost_percent ?? 0),
    senderCpuPercent: Number(j.end?.cpu_utilization_percent?.host_total ?? NaN),
  };
}
