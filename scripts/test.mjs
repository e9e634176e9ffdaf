#!/usr/bin/env node
// `npm test`: type-check and build (tsc, strict), then run every uvu suite in
// dist/test. Prints a closing 'N passed, N failed' line.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filter = process.argv[2] ?? '';

const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], {
  stdio: 'inherit',
  cwd: root,
});
if (tsc.status !== 0) {
  console.log('type check failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const started = Date.now();
const args = [path.join(root, 'node_modules/uvu/bin.js'), 'dist/test', filter ? filter : '\\.test\\.js$', '--no-color'];
const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 * 1024 * 1024 });
process.stdout.write(r.stdout ?? '');
const total = Number(/Total:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0);
const failed = r.status === 0 ? total - passed - skipped : Math.max(1, total - passed - skipped);
console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s)`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(r.status === 0 && total > 0 ? 0 : 1);
