/**
 * The agent's unix socket: one JSON request line per connection, one JSON
 * response line (cni/protocol.ts). The socket is created mode 0600 in a 0700
 * directory: only root talks to the agent.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { TsbpfError } from '../../sdk/errors.js';
import { CNI_ERR, isCniError } from '../errors.js';
import { MAX_MESSAGE, PROTOCOL_VERSION, type AgentRequest, type AgentResponse } from '../protocol.js';
import type { Agent } from './agent.js';

async function dispatch(agent: Agent, req: AgentRequest): Promise<unknown> {
  switch (req.op) {
    case 'add':
      return agent.add(req);
    case 'del':
      return agent.del(req);
    case 'check':
      return agent.check(req);
    case 'gc':
      return agent.gc(req);
    case 'status':
      return agent.status();
    case 'endpoints':
      return agent.endpoints();
    case 'services':
      return agent.services();
    case 'policy':
      return agent.policy(req.endpoint);
    case 'ipam':
      return agent.ipamView();
    default:
      throw new TsbpfError('INVALID_ARGUMENT', `unknown op '${(req as { op?: unknown }).op}'`);
  }
}

function respond(sock: Socket, res: AgentResponse): void {
  sock.end(`${JSON.stringify(res, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

function handle(agent: Agent, sock: Socket): void {
  let buf = '';
  let done = false;
  sock.setEncoding('utf8');
  sock.on('error', () => undefined);
  sock.on('data', (d: string) => {
    if (done) return;
    buf += d;
    if (buf.length > MAX_MESSAGE) {
      done = true;
      return respond(sock, { v: PROTOCOL_VERSION, ok: false, error: { code: CNI_ERR.IO_FAILURE, msg: 'request too large' } });
    }
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    done = true;
    let req: AgentRequest;
    try {
      req = JSON.parse(buf.slice(0, nl)) as AgentRequest;
    } catch {
      return respond(sock, { v: PROTOCOL_VERSION, ok: false, error: { code: CNI_ERR.DECODE_FAILURE, msg: 'request is not JSON' } });
    }
    dispatch(agent, req).then(
      (result) => respond(sock, { v: PROTOCOL_VERSION, ok: true, result }),
      (e: unknown) => {
        const code = isCniError(e) ? e.cniCode : CNI_ERR.AGENT_FAILURE;
        const error: { code: number; msg: string; details?: string } = { code, msg: (e as Error).message ?? String(e) };
        const details = isCniError(e) ? (e.cniDetails ?? e.hint) : (e as TsbpfError).hint;
        if (details) error.details = details;
        respond(sock, { v: PROTOCOL_VERSION, ok: false, error });
      },
    );
  });
}

/** Whether something answers on `path` (a live agent we must not replace). */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function listen(agent: Agent, socketPath: string): Promise<Server> {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  try {
    if (lstatSync(socketPath).isSocket()) {
      if (await alive(socketPath)) throw new TsbpfError('INVALID_ARGUMENT', `another agent is listening on ${socketPath}`);
      unlinkSync(socketPath);
    } else {
      throw new TsbpfError('INVALID_ARGUMENT', `${socketPath} exists and is not a socket`);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const server = createServer((sock) => handle(agent, sock));
  // The socket is born 0600: no window in which another user could connect.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  chmodSync(socketPath, 0o600);
  return server;
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
