#!/usr/bin/env node
// Set-up for tsbpf: checks (and, in its own checkout as root, installs) the
// system packages tsbpf needs, and mounts bpffs.
//
//   node scripts/setup.mjs --install   npm's install step: installs with apt only in
//                                      tsbpf's own checkout; as a dependency it checks
//                                      and explains
//   node scripts/setup.mjs --apt       explicit `npx tsbpf setup`: install with apt
//   node scripts/setup.mjs --check     check only
import { $, fs, path } from 'zx';
import { fileURLToPath } from 'node:url';

$.verbose = false;
$.quiet = true;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const mode = process.argv.includes('--apt') ? 'apt' : process.argv.includes('--check') ? 'check' : 'install';
const asDependency = root.split(path.sep).includes('node_modules');
const mayInstall = mode === 'apt' || (mode === 'install' && !asDependency);

// Debian package -> how we recognise it is there on any distribution.
const PACKAGES = [
  { pkg: 'clang', why: 'compiles generated C to BPF', probe: () => which('clang') },
  { pkg: 'llvm', why: 'llvm-objdump/llvm-strip for BPF objects', probe: () => which('llvm-objdump') || which('llvm-strip') },
  { pkg: 'libbpf-dev', why: 'the native addon links libbpf', probe: () => exists('/usr/include/bpf/libbpf.h') },
  { pkg: 'libelf-dev', why: 'libbpf needs libelf', probe: () => exists('/usr/include/libelf.h') || exists('/usr/include/elfutils/libelf.h') },
  { pkg: 'zlib1g-dev', why: 'libbpf needs zlib', probe: () => exists('/usr/include/zlib.h') },
  { pkg: 'pkg-config', why: 'finds libbpf for node-gyp', probe: () => which('pkg-config') },
  { pkg: 'make', why: 'node-gyp builds with make', probe: () => which('make') },
  { pkg: 'g++', why: 'node-gyp compiles the addon', probe: () => which('g++') },
  { pkg: 'bpftool', why: 'inspecting loaded programs', probe: () => which('bpftool') },
  { pkg: 'iproute2', why: 'ip/tc for namespaces, veth and clsact', probe: () => which('ip') && which('tc') },
  { pkg: 'iputils-ping', why: 'tests send real ICMP', probe: () => which('ping') },
  { pkg: 'iperf3', why: 'throughput tests and benchmarks', probe: () => which('iperf3') },
  { pkg: 'iptables', why: 'benchmarks compare against iptables', probe: () => which('iptables-legacy') && which('iptables-nft') },
  { pkg: 'nftables', why: 'benchmarks compare against nftables', probe: () => which('nft') },
  { pkg: 'ethtool', why: 'tests turn checksum offloads off to prove checksums', probe: () => which('ethtool') },
];

function exists(p) {
  return fs.existsSync(p);
}
function which(cmd) {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => d && exists(path.join(d, cmd)));
}
function say(msg) {
  process.stderr.write(`tsbpf setup: ${msg}\n`);
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const isDebian = exists('/etc/debian_version') && exists('/usr/bin/apt-get');

let missing = PACKAGES.filter((p) => !p.probe());

if (missing.length > 0 && mayInstall && isRoot && isDebian) {
  const names = missing.map((p) => p.pkg);
  say(`installing with apt: ${names.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await $({ env, stdio: ['ignore', 'inherit', 'inherit'] })`apt-get update -qq`;
    await $({ env, stdio: ['ignore', 'inherit', 'inherit'] })`apt-get install -y -qq --no-install-recommends ${names}`;
  } catch (e) {
    say(`apt-get failed: ${e.stderr || e.message}`);
  }
  missing = PACKAGES.filter((p) => !p.probe());
}

if (missing.length > 0) {
  say('missing system packages:');
  for (const p of missing) say(`  ${p.pkg.padEnd(13)} ${p.why}`);
  const list = missing.map((p) => p.pkg).join(' ');
  if (!isDebian) say(`this is not Debian/Ubuntu: install the equivalents of: ${list}`);
  else if (!isRoot) say(`run as root: apt-get install -y ${list}   (or: sudo npx tsbpf setup)`);
  else say(`install them with: apt-get install -y ${list}   (or: npx tsbpf setup)`);
  process.exit(1);
}

// bpffs: pinning needs it; mounting needs root.
const mounts = fs.readFileSync('/proc/mounts', 'utf8');
if (!/ \/sys\/fs\/bpf bpf /.test(mounts)) {
  if (isRoot && (mayInstall || mode === 'check')) {
    try {
      await $`mkdir -p /sys/fs/bpf`;
      await $`mount -t bpf bpf /sys/fs/bpf`;
      say('mounted bpffs at /sys/fs/bpf');
    } catch (e) {
      say(`could not mount bpffs at /sys/fs/bpf: ${e.stderr || e.message}`);
      process.exit(1);
    }
  } else {
    say('bpffs is not mounted at /sys/fs/bpf; pinning will fail until: mount -t bpf bpf /sys/fs/bpf (as root)');
  }
}

say(`system packages present${asDependency ? ' (checked only: tsbpf is installed as a dependency)' : ''}`);
