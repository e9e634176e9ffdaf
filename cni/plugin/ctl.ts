/**
 * `tsbpf-cni <command>`: the command line over the agent, used when the
 * executable runs without CNI_COMMAND (so it is not a CNI invocation).
 */
import { parseArgs } from 'node:util';
import { formatTable } from '../../cli/table.js';
import { isCniError } from '../errors.js';
import { agentRequest, DEFAULT_SOCKET, type AgentRequest } from '../protocol.js';
import type { PolicyRule } from '../policy/types.js';

export const CTL_USAGE = `usage: tsbpf-cni <command> [--socket PATH] [--json]

commands:
  status              agent health, node set-up, datapath programs and map fill levels
  endpoints           pod endpoints on this node (interfaces, addresses, identities)
  services            services and their ready backends, as programmed
  policy [ENDPOINT]   what an endpoint allows (id, container id prefix or namespace/pod)
  ipam                pod CIDR pools and allocations

Run by a container runtime (CNI_COMMAND set), tsbpf-cni is the CNI plugin instead.`;

export interface CtlIo {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: CtlIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

function peerText(r: PolicyRule): string {
  if (r.peer.kind === 'all') return 'any';
  if (r.peer.kind === 'identity') return `identity ${r.peer.identity}`;
  return r.peer.except.length > 0 ? `${r.peer.cidr} except ${r.peer.except.join(',')}` : r.peer.cidr;
}

function portText(r: PolicyRule): string {
  if (r.protocol === 'ANY') return 'any';
  const ports = r.portFrom === 0 && r.portTo === 65535 ? 'all ports' : r.portFrom === r.portTo ? String(r.portFrom) : `${r.portFrom}-${r.portTo}`;
  return `${r.protocol} ${ports}`;
}

type Any = Record<string, unknown>;

/** Used of max as a percentage; max may be text (an IPv6 pool's capacity exceeds a double's exact range). */
export function fillText(used: number, max: number | string): string {
  const cap = BigInt(max);
  if (cap <= 0n) return '-';
  const permille = (BigInt(used) * 1000n) / cap;
  if (permille === 0n && used > 0) return '<0.1%';
  return `${permille / 10n}.${permille % 10n}%`;
}

function render(cmd: string, data: unknown): string {
  switch (cmd) {
    case 'status': {
      const s = data as Any;
      const node = s.node as Any;
      const dp = s.datapath as Any;
      const objects = s.objects as Any;
      const lines = [
        `agent:      ${s.ready ? 'ready' : `NOT READY (${String(s.reason)})`}, up ${String(s.uptimeS)} s`,
        `node:       netns ${String(node.netns)}, pod CIDRs ${(node.podCidrs as string[]).join(' ')}, gateways ${(node.gateways as string[]).join(' ')}, masquerade ${String(node.masquerade)}`,
        `endpoints:  ${String(s.endpoints)}    identities: ${String(s.identities)}`,
        `objects:    ${String(objects.source)} ${Object.entries(objects.counts as Any).map(([k, v]) => `${k}=${String(v)}`).join(' ')}`,
        `datapath:   ${String(dp.name)} (${dp.ready ? 'ready' : 'not ready'})`,
      ];
      const masq = dp.masquerade as { uplink?: string; address?: { v4?: string; v6?: string }; error?: string } | undefined;
      if (masq) lines.push(`masquerade: ${masq.error ? `NOT ACTIVE (${masq.error})` : `in BPF at ${String(masq.uplink)}, as ${[masq.address?.v4, masq.address?.v6].filter(Boolean).join(' ') || '(no address)'}`}`);
      const programs = dp.programs as Any[];
      if (programs.length > 0) lines.push('', formatTable(['program', 'hook', 'interface'], programs.map((p) => [String(p.name), String(p.hook), String(p.attachedTo)])));
      const maps = dp.maps as Any[];
      if (maps.length > 0) lines.push('', formatTable(['map', 'entries', 'max', 'fill'], maps.map((m) => [String(m.name), Number(m.entries), Number(m.maxEntries), fillText(Number(m.entries), Number(m.maxEntries))])));
      // IPAM: addresses in use per pool.
      lines.push(
        '',
        formatTable(
          ['pool', 'gateway', 'used', 'capacity', 'fill'],
          (s.ipam as Any[]).map((p) => [String(p.cidr), String(p.gateway), Number(p.used), String(p.capacity), fillText(Number(p.used), String(p.capacity))]),
        ),
      );
      for (const e of [...(objects.errors as string[]), ...(objects.policyProblems as string[])]) lines.push(`warning: ${e}`);
      return lines.join('\n');
    }
    case 'endpoints':
      return formatTable(
        ['endpoint', 'pod', 'container', 'ifname', 'addresses', 'identity'],
        (data as Any[]).map((e) => {
          const pod = e.pod as { namespace: string; name: string } | undefined;
          return [String(e.id), pod ? `${pod.namespace}/${pod.name}` : '-', String(e.containerId).slice(0, 12), String(e.ifname), (e.addresses as string[]).join(' '), e.identity === undefined ? '-' : String(e.identity)];
        }),
      );
    case 'services':
      return formatTable(
        ['service', 'frontend', 'affinity', 'backends'],
        (data as Any[]).map((s) => [
          `${String(s.namespace)}/${String(s.name)}`,
          `${String(s.vip).includes(':') ? `[${String(s.vip)}]` : String(s.vip)}:${String(s.port)}/${String(s.protocol)}`,
          Number(s.affinityTimeout) > 0 ? `ClientIP ${String(s.affinityTimeout)}s` : '-',
          (s.backends as Array<{ addr: string; port: number }>).map((b) => `${b.addr}:${b.port}`).join(' ') || '(none ready)',
        ]),
      );
    case 'policy':
      return (data as Array<{ endpoint: string; policy: Any }>)
        .map(({ endpoint, policy }) => {
          const pod = policy.pod as { namespace: string; name: string };
          const lines = [`${endpoint} (${pod.namespace}/${pod.name}, identity ${String(policy.identity)})`];
          for (const dir of ['ingress', 'egress'] as const) {
            const d = policy[dir] as { isolated: boolean; rules: PolicyRule[]; policies: string[] };
            if (!d.isolated) {
              lines.push(`  ${dir}: allow all (no policy selects it)`);
              continue;
            }
            lines.push(`  ${dir}: isolated by ${d.policies.join(', ')}; allowed:`);
            if (d.rules.length === 0) lines.push('    nothing');
            for (const r of d.rules) lines.push(`    ${peerText(r).padEnd(28)} ${portText(r)}`);
          }
          return lines.join('\n');
        })
        .join('\n\n');
    case 'ipam': {
      const v = data as { pools: Any[]; allocations: Any[] };
      return [
        formatTable(['pool', 'gateway', 'reserved', 'used', 'capacity'], v.pools.map((p) => [String(p.cidr), String(p.gateway), (p.reserved as string[]).join(' '), Number(p.used), String(p.capacity)])),
        '',
        formatTable(['address', 'network', 'container', 'ifname', 'since'], v.allocations.map((a) => [String(a.ip), String(a.network), String(a.containerId).slice(0, 12), String(a.ifname), String(a.at)])),
      ].join('\n');
    }
    default:
      return JSON.stringify(data, null, 2);
  }
}

export async function ctlMain(argv: string[], io: CtlIo = consoleIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { socket: { type: 'string', default: DEFAULT_SOCKET }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    });
  } catch (e) {
    io.err(`tsbpf-cni: ${(e as Error).message}\n\n${CTL_USAGE}`);
    return 2;
  }
  const [cmd, ...rest] = parsed.positionals;
  if (parsed.values.help || cmd === 'help') {
    io.out(CTL_USAGE);
    return 0;
  }
  if (!cmd) {
    io.err(CTL_USAGE);
    return 2;
  }
  let req: AgentRequest;
  switch (cmd) {
    case 'status':
    case 'endpoints':
    case 'services':
    case 'ipam':
      if (rest.length > 0) {
        io.err(`tsbpf-cni ${cmd}: unexpected argument '${rest[0]}'`);
        return 2;
      }
      req = { op: cmd };
      break;
    case 'policy':
      if (rest.length > 1) {
        io.err(`tsbpf-cni policy: at most one endpoint`);
        return 2;
      }
      req = rest[0] === undefined ? { op: 'policy' } : { op: 'policy', endpoint: rest[0] };
      break;
    default:
      io.err(`tsbpf-cni: unknown command '${cmd}'\n\n${CTL_USAGE}`);
      return 2;
  }
  try {
    const data = await agentRequest(parsed.values.socket!, req, { timeoutMs: 10_000 });
    io.out(parsed.values.json ? JSON.stringify(data, null, 2) : render(cmd, data));
    if (cmd === 'status' && !(data as { ready?: boolean }).ready) return 1;
    return 0;
  } catch (e) {
    io.err(`tsbpf-cni ${cmd}: ${isCniError(e) ? e.describe() : (e as Error).message}`);
    return 1;
  }
}
