/**
 * The CNI execution protocol (spec 1.1), independent of how the work is done:
 * environment and stdin in, a request to the agent, stdout and an exit code
 * out. Every way an invocation can be wrong maps to the spec's error code.
 */
import { existsSync } from 'node:fs';
import { CNI_ERR, CniError, isCniError } from '../errors.js';
import { DEFAULT_SOCKET, type AgentRequest, type AttachResult } from '../protocol.js';
import { COMMAND_SINCE, compareVersions, isSupported, LATEST_VERSION, looksLikeVersion, renderResult, SUPPORTED_VERSIONS, type CniVersion, type Dns } from './version.js';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof COMMANDS)[number];

/** The plugin's own network-config fields (besides cniVersion, name, type). */
export interface PluginConfig {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** The agent's socket (default /run/tsbpf/agent.sock). */
  socket: string;
  mtu?: number;
  dns?: Dns;
  prevResult?: Record<string, unknown>;
  /** GC only: cni.dev/valid-attachments. */
  validAttachments?: Array<{ containerId: string; ifname: string }>;
  raw: Record<string, unknown>;
}

export interface Invocation {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: Record<string, string>;
  path: string[];
  config: PluginConfig;
}

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

export type Env = Record<string, string | undefined>;

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Whether an interface name is one Linux accepts (spec: < 16 chars, not . or .., no / : or whitespace). */
export function validIfname(name: string): boolean {
  return name.length > 0 && name.length < 16 && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}

/** CNI_ARGS: 'K=V;K=V'. */
export function parseCniArgs(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: '${part}' is not KEY=VALUE`, { cniDetails: `CNI_ARGS=${text}` });
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function requireEnv(env: Env, names: string[]): void {
  const missing = names.filter((n) => !env[n]);
  if (missing.length > 0) {
    throw new CniError(CNI_ERR.INVALID_ENV, `missing environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, {
      cniDetails: `CNI_COMMAND=${env.CNI_COMMAND ?? ''} needs ${names.join(', ')}`,
    });
  }
}

function configError(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_CONFIG, `invalid network config: ${msg}`);
}

function parseConfig(command: CniCommand, stdin: string): PluginConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(CNI_ERR.DECODE_FAILURE, 'failed to decode the network config on stdin: it is not JSON', { cause: e, cniDetails: (e as Error).message });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniError(CNI_ERR.DECODE_FAILURE, 'failed to decode the network config on stdin: not a JSON object');
  const c = raw as Record<string, unknown>;
  if (c.cniVersion === undefined) throw configError('cniVersion is missing');
  if (!isSupported(c.cniVersion)) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `incompatible CNI version ${JSON.stringify(c.cniVersion)}`, {
      cniDetails: `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
    });
  }
  const since = COMMAND_SINCE[command]!;
  if (compareVersions(c.cniVersion, since) < 0) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `${command} needs cniVersion ${since} or later, the config says ${c.cniVersion}`);
  }
  if (typeof c.name !== 'string' || !NETWORK_NAME.test(c.name)) throw configError(c.name === undefined ? 'name is missing' : `name ${JSON.stringify(c.name)} is not a valid network name`);
  if (typeof c.type !== 'string' || c.type === '') throw configError('type is missing');
  const config: PluginConfig = { cniVersion: c.cniVersion, name: c.name, type: c.type, socket: DEFAULT_SOCKET, raw: c };
  if (c.socket !== undefined) {
    if (typeof c.socket !== 'string' || !c.socket.startsWith('/')) throw configError(`socket must be an absolute path, got ${JSON.stringify(c.socket)}`);
    config.socket = c.socket;
  }
  if (c.mtu !== undefined) {
    if (typeof c.mtu !== 'number' || !Number.isInteger(c.mtu) || c.mtu < 576 || c.mtu > 65535) throw configError(`mtu must be an integer in 576..65535, got ${JSON.stringify(c.mtu)}`);
    config.mtu = c.mtu;
  }
  if (c.ipam !== undefined) {
    if (typeof c.ipam !== 'object' || c.ipam === null) throw configError('ipam must be an object');
    const t = (c.ipam as Record<string, unknown>).type;
    // Addresses come from the agent's pool; another IPAM plugin cannot be delegated to.
    if (t !== undefined && t !== 'tsbpf') {
      throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `unsupported field ipam.type=${JSON.stringify(t)}`, {
        cniDetails: 'tsbpf-cni allocates addresses itself from the node pod CIDR; remove "ipam" or set its type to "tsbpf"',
      });
    }
  }
  if (c.dns !== undefined) {
    if (typeof c.dns !== 'object' || c.dns === null || Array.isArray(c.dns)) throw configError('dns must be an object');
    config.dns = c.dns as Dns;
  }
  if (c.prevResult !== undefined) {
    if (typeof c.prevResult !== 'object' || c.prevResult === null || Array.isArray(c.prevResult)) throw configError('prevResult must be an object');
    config.prevResult = c.prevResult as Record<string, unknown>;
  }
  if (command === 'GC') {
    const v = c['cni.dev/valid-attachments'];
    if (!Array.isArray(v)) throw configError('GC needs cni.dev/valid-attachments (a list of {containerID, ifname})');
    config.validAttachments = v.map((a: unknown, i) => {
      const o = a as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
        throw configError(`cni.dev/valid-attachments[${i}] is not {containerID, ifname}`);
      }
      return { containerId: o.containerID, ifname: o.ifname };
    });
  }
  if (command === 'CHECK' && config.prevResult === undefined) throw configError('CHECK needs prevResult');
  return config;
}

/** Parse and check one invocation. Throws CniError with the spec's code. */
export function parseInvocation(env: Env, stdin: string): Invocation {
  const command = env.CNI_COMMAND;
  if (!command) throw new CniError(CNI_ERR.INVALID_ENV, 'missing environment variable CNI_COMMAND');
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_COMMAND=${command} is not one of ${COMMANDS.join(', ')}`);
  }
  const cmd = command as CniCommand;
  const needs: Record<CniCommand, string[]> = {
    ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
    VERSION: [],
    GC: [],
    STATUS: [],
  };
  requireEnv(env, needs[cmd]);
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  const netns = env.CNI_NETNS ?? '';
  if (needs[cmd].includes('CNI_CONTAINERID') && !CONTAINER_ID.test(containerId)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_CONTAINERID ${JSON.stringify(containerId)} is not a valid container id`, {
      cniDetails: 'an alphanumeric character, then alphanumerics, _ . or -',
    });
  }
  if (needs[cmd].includes('CNI_IFNAME') && !validIfname(ifname)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(ifname)} is not a valid interface name`, {
      cniDetails: 'fewer than 16 characters, not . or .., without / : or whitespace',
    });
  }
  if (netns !== '' && !netns.startsWith('/')) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${JSON.stringify(netns)} is not an absolute path`);
  const args = parseCniArgs(env.CNI_ARGS);
  const path = (env.CNI_PATH ?? '').split(':').filter((p) => p !== '');
  const config = parseConfig(cmd, stdin);
  return { command: cmd, containerId, netns, ifname, args, path, config };
}

/** The addresses prevResult lists for our interface (inside the sandbox, named CNI_IFNAME). */
export function prevAddresses(prev: Record<string, unknown> | undefined, ifname: string): string[] {
  if (!prev) return [];
  const ifaces = Array.isArray(prev.interfaces) ? (prev.interfaces as Array<Record<string, unknown>>) : [];
  const ips = Array.isArray(prev.ips) ? (prev.ips as Array<Record<string, unknown>>) : [];
  return ips
    .filter((ip) => {
      const i = typeof ip.interface === 'number' ? ifaces[ip.interface] : undefined;
      return i === undefined || (i.name === ifname && i.sandbox !== undefined && i.sandbox !== '');
    })
    .map((ip) => String(ip.address));
}

/** What the plugin asks the agent for one invocation. */
export function agentRequestFor(inv: Invocation): AgentRequest | undefined {
  const key = { network: inv.config.name, containerId: inv.containerId, ifname: inv.ifname };
  switch (inv.command) {
    case 'ADD': {
      const req: AgentRequest = { op: 'add', ...key, netns: inv.netns };
      if (inv.args.K8S_POD_NAMESPACE) req.podNamespace = inv.args.K8S_POD_NAMESPACE;
      if (inv.args.K8S_POD_NAME) req.podName = inv.args.K8S_POD_NAME;
      if (inv.config.mtu !== undefined) req.mtu = inv.config.mtu;
      return req;
    }
    case 'DEL':
      return inv.netns ? { op: 'del', ...key, netns: inv.netns } : { op: 'del', ...key };
    case 'CHECK':
      return { op: 'check', ...key, netns: inv.netns, expectAddresses: prevAddresses(inv.config.prevResult, inv.ifname) };
    case 'GC':
      return { op: 'gc', network: inv.config.name, valid: inv.config.validAttachments ?? [] };
    case 'STATUS':
      return { op: 'status' };
    case 'VERSION':
      return undefined;
  }
}

export type Requester = (socket: string, req: AgentRequest) => Promise<unknown>;

function versionOutput(stdin: string): PluginOutput {
  let asked: unknown;
  try {
    asked = stdin.trim() === '' ? undefined : (JSON.parse(stdin) as Record<string, unknown>).cniVersion;
  } catch {
    asked = undefined;
  }
  const cniVersion = looksLikeVersion(asked) ? asked : LATEST_VERSION;
  return { stdout: `${JSON.stringify({ cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] })}\n`, exitCode: 0 };
}

/** The version an error object is written in: the one asked for when there is one. */
function errorVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as Record<string, unknown>).cniVersion;
    if (looksLikeVersion(v)) return v;
  } catch {
    /* fall through */
  }
  return LATEST_VERSION;
}

export function errorOutput(e: unknown, cniVersion: string): PluginOutput {
  const err = isCniError(e) ? e : new CniError(CNI_ERR.AGENT_FAILURE, `internal error: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  return { stdout: `${JSON.stringify(err.toObject(cniVersion))}\n`, exitCode: 1 };
}

/** Run one invocation: parse, ask the agent, render. Never throws. */
export async function runPlugin(env: Env, stdin: string, request: Requester): Promise<PluginOutput> {
  if (env.CNI_COMMAND === 'VERSION') return versionOutput(stdin);
  let inv: Invocation;
  try {
    inv = parseInvocation(env, stdin);
  } catch (e) {
    return errorOutput(e, errorVersion(stdin));
  }
  const version = inv.config.cniVersion;
  try {
    if (inv.command === 'ADD' && !existsSync(inv.netns)) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${inv.netns} does not exist`);
    }
    if (inv.command === 'CHECK' && !existsSync(inv.netns)) {
      throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `the container's network namespace ${inv.netns} does not exist`);
    }
    const req = agentRequestFor(inv)!;
    let result: unknown;
    try {
      result = await request(inv.config.socket, req);
    } catch (e) {
      // STATUS speaks in its own codes: an unreachable agent means ADD cannot be served.
      if (inv.command === 'STATUS' && isCniError(e) && (e.cniCode === CNI_ERR.TRY_AGAIN_LATER || e.cniCode === CNI_ERR.IO_FAILURE)) {
        throw new CniError(CNI_ERR.NOT_AVAILABLE, `the tsbpf agent is not available: ${e.message}`, e.cniDetails === undefined ? {} : { cniDetails: e.cniDetails });
      }
      throw e;
    }
    if (inv.command === 'ADD') {
      const rendered = renderResult(version, result as AttachResult, inv.config.dns, inv.config.prevResult);
      return { stdout: `${JSON.stringify(rendered)}\n`, exitCode: 0 };
    }
    if (inv.command === 'STATUS') {
      const s = result as { ready?: boolean; reason?: string };
      if (!s.ready) throw new CniError(CNI_ERR.NOT_AVAILABLE, `the tsbpf agent cannot take new pods: ${s.reason ?? 'not ready'}`);
    }
    return { stdout: '', exitCode: 0 };
  } catch (e) {
    return errorOutput(e, version);
  }
}
