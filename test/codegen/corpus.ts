/**
 * Crafted frames for the parser and reject tests: every layer tsbpf parses,
 * with the edge cases of the parse rules (tags, options, extension headers,
 * fragments, wrong versions), plus helpers to derive truncated and mutated
 * variants deterministically.
 */
import { packet } from '../../sdk/packet.js';
import { rng } from './helpers.js';

const v4 = { src: '10.0.0.1', dst: '10.0.0.2' };
const v6 = { src: 'fd00::1', dst: 'fd00::2' };
const tcp = { sport: 40000, dport: 80, flags: 'S', seq: 1000 } as const;
const udp = { sport: 5353, dport: 53 };

export interface Sample {
  name: string;
  data: Buffer;
}

export function baseCorpus(): Sample[] {
  const s = (name: string, b: { build(): Buffer }): Sample => ({ name, data: b.build() });
  return [
    s('ipv4 tcp syn', packet().eth().ipv4(v4).tcp(tcp)),
    s('ipv4 tcp ack+payload', packet().eth().ipv4(v4).tcp({ ...tcp, flags: 'PA', ack: 777 }).payload(33)),
    s('ipv4 udp', packet().eth().ipv4(v4).udp(udp).payload('hello')),
    s('ipv4 sctp', packet().eth().ipv4(v4).sctp({ sport: 1, dport: 2, vtag: 0xdeadbeef })),
    s('ipv4 icmp echo', packet().eth().ipv4(v4).icmp({ type: 'echo-request', id: 1, seq: 2 })),
    s('ipv4 options udp', packet().eth().ipv4({ ...v4, options: new Uint8Array([7, 7, 4, 0, 0, 0, 0, 1, 1, 1]) }).udp(udp)),
    s('ipv4 first fragment', packet().eth().ipv4({ ...v4, mf: true, id: 99 }).udp(udp).payload(16)),
    s('ipv4 later fragment', packet().eth().ipv4({ ...v4, fragOffset: 10, id: 99 }).tcp(tcp)),
    s('ipv4 dscp ttl', packet().eth().ipv4({ ...v4, dscp: 46, ecn: 1, ttl: 3 }).tcp({ ...tcp, flags: 'FA' })),
    s('vlan ipv4 udp', packet().eth().vlan({ id: 100, pcp: 5 }).ipv4(v4).udp(udp)),
    s('qinq ipv6 tcp', packet().eth().vlan({ id: 7, tpid: 0x88a8 }).vlan({ id: 8 }).ipv6(v6).tcp(tcp)),
    s('three tags', packet().eth().vlan({ id: 1 }).vlan({ id: 2 }).vlan({ id: 3 }).ipv4(v4).udp(udp)),
    s('ipv6 tcp', packet().eth().ipv6({ ...v6, flowLabel: 0x12345, dscp: 10 }).tcp(tcp)),
    s('ipv6 udp', packet().eth().ipv6(v6).udp(udp).payload(10)),
    s('ipv6 icmpv6', packet().eth().ipv6(v6).icmpv6({ type: 'echo-request', id: 3, seq: 4 })),
    s('ipv6 ext chain tcp', packet().eth().ipv6({ ...v6, extensions: [{ type: 'hop-by-hop' }, { type: 'dest-opts', options: new Uint8Array(10) }, { type: 'routing' }] }).tcp(tcp)),
    s('ipv6 ah tcp', packet().eth().ipv6({ ...v6, extensions: [{ type: 'ah', spi: 5 }] }).tcp(tcp)),
    s('ipv6 fragment first', packet().eth().ipv6({ ...v6, extensions: [{ type: 'fragment', mf: true, id: 7 }] }).udp(udp)),
    s('ipv6 fragment later', packet().eth().ipv6({ ...v6, extensions: [{ type: 'fragment', offset: 5, id: 7 }] }).udp(udp)),
    s('ipv6 six ext', packet().eth().ipv6({ ...v6, extensions: Array.from({ length: 6 }, () => ({ type: 'dest-opts' as const })) }).udp(udp)),
    s('ipv6 seven ext', packet().eth().ipv6({ ...v6, extensions: Array.from({ length: 7 }, () => ({ type: 'dest-opts' as const })) }).udp(udp)),
    s('ipv6 sctp', packet().eth().ipv6(v6).sctp({ sport: 9, dport: 10 })),
    s('ipv6 no next header', packet().eth().ipv6({ ...v6, proto: 59 }).payload(8)),
    s('icmpv6 over ipv4', packet().eth().ipv4({ ...v4, proto: 58 }).payload(8)),
    s('icmp over ipv6', packet().eth().ipv6({ ...v6, proto: 1 }).payload(8)),
    s('arp-like', packet().eth({ type: 0x0806 }).payload(28)),
    s('ipv4 version 5', packet().eth().ipv4(v4).tcp(tcp).corrupt('ip-version', 5)),
    s('ipv4 ihl 4', packet().eth().ipv4(v4).tcp(tcp).corrupt('ipv4-ihl', 4)),
    s('ipv4 ihl 15 short', packet().eth().ipv4(v4).udp(udp).corrupt('ipv4-ihl', 15)),
    s('ipv6 version 4', packet().eth().ipv6(v6).tcp(tcp).corrupt('ip-version', 4)),
    s('tcp bad doff', packet().eth().ipv4(v4).tcp({ ...tcp, dataOffset: 2 })),
    s('ethernet padded', packet().eth().ipv4(v4).tcp(tcp).pad(80)),
    s('ip-in-ip', packet().eth().ipv4(v4).ipv4(v4).udp(udp)),
  ];
}

/** Every truncation of each frame from `min` bytes up to its full length. */
export function truncations(samples: Sample[], min = 14): Sample[] {
  const out: Sample[] = [];
  for (const s of samples) {
    for (let n = min; n < s.data.length; n++) out.push({ name: `${s.name} cut to ${n}`, data: s.data.subarray(0, n) });
  }
  return out;
}

/** `count` variants with 1-3 random bytes of the first 80 overwritten (seeded). */
export function mutants(samples: Sample[], count: number, seed: number): Sample[] {
  const r = rng(seed);
  const out: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const base = samples[Math.floor(r() * samples.length)]!;
    const data = Buffer.from(base.data);
    const n = 1 + Math.floor(r() * 3);
    const edits: string[] = [];
    for (let k = 0; k < n; k++) {
      const at = 12 + Math.floor(r() * Math.min(68, data.length - 12));
      // Bias towards values the parser branches on.
      const interesting = [0x00, 0x01, 0x06, 0x11, 0x2c, 0x3a, 0x3b, 0x3c, 0x45, 0x46, 0x4f, 0x60, 0x81, 0x86, 0x88, 0xa8, 0xdd, 0xff];
      const v = r() < 0.6 ? interesting[Math.floor(r() * interesting.length)]! : Math.floor(r() * 256);
      data[at] = v;
      edits.push(`[${at}]=0x${v.toString(16)}`);
    }
    out.push({ name: `${base.name} with ${edits.join(' ')}`, data });
  }
  return out;
}
