/**
 * The packet view over a Buffer that a function program gets when it runs in
 * Node (runInNode). It parses once with sdk/parse.ts (the twin of the C
 * parser) and implements every field of fields.ts: reads from the parsed
 * view, writes into the bytes with the same checksum fix-ups the generated C
 * does.
 */
import { TsbpfError } from '../errors.js';
import { parsePacket, type PacketView as Parsed } from '../parse.js';
import { csumReplace } from './csum.js';
import { FIELDS, L4_CSUM, PACKET_FIELDS, type FieldSpec, type HeaderName } from './fields.js';
import type { Ipv6Address, TcPacket } from './packet.js';

/** The parsed header objects of sdk/parse.ts, by our header names. */
function parsedHeader(v: Parsed, h: HeaderName): Record<string, unknown> | undefined {
  switch (h) {
    case 'vlan':
      return v.vlan[0] as unknown as Record<string, unknown> | undefined;
    default:
      return (v as unknown as Record<string, Record<string, unknown> | undefined>)[h];
  }
}

function splitIpv6(a: bigint): Ipv6Address {
  return { hi: a >> 64n, lo: a & 0xffffffffffffffffn };
}

export interface PacketViewOptions {
  ifindex?: number;
  mark?: number;
  hook: 'xdp' | 'tc-ingress' | 'tc-egress';
}

/** A packet a function program can read and write, in Node. */
export class PacketBufferView implements TcPacket {
  /** The frame; writes change it in place. */
  readonly data: Buffer;
  readonly parsed: Parsed;
  readonly ifindex: number;
  readonly hook: PacketViewOptions['hook'];
  #mark: number;
  readonly #headers = new Map<HeaderName, object | undefined>();

  constructor(data: Buffer, options: PacketViewOptions) {
    this.data = data;
    this.parsed = parsePacket(data);
    this.ifindex = options.ifindex ?? 1;
    this.#mark = options.mark ?? 0;
    this.hook = options.hook;
  }

  get len(): number {
    return this.data.length;
  }
  get ethertype(): number {
    return this.parsed.ethertype ?? 0;
  }
  get proto(): number {
    return this.parsed.proto ?? 0;
  }
  get vlanCount(): number {
    return this.parsed.vlan.length;
  }
  get mark(): number {
    if (this.hook === 'xdp') throw new TsbpfError('INVALID_ARGUMENT', 'pkt.mark exists at TC only');
    return this.#mark;
  }
  set mark(v: number) {
    if (this.hook === 'xdp') throw new TsbpfError('INVALID_ARGUMENT', 'pkt.mark exists at TC only');
    checkRange('pkt.mark', v, 0xffffffff);
    this.#mark = v;
  }

  get eth() { return this.#header('eth') as TcPacket['eth']; }
  get vlan() { return this.#header('vlan') as TcPacket['vlan']; }
  get ipv4() { return this.#header('ipv4') as TcPacket['ipv4']; }
  get ipv6() { return this.#header('ipv6') as TcPacket['ipv6']; }
  get fragment() { return this.#header('fragment') as TcPacket['fragment']; }
  get tcp() { return this.#header('tcp') as TcPacket['tcp']; }
  get udp() { return this.#header('udp') as TcPacket['udp']; }
  get sctp() { return this.#header('sctp') as TcPacket['sctp']; }
  get icmp() { return this.#header('icmp') as TcPacket['icmp']; }
  get icmpv6() { return this.#header('icmpv6') as TcPacket['icmpv6']; }

  #header(h: HeaderName): object | undefined {
    if (this.#headers.has(h)) return this.#headers.get(h);
    const raw = parsedHeader(this.parsed, h);
    let obj: object | undefined;
    if (raw) {
      obj = {};
      for (const f of FIELDS) {
        if (f.header !== h) continue;
        Object.defineProperty(obj, f.name, {
          enumerable: true,
          get: () => this.#read(f, raw),
          set: f.write ? (v: number | Ipv6Address) => this.#write(f, raw, v) : () => {
            throw new TsbpfError('INVALID_ARGUMENT', `pkt.${h}.${f.name} is read-only`);
          },
        });
      }
      Object.freeze(obj);
    }
    this.#headers.set(h, obj);
    return obj;
  }

  #read(f: FieldSpec, raw: Record<string, unknown>): unknown {
    if (f.flagBit !== undefined) return ((raw.flags as number) & f.flagBit) !== 0;
    const v = raw[f.parseName ?? f.name];
    if (f.type === 'ipv6') return splitIpv6(v as bigint);
    return v;
  }

  #write(f: FieldSpec, raw: Record<string, unknown>, value: number | Ipv6Address): void {
    const wr = f.write!;
    const base = wr.base === 'eth' ? 0 : wr.base === 'l3' ? this.parsed.l3Offset! : this.parsed.l4Offset!;
    const off = base + wr.region;
    const d = this.data;
    if (wr.bytes === 16) {
      // An IPv6 address: four 32-bit words, each its own incremental checksum update (as the C does).
      const a = checkIpv6(`pkt.${f.header}.${f.name}`, value);
      const words = [Number(a.hi >> 32n), Number(a.hi & 0xffffffffn), Number(a.lo >> 32n), Number(a.lo & 0xffffffffn)];
      words.forEach((nw, i) => {
        const old = d.readUInt32BE(off + 4 * i);
        d.writeUInt32BE(nw, off + 4 * i);
        for (const kind of wr.csum) this.#fixChecksum(kind, f.header, old, nw, 4);
      });
      raw[f.parseName ?? f.name] = (a.hi << 64n) | a.lo;
      return;
    }
    if (typeof value !== 'number') throw new TsbpfError('INVALID_ARGUMENT', `pkt.${f.header}.${f.name} takes a number`);
    checkRange(`pkt.${f.header}.${f.name}`, value, f.max);
    if (wr.bytes === 6) {
      // 48 bits: a MAC (no checksum covers it)
      d.writeUIntBE(value, off, 6);
    } else {
      const old = wr.bytes === 2 ? d.readUInt16BE(off) : d.readUInt32BE(off);
      const mask = ((2 ** wr.width - 1) * 2 ** wr.shift) >>> 0;
      const next = ((old & ~mask) | (value << wr.shift)) >>> 0;
      if (wr.bytes === 2) d.writeUInt16BE(next, off);
      else d.writeUInt32BE(next, off);
      for (const kind of wr.csum) this.#fixChecksum(kind, f.header, old, next, wr.bytes);
    }
    raw[f.parseName ?? f.name] = value;
  }

  #fixChecksum(kind: 'ip4' | 'l4' | 'l4pseudo' | 'l4pseudo6', header: HeaderName, old: number, next: number, bytes: 2 | 4): void {
    const v = this.parsed;
    if (kind === 'ip4') {
      const at = v.l3Offset! + 10;
      const c = csumReplace(v.ipv4!.checksum, old, next, bytes);
      this.data.writeUInt16BE(c, at);
      v.ipv4!.checksum = c;
      return;
    }
    // The L4 header whose checksum covers this field.
    const l4: HeaderName | undefined = kind === 'l4' ? header : v.tcp ? 'tcp' : v.udp ? 'udp' : kind === 'l4pseudo6' && v.icmpv6 ? 'icmpv6' : undefined;
    if (!l4) return;
    const spec = L4_CSUM[l4];
    const hdr = parsedHeader(v, l4) as { checksum: number } | undefined;
    if (!spec || !hdr) return;
    if (spec.mangledZero && hdr.checksum === 0) return; // UDP without a checksum stays so
    let c = csumReplace(hdr.checksum, old, next, bytes);
    if (spec.mangledZero && c === 0) c = 0xffff;
    this.data.writeUInt16BE(c, v.l4Offset! + spec.offset);
    hdr.checksum = c;
  }

  /** The fields as plain data (for test output). */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const f of PACKET_FIELDS) if (!f.tcOnly || this.hook !== 'xdp') out[f.name] = (this as unknown as Record<string, unknown>)[f.name];
    for (const h of ['eth', 'vlan', 'ipv4', 'ipv6', 'fragment', 'tcp', 'udp', 'sctp', 'icmp', 'icmpv6'] as const) {
      const o = this.#header(h);
      if (o) out[h] = { ...o };
    }
    return out;
  }
}

function checkIpv6(what: string, v: unknown): Ipv6Address {
  const a = v as Ipv6Address;
  const ok = (x: unknown) => typeof x === 'bigint' && x >= 0n && x <= 0xffffffffffffffffn;
  if (!a || typeof a !== 'object' || !ok(a.hi) || !ok(a.lo)) throw new TsbpfError('INVALID_ARGUMENT', `${what} takes an IPv6 address { hi, lo } (ip6('fd00::1'))`);
  return a;
}

function checkRange(what: string, v: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new TsbpfError('INVALID_ARGUMENT', `${what} takes an integer 0..${max}, got ${String(v)}`);
  }
}
