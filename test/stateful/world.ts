/**
 * A generated world for differential tests of the services program: a
 * definition (services, NAT rules), and seeded sequences of packets that
 * behave like real connections through a router (client -> VIP, server
 * replies to what it received, ICMP errors quoting what was sent), driven
 * through two runners in lockstep: the kernel (BPF_PROG_TEST_RUN) and the
 * TS reference (evaluateServices).
 */
import { reverseTuple, tupleEq, type CtEntry, type Tuple, tupleOfView, wordsText } from '../../sdk/ct.js';
import { Rng } from '../../sdk/generate.js';
import { packet, PacketBuilder } from '../../sdk/packet.js';
import { parsePacket } from '../../sdk/parse.js';
import { services, type ServicesDefinition } from '../../sdk/services.js';

export const IFADDR = { v4: '198.51.100.1', v6: 'fd99::1' };

/** Services and NAT rules every generated sequence runs against (all on ifindex 1, the test-run device). */
export function worldDefinition(): ServicesDefinition {
  return services('diff', { hashSeed: 0x1234, conntrack: { maxEntries: 8192 } }, (s) => {
    s.service('web', { vip: '10.96.0.1', port: 80, backends: [1, 2, 3, 4].map((i) => ({ addr: `10.1.0.${i}`, port: 8080 })) });
    s.service('dns', { vip: '10.96.0.1', port: 53, protocol: 'udp', backends: [{ addr: '10.1.0.5', port: 5353 }, { addr: '10.1.0.6', port: 5353, weight: 3 }] });
    s.service('sticky', { vip: '10.96.0.3', port: 443, affinity: { timeout: 3600 }, backends: [1, 2, 3].map((i) => ({ addr: `10.1.0.${i}`, port: 8443 })) });
    s.service('self', { vip: '10.96.0.9', port: 80, backends: [{ addr: '10.1.0.1', port: 8080 }] });
    s.service('empty', { vip: '10.96.0.7', port: 80, backends: [] });
    s.service('web6', { vip: 'fd96::1', port: 80, backends: [1, 2, 3].map((i) => ({ addr: `fd01::${i}`, port: 8080 })) });
    s.service('dns6', { vip: 'fd96::1', port: 53, protocol: 'udp', backends: [{ addr: 'fd01::5', port: 53 }] });
    s.snat({ out: 'lo', from: '10.5.0.0/16', to: '192.0.2.1', toPort: [1000, 1003], name: 'tiny' });
    s.snat({ out: 'lo', from: '10.6.0.0/16', to: ['192.0.2.10', '192.0.2.13'], name: 'range' });
    s.masquerade({ out: 'lo', from: '10.0.0.0/16', name: 'masq4' });
    s.masquerade({ out: 'lo', from: 'fd00::/64', name: 'masq6' });
    s.dnat({ dst: '203.0.113.10', dport: 8080, protocol: 'tcp', to: '10.1.0.9', toPort: 80, name: 'port-fwd' });
    s.dnat({ dst: '203.0.113.11', protocol: 'udp', to: ['10.1.0.20', '10.1.0.23'], name: 'udp-fwd' });
  });
}

export type Hook = 'tc-ingress' | 'tc-egress';

/** One side of the comparison: runs a frame at a hook, returns the action and the frame out. */
export type Action = 'accept' | 'drop' | 'loop';
export type Runner = (hook: Hook, data: Buffer) => { action: Action; data: Buffer; entry?: CtEntry | undefined; direction?: 'original' | 'reply' | undefined };

export interface Step {
  hook: Hook;
  input: Buffer;
  kernel: { action: Action; data: Buffer };
  reference: { action: Action; data: Buffer };
  what: string;
  /** A broken invariant of the reference (what left the last hook is not what conntrack says it should be). */
  invariant?: string;
}

/** The tuple of a TCP/UDP/ICMP echo frame. */
function frameTuple(frame: Buffer): Tuple | undefined {
  const v = parsePacket(frame);
  const echo = (v.icmp && (v.icmp.type === 8 || v.icmp.type === 0)) || (v.icmpv6 && (v.icmpv6.type === 128 || v.icmpv6.type === 129));
  return tupleOfView(v, echo && v.l4Offset! + 8 <= frame.length ? frame.readUInt16BE(v.l4Offset! + 4) : undefined);
}

const show = (t: Tuple | undefined) => (t ? `${wordsText(t.src, t.family)}:${t.sport} > ${wordsText(t.dst, t.family)}:${t.dport}` : 'none');

interface Flow {
  id: number;
  family: 4 | 6;
  proto: 'tcp' | 'udp' | 'icmp';
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** 'router': ingress then egress both ways; 'client': egress out, ingress back. */
  placement: 'router' | 'client';
  /** A client that is its own backend: its packets leave by egress and are looped back into ingress. */
  looped?: boolean;
  /** What the server last received (the fully translated forward packet), IP header on. */
  serverSaw?: Buffer;
  serverTuple?: Tuple;
  /** The last reply as the client received it. */
  clientSaw?: Buffer;
  phase: number;
  seq: number;
  ack: number;
  echoSeq: number;
  dead: boolean;
}

const CLIENTS4 = ['10.0.0.5', '10.0.1.7', '10.0.2.9', '10.5.0.1', '10.5.0.2', '10.5.0.3', '10.6.0.4', '10.6.0.5', '10.1.0.1', '172.16.0.8'];
const CLIENTS6 = ['fd00::5', 'fd00::7', 'fd00::1:9', 'fd02::3'];
const TARGETS4: Array<{ dst: string; dport: number; proto: 'tcp' | 'udp' | 'icmp' }> = [
  { dst: '10.96.0.1', dport: 80, proto: 'tcp' },
  { dst: '10.96.0.1', dport: 53, proto: 'udp' },
  { dst: '10.96.0.3', dport: 443, proto: 'tcp' },
  { dst: '10.96.0.9', dport: 80, proto: 'tcp' },
  { dst: '10.96.0.7', dport: 80, proto: 'tcp' },
  { dst: '203.0.113.10', dport: 8080, proto: 'tcp' },
  { dst: '203.0.113.11', dport: 9999, proto: 'udp' },
  { dst: '192.0.2.200', dport: 80, proto: 'tcp' },
  { dst: '192.0.2.200', dport: 80, proto: 'tcp' },
  { dst: '192.0.2.201', dport: 0, proto: 'icmp' },
];
const TARGETS6: Array<{ dst: string; dport: number; proto: 'tcp' | 'udp' | 'icmp' }> = [
  { dst: 'fd96::1', dport: 80, proto: 'tcp' },
  { dst: 'fd96::1', dport: 53, proto: 'udp' },
  { dst: 'fd03::9', dport: 443, proto: 'tcp' },
  { dst: 'fd03::9', dport: 0, proto: 'icmp' },
];

function l3(frame: Buffer): Buffer {
  return frame.subarray(14);
}

/** Build a TCP/UDP/ICMP echo packet from a tuple. */
function build(t: { family: 4 | 6; src: string; dst: string; sport: number; dport: number }, proto: 'tcp' | 'udp' | 'icmp', o: { flags?: string; seq?: number; ack?: number; payload?: number; reply?: boolean; zeroUdp?: boolean }): Buffer {
  const b = new PacketBuilder();
  const ip = t.family === 4 ? b.ipv4({ src: t.src, dst: t.dst }) : b.ipv6({ src: t.src, dst: t.dst });
  if (proto === 'tcp') return ip.tcp({ sport: t.sport, dport: t.dport, flags: o.flags ?? 'A', seq: o.seq ?? 1, ack: o.ack ?? 0 }).payload(o.payload ?? 0).build();
  if (proto === 'udp') return ip.udp({ sport: t.sport, dport: t.dport, ...(o.zeroUdp && t.family === 4 ? { checksum: 0 } : {}) }).payload(o.payload ?? 8).build();
  // ICMP echo: the id travels as sport (request) or dport (reply).
  const echo = { type: o.reply ? 'echo-reply' : 'echo-request', id: o.reply ? t.dport : t.sport, seq: (o.seq ?? 1) & 0xffff, payload: 16 } as const;
  return t.family === 4 ? ip.icmp(echo).build() : ip.icmpv6(echo).build();
}

/** An ICMP error from `from` to `to` quoting `quoted` (an IP packet), cut to `quote` bytes. */
function icmpError(family: 4 | 6, from: string, to: string, quoted: Buffer, quote: number): Buffer {
  const body = quoted.subarray(0, Math.min(quote, quoted.length));
  if (family === 4) return packet().ipv4({ src: from, dst: to }).icmp({ type: 'dest-unreachable', code: 'port-unreachable', payload: body }).build();
  return packet().ipv6({ src: from, dst: to }).icmpv6({ type: 'dest-unreachable', code: 'port-unreachable', payload: body }).build();
}

/**
 * Drive `count` generated packets through both runners. Each packet goes
 * through the hooks of its flow's placement; the next packets of a flow are
 * built from what the reference output (so both runners see the same input
 * as long as they agree; the first disagreement is reported by the caller).
 */
export function* generateSteps(seed: number, count: number, kernel: Runner, reference: Runner, options: { ingressOnly?: boolean } = {}): Generator<Step> {
  const rng = new Rng(seed);
  // Ingress only (the XDP program): every flow crosses a router that runs only the ingress half.
  const only = (hooks: Hook[]): Hook[] => (options.ingressOnly ? hooks.filter((h) => h === 'tc-ingress') : hooks);
  const flows: Flow[] = [];
  let nextId = 0;
  let produced = 0;
  let loops = 0;

  const run = function* (hooksIn: Hook[], input: Buffer, what: string): Generator<Step, Buffer | undefined> {
    let data = input;
    const hooks = only([...hooksIn]);
    for (const [i, hook] of hooks.entries()) {
      const k = kernel(hook, data);
      const r = reference(hook, data);
      produced++;
      const step: Step = { hook, input: data, kernel: k, reference: r, what };
      // After the last hook a connection's packet is what conntrack says: the translated tuple going
      // out, the original seen from the other end coming back.
      if (i === hooks.length - 1 && r.action === 'accept' && r.entry && r.direction && !what.includes('icmp error') && !what.includes('noise')) {
        const got = frameTuple(r.data);
        const want = r.direction === 'original' ? r.entry.x : reverseTuple(r.entry.o);
        if (got && !tupleEq(got, want)) step.invariant = `${r.direction} packet left as ${show(got)}, conntrack says ${show(want)}`;
      }
      yield step;
      if (r.action === 'drop') return undefined;
      // Looped back at egress: the same interface's ingress sees it next.
      if (r.action === 'loop' && hook === 'tc-egress') {
        hooks.splice(i + 1, 0, 'tc-ingress');
        loops++;
      }
      data = r.data;
    }
    return data;
  };

  const newFlow = (): Flow => {
    const v6 = rng.chance(0.25);
    const target = rng.pick(v6 ? TARGETS6 : TARGETS4);
    const src = rng.pick(v6 ? CLIENTS6 : CLIENTS4);
    const f: Flow = {
      id: nextId++,
      family: v6 ? 6 : 4,
      proto: target.proto,
      src,
      dst: target.dst,
      sport: rng.chance(0.1) ? 1000 + rng.int(0, 3) : rng.int(1024, 65535),
      dport: target.proto === 'icmp' ? 0 : target.dport,
      placement: rng.chance(0.2) && !options.ingressOnly ? 'client' : 'router',
      phase: 0,
      seq: rng.u32(),
      ack: 0,
      echoSeq: 1,
      dead: false,
    };
    if (f.proto === 'icmp') f.sport = rng.int(1, 65535);
    flows.push(f);
    return f;
  };

  while (produced < count) {
    const live = flows.filter((f) => !f.dead);
    const roll = rng.u32() / 2 ** 32;
    if (live.length === 0 || roll < 0.2) {
      // A new connection's first packet.
      const f = newFlow();
      const fwdHooks: Hook[] = f.placement === 'router' ? ['tc-ingress', 'tc-egress'] : ['tc-egress'];
      const first = build(f, f.proto, { flags: 'S', seq: f.seq, payload: f.proto === 'tcp' ? 0 : 8, zeroUdp: rng.chance(0.3) });
      const loopsBefore = loops;
      const out = yield* run(fwdHooks, first, `flow ${f.id} first ${f.proto} ${f.src}:${f.sport} -> ${f.dst}:${f.dport} (${f.placement})`);
      if (!out) {
        f.dead = true;
        continue;
      }
      f.looped = loops > loopsBefore;
      f.serverSaw = l3(out);
      f.serverTuple = tupleOfView(parsePacket(out), f.proto === 'icmp' ? f.sport : undefined);
      f.seq++;
      continue;
    }
    const f = rng.pick(live);
    const fwdHooks: Hook[] = f.placement === 'router' ? ['tc-ingress', 'tc-egress'] : ['tc-egress'];
    // A looped flow's server is the client itself: its replies leave by egress too (and loop back in).
    const backHooks: Hook[] = f.placement === 'router' ? ['tc-ingress', 'tc-egress'] : f.looped ? ['tc-egress'] : ['tc-ingress'];
    const st = f.serverTuple;
    if (!st) {
      f.dead = true;
      continue;
    }
    const server = { family: f.family, src: wordsText(st.dst, f.family), dst: wordsText(st.src, f.family), sport: st.dport, dport: st.sport };
    const client = { family: f.family, src: f.src, dst: f.dst, sport: f.sport, dport: f.dport };
    if (roll < 0.27 && f.serverSaw) {
      // An ICMP error about the original direction, from the server (or a router on the way).
      const fromRouter = rng.chance(0.3);
      const quote = rng.pick([8 + (f.family === 4 ? 20 : 40), 18 + (f.family === 4 ? 20 : 40), 200]);
      const err = icmpError(f.family, fromRouter ? (f.family === 4 ? '10.250.0.1' : 'fd05::1') : server.src, server.dst, f.serverSaw, quote);
      yield* run(backHooks, err, `flow ${f.id} icmp error about original (quote ${quote}${fromRouter ? ', from a router' : ''})`);
      continue;
    }
    if (roll < 0.3 && f.clientSaw) {
      // An ICMP error about a reply, from the client.
      const err = icmpError(f.family, f.src, f.dst, f.clientSaw, 200);
      yield* run(f.placement === 'router' ? ['tc-ingress', 'tc-egress'] : ['tc-egress'], err, `flow ${f.id} icmp error about a reply`);
      continue;
    }
    if (roll < 0.33) {
      // Noise: a TCP packet with invalid flags or a stray RST for the flow.
      const bad = build(client, 'tcp', { flags: rng.pick(['SF', 'SR', '', 'R', 'F']), seq: f.seq });
      yield* run(fwdHooks, bad, `flow ${f.id} noise`);
      continue;
    }
    // The connection's next packet.
    const fromServer = rng.chance(0.5);
    let pkt: Buffer;
    if (f.proto === 'tcp') {
      let flags: string;
      if (f.phase === 0 && fromServer) flags = 'SA';
      else if (rng.chance(0.05)) flags = 'R';
      else if (rng.chance(0.1)) flags = 'FA';
      else if (rng.chance(0.03) && !fromServer) flags = 'S';
      else flags = rng.chance(0.5) ? 'PA' : 'A';
      if (flags === 'SA') f.phase = 1;
      if (flags === 'R' && rng.chance(0.5)) f.dead = true;
      pkt = build(fromServer ? server : client, 'tcp', { flags, seq: f.seq++, ack: f.ack, payload: flags.includes('P') ? rng.int(1, 64) : 0 });
    } else if (f.proto === 'udp') {
      pkt = build(fromServer ? server : client, 'udp', { payload: rng.int(0, 40), zeroUdp: rng.chance(0.3) });
    } else {
      pkt = build(fromServer ? server : client, 'icmp', { reply: fromServer, seq: f.echoSeq++ });
    }
    const out = yield* run(fromServer ? backHooks : fwdHooks, pkt, `flow ${f.id} ${fromServer ? 'reply' : 'original'}`);
    if (out && fromServer) f.clientSaw = l3(out);
    if (out && !fromServer) f.serverSaw = l3(out);
    if (rng.chance(0.02)) f.dead = true;
  }
}

