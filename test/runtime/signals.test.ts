/**
 * Signals during a load: the verifier gives up with EAGAIN when a signal is
 * pending for the loading thread, and a profiler's SIGPROF (or a child's
 * SIGCHLD) arrives often enough to defeat libbpf's retries on a program that
 * takes a while to verify. The runtime blocks signals around the load, so
 * the same load succeeds under a profiler sampling every 50 µs.
 */
import { Session } from 'node:inspector/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from '../../codegen/compile.js';
import { filter, match, rule, type RuleLike } from '../../sdk/index.js';
import { setSourceCapture } from '../../sdk/source.js';
import { load } from '../../runtime/index.js';
import { requireKernel } from '../kernel.js';

if (requireKernel('runtime: loads under signals')) {
  test('a slow-to-verify program loads while a profiler signals the thread every 50 µs', async () => {
    const was = setSourceCapture(false);
    let fw;
    try {
      fw = filter('sigload', { hook: 'tc-ingress' }, ({ chain }) => {
        const rules: RuleLike[] = [];
        for (let i = 0; i < 300; i++) rules.push(rule(match.ip4.src(`172.16.${i >> 8}.${i & 255}`).and(match.tcp.dport(1000 + i))).drop());
        return chain('input', { policy: 'accept' }, rules);
      });
    } finally {
      setSourceCapture(was);
    }
    // Compiled before the profiler starts: only the kernel load is under signals.
    const compiled = compile(fw, { classify: 'never' });
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
    let verifyMs = 0;
    try {
      const started = process.hrtime.bigint();
      const h = load(compiled.object);
      verifyMs = Number(process.hrtime.bigint() - started) / 1e6;
      h.close();
    } finally {
      await session.post('Profiler.stop');
      session.disconnect();
    }
    // The test means something only if verification outlasts many sampling intervals.
    assert.ok(verifyMs > 5, `the load took ${verifyMs.toFixed(1)} ms: too fast to be interrupted`);
  });
}

test.run();
