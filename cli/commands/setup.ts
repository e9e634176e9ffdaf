import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from '../command.js';

export const setup: Command = {
  name: 'setup',
  summary: 'install missing system packages (apt, as root) and mount bpffs',
  usage: [
    'usage: tsbpf setup [--check]',
    '',
    'Installs clang, llvm, libbpf-dev, libelf-dev, bpftool, iproute2, ... with apt-get',
    'when run as root on Debian/Ubuntu, and mounts bpffs at /sys/fs/bpf.',
    '  --check   only report what is missing',
  ].join('\n'),
  async run(argv) {
    const script = fileURLToPath(new URL('../../../scripts/setup.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, argv.includes('--check') ? '--check' : '--apt'], { stdio: 'inherit' });
    return r.status ?? 1;
  },
};
