/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What conntrack reads from a packet, and ICMP errors about NATed
 * connections, for a tc or an XDP program (hk: TSBPF_HOOK_TC or
 * TSBPF_HOOK_XDP, a constant): the packet's tuple, the packet an ICMP error
 * quotes, and the translation of such an error back to what its receiver
 * knows (the quoted headers, their checksums, the outer addresses). Shared
 * by the services datapath (svc.h) and the rule filter's conntrack
 * (ctfilter.h); the TS twins are packetTuple (sdk/ct.ts) and sdk/icmperr.ts.
 */
#ifndef TSBPF_ICMPERR_H
#define TSBPF_ICMPERR_H

#include <tsbpf/parse.h>
#include <tsbpf/ct.h>
#include <tsbpf/nat.h>

/* The packet's tuple: 0 a connection packet, 1 an ICMP error (t: its outer addresses), -1 untracked. */
static __always_inline int tsbpf_pkt_tuple(void *ctx, const int hk, const struct tsbpf_pkt *p, struct tsbpf_tuple *t)
{
	__u8 idb[2];
	__u16 id;

	__builtin_memset(t, 0, sizeof(*t));
	if (p->present & TSBPF_HAS_IPV4) {
		t->family = 4;
		t->src[0] = p->ip4_src;
		t->dst[0] = p->ip4_dst;
	} else if (p->present & TSBPF_HAS_IPV6) {
		t->family = 6;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			t->src[i] = p->ip6_src[i];
			t->dst[i] = p->ip6_dst[i];
		}
	} else {
		return -1;
	}
	t->proto = p->proto;
	if (p->present & (TSBPF_HAS_TCP | TSBPF_HAS_UDP)) {
		t->sport = p->sport;
		t->dport = p->dport;
		return 0;
	}
	if (!(p->present & (TSBPF_HAS_ICMP | TSBPF_HAS_ICMPV6)))
		return -1;
	{
		int v4 = p->present & TSBPF_HAS_ICMP;
		__u8 ty = p->icmp_type;
		int req = v4 ? ty == 8 : ty == 128;
		int rep = v4 ? ty == 0 : ty == 129;
		if (req || rep) {
			if ((__u32)p->l4_off + 8 > p->len || tsbpf_nat_load_hk(ctx, hk, p->l4_off + 4, idb, 2))
				return -1;
			id = tsbpf_be16(idb);
			t->icmp = req ? TSBPF_CT_ICMP_ECHO_REQ : TSBPF_CT_ICMP_ECHO_REP;
			if (req)
				t->sport = id;
			else
				t->dport = id;
			return 0;
		}
		if (v4 ? (ty == 3 || ty == 11 || ty == 12) : (ty >= 1 && ty <= 4))
			return 1;
	}
	return -1;
}

/*
 * Read the packet an ICMP error quotes into *it (its tuple as it was sent).
 * Offsets out: *ioff the quoted IP header, *il4 its L4 header. 0 on success.
 */
static __always_inline int tsbpf_icmperr_quoted(void *ctx, const int hk, const struct tsbpf_pkt *p, struct tsbpf_tuple *it, __u32 *ioff,
						__u32 *il4)
{
	__u8 h[40];
	__u8 l4[8];
	__u32 off = (__u32)p->l4_off + 8;

	__builtin_memset(it, 0, sizeof(*it));
	if (off > TSBPF_MAX_HDR_OFF)
		return -1;
	if (p->present & TSBPF_HAS_IPV4) {
		__u32 ihl;
		if (off + 20 > p->len || tsbpf_nat_load_hk(ctx, hk, off, h, 20))
			return -1;
		ihl = h[0] & 0xf;
		if ((h[0] >> 4) != 4 || ihl < 5)
			return -1;
		if (tsbpf_be16(h + 6) & 0x1fff)
			return -1; /* a non-first fragment has no ports to match */
		it->family = 4;
		it->proto = h[9];
		it->src[0] = tsbpf_be32(h + 12);
		it->dst[0] = tsbpf_be32(h + 16);
		*il4 = off + ihl * 4;
	} else {
		if (off + 40 > p->len || tsbpf_nat_load_hk(ctx, hk, off, h, 40))
			return -1;
		if ((h[0] >> 4) != 6)
			return -1;
		it->family = 6;
		it->proto = h[6];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			it->src[i] = tsbpf_be32(h + 8 + 4 * i);
			it->dst[i] = tsbpf_be32(h + 24 + 4 * i);
		}
		*il4 = off + 40;
	}
	*ioff = off;
	if (*il4 > TSBPF_MAX_HDR_OFF || *il4 + 8 > p->len || tsbpf_nat_load_hk(ctx, hk, *il4, l4, 8))
		return -1;
	if (it->proto == TSBPF_IPPROTO_TCP || it->proto == TSBPF_IPPROTO_UDP) {
		it->sport = tsbpf_be16(l4);
		it->dport = tsbpf_be16(l4 + 2);
		return 0;
	}
	if ((it->family == 4 && it->proto == TSBPF_IPPROTO_ICMP) || (it->family == 6 && it->proto == TSBPF_IPPROTO_ICMPV6)) {
		__u8 ty = l4[0];
		__u16 qid = tsbpf_be16(l4 + 4);
		if (ty == (it->family == 4 ? 8 : 128)) {
			it->icmp = TSBPF_CT_ICMP_ECHO_REQ;
			it->sport = qid;
			return 0;
		}
		if (ty == (it->family == 4 ? 0 : 129)) {
			it->icmp = TSBPF_CT_ICMP_ECHO_REP;
			it->dport = qid;
			return 0;
		}
	}
	return -1;
}

/*
 * What the quoted packet *it of connection e becomes for the error's
 * receiver, in *to. -1: it is neither direction of e as translated.
 */
static __always_inline int tsbpf_icmperr_target(const struct tsbpf_tuple *it, const struct tsbpf_ct_entry *e, struct tsbpf_tuple *to)
{
	if (tsbpf_tuple_eq(it, &e->x))
		__builtin_memcpy(to, &e->o, sizeof(*to)); /* about the original direction: the error goes to the client */
	else if (tsbpf_tuple_rev_eq(it, &e->o))
		tsbpf_tuple_reverse(to, &e->x); /* about a reply: the error goes to the server */
	else
		return -1;
	to->icmp = it->icmp;
	return 0;
}

/* Rewrite one quoted address word by word: the inner IPv4 and L4 (pseudo-header) checksums and the ICMP checksum follow. */
static __always_inline int tsbpf_icmperr_addr(void *ctx, const int hk, __u32 at, const __u32 *old, const __u32 *new_, int v4, __u16 *ipc,
					      __u16 *l4c, int pseudo, __u16 *icmpc)
{
	__u8 b[16];
	int n = v4 ? 1 : 4;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i >= n)
			continue;
		if (v4)
			*ipc = tsbpf_nat_csum_upd32(*ipc, old[i], new_[i]);
		if (pseudo)
			*l4c = tsbpf_nat_csum_upd32(*l4c, old[i], new_[i]);
		*icmpc = tsbpf_nat_csum_upd32(*icmpc, old[i], new_[i]);
		tsbpf_put32(b + 4 * i, new_[i]);
	}
	return v4 ? tsbpf_nat_store_hk(ctx, hk, at, b, 4) : tsbpf_nat_store_hk(ctx, hk, at, b, 16);
}

static __always_inline int tsbpf_icmperr_port(void *ctx, const int hk, __u32 at, __u16 old, __u16 new_, __u16 *l4c, __u16 *icmpc)
{
	__u8 b[2];
	if (old == new_)
		return 0;
	*l4c = tsbpf_nat_csum_upd16(*l4c, old, new_);
	*icmpc = tsbpf_nat_csum_upd16(*icmpc, old, new_);
	tsbpf_put16(b, new_);
	return tsbpf_nat_store_hk(ctx, hk, at, b, 2);
}

/*
 * Translate an ICMP error (outer tuple *outer) whose quoted packet *it (at
 * ioff, its L4 header at il4) becomes *to: the quoted headers with their
 * checksums (inner IPv4, inner L4 when quoted, the ICMP checksum), then the
 * outer addresses, as their peers know them (*oto is scratch). Returns 0
 * translated, 1 left alone (the quoted IPv4 header could not be read),
 * -1 a write failed.
 */
static __always_inline int tsbpf_icmperr_rewrite(void *ctx, const int hk, const struct tsbpf_pkt *p, const struct tsbpf_tuple *outer,
						 struct tsbpf_tuple *oto, const struct tsbpf_tuple *it, const struct tsbpf_tuple *to, __u32 ioff,
						 __u32 il4)
{
	__u8 cb[2];
	int v4 = (p->present & TSBPF_HAS_IPV4) != 0;
	__u16 icmpc = p->l4_csum, ipc = 0, l4c = 0;
	__u32 ipc_at = ioff + 10, l4c_at = 0;
	int pseudo = 0, keep_zero = 0;

	if (v4) {
		if (tsbpf_nat_load_hk(ctx, hk, ipc_at, cb, 2))
			return 1;
		ipc = tsbpf_be16(cb);
	}
	if (it->proto == TSBPF_IPPROTO_TCP)
		l4c_at = il4 + 16, pseudo = 1;
	else if (it->proto == TSBPF_IPPROTO_UDP)
		l4c_at = il4 + 6, pseudo = 1, keep_zero = 1;
	else
		l4c_at = il4 + 2, pseudo = it->family == 6;
	if (l4c_at + 2 > p->len || tsbpf_nat_load_hk(ctx, hk, l4c_at, cb, 2)) {
		l4c_at = 0; /* not quoted: nothing to keep */
		pseudo = 0;
	} else {
		l4c = tsbpf_be16(cb);
		if (keep_zero && l4c == 0)
			pseudo = 0;
	}
	__u16 ipc0 = ipc, l4c0 = l4c;
	__u16 *l4cp = &l4c;
	if (!tsbpf_addr_eq(it->src, to->src) &&
	    tsbpf_icmperr_addr(ctx, hk, ioff + (v4 ? 12 : 8), it->src, to->src, v4, &ipc, l4cp, pseudo, &icmpc))
		return -1;
	if (!tsbpf_addr_eq(it->dst, to->dst) &&
	    tsbpf_icmperr_addr(ctx, hk, ioff + (v4 ? 16 : 24), it->dst, to->dst, v4, &ipc, l4cp, pseudo, &icmpc))
		return -1;
	{
		/* Ports (or the echo id): the L4 checksum covers them whether or not it covers a pseudo-header. */
		__u16 dummy = 0;
		__u16 *pc = l4c_at ? l4cp : &dummy;
		if (it->icmp) {
			__u16 oid = it->icmp == TSBPF_CT_ICMP_ECHO_REQ ? it->sport : it->dport;
			__u16 nid = it->icmp == TSBPF_CT_ICMP_ECHO_REQ ? to->sport : to->dport;
			if (tsbpf_icmperr_port(ctx, hk, il4 + 4, oid, nid, pc, &icmpc))
				return -1;
		} else {
			if (keep_zero && l4c0 == 0)
				pc = &dummy;
			if (tsbpf_icmperr_port(ctx, hk, il4, it->sport, to->sport, pc, &icmpc) ||
			    tsbpf_icmperr_port(ctx, hk, il4 + 2, it->dport, to->dport, pc, &icmpc))
				return -1;
		}
	}
	if (l4c_at && l4c != l4c0) {
		if (keep_zero && l4c == 0)
			l4c = 0xffff;
		icmpc = tsbpf_nat_csum_upd16(icmpc, l4c0, l4c);
		tsbpf_put16(cb, l4c);
		if (tsbpf_nat_store_hk(ctx, hk, l4c_at, cb, 2))
			return -1;
	}
	if (v4 && ipc != ipc0) {
		icmpc = tsbpf_nat_csum_upd16(icmpc, ipc0, ipc);
		tsbpf_put16(cb, ipc);
		if (tsbpf_nat_store_hk(ctx, hk, ipc_at, cb, 2))
			return -1;
	}
	tsbpf_put16(cb, icmpc);
	if (tsbpf_nat_store_hk(ctx, hk, (__u32)p->l4_off + 2, cb, 2))
		return -1;

	/* The outer header: the error's sender and receiver as their peers know them. */
	__builtin_memcpy(oto, outer, sizeof(*oto));
	if (tsbpf_addr_eq(outer->dst, it->src))
		__builtin_memcpy(oto->dst, to->src, 16);
	if (tsbpf_addr_eq(outer->src, it->dst))
		__builtin_memcpy(oto->src, to->dst, 16);
	if (tsbpf_nat_addr_hk(ctx, hk, p, 0, outer->src, oto->src) || tsbpf_nat_addr_hk(ctx, hk, p, 1, outer->dst, oto->dst))
		return -1;
	return 0;
}

#endif /* TSBPF_ICMPERR_H */
