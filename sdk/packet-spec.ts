/**
 * The compact packet syntax of the CLI's `--packet SPEC`, e.g.
 *
 *   tcp 10.0.0.1:1234 -> 10.0.0.2:80 flags=S
 *   udp [fd00::1]:53 -> [fd00::2]:5353 len=600
 *   icmp 10.0.0.1 -> 10.0.0.2 type=echo-request vlan=10 ttl=1
 *   hex=0200000000020200000000010800... iface=eth0 mark=0x10
 *
 * Interface and mark are not bytes of the packet: they come back separately
 * as `context`. Errors are TsbpfError('INVALID_ARGUMENT') whose message
 * quotes the spec and underlines the bad token. PACKET_SPEC_SYNTAX is the
 * reference the CLI prints.
 */
import { TsbpfError } from './errors.js';
import { isIpv4Text, isIpv6Text } from './packet-addr.js';
import {
  PacketBuilder,
  icmpCodeNumber,
  icmpTypeNumber,
  tcpFlagsValue,
  type Corruption,
  type Ipv6Extension,
} from './packet.js';

export interface PacketSpecContext {
  /** Ingress interface by index (`iface=3` or `ifindex=3`). */
  ifindex?: number;
  /** Ingress interface by name (`iface=eth0`). */
  ifname?: string;
  /** skb mark (`mark=0x10`). */
  mark?: number;
}

export interface ParsedPacketSpec {
  data: Buffer;
  context: PacketSpecContext;
}

export const PACKET_SPEC_SYNTAX = `PROTO SRC -> DST [KEY=VALUE ...]   or   hex=BYTES [KEY=VALUE ...]
  PROTO     tcp | udp | sctp | icmp | icmp6 | ip | ip6 | eth
  SRC, DST  10.0.0.1[:port]  |  fd00::1  |  [fd00::1][:port]   (source port defaults to 40000)
  tcp       flags=S|SA|FA|PA|R|syn,ack  seq=N  ack=N  win=N
  icmp      type=echo-request|8  code=port-unreachable|3  id=N  seq=N
  ip        ttl=N (hlim= for IPv6)  dscp=N  ecn=N  tos=N  ipid=N  df  mf  frag=N (8-byte units)
            flowlabel=N  ext=hop-by-hop,routing,fragment,dest-opts,ah (IPv6)  proto=N
  l2        vlan=ID[,ID]  pcp=N  smac=MAC  dmac=MAC  ethertype=N
  size      len=N (whole frame length)  payload=N|"text"|0xHEX  truncate=N
  broken    corrupt=ipv4-checksum|l4-checksum|ip-version|ipv4-ihl|ip-length|udp-length|tcp-offset[:N]
  context   iface=NAME|INDEX  ifindex=N  mark=N          (not bytes: returned beside the packet)
  numbers   decimal or 0x hex`;

interface Token {
  text: string;
  start: number;
}

/** Throws a spec error underlining `token`; typed so control flow knows it never returns. */
type Fail = (message: string, token?: Token, hint?: string) => never;

type Proto = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmp6' | 'ip' | 'eth';

const PROTO_WORDS: Record<string, Proto> = {
  tcp: 'tcp',
  udp: 'udp',
  sctp: 'sctp',
  icmp: 'icmp',
  icmp6: 'icmp6',
  icmpv6: 'icmp6',
  ip: 'ip',
  ip4: 'ip',
  ipv4: 'ip',
  ip6: 'ip',
  ipv6: 'ip',
  eth: 'eth',
};

interface Endpoint {
  family: 4 | 6;
  addr: string;
  port: number | undefined;
  token: Token;
}

/** Which protocols a key applies to (undefined: all). */
const KEYS: Record<string, { protos?: Proto[]; bare?: boolean } | undefined> = {
  flags: { protos: ['tcp'] },
  seq: { protos: ['tcp', 'icmp', 'icmp6'] },
  ack: { protos: ['tcp'] },
  win: { protos: ['tcp'] },
  window: { protos: ['tcp'] },
  type: { protos: ['icmp', 'icmp6'] },
  code: { protos: ['icmp', 'icmp6'] },
  id: { protos: ['icmp', 'icmp6'] },
  ttl: {},
  hlim: {},
  hoplimit: {},
  dscp: {},
  ecn: {},
  tos: {},
  tclass: {},
  ipid: {},
  df: { bare: true },
  mf: { bare: true },
  frag: {},
  flowlabel: {},
  ext: {},
  proto: { protos: ['ip'] },
  vlan: {},
  pcp: {},
  smac: {},
  dmac: {},
  ethertype: {},
  len: {},
  payload: {},
  truncate: {},
  corrupt: {},
  iface: {},
  ifname: {},
  ifindex: {},
  mark: {},
  hex: {},
};

const L3_KEYS = new Set(['ttl', 'hlim', 'hoplimit', 'dscp', 'ecn', 'tos', 'tclass', 'ipid', 'df', 'mf', 'frag', 'flowlabel', 'ext', 'proto']);
const CONTEXT_KEYS = new Set(['iface', 'ifname', 'ifindex', 'mark']);

const EXT_NAMES = ['hop-by-hop', 'routing', 'fragment', 'dest-opts', 'ah'] as const;

/** Parses a `--packet` spec into frame bytes and the context (interface, mark) to run it with. */
export function parsePacketSpec(spec: string): ParsedPacketSpec {
  const tokens = tokenize(spec);
  const fail: Fail = (message, token, hint) => {
    throw specError(spec, message, token, hint);
  };
  if (tokens.length === 0) fail('empty packet spec', undefined, 'e.g. "tcp 10.0.0.1:1234 -> 10.0.0.2:80 flags=S"');

  let i = 0;
  let proto: Proto | undefined;
  let protoToken: Token | undefined;
  const first = tokens[0]!;
  if (PROTO_WORDS[first.text.toLowerCase()]) {
    proto = PROTO_WORDS[first.text.toLowerCase()];
    protoToken = first;
    i = 1;
  }
  const v6Word = protoToken !== undefined && /^(ip6|ipv6)$/i.test(protoToken.text);

  let src: Endpoint | undefined;
  let dst: Endpoint | undefined;
  if (i < tokens.length && !tokens[i]!.text.includes('=') && !KEYS[tokens[i]!.text]?.bare) {
    const a = tokens[i]!;
    if (a.text === '->') fail('missing source address before ->', a);
    const arrow = tokens[i + 1];
    if (!arrow || arrow.text !== '->') {
      fail(`expected '->' after the source '${a.text}'`, arrow ?? a, 'write SRC -> DST, e.g. "10.0.0.1:1234 -> 10.0.0.2:80"');
    }
    const b = tokens[i + 2];
    if (!b || b.text.includes('=')) fail('missing destination after ->', b ?? arrow);
    src = parseEndpoint(a, fail);
    dst = parseEndpoint(b, fail);
    if (src.family !== dst.family) fail(`destination is IPv${dst.family} but source is IPv${src.family}`, b);
    i += 3;
    if (!proto) proto = 'ip';
  }

  // key=value pairs and bare words
  const kv = new Map<string, { value: string; token: Token }>();
  for (; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.text === '->') fail("unexpected '->'", t, 'endpoints come right after the protocol: "tcp SRC -> DST ..."');
    const eq = t.text.indexOf('=');
    const key = (eq < 0 ? t.text : t.text.slice(0, eq)).toLowerCase();
    const info = KEYS[key];
    if (!info) {
      if (eq < 0 && PROTO_WORDS[key]) fail(`the protocol '${t.text}' must come first`, t);
      if (eq < 0 && (isIpv4Text(t.text) || t.text.includes(':'))) fail(`unexpected address '${t.text}'`, t, 'endpoints are written "SRC -> DST" after the protocol');
      fail(`unknown key '${key}'`, t, `keys: ${Object.keys(KEYS).join(', ')}`);
    }
    if (eq < 0 && !info.bare) fail(`'${key}' needs a value: ${key}=...`, t);
    if (kv.has(key)) fail(`'${key}' given twice`, t);
    if (info.protos && proto && !info.protos.includes(proto)) {
      fail(`'${key}' applies to ${info.protos.join('/')} packets, not ${proto}`, t);
    }
    kv.set(key, { value: eq < 0 ? '1' : t.text.slice(eq + 1), token: t });
  }

  const context: PacketSpecContext = {};
  const num = (key: string, max: number): number | undefined => {
    const e = kv.get(key);
    if (!e) return undefined;
    return parseNumber(e.value, max, key, e.token, fail);
  };
  const ifaceEntry = kv.get('iface') ?? kv.get('ifname');
  if (ifaceEntry) {
    const v = ifaceEntry.value;
    if (/^\d+$/.test(v)) context.ifindex = parseNumber(v, 0xffffffff, 'iface', ifaceEntry.token, fail);
    else if (/^[^\s/]{1,15}$/.test(v)) context.ifname = v;
    else fail(`invalid interface name '${v}'`, ifaceEntry.token, 'an interface name has 1 to 15 characters and no "/"');
  }
  const ifindex = num('ifindex', 0xffffffff);
  if (ifindex !== undefined) {
    if (context.ifindex !== undefined || context.ifname !== undefined) fail('give the interface once (iface= or ifindex=)', kv.get('ifindex')!.token);
    context.ifindex = ifindex;
  }
  const mark = num('mark', 0xffffffff);
  if (mark !== undefined) context.mark = mark;

  const hex = kv.get('hex');
  if (hex) {
    if (protoToken || src) fail('hex= gives the whole frame; it cannot be combined with a protocol or endpoints', protoToken ?? src!.token);
    for (const [key, e] of kv) {
      if (key !== 'hex' && key !== 'truncate' && !CONTEXT_KEYS.has(key)) fail(`'${key}' cannot be combined with hex= (hex= gives the whole frame)`, e.token);
    }
    const clean = hex.value.replace(/^0x/i, '').replace(/[:.\-_]/g, '');
    if (clean.length === 0 || clean.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(clean)) {
      fail('hex= needs an even number of hex digits', hex.token, 'e.g. hex=02000000000202000000000108004500...');
    }
    let data = Buffer.from(clean, 'hex');
    const t = num('truncate', 0xffff);
    if (t !== undefined) data = data.subarray(0, t);
    return { data: Buffer.from(data), context };
  }

  if (!proto) {
    fail('a packet spec needs a protocol and endpoints, or hex=', tokens[0], 'e.g. "tcp 10.0.0.1:1234 -> 10.0.0.2:80 flags=S" or "hex=..."');
  }

  // Ethernet and VLAN
  let b = new PacketBuilder();
  const macs: { src?: string; dst?: string; type?: number } = {};
  for (const k of ['smac', 'dmac'] as const) {
    const e = kv.get(k);
    if (e && !/^([0-9a-fA-F]{1,2}[:-]){5}[0-9a-fA-F]{1,2}$/.test(e.value)) fail(`invalid MAC address '${e.value}'`, e.token, "e.g. smac=02:00:00:00:00:01");
    if (e) macs[k === 'smac' ? 'src' : 'dst'] = e.value;
  }
  const ethertype = num('ethertype', 0xffff);
  if (ethertype !== undefined) macs.type = ethertype;
  b = b.eth(macs);
  const vlan = kv.get('vlan');
  const pcp = num('pcp', 7);
  if (pcp !== undefined && !vlan) fail('pcp= needs vlan=', kv.get('pcp')!.token);
  if (vlan) {
    const ids = vlan.value.split(',');
    if (ids.length > 2) fail('at most two VLAN tags (outer,inner)', vlan.token);
    for (const [k, id] of ids.entries()) {
      b = b.vlan({ id: parseNumber(id, 0xfff, 'vlan', vlan.token, fail), pcp: pcp ?? 0, tpid: ids.length === 2 && k === 0 ? 0x88a8 : 0x8100 });
    }
  }

  if (proto === 'eth') {
    if (src) fail('eth packets have no IP endpoints', src.token, 'use ip/tcp/udp/... for IP packets');
    for (const [key, e] of kv) if (L3_KEYS.has(key)) fail(`'${key}' needs an IP packet, not eth`, e.token);
    return finish(b, kv, context, spec, fail);
  }

  if (!src || !dst) {
    return fail(`${proto} needs endpoints: ${proto} SRC -> DST`, protoToken, proto === 'tcp' || proto === 'udp' || proto === 'sctp' ? `e.g. "${proto} 10.0.0.1:40000 -> 10.0.0.2:80"` : `e.g. "${proto} 10.0.0.1 -> 10.0.0.2"`);
  }
  const v6 = src.family === 6;
  if (v6Word && !v6) fail(`'${protoToken!.text}' needs IPv6 addresses`, src.token);
  if (/^(ip4|ipv4)$/i.test(protoToken?.text ?? '') && v6) fail(`'${protoToken!.text}' needs IPv4 addresses`, src.token);
  if (proto === 'icmp' && v6) fail('icmp is IPv4; use icmp6 for IPv6 addresses', protoToken);
  if (proto === 'icmp6' && !v6) fail('icmp6 is IPv6; use icmp for IPv4 addresses', protoToken);
  const hasPorts = proto === 'tcp' || proto === 'udp' || proto === 'sctp';
  for (const ep of [src, dst]) {
    if (!hasPorts && ep.port !== undefined) fail(`${proto} has no ports`, ep.token);
  }
  if (hasPorts && dst.port === undefined) {
    fail(`${proto} needs a destination port`, dst.token, v6 ? `e.g. [${dst.addr}]:80` : `e.g. ${dst.addr}:80`);
  }

  // IP layer
  const ttl = num('ttl', 0xff) ?? num('hlim', 0xff) ?? num('hoplimit', 0xff);
  const dscp = num('dscp', 63);
  const ecn = num('ecn', 3);
  const tos = num('tos', 0xff) ?? num('tclass', 0xff);
  if (tos !== undefined && (dscp !== undefined || ecn !== undefined)) fail('give tos= or dscp=/ecn=, not both', (kv.get('tos') ?? kv.get('tclass'))!.token);
  const ipProto = num('proto', 0xff);
  if (v6) {
    for (const k of ['ipid', 'df', 'frag']) {
      const e = kv.get(k);
      if (e) fail(`'${k}' is an IPv4 field; IPv6 fragments use ext=fragment`, e.token);
    }
    const extensions: Ipv6Extension[] = [];
    const ext = kv.get('ext');
    const mf = kv.get('mf');
    if (ext) {
      for (const name of ext.value.split(',')) {
        if (!(EXT_NAMES as readonly string[]).includes(name)) fail(`unknown extension header '${name}'`, ext.token, `one of: ${EXT_NAMES.join(', ')}`);
        if (name === 'fragment') extensions.push({ type: 'fragment', mf: mf !== undefined && mf.value !== '0' });
        else extensions.push({ type: name as Exclude<(typeof EXT_NAMES)[number], 'fragment'> });
      }
      if (extensions.length > 8) fail('at most 8 extension headers', ext.token);
    }
    if (mf && !extensions.some((e) => e.type === 'fragment')) fail("'mf' on IPv6 needs ext=fragment", mf.token);
    b = b.ipv6({
      src: src.addr,
      dst: dst.addr,
      hopLimit: ttl,
      trafficClass: tos,
      dscp,
      ecn,
      flowLabel: num('flowlabel', 0xfffff),
      extensions,
      proto: ipProto,
    });
  } else {
    for (const k of ['ext', 'flowlabel']) {
      const e = kv.get(k);
      if (e) fail(`'${k}' is an IPv6 field`, e.token);
    }
    const frag = num('frag', 0x1fff);
    b = b.ipv4({
      src: src.addr,
      dst: dst.addr,
      ttl,
      tos,
      dscp,
      ecn,
      id: num('ipid', 0xffff),
      df: flag(kv.get('df'), 'df', fail),
      mf: flag(kv.get('mf'), 'mf', fail),
      fragOffset: frag,
      proto: ipProto,
    });
  }

  // L4
  const sport = src.port ?? 40000;
  if (proto === 'tcp') {
    const f = kv.get('flags');
    let flags = 0x02;
    if (f) flags = wrap(() => tcpFlagsValue(/^(0x[0-9a-f]+|\d+)$/i.test(f.value) ? Number(f.value) : f.value), f.token, spec);
    b = b.tcp({ sport, dport: dst.port!, flags, seq: num('seq', 0xffffffff), ack: num('ack', 0xffffffff), window: num('win', 0xffff) ?? num('window', 0xffff) });
  } else if (proto === 'udp') {
    b = b.udp({ sport, dport: dst.port! });
  } else if (proto === 'sctp') {
    b = b.sctp({ sport, dport: dst.port! });
  } else if (proto === 'icmp' || proto === 'icmp6') {
    const isV6 = proto === 'icmp6';
    const t = kv.get('type');
    const c = kv.get('code');
    const type = t ? wrap(() => icmpTypeNumber(numeric(t.value) ?? t.value, isV6), t.token, spec) : isV6 ? 128 : 8;
    const code = c ? wrap(() => icmpCodeNumber(type, numeric(c.value) ?? c.value, isV6), c.token, spec) : 0;
    const o = { type, code, id: num('id', 0xffff), seq: num('seq', 0xffff) };
    b = isV6 ? b.icmpv6(o) : b.icmp(o);
  }
  return finish(b, kv, context, spec, fail);
}

/** Payload, len, corruption and truncation, common to every protocol. */
function finish(
  b: PacketBuilder,
  kv: Map<string, { value: string; token: Token }>,
  context: PacketSpecContext,
  spec: string,
  fail: Fail,
): ParsedPacketSpec {
  const p = kv.get('payload');
  if (p) {
    const v = p.value;
    if (/^\d+$/.test(v)) b = b.payload(parseNumber(v, 0xffff, 'payload', p.token, fail));
    else if (/^0x/i.test(v)) {
      const hex = v.slice(2);
      if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) fail('payload=0x... needs an even number of hex digits', p.token);
      b = b.payload(Buffer.from(hex, 'hex'));
    } else b = b.payload(unquote(v));
  }
  const len = kv.get('len');
  if (len) {
    const want = parseNumber(len.value, 0xffff, 'len', len.token, fail);
    const have = wrap(() => b.build().length, undefined, spec);
    if (want < have) fail(`len=${want} is shorter than the ${have} bytes the headers${p ? ' and payload' : ''} need`, len.token);
    if (want > have) b = b.payload(want - have);
  }
  const c = kv.get('corrupt');
  if (c) {
    const [kind, value] = c.value.split(':');
    const n = value === undefined ? undefined : /^-\d+$/.test(value) ? -parseNumber(value.slice(1), 0xffff, 'corrupt', c.token, fail) : parseNumber(value, 0xffff, 'corrupt', c.token, fail);
    b = wrap(() => b.corrupt(kind as Corruption, n), c.token, spec);
  }
  const t = kv.get('truncate');
  if (t) b = b.truncate(parseNumber(t.value, 0xffff, 'truncate', t.token, fail));
  const data = wrap(() => b.build(), undefined, spec);
  return { data, context };
}

function flag(e: { value: string; token: Token } | undefined, key: string, fail: Fail): boolean | undefined {
  if (!e) return undefined;
  if (e.value === '1' || e.value === 'true') return true;
  if (e.value === '0' || e.value === 'false') return false;
  return fail(`${key} is a flag: write '${key}', '${key}=1' or '${key}=0'`, e.token);
}

function numeric(v: string): number | undefined {
  return /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : undefined;
}

function parseNumber(v: string, max: number, key: string, token: Token, fail: Fail): number {
  const n = numeric(v);
  if (n === undefined) return fail(`${key}= needs a number, got '${v}'`, token);
  if (n > max) return fail(`${key}=${v} is out of range 0..${max}`, token);
  return n;
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

function parseEndpoint(t: Token, fail: Fail): Endpoint {
  const text = t.text;
  let addr = text;
  let port: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) fail(`missing ']' in '${text}'`, t);
    addr = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) fail(`expected ':port' after ']' in '${text}'`, t);
      port = rest.slice(1);
    }
    if (!isIpv6Text(addr)) fail(`invalid IPv6 address '${addr}'`, t);
  } else if ((text.match(/:/g) ?? []).length === 1) {
    [addr, port] = text.split(':') as [string, string];
    if (!isIpv4Text(addr)) fail(`invalid IPv4 address '${addr}'`, t, 'write IPv6 addresses with a port as [fd00::1]:80');
  } else if (text.includes(':')) {
    if (!isIpv6Text(text)) fail(`invalid IPv6 address '${text}'`, t, 'write IPv6 addresses with a port as [fd00::1]:80');
  } else if (!isIpv4Text(text)) {
    fail(`invalid address '${text}'`, t, 'e.g. 10.0.0.1, 10.0.0.1:80, fd00::1 or [fd00::1]:80');
  }
  let portNum: number | undefined;
  if (port !== undefined) {
    if (!/^\d+$/.test(port)) fail(`invalid port '${port}'`, t);
    portNum = Number(port);
    if (portNum > 0xffff) fail(`port ${port} is out of range 0..65535`, t);
  }
  return { family: addr.includes(':') ? 6 : 4, addr, port: portNum, token: t };
}

function tokenize(spec: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < spec.length) {
    if (/\s/.test(spec[i]!)) { i++; continue; }
    const start = i;
    if (spec.startsWith('->', i)) {
      out.push({ text: '->', start });
      i += 2;
      continue;
    }
    let inQuote = false;
    while (i < spec.length && (inQuote || (!/\s/.test(spec[i]!) && !spec.startsWith('->', i)))) {
      if (spec[i] === '"') inQuote = !inQuote;
      i++;
    }
    out.push({ text: spec.slice(start, i), start });
  }
  return out;
}

/** Runs a builder step, re-pointing its error at the spec token it came from. */
function wrap<T>(fn: () => T, token: Token | undefined, spec: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TsbpfError) throw specError(spec, e.message, token, e.hint, e);
    throw e;
  }
}

function specError(spec: string, message: string, token: Token | undefined, hint?: string, cause?: unknown): TsbpfError {
  const at = token ? `\n  ${spec}\n  ${' '.repeat(token.start)}${'^'.repeat(Math.max(1, token.text.length))}` : `\n  ${spec}`;
  return new TsbpfError('INVALID_ARGUMENT', `packet spec: ${message}${at}`, {
    hint: hint ?? 'e.g. "tcp 10.0.0.1:1234 -> 10.0.0.2:80 flags=S"; the --packet help lists every key',
    cause,
    details: { spec, token: token?.text, offset: token?.start },
  });
}
