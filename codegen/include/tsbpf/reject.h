/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `reject`: rewrite the packet in place into the reply sdk/reject.ts
 * describes (TCP RST, or ICMP/ICMPv6 port unreachable quoting the original),
 * then send it back where the original came from:
 *   XDP:        XDP_TX (out of the interface it arrived on);
 *   tc-ingress: bpf_redirect(skb->ifindex, 0), out of the arrival interface;
 *   tc-egress:  bpf_redirect(skb->ifindex, BPF_F_INGRESS), back into the local
 *               stack as if the peer had answered.
 * The original is consumed by the rewrite (nothing else sees it). When no
 * reply is due (see tsbpf_reject_suppressed) or a resize fails, the verdict
 * is a plain drop.
 *
 * The reply is assembled in a per-CPU scratch buffer (L2 at 0, L3 + L4 at
 * TSBPF_RB_L3, zero-filled so the checksum can run over a fixed span) and
 * written with the store-bytes helpers after the packet is resized.
 */
#ifndef TSBPF_REJECT_H
#define TSBPF_REJECT_H

#include <tsbpf/parse.h>
#include <tsbpf/csum.h>

#define TSBPF_REJECT_QUOTE_MAX 128
#define TSBPF_REJECT_TTL 64
#define TSBPF_RB_L3 32
#define TSBPF_RB_L4SPAN (8 + TSBPF_REJECT_QUOTE_MAX)
#define TSBPF_RB_SIZE 256

struct tsbpf_reject_buf {
	__u8 b[TSBPF_RB_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_reject_buf);
} tsbpf_reject_scratch SEC(".maps");

/* 1 when the packet gets no reply (only dropped); the same list as sdk/reject.ts. */
static __always_inline int tsbpf_reject_suppressed(const struct tsbpf_pkt *p)
{
	if (!(p->present & TSBPF_HAS_ETH) || !(p->present & (TSBPF_HAS_IPV4 | TSBPF_HAS_IPV6)))
		return 1;
	if ((p->eth_dst >> 40) & 1)
		return 1;
	if ((p->present & TSBPF_HAS_IPV4) && ((p->ip4_dst >> 28) == 0xe || p->ip4_dst == 0xffffffff))
		return 1;
	if ((p->present & TSBPF_HAS_IPV6) && (p->ip6_dst[0] >> 24) == 0xff)
		return 1;
	if ((p->present & TSBPF_HAS_FRAG) && p->frag_off)
		return 1;
	if ((p->present & TSBPF_HAS_TCP) && (p->tcp_flags & TSBPF_TCP_RST))
		return 1;
	if ((p->present & TSBPF_HAS_ICMP) &&
	    (p->icmp_type == 3 || p->icmp_type == 4 || p->icmp_type == 5 || p->icmp_type == 11 || p->icmp_type == 12))
		return 1;
	if ((p->present & TSBPF_HAS_ICMPV6) && p->icmp_type < 128)
		return 1;
	return 0;
}

/*
 * Fill L4 at l4 (zeroed) and return its length, or 0 on failure. `iplen` is a
 * constant per family so every offset below is constant too.
 */
static __always_inline __u32 tsbpf_reject_l4(struct tsbpf_cursor *c, const int hook, const struct tsbpf_pkt *p, __u8 *l4,
					     const int v4)
{
	if (p->present & TSBPF_HAS_TCP) {
		tsbpf_put16(l4, p->dport);
		tsbpf_put16(l4 + 2, p->sport);
		if (p->tcp_flags & TSBPF_TCP_ACK) {
			tsbpf_put32(l4 + 4, p->tcp_ack);
			l4[13] = TSBPF_TCP_RST;
		} else {
			__s64 hdrs = v4 ? (__s64)p->ip4_ihl * 4 : (__s64)p->l4_off - p->l3_off - 40;
			__s64 payload = (__s64)p->ip_len - hdrs - (__s64)p->tcp_doff * 4;
			__u32 seglen;
			if (payload < 0)
				payload = 0;
			seglen = (__u32)payload + ((p->tcp_flags & TSBPF_TCP_SYN) ? 1 : 0) + ((p->tcp_flags & TSBPF_TCP_FIN) ? 1 : 0);
			tsbpf_put32(l4 + 8, p->tcp_seq + seglen);
			l4[13] = TSBPF_TCP_RST | TSBPF_TCP_ACK;
		}
		l4[12] = 5 << 4;
		return 20;
	}
	__u32 q = c->len - p->l3_off;
	if (q > TSBPF_REJECT_QUOTE_MAX)
		q = TSBPF_REJECT_QUOTE_MAX;
	if (q == 0)
		return 0;
	if (hook == TSBPF_HOOK_XDP) {
		if (bpf_xdp_load_bytes(c->ctx, p->l3_off, l4 + 8, q))
			return 0;
	} else {
		if (bpf_skb_load_bytes(c->ctx, p->l3_off, l4 + 8, q))
			return 0;
	}
	l4[0] = v4 ? 3 : 1;
	l4[1] = v4 ? 3 : 4;
	return 8 + q;
}

/* Build the reply for one family; returns the L3+L4 length, 0 on failure. */
static __always_inline __u32 tsbpf_reject_l3(struct tsbpf_cursor *c, const int hook, const struct tsbpf_pkt *p, __u8 *ip,
					     const int v4)
{
	const int iplen = v4 ? 20 : 40;
	__u8 *l4 = ip + iplen;
	int tcp = (p->present & TSBPF_HAS_TCP) != 0;
	__u8 proto = tcp ? TSBPF_IPPROTO_TCP : (v4 ? TSBPF_IPPROTO_ICMP : TSBPF_IPPROTO_ICMPV6);
	__u32 l4len = tsbpf_reject_l4(c, hook, p, l4, v4);
	__u64 sum;

	if (!l4len)
		return 0;
	if (v4) {
		ip[0] = 0x45;
		tsbpf_put16(ip + 2, 20 + l4len);
		tsbpf_put16(ip + 6, 0x4000);
		ip[8] = TSBPF_REJECT_TTL;
		ip[9] = proto;
		tsbpf_put32(ip + 12, p->ip4_dst);
		tsbpf_put32(ip + 16, p->ip4_src);
		tsbpf_put16(ip + 10, tsbpf_csum_finish(tsbpf_csum_add(0, ip, 20)));
		sum = tcp ? tsbpf_csum_pseudo4(p->ip4_dst, p->ip4_src, proto, l4len) : 0;
	} else {
		ip[0] = 0x60;
		tsbpf_put16(ip + 4, l4len);
		ip[6] = proto;
		ip[7] = TSBPF_REJECT_TTL;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			tsbpf_put32(ip + 8 + 4 * i, p->ip6_dst[i]);
			tsbpf_put32(ip + 24 + 4 * i, p->ip6_src[i]);
		}
		sum = tsbpf_csum_pseudo6(p->ip6_dst, p->ip6_src, proto, l4len);
	}
	/* Bytes past l4len are zero, so summing the whole span is exact. */
	sum = tsbpf_csum_add_loop(sum, l4, TSBPF_RB_L4SPAN);
	tsbpf_put16(l4 + (tcp ? 16 : 2), tsbpf_csum_finish(sum));
	return iplen + l4len;
}

/* Rewrite the packet into its reject reply: 1 when done, 0 when the packet should just be dropped. */
static __always_inline int tsbpf_reject_rewrite(void *ctx, const int hook, const struct tsbpf_pkt *p)
{
	struct tsbpf_cursor c;
	struct tsbpf_reject_buf *rb;
	__u32 k = 0, l2 = p->l3_off, l34, total;

	if (tsbpf_reject_suppressed(p))
		return 0;
	rb = bpf_map_lookup_elem(&tsbpf_reject_scratch, &k);
	if (!rb)
		return 0;
	if (l2 < 14 || l2 > 22)
		return 0;
	tsbpf_cursor_init(&c, ctx, hook);
	__builtin_memset(rb->b, 0, sizeof(rb->b));
	/* An IP header follows, so 22 bytes are always there; only l2 of them are written back. */
	if (tsbpf_load(&c, hook, 0, rb->b, 22))
		return 0;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		__u8 t = rb->b[i];
		rb->b[i] = rb->b[6 + i];
		rb->b[6 + i] = t;
	}
	if (p->present & TSBPF_HAS_IPV4)
		l34 = tsbpf_reject_l3(&c, hook, p, rb->b + TSBPF_RB_L3, 1);
	else
		l34 = tsbpf_reject_l3(&c, hook, p, rb->b + TSBPF_RB_L3, 0);
	if (!l34 || l34 > TSBPF_RB_SIZE - TSBPF_RB_L3)
		return 0;
	total = l2 + l34;

	if (hook == TSBPF_HOOK_XDP) {
		int delta = (int)total - (int)c.len;
		/* Grow at the head (XDP guarantees headroom), shrink at the tail. */
		if (delta > 0 && bpf_xdp_adjust_head(ctx, -delta))
			return 0;
		if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
			return 0;
		if (bpf_xdp_store_bytes(ctx, 0, rb->b, l2))
			return 0;
		if (bpf_xdp_store_bytes(ctx, l2, rb->b + TSBPF_RB_L3, l34))
			return 0;
	} else {
		if (bpf_skb_change_tail(ctx, total, 0))
			return 0;
		if (bpf_skb_store_bytes(ctx, 0, rb->b, l2, 0))
			return 0;
		if (bpf_skb_store_bytes(ctx, l2, rb->b + TSBPF_RB_L3, l34, 0))
			return 0;
	}
	return 1;
}

/* The program's return value for `reject` at this hook (egress: 1 for tc-egress). */
static __always_inline int tsbpf_reject(void *ctx, const int hook, const int egress, const struct tsbpf_pkt *p)
{
	if (!tsbpf_reject_rewrite(ctx, hook, p))
		return hook == TSBPF_HOOK_XDP ? XDP_DROP : 2 /* TC_ACT_SHOT */;
	if (hook == TSBPF_HOOK_XDP)
		return XDP_TX;
	struct __sk_buff *skb = ctx;
	return bpf_redirect(skb->ifindex, egress ? BPF_F_INGRESS : 0);
}

#endif /* TSBPF_REJECT_H */
