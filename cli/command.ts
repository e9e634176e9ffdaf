/** The shape of a CLI subcommand: parsing lives in each command, printing in the CLI only. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[], io: Io): Promise<number>;
}

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Progress for steps that take more than a moment; returns a function that marks the step done. */
  step(label: string): (result?: string) => void;
}

export function consoleIo(): Io {
  return {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    step(label) {
      const started = Date.now();
      const tty = process.stderr.isTTY;
      process.stderr.write(tty ? `… ${label}` : `… ${label}\n`);
      return (result = 'done') => {
        const ms = Date.now() - started;
        const line = `✓ ${label}: ${result} (${ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`})`;
        process.stderr.write(tty ? `\r\x1b[K${line}\n` : `${line}\n`);
      };
    },
  };
}
