/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internet checksum helpers (RFC 1071, RFC 1624) in plain C, so they work the
 * same at XDP and TC and give the bytes sdk/checksum.ts gives. Checksums and
 * words are host-order numbers here; callers store them big-endian.
 */
#ifndef TSBPF_CSUM_H
#define TSBPF_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Fold a 64-bit one's-complement accumulator to 16 bits (not complemented). */
static __always_inline __u16 tsbpf_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Add n bytes (n a compile-time constant, even) as big-endian 16-bit words. */
static __always_inline __u64 tsbpf_csum_add(__u64 sum, const __u8 *b, const int n)
{
#pragma unroll
	for (int i = 0; i + 1 < n; i += 2)
		sum += ((__u32)b[i] << 8) | b[i + 1];
	return sum;
}

/* As tsbpf_csum_add for long spans: a bounded loop, not unrolled (keeps the stack small). */
static __always_inline __u64 tsbpf_csum_add_loop(__u64 sum, const __u8 *b, const int n)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i + 1 < n; i += 2)
		sum += ((__u32)b[i] << 8) | b[i + 1];
	return sum;
}

/* Add a 32-bit value (e.g. an IPv4 address) as two 16-bit words. */
static __always_inline __u64 tsbpf_csum_add32(__u64 sum, __u32 v)
{
	return sum + (v >> 16) + (v & 0xffff);
}

/* Sum of the IPv4 pseudo-header (addresses host-order). */
static __always_inline __u64 tsbpf_csum_pseudo4(__u32 src, __u32 dst, __u8 proto, __u16 len)
{
	return tsbpf_csum_add32(tsbpf_csum_add32(0, src), dst) + proto + len;
}

/* Sum of the IPv6 pseudo-header (addresses as 4 host-order words, most significant first). */
static __always_inline __u64 tsbpf_csum_pseudo6(const __u32 *src, const __u32 *dst, __u8 nexthdr, __u32 len)
{
	__u64 s = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		s = tsbpf_csum_add32(tsbpf_csum_add32(s, src[i]), dst[i]);
	return s + (len >> 16) + (len & 0xffff) + nexthdr;
}

/* The final checksum: complement of the folded sum. */
static __always_inline __u16 tsbpf_csum_finish(__u64 sum)
{
	return (__u16)~tsbpf_csum_fold(sum);
}

/* RFC 1624 eqn. 3: checksum after a 16-bit word changes from old to new. */
static __always_inline __u16 tsbpf_csum_update16(__u16 check, __u16 old, __u16 new_)
{
	__u64 s = (__u16)~check;
	s += (__u16)~old;
	s += new_;
	return (__u16)~tsbpf_csum_fold(s);
}

/* As tsbpf_csum_update16 for a 32-bit field. */
static __always_inline __u16 tsbpf_csum_update32(__u16 check, __u32 old, __u32 new_)
{
	check = tsbpf_csum_update16(check, old >> 16, new_ >> 16);
	return tsbpf_csum_update16(check, old & 0xffff, new_ & 0xffff);
}

static __always_inline void tsbpf_put16(__u8 *b, __u16 v)
{
	b[0] = v >> 8;
	b[1] = v;
}

static __always_inline void tsbpf_put32(__u8 *b, __u32 v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

#endif /* TSBPF_CSUM_H */
