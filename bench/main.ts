#!/usr/bin/env node
/**
 * `npm run bench` (`node dist/bench/main.js`): tsbpf side by side with
 * iptables and nftables on a router's forward path. Progress goes to stderr,
 * the table to stdout, JSON and SVG charts to bench/results/. See
 * docs/benchmarks.md.
 */
import path from 'node:path';
import { contenderByName, contenders, type Contender } from './contenders/index.js';
import { parseArgs, UsageError, USAGE, writeResults, type Cli } from './options.js';
import { killAllChildren } from './proc.js';
import { formatTable, type BenchReport } from './report.js';
import { runBench } from './run.js';
import { destroyAllTopologies } from './topology.js';

let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  killAllChildren();
  destroyAllTopologies();
}

async function main(): Promise<number> {
  let cli: Cli;
  try {
    cli = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      if (e.message) process.stderr.write(`bench: ${e.message}\n\n`);
      process.stderr.write(USAGE + '\n');
      return e.message ? 2 : 0;
    }
    throw e;
  }
  if (cli.list) {
    for (const c of contenders) process.stdout.write(`${c.name.padEnd(18)} ${c.description}\n`);
    return 0;
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    process.stderr.write('bench: needs root (it creates network namespaces and loads rulesets)\n');
    return 2;
  }

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('exit', cleanup);

  const log = (line: string) => process.stderr.write(line + '\n');
  const selected: Contender[] = [];
  const skipped: BenchReport['skipped'] = [];
  for (const name of cli.config.contenders) {
    const c = contenderByName(name)!;
    const why = c.available ? await c.available() : null;
    if (why) {
      skipped.push({ name, reason: why });
      log(`bench: skipping ${name}: ${why}`);
    } else selected.push(c);
  }
  const { config } = cli;
  log(
    `bench: ${selected.map((c) => c.name).join(', ')} at N = ${config.ns.join(', ')}; ` +
      `${config.repeats} x ${config.seconds} s per traffic metric${config.quick ? ' (quick)' : ''}`,
  );
  config.contenders = selected.map((c) => c.name);
  const report = await runBench(config, selected, skipped, { log });
  const files = writeResults(report, cli.out);
  process.stdout.write(formatTable(report));
  log(`bench: done in ${report.elapsedSeconds} s; wrote ${files.map((f) => path.relative(process.cwd(), f) || f).join(', ')}`);
  return report.results.some((r) => r.errors.length) ? 1 : 0;
}

main().then(
  (code) => {
    cleanup();
    process.exitCode = code;
  },
  (e: unknown) => {
    cleanup();
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
