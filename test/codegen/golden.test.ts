/**
 * The generated C for a small firewall, as a reviewer reads it: stored under
 * test/codegen/golden/ and compared byte for byte. After an intended change
 * to codegen, regenerate with `UPDATE_GOLDEN=1 npm test codegen/golden` and
 * review the diff.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from '../../codegen/compile.js';
import { smallDefinition } from './defs.js';

const goldenDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/codegen/golden');

function golden(name: string, actual: string): void {
  const file = path.join(goldenDir, name);
  if (process.env.UPDATE_GOLDEN) {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  assert.ok(existsSync(file), `golden file ${name} is missing: run with UPDATE_GOLDEN=1`);
  const want = readFileSync(file, 'utf8');
  if (want !== actual) {
    const a = actual.split('\n');
    const w = want.split('\n');
    const i = a.findIndex((l, k) => l !== w[k]);
    assert.fixture(actual, want, `${name} differs from line ${i + 1}; run with UPDATE_GOLDEN=1 if the change is intended`);
  }
}

test('small firewall, chains inlined where small (auto)', () => {
  const r = compile(smallDefinition(), { emitOnly: true });
  golden('small-auto.c', r.c);
  assert.ok(r.c.includes("/* rule 1 'ssh' at fw.ts:11:5: "), 'rules are named with their source position');
  assert.ok(r.c.includes('tsbpf_in_lpm4(&blocklist, p->ip4_src)'), 'the address set is an LPM trie lookup');
  assert.ok(r.c.includes('tsbpf_in_ports(&web, p->dport)'), 'the port set is a hash lookup');
});

test('small firewall, every chain its own program (none)', () => {
  const r = compile(smallDefinition(), { emitOnly: true, inline: 'none' });
  golden('small-none.c', r.c);
  assert.ok(r.c.includes('tsbpf_push(st, 1, 3)'), 'the jump pushes (input, rule 3) as its return point');
  assert.ok(r.c.includes('case 3: goto resume_3;'), 'input resumes after the jump');
});

test('the same definition gives the same C (and every hook its own program)', () => {
  const a = compile(smallDefinition(['xdp', 'tc-ingress', 'tc-egress']), { emitOnly: true }).c;
  const b = compile(smallDefinition(['xdp', 'tc-ingress', 'tc-egress']), { emitOnly: true }).c;
  assert.is(a, b);
  for (const fn of ['host_xdp', 'host_tc_ingress', 'host_tc_egress']) assert.ok(a.includes(`int ${fn}(`), fn);
});

test.run();
