#!/usr/bin/env node
/**
 * tsbpf-agent: the node agent. Serves the plugin and the CLI on a unix
 * socket until SIGTERM/SIGINT. Prints one line 'ready <socket>' on stdout
 * once it serves (scripts and tests wait for it).
 */
import { parseArgs } from 'node:util';
import { isTsbpfError } from '../../sdk/errors.js';
import { DEFAULT_SOCKET } from '../protocol.js';
import { Agent } from './agent.js';
import type { Datapath } from './datapath.js';
import { close, listen } from './server.js';

export const AGENT_USAGE = `usage: tsbpf-agent --pod-cidr CIDR [options]

  --pod-cidr CIDR       the node's IPv4 pod CIDR (e.g. 10.244.1.0/24)
  --pod-cidr6 CIDR      the node's IPv6 pod CIDR, for dual stack (e.g. fd00:10:244:1::/64)
  --socket PATH         the agent socket (default ${DEFAULT_SOCKET})
  --state-dir DIR       IPAM, endpoint and identity state (default /var/lib/tsbpf)
  --node-netns NS       the node's network namespace (name or path; default: the agent's own)
  --mtu N               pod interface MTU (default 1500; a network config's "mtu" wins)
  --netlink MODE        batch (one 'ip -batch' per namespace, default) or exec (one 'ip' per step)
  --masquerade MODE     datapath (default with the bpf datapath: SNAT to the uplink's address
                        in BPF at the uplink), iptables (default otherwise: a MASQUERADE rule) or off
  --uplink IFNAME       the interface traffic leaves the node by (default: the default route's)
  --objects FILE        Kubernetes objects (YAML) to read and watch
  --datapath NAME       bpf (default: NetworkPolicy by identity and ClusterIP Services in BPF;
                        maps pinned under <pin-dir>/cni/<node netns>), none (plain routing)
                        or count (a counting program on every endpoint)
  --pin-dir DIR         bpffs directory for the datapath's pins (default /sys/fs/bpf/tsbpf)
  --cleanup             on exit, remove the node set-up (gateway device, masquerade rule)
                        and the datapath (programs detached, pinned maps removed)`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'pod-cidr': { type: 'string' },
      'pod-cidr6': { type: 'string' },
      socket: { type: 'string', default: DEFAULT_SOCKET },
      'state-dir': { type: 'string', default: '/var/lib/tsbpf' },
      'node-netns': { type: 'string' },
      mtu: { type: 'string' },
      netlink: { type: 'string', default: 'batch' },
      masquerade: { type: 'string' },
      uplink: { type: 'string' },
      objects: { type: 'string' },
      datapath: { type: 'string', default: 'bpf' },
      'pin-dir': { type: 'string' },
      cleanup: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  const bad = (msg: string) => {
    process.stderr.write(`tsbpf-agent: ${msg}\n\n${AGENT_USAGE}\n`);
    return 2;
  };
  if (!values['pod-cidr'] && !values['pod-cidr6']) return bad('--pod-cidr (or --pod-cidr6) is required');
  if (values.netlink !== 'batch' && values.netlink !== 'exec') return bad(`--netlink must be batch or exec, not '${values.netlink}'`);
  if (values.masquerade !== undefined && !['iptables', 'datapath', 'off'].includes(values.masquerade)) return bad(`--masquerade must be iptables, datapath or off`);
  const mtu = values.mtu === undefined ? undefined : Number(values.mtu);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)) return bad(`--mtu must be an integer in 576..65535`);
  let datapath: Datapath | undefined;
  if (values.datapath === 'count') {
    // Loaded only when asked for: it brings in codegen and the native runtime.
    const { CountingDatapath } = await import('./counting-datapath.js');
    datapath = new CountingDatapath();
  } else if (values.datapath === 'bpf') {
    // The default: NetworkPolicy by identity in BPF on every host veth, Services on every pod interface (cni/datapath).
    const { BpfDatapath } = await import('../datapath/bpf-datapath.js');
    datapath = new BpfDatapath();
  } else if (values.datapath !== 'none') return bad(`--datapath must be none, count or bpf`);

  const agent = new Agent({
    stateDir: values['state-dir']!,
    nodeNetns: values['node-netns'],
    podCidr4: values['pod-cidr'],
    podCidr6: values['pod-cidr6'],
    mtu,
    netlink: values.netlink,
    masquerade: values.masquerade as 'iptables' | 'datapath' | 'off' | undefined,
    uplink: values.uplink,
    objects: values.objects,
    pinDir: values['pin-dir'],
    datapath,
  });
  await agent.start();
  const server = await listen(agent, values.socket!);
  process.stdout.write(`ready ${values.socket}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await close(server);
  await agent.stop({ cleanupNode: values.cleanup });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`tsbpf-agent: ${isTsbpfError(e) ? e.describe() : ((e as Error).stack ?? String(e))}\n`);
    process.exitCode = 1;
  },
);
