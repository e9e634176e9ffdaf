/** The `tsbpf` command line. */
import { consoleIo, type Command } from './command.js';
import { isTsbpfError } from '../sdk/errors.js';
import { commands } from './commands/index.js';

function help(list: Command[]): string {
  const width = Math.max(...list.map((c) => c.name.length));
  return [
    'usage: tsbpf <command> [options]',
    '',
    'commands:',
    ...list.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "run 'tsbpf <command> --help' for a command's options",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const io = consoleIo();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(help(commands));
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    const { createRequire } = await import('node:module');
    io.out((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`tsbpf: unknown command '${name}'\n\n${help(commands)}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(rest, io);
  } catch (e) {
    if (isTsbpfError(e)) {
      io.err(`tsbpf ${name}: ${e.describe()}`);
      return 1;
    }
    if (e instanceof TypeError && (e as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      io.err(`tsbpf ${name}: ${e.message}\n\n${cmd.usage}`);
      return 2;
    }
    io.err(`tsbpf ${name}: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}
