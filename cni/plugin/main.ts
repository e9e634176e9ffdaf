#!/usr/bin/env node
/**
 * tsbpf-cni: the CNI plugin executable, and (called without CNI_COMMAND) the
 * command line over the agent. Kept small so it starts fast: the CLI module
 * is imported only when it is used, and nothing here reaches the compiler.
 */
import { agentRequest } from '../protocol.js';
import { runPlugin } from './cni.js';

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) return resolve('');
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => (data += d));
    process.stdin.on('end', () => resolve(data));
    process.stdin.on('error', reject);
  });
}

async function plugin(): Promise<number> {
  let stdin: string;
  try {
    stdin = await readStdin();
  } catch (e) {
    const msg = { cniVersion: '1.1.0', code: 5, msg: 'cannot read the network config from stdin', details: (e as Error).message };
    process.stdout.write(`${JSON.stringify(msg)}\n`);
    return 1;
  }
  const out = await runPlugin(process.env, stdin, (socket, req) => agentRequest(socket, req));
  if (out.stdout) process.stdout.write(out.stdout);
  return out.exitCode;
}

async function main(): Promise<number> {
  if (process.env.CNI_COMMAND !== undefined) return plugin();
  const { ctlMain } = await import('./ctl.js');
  return ctlMain(process.argv.slice(2));
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
