/**
 * Gate for tests that need the real kernel (root, BPF, bpffs). Unprivileged
 * runs (a developer laptop) skip them with a clear line; in CI a skip is a
 * failure, since CI runs as root and must run every tier.
 */
import { existsSync } from 'node:fs';

export function kernelAvailable(): { ok: true } | { ok: false; why: string } {
  if (process.platform !== 'linux') return { ok: false, why: 'not Linux' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, why: 'not root (needs CAP_BPF and CAP_NET_ADMIN)' };
  if (!existsSync('/sys/fs/bpf')) return { ok: false, why: 'bpffs not mounted at /sys/fs/bpf' };
  return { ok: true };
}

let warned = false;

/**
 * Returns true when kernel tests may run. When they may not: in CI throws (a
 * skipped kernel tier is a failure there), elsewhere prints one line and
 * returns false so the suite registers no tests.
 */
export function requireKernel(suite: string): boolean {
  const k = kernelAvailable();
  if (k.ok) return true;
  if (process.env.CI) throw new Error(`kernel tests '${suite}' cannot run in CI: ${k.why}`);
  if (!warned) {
    // The test runner is the right place to say why a tier did not run.
    console.log(`# skipping kernel tests (${k.why}); run as root to include them`);
    warned = true;
  }
  console.log(`# skip: ${suite}`);
  return false;
}
