#!/usr/bin/env node
// `npm run bench [-- --quick]`: the filter benchmark (bench/main.ts: tsbpf vs
// iptables and nftables as N rules grow), what conntrack costs a filter per
// packet (bench/conntrack-filter.ts), then the services benchmark
// (bench/services.ts: tsbpf vs kube-proxy-style iptables and nftables maps as
// services grow). `--no-services` runs the first two, `--services-only` the last.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const own = new Set(['--no-services', '--services-only']);
const rest = argv.filter((a) => !own.has(a));
let status = 0;
if (!argv.includes('--services-only')) {
  const r = spawnSync(process.execPath, [path.join(root, 'dist/bench/main.js'), ...rest], { stdio: 'inherit' });
  status = Math.max(status, r.status ?? 1);
}
// Only the options it shares with the filter benchmark (--quick, --out DIR).
const shared = (args) => args.flatMap((a, i) => (a === '--quick' ? [a] : a === '--out' && args[i + 1] ? [a, args[i + 1]] : []));
if (!argv.includes('--services-only') && !rest.includes('--help') && !rest.includes('-h') && !rest.includes('--list')) {
  const r = spawnSync(process.execPath, [path.join(root, 'dist/bench/conntrack-filter.js'), ...shared(rest)], { stdio: 'inherit' });
  status = Math.max(status, r.status ?? 1);
}
if (!argv.includes('--no-services') && !rest.includes('--help') && !rest.includes('--list')) {
  const r = spawnSync(process.execPath, [path.join(root, 'dist/bench/services.js'), ...(rest.includes('--quick') ? ['--quick'] : [])], { stdio: 'inherit' });
  status = Math.max(status, r.status ?? 1);
}
process.exit(status);
