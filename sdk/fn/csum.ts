/**
 * Incremental checksum update as the kernel's csum_replace2/4 compute it
 * (bpf_l3_csum_replace, bpf_l4_csum_replace), in JS. The generated C (XDP)
 * does exactly this too, so Node, XDP and TC agree on every bit, including
 * the one's-complement corner where a sum could come out as 0x0000 or
 * 0xffff: the kernel's sum always carries a "negative zero" word (the upper
 * half of ~csum_unfold(check)), so its folded sum is never 0. We add that
 * word explicitly.
 */

/** Folds a non-negative sum to 16 bits with end-around carry. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The checksum after a region of `bytes` (2 or 4) bytes changed from `oldValue`
 * to `newValue` (both big-endian numbers of that many bytes).
 */
export function csumReplace(check: number, oldValue: number, newValue: number, bytes: 2 | 4): number {
  let s = 0xffff + (~check & 0xffff);
  if (bytes === 4) {
    s += (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff);
    s += (newValue >>> 16) + (newValue & 0xffff);
  } else {
    s += (~oldValue & 0xffff) + (newValue & 0xffff);
  }
  return ~fold(s) & 0xffff;
}

/** RFC 1624 update of a 16-bit word, for programs that keep their own checksums: csumUpdate16(check, old, new). */
export function csumUpdate16(check: number, oldWord: number, newWord: number): number {
  return csumReplace(check & 0xffff, oldWord & 0xffff, newWord & 0xffff, 2);
}

/** As csumUpdate16 for a 32-bit value (an IPv4 address). */
export function csumUpdate32(check: number, oldValue: number, newValue: number): number {
  return csumReplace(check & 0xffff, oldValue >>> 0, newValue >>> 0, 4);
}
