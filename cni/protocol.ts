/**
 * The plugin <-> agent protocol: one JSON request per connection on the
 * agent's unix socket (mode 0600), one JSON response, each a single line.
 * Errors carry CNI codes so the plugin only has to print them. The plugin
 * imports this module: it must stay free of heavy dependencies.
 */
import { connect } from 'node:net';
import { CNI_ERR, CniError } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const DEFAULT_SOCKET = '/run/tsbpf/agent.sock';
/** Largest request or response accepted (a GC list of thousands of attachments fits). */
export const MAX_MESSAGE = 16 * 1024 * 1024;

/** One container attachment: the CNI primary key is (network, containerId, ifname). */
export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

export interface AddRequest extends AttachmentKey {
  netns: string;
  /** From CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME) when the runtime is Kubernetes. */
  podNamespace?: string;
  podName?: string;
  /** The network config's `mtu`; the agent's default otherwise. */
  mtu?: number;
}

export interface DelRequest extends AttachmentKey {
  netns?: string;
}

export interface CheckRequest extends AttachmentKey {
  netns: string;
  /** The addresses the runtime's prevResult lists for this interface. */
  expectAddresses: string[];
}

export interface GcRequest {
  network: string;
  /** cni.dev/valid-attachments: everything else of this network is released. */
  valid: Array<{ containerId: string; ifname: string }>;
}

export type AgentRequest =
  | ({ op: 'add' } & AddRequest)
  | ({ op: 'del' } & DelRequest)
  | ({ op: 'check' } & CheckRequest)
  | ({ op: 'gc' } & GcRequest)
  | { op: 'status' }
  | { op: 'endpoints' }
  | { op: 'services' }
  | { op: 'policy'; endpoint?: string }
  | { op: 'ipam' };

export type AgentOp = AgentRequest['op'];

/** The version-neutral result of ADD; the plugin renders it in the cniVersion asked. */
export interface AttachResult {
  interfaces: Array<{ name: string; mac: string; mtu?: number; sandbox?: string }>;
  ips: Array<{ address: string; gateway?: string; interface: number }>;
  routes: Array<{ dst: string; gw?: string }>;
}

export interface StatusResult {
  ready: boolean;
  /** Why not ready (pool exhausted, datapath down, ...). */
  reason?: string;
  [key: string]: unknown;
}

export type AgentResponse = { v: number; ok: true; result?: unknown } | { v: number; ok: false; error: { code: number; msg: string; details?: string } };

/**
 * Send one request and wait for its response. A missing or refusing socket is
 * CNI code 11 (try again later): the agent may still be starting.
 */
export function agentRequest(socketPath: string, req: AgentRequest, options: { timeoutMs?: number } = {}): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    let settled = false;
    const done = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(
      () => done(new CniError(CNI_ERR.TRY_AGAIN_LATER, `the tsbpf agent did not answer within ${timeoutMs} ms`, { cniDetails: `socket ${socketPath}` })),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ v: PROTOCOL_VERSION, ...req })}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_MESSAGE) return done(new CniError(CNI_ERR.IO_FAILURE, 'the agent response is too large'));
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let res: AgentResponse;
      try {
        res = JSON.parse(buf.slice(0, nl)) as AgentResponse;
      } catch (e) {
        return done(new CniError(CNI_ERR.IO_FAILURE, 'the agent sent a malformed response', { cause: e }));
      }
      if (res.ok) done(undefined, res.result);
      else done(new CniError(res.error.code, res.error.msg, res.error.details === undefined ? {} : { cniDetails: res.error.details }));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const transient = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EAGAIN';
      done(
        new CniError(transient ? CNI_ERR.TRY_AGAIN_LATER : CNI_ERR.IO_FAILURE, transient ? 'the tsbpf agent is not running' : `cannot talk to the tsbpf agent: ${e.message}`, {
          cause: e,
          cniDetails: `socket ${socketPath}: ${e.code ?? e.message}`,
          hint: 'start tsbpf-agent on this node (or check the "socket" field of the network config)',
        }),
      );
    });
    sock.on('end', () => done(new CniError(CNI_ERR.IO_FAILURE, 'the agent closed the connection without an answer', { cniDetails: `socket ${socketPath}` })));
  });
}
