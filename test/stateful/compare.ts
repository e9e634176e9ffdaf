/**
 * What the conntrack differential tests (test/stateful/differential.test.ts,
 * test/differential/conntrack.test.ts) compare besides verdicts: checksums
 * of output frames (and of the packet an ICMP error quotes), conntrack
 * entries without clock readings, and where two frames first differ.
 */
import type { CtEntry } from '../../sdk/ct.js';
import { parsePacket } from '../../sdk/parse.js';
import { checkFrame } from '../packet/verify.js';

/** Checksum problems of a frame and, for an ICMP error quoting a whole packet, of the quoted packet. */
export function checksumProblems(frame: Buffer): string[] {
  const problems = checkFrame(frame).problems;
  const v = parsePacket(frame);
  const ic = v.icmp ?? v.icmpv6;
  const isError = ic && (v.icmp ? [3, 11, 12].includes(ic.type) : ic.type < 128);
  if (isError) {
    const inner = frame.subarray(v.l4Offset! + 8);
    const len = v.ipv4 ? inner.readUInt16BE(2) : inner.readUInt16BE(4) + 40;
    if (inner.length === len) {
      const eth = Buffer.from('020000000002020000000001' + (v.ipv4 ? '0800' : '86dd'), 'hex');
      problems.push(...checkFrame(Buffer.concat([eth, inner])).problems.map((p) => `quoted ${p}`));
    }
  }
  return problems;
}

/** An entry without its clock readings (the kernel's clock is not the test's). */
export function timeless(e: CtEntry): Omit<CtEntry, 'createdNs' | 'lastNs' | 'expiresNs'> {
  const { createdNs: _c, lastNs: _l, expiresNs: _e, ...rest } = e;
  return rest;
}

/** Where two frames first differ, for a failure message. */
export function describeDiff(a: Buffer, b: Buffer): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `first difference at byte ${i} (kernel ${a[i]?.toString(16)}, reference ${b[i]?.toString(16)})`;
  return 'same bytes';
}
