import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../cli/bin.js', import.meta.url));
const setupScript = fileURLToPath(new URL('../../../scripts/setup.mjs', import.meta.url));

function tsbpf(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
}

test('tsbpf --help lists every command', () => {
  const r = tsbpf('--help');
  assert.is(r.status, 0);
  assert.match(r.stdout, /usage: tsbpf <command>/);
  assert.match(r.stdout, /setup/);
});

test('an unknown command is an error that shows the usage', () => {
  const r = tsbpf('frobnicate');
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
  assert.match(r.stderr, /usage: tsbpf/);
});

test('every command answers --help', () => {
  const list = tsbpf('--help').stdout.split('\n').filter((l) => /^  \S/.test(l)).map((l) => l.trim().split(/\s+/)[0] ?? '');
  assert.ok(list.length > 0);
  for (const name of list) {
    const r = tsbpf(name, '--help');
    assert.is(r.status, 0, `${name} --help`);
    assert.match(r.stdout, new RegExp(`usage: tsbpf ${name}`));
  }
});

test('setup --check finds every system package on a set-up machine', () => {
  const r = spawnSync(process.execPath, [setupScript, '--check'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /system packages present/);
});

test('setup explains what is missing when a tool cannot be found', () => {
  // With an empty PATH, clang (in /usr/bin) cannot be found; --check must not install it.
  const r = spawnSync(process.execPath, [setupScript, '--check'], { encoding: 'utf8', env: { PATH: '/nonexistent' } });
  assert.is(r.status, 1);
  assert.match(r.stderr, /missing system packages/);
  assert.match(r.stderr, /clang\s+compiles generated C to BPF/);
  assert.match(r.stderr, /apt-get install -y .*clang/);
});

test.run();
