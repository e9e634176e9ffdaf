/**
 * ICMP errors about a NATed connection, exactly as
 * codegen/include/tsbpf/icmperr.h does it: read the packet an error quotes,
 * find what its sender knew it as, and rewrite the quoted headers and the
 * outer addresses (checksums included). Shared by the services reference
 * (sdk/stateful.ts) and the rule filter's conntrack (sdk/ct-filter.ts).
 */
import { copyTuple, ICMP_ECHO_REP, ICMP_ECHO_REQ, reverseTuple, tupleEq, tupleRevEq, wordsEq, type CtEntry, type Tuple, type Words } from './ct.js';
import { csumReplace, halves, natAddr } from './nat.js';
import type { PacketView } from './parse.js';

/** The packet an ICMP error quotes: its tuple as sent, and the offsets of its IP and L4 headers. */
export interface Quoted {
  it: Tuple;
  ioff: number;
  il4: number;
}

/** Twin of tsbpf_icmperr_quoted. */
export function quotedPacket(pkt: Buffer, v: PacketView): Quoted | undefined {
  const off = v.l4Offset! + 8;
  const len = v.len;
  const it: Tuple = { src: [0, 0, 0, 0], dst: [0, 0, 0, 0], sport: 0, dport: 0, family: 4, proto: 0, icmp: 0 };
  let il4: number;
  if (v.ipv4) {
    if (off + 20 > len) return undefined;
    const ihl = pkt[off]! & 0xf;
    if (pkt[off]! >> 4 !== 4 || ihl < 5) return undefined;
    if (pkt.readUInt16BE(off + 6) & 0x1fff) return undefined; // a non-first fragment has no ports to match
    it.proto = pkt[off + 9]!;
    it.src = [pkt.readUInt32BE(off + 12), 0, 0, 0];
    it.dst = [pkt.readUInt32BE(off + 16), 0, 0, 0];
    il4 = off + ihl * 4;
  } else {
    if (off + 40 > len) return undefined;
    if (pkt[off]! >> 4 !== 6) return undefined;
    it.family = 6;
    it.proto = pkt[off + 6]!;
    for (let i = 0; i < 4; i++) {
      it.src[i] = pkt.readUInt32BE(off + 8 + 4 * i);
      it.dst[i] = pkt.readUInt32BE(off + 24 + 4 * i);
    }
    il4 = off + 40;
  }
  if (il4 + 8 > len) return undefined;
  if (it.proto === 6 || it.proto === 17) {
    it.sport = pkt.readUInt16BE(il4);
    it.dport = pkt.readUInt16BE(il4 + 2);
    return { it, ioff: off, il4 };
  }
  if ((it.family === 4 && it.proto === 1) || (it.family === 6 && it.proto === 58)) {
    const ty = pkt[il4]!;
    const id = pkt.readUInt16BE(il4 + 4);
    if (ty === (it.family === 4 ? 8 : 128)) return { it: { ...it, icmp: ICMP_ECHO_REQ, sport: id }, ioff: off, il4 };
    if (ty === (it.family === 4 ? 0 : 129)) return { it: { ...it, icmp: ICMP_ECHO_REP, dport: id }, ioff: off, il4 };
  }
  return undefined;
}

/**
 * What the quoted packet `it` of connection `e` becomes for the error's
 * receiver (twin of tsbpf_icmperr_target); undefined when it is neither
 * direction of the connection as translated.
 */
export function icmpErrorTarget(it: Tuple, e: CtEntry): Tuple | undefined {
  let to: Tuple;
  if (tupleEq(it, e.x)) to = copyTuple(e.o); // about the original direction: the error goes to the client
  else if (tupleRevEq(it, e.o)) to = reverseTuple(e.x); // about a reply: the error goes to the server
  else return undefined;
  to.icmp = it.icmp;
  return to;
}

/**
 * Rewrite the quoted packet from q.it to `to`, then the outer addresses of
 * the error (tuple `outer`) as their peers know them (twin of
 * tsbpf_icmperr_rewrite). Checksums: inner IPv4, inner L4 when quoted, ICMP.
 */
export function icmpErrorRewrite(pkt: Buffer, v: PacketView, outer: Tuple, q: Quoted, to: Tuple): void {
  const { it, ioff, il4 } = q;
  const v4 = !!v.ipv4;
  const len = v.len;
  let icmpc = pkt.readUInt16BE(v.l4Offset! + 2);
  let ipc = v4 ? pkt.readUInt16BE(ioff + 10) : 0;
  let l4cAt: number;
  let pseudo: boolean;
  let keepZero = false;
  if (it.proto === 6) {
    l4cAt = il4 + 16;
    pseudo = true;
  } else if (it.proto === 17) {
    l4cAt = il4 + 6;
    pseudo = true;
    keepZero = true;
  } else {
    l4cAt = il4 + 2;
    pseudo = it.family === 6;
  }
  let l4c = 0;
  if (l4cAt + 2 > len) {
    l4cAt = 0;
    pseudo = false;
  } else {
    l4c = pkt.readUInt16BE(l4cAt);
    if (keepZero && l4c === 0) pseudo = false;
  }
  const ipc0 = ipc;
  const l4c0 = l4c;
  const addr = (at: number, old: Words, neu: Words) => {
    const n = v4 ? 1 : 4;
    for (let i = 0; i < n; i++) {
      if (v4) ipc = csumReplace(ipc, halves([old[i]!]), halves([neu[i]!]));
      if (pseudo) l4c = csumReplace(l4c, halves([old[i]!]), halves([neu[i]!]));
      icmpc = csumReplace(icmpc, halves([old[i]!]), halves([neu[i]!]));
      pkt.writeUInt32BE(neu[i]! >>> 0, at + 4 * i);
    }
  };
  if (!wordsEq(it.src, to.src)) addr(ioff + (v4 ? 12 : 8), it.src, to.src);
  if (!wordsEq(it.dst, to.dst)) addr(ioff + (v4 ? 16 : 24), it.dst, to.dst);
  // Ports or the echo id; the L4 checksum follows when it is quoted (and, for UDP, not zero).
  const usePc = l4cAt !== 0 && !(keepZero && l4c0 === 0);
  const port = (at: number, old: number, neu: number) => {
    if (old === neu) return;
    if (usePc) l4c = csumReplace(l4c, [old], [neu]);
    icmpc = csumReplace(icmpc, [old], [neu]);
    pkt.writeUInt16BE(neu, at);
  };
  if (it.icmp) {
    const req = it.icmp === ICMP_ECHO_REQ;
    // The echo id is covered by the quoted ICMP checksum even without a pseudo-header.
    const oid = req ? it.sport : it.dport;
    const nid = req ? to.sport : to.dport;
    if (oid !== nid) {
      if (l4cAt) l4c = csumReplace(l4c, [oid], [nid]);
      icmpc = csumReplace(icmpc, [oid], [nid]);
      pkt.writeUInt16BE(nid, il4 + 4);
    }
  } else {
    port(il4, it.sport, to.sport);
    port(il4 + 2, it.dport, to.dport);
  }
  if (l4cAt && l4c !== l4c0) {
    if (keepZero && l4c === 0) l4c = 0xffff;
    icmpc = csumReplace(icmpc, [l4c0], [l4c]);
    pkt.writeUInt16BE(l4c, l4cAt);
  }
  if (v4 && ipc !== ipc0) {
    icmpc = csumReplace(icmpc, [ipc0], [ipc]);
    pkt.writeUInt16BE(ipc, ioff + 10);
  }
  pkt.writeUInt16BE(icmpc, v.l4Offset! + 2);
  // The outer header: the error's sender and receiver as their peers know them.
  const oto = copyTuple(outer);
  if (wordsEq(outer.dst, it.src)) oto.dst = [...to.src] as Words;
  if (wordsEq(outer.src, it.dst)) oto.src = [...to.dst] as Words;
  natAddr(pkt, v, false, outer.src, oto.src);
  natAddr(pkt, v, true, outer.dst, oto.dst);
}
