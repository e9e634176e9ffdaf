/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NAT: rewriting a packet's addresses and ports (TC), with every checksum
 * kept right, and the SNAT port allocator. Twin of sdk/nat.ts.
 *
 * Checksums: L4 checksums of the outer headers go through the kernel's
 * helper (bpf_l4_csum_replace), which also keeps a CHECKSUM_PARTIAL skb (a
 * locally sent packet on a veth) right; the IPv4 header checksum is
 * computed here with the same arithmetic and written with the addresses. The result of
 * an update is the value v in [0, 0xfffe] with v = ~(~C + ~old + new) in
 * one's complement arithmetic; UDP keeps a zero (absent) checksum zero and
 * writes a computed zero as 0xffff. Inner headers of ICMP errors are plain
 * bytes to the skb: they are updated with the same arithmetic in C
 * (tsbpf_nat_csum_upd*), and the ICMP checksum follows every changed word.
 *
 * Port allocation never hands out the same (address, port, peer address,
 * peer port, protocol): the reservation is the conntrack alias entry of the
 * translated tuple, inserted with BPF_NOEXIST.
 */
#ifndef TSBPF_NAT_H
#define TSBPF_NAT_H

#include <tsbpf/parse.h>
#include <tsbpf/ct.h>

#ifndef TSBPF_NAT_RULES
#define TSBPF_NAT_RULES 16
#endif
/* Ports tried before a range counts as exhausted. */
#ifndef TSBPF_NAT_PROBES
#define TSBPF_NAT_PROBES 32
#endif

#ifndef BPF_F_MARK_MANGLED_0
#define BPF_F_MARK_MANGLED_0 (1ULL << 5)
#endif
#ifndef BPF_F_PSEUDO_HDR
#define BPF_F_PSEUDO_HDR (1ULL << 4)
#endif

/* nat rule kinds */
#define TSBPF_NAT_SNAT 1
#define TSBPF_NAT_MASQUERADE 2
#define TSBPF_NAT_DNAT 3

struct tsbpf_nat_rule {
	__u8 kind;
	__u8 family;
	__u8 proto;        /* 0: any */
	__u8 _pad;
	__u32 ifindex;     /* SNAT/masquerade: egress interface; DNAT: ingress; 0: any */
	__u32 src_net[4];
	__u32 src_mask[4];
	__u32 dst_net[4];
	__u32 dst_mask[4];
	__u16 dport_min;   /* match on the destination port (0..0: any) */
	__u16 dport_max;
	__u16 port_min;    /* translated port range (0..0: keep the port when free, else any) */
	__u16 port_max;
	__u32 to_min[4];   /* translated address range (the last word varies); unused for masquerade */
	__u32 to_max[4];
};

/* The addresses masquerade uses, by egress ifindex (written by the runtime at attach). */
struct tsbpf_nat_ifaddr {
	__u32 v4;
	__u32 v6[4];
	__u8 has4;
	__u8 has6;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TSBPF_NAT_RULES);
	__type(key, __u32);
	__type(value, struct tsbpf_nat_rule);
} tsbpf_nat_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct tsbpf_nat_ifaddr);
} tsbpf_nat_ifaddr SEC(".maps");

/* ~(~c + ~old + new) in one's complement, never 0xffff (the kernel helpers' result). */
static __always_inline __u16 tsbpf_nat_csum_upd16(__u16 c, __u16 old, __u16 new_)
{
	__u32 s = 0xffff + (__u16)~c + (__u16)~old + (__u32)new_;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline __u16 tsbpf_nat_csum_upd32(__u16 c, __u32 old, __u32 new_)
{
	__u32 s = 0xffff + (__u16)~c + (__u16)~(old >> 16) + (__u16)~(old & 0xffff) + (new_ >> 16) + (new_ & 0xffff);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Offset of the L4 checksum field within its header; 0 when there is none to keep. */
static __always_inline __u32 tsbpf_nat_csum_field(const struct tsbpf_pkt *p)
{
	if (p->present & TSBPF_HAS_TCP)
		return 16;
	if (p->present & TSBPF_HAS_UDP)
		return 6;
	if (p->present & (TSBPF_HAS_ICMP | TSBPF_HAS_ICMPV6))
		return 2;
	return 0;
}

/* Write n bytes at off: straight into the linear area when they are there, else with the helper. */
static __always_inline int tsbpf_nat_store(struct __sk_buff *skb, __u32 off, const void *from, const __u32 n)
{
	void *data, *end;

	/* Keep clang from reusing a computed &skb->data: the verifier only takes ctx + constant offset. */
	asm volatile("" : "+r"(skb));
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (off > TSBPF_MAX_HDR_OFF)
		return -1;
	/* A bound the verifier can see on the register it uses (clang would drop a plain re-check). */
	asm volatile("" : "+r"(off));
	off &= TSBPF_MAX_HDR_OFF;
	if (data + off + n <= end) {
		__builtin_memcpy(data + off, from, n);
		return 0;
	}
	return bpf_skb_store_bytes(skb, off, from, n, 0);
}

/* The L4 checksum for an address change (pseudo-header), through the helper (it knows CHECKSUM_PARTIAL). */
static __always_inline int tsbpf_nat_l4_addr(struct __sk_buff *skb, const struct tsbpf_pkt *p, const __u32 *old, const __u32 *new_)
{
	__u32 cf = tsbpf_nat_csum_field(p);
	__u64 l4flags = (p->present & TSBPF_HAS_UDP) ? BPF_F_MARK_MANGLED_0 : 0;

	/* ICMP has no pseudo-header. */
	if (!cf || (p->present & TSBPF_HAS_ICMP) || tsbpf_addr_eq(old, new_))
		return 0;
	if (p->present & TSBPF_HAS_IPV4)
		return bpf_l4_csum_replace(skb, p->l4_off + cf, bpf_htonl(old[0]), bpf_htonl(new_[0]), BPF_F_PSEUDO_HDR | l4flags | 4);
	__be32 ob[4], nb[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
		ob[i] = bpf_htonl(old[i]);
		nb[i] = bpf_htonl(new_[i]);
	}
	__s64 diff = bpf_csum_diff(ob, 16, nb, 16, 0);
	if (diff < 0)
		return -1;
	return bpf_l4_csum_replace(skb, p->l4_off + cf, 0, (__u32)diff, BPF_F_PSEUDO_HDR | l4flags);
}

/* The L4 checksum for a port (or echo id) change. */
static __always_inline int tsbpf_nat_l4_port(struct __sk_buff *skb, const struct tsbpf_pkt *p, __u16 old, __u16 new_)
{
	__u32 cf = tsbpf_nat_csum_field(p);
	__u64 l4flags = (p->present & TSBPF_HAS_UDP) ? BPF_F_MARK_MANGLED_0 : 0;

	if (old == new_)
		return 0;
	if (!cf)
		return -1;
	return bpf_l4_csum_replace(skb, p->l4_off + cf, bpf_htons(old), bpf_htons(new_), l4flags | 2);
}

/* Rewrite the source (dst = 0) or destination address from old to new_ (the IPv4 header checksum follows). */
static __always_inline int tsbpf_nat_addr(struct __sk_buff *skb, const struct tsbpf_pkt *p, int dst, const __u32 *old, const __u32 *new_)
{
	__u32 l3 = p->l3_off;
	__u8 b[16];

	if (tsbpf_addr_eq(old, new_))
		return 0;
	if (tsbpf_nat_l4_addr(skb, p, old, new_))
		return -1;
	if (p->present & TSBPF_HAS_IPV4) {
		__u8 c[2];
		/* Read the checksum back: an earlier rewrite of the other address may have changed it. */
		if (bpf_skb_load_bytes(skb, l3 + 10, c, 2))
			return -1;
		tsbpf_put16(c, tsbpf_nat_csum_upd32(tsbpf_be16(c), old[0], new_[0]));
		tsbpf_put32(b, new_[0]);
		if (tsbpf_nat_store(skb, l3 + 10, c, 2))
			return -1;
		return tsbpf_nat_store(skb, l3 + (dst ? 16 : 12), b, 4);
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		tsbpf_put32(b + 4 * i, new_[i]);
	return tsbpf_nat_store(skb, l3 + (dst ? 24 : 8), b, 16);
}

/* Rewrite a port (or the ICMP echo id: icmp_id = 1) from old to new_. */
static __always_inline int tsbpf_nat_port(struct __sk_buff *skb, const struct tsbpf_pkt *p, int dst, int icmp_id, __u16 old, __u16 new_)
{
	__u8 b[2];

	if (old == new_)
		return 0;
	if (tsbpf_nat_l4_port(skb, p, old, new_))
		return -1;
	tsbpf_put16(b, new_);
	return tsbpf_nat_store(skb, p->l4_off + (icmp_id ? 4 : dst ? 2 : 0), b, 2);
}

/*
 * Turn the packet whose tuple is `from` into `to` (addresses, ports, echo id).
 * For ICMP echo the id is sport of a request and dport of a reply. IPv4:
 * the header checksum and both addresses are written at once.
 */
static __always_inline int tsbpf_nat_rewrite(struct __sk_buff *skb, const struct tsbpf_pkt *p, const struct tsbpf_tuple *from,
					     const struct tsbpf_tuple *to)
{
	if (p->present & TSBPF_HAS_IPV4) {
		__u8 h[10];
		__u16 c = p->ip4_csum;
		if (from->src[0] != to->src[0] || from->dst[0] != to->dst[0]) {
			if (tsbpf_nat_l4_addr(skb, p, from->src, to->src) || tsbpf_nat_l4_addr(skb, p, from->dst, to->dst))
				return -1;
			c = tsbpf_nat_csum_upd32(c, from->src[0], to->src[0]);
			c = tsbpf_nat_csum_upd32(c, from->dst[0], to->dst[0]);
			tsbpf_put16(h, c);
			tsbpf_put32(h + 2, to->src[0]);
			tsbpf_put32(h + 6, to->dst[0]);
			if (tsbpf_nat_store(skb, (__u32)p->l3_off + 10, h, 10))
				return -1;
		}
	} else {
		if (tsbpf_nat_addr(skb, p, 0, from->src, to->src))
			return -1;
		if (tsbpf_nat_addr(skb, p, 1, from->dst, to->dst))
			return -1;
	}
	if (from->icmp == TSBPF_CT_ICMP_ECHO_REQ)
		return tsbpf_nat_port(skb, p, 0, 1, from->sport, to->sport);
	if (from->icmp == TSBPF_CT_ICMP_ECHO_REP)
		return tsbpf_nat_port(skb, p, 1, 1, from->dport, to->dport);
	if (from->sport == to->sport && from->dport == to->dport)
		return 0;
	{
		__u8 b[4];
		if (tsbpf_nat_l4_port(skb, p, from->sport, to->sport) || tsbpf_nat_l4_port(skb, p, from->dport, to->dport))
			return -1;
		tsbpf_put16(b, to->sport);
		tsbpf_put16(b + 2, to->dport);
		return tsbpf_nat_store(skb, p->l4_off, b, 4);
	}
}

/* For a tc or an XDP program (hk: TSBPF_HOOK_TC or TSBPF_HOOK_XDP, a constant). */

/* Read n bytes (a constant) at off: the helper at tc (non-linear skbs too), the frame at XDP. */
static __always_inline int tsbpf_nat_load_hk(void *ctx, const int hk, __u32 off, void *to, const __u32 n)
{
	struct tsbpf_cursor c;

	if (hk == TSBPF_HOOK_TC)
		return bpf_skb_load_bytes(ctx, off, to, n);
	tsbpf_cursor_init(&c, ctx, hk);
	if (off > TSBPF_MAX_HDR_OFF)
		return -1;
	asm volatile("" : "+r"(off));
	off &= TSBPF_MAX_HDR_OFF;
	if (c.data + off + n > c.data_end)
		return -1;
	__builtin_memcpy(to, c.data + off, n);
	return 0;
}

/* Write n bytes (a constant) at off. */
static __always_inline int tsbpf_nat_store_hk(void *ctx, const int hk, __u32 off, const void *from, const __u32 n)
{
	struct tsbpf_cursor c;

	if (hk == TSBPF_HOOK_TC)
		return bpf_skb_store_bytes(ctx, off, from, n, 0);
	tsbpf_cursor_init(&c, ctx, hk);
	if (off > TSBPF_MAX_HDR_OFF)
		return -1;
	asm volatile("" : "+r"(off));
	off &= TSBPF_MAX_HDR_OFF;
	if (c.data + off + n > c.data_end)
		return -1;
	__builtin_memcpy(c.data + off, from, n);
	return 0;
}

/*
 * XDP: the L4 checksum at `cf` (tsbpf_nat_csum_field) for an address change
 * (pseudo: covered by the pseudo-header) and port changes, with the
 * arithmetic of bpf_l4_csum_replace on a full checksum; UDP's zero stays zero.
 */
static __always_inline int tsbpf_nat_xdp_l4(void *ctx, const struct tsbpf_pkt *p, const __u32 *old, const __u32 *new_, int naddr,
					    __u16 oport, __u16 nport)
{
	__u32 cf = tsbpf_nat_csum_field(p);
	int udp = (p->present & TSBPF_HAS_UDP) != 0;
	__u8 b[2];
	__u16 c;

	if (!cf)
		return oport == nport ? 0 : -1;
	if (tsbpf_nat_load_hk(ctx, TSBPF_HOOK_XDP, p->l4_off + cf, b, 2))
		return -1;
	c = tsbpf_be16(b);
	if (udp && c == 0)
		return 0;
	/* ICMP has no pseudo-header. */
	if (!(p->present & TSBPF_HAS_ICMP)) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (i < naddr)
				c = tsbpf_nat_csum_upd32(c, old[i], new_[i]);
		}
	}
	if (oport != nport)
		c = tsbpf_nat_csum_upd16(c, oport, nport);
	if (udp && c == 0)
		c = 0xffff;
	tsbpf_put16(b, c);
	return tsbpf_nat_store_hk(ctx, TSBPF_HOOK_XDP, p->l4_off + cf, b, 2);
}

/* tsbpf_nat_addr for tc and XDP: rewrite the source (dst = 0) or destination address; checksums follow. */
static __always_inline int tsbpf_nat_addr_hk(void *ctx, const int hk, const struct tsbpf_pkt *p, int dst, const __u32 *old, const __u32 *new_)
{
	__u8 b[16];
	__u32 l3 = p->l3_off;

	if (hk == TSBPF_HOOK_TC)
		return tsbpf_nat_addr(ctx, p, dst, old, new_);
	if (tsbpf_addr_eq(old, new_))
		return 0;
	if (tsbpf_nat_xdp_l4(ctx, p, old, new_, (p->present & TSBPF_HAS_IPV4) ? 1 : 4, 0, 0))
		return -1;
	if (p->present & TSBPF_HAS_IPV4) {
		__u8 c[2];
		if (tsbpf_nat_load_hk(ctx, hk, l3 + 10, c, 2))
			return -1;
		tsbpf_put16(c, tsbpf_nat_csum_upd32(tsbpf_be16(c), old[0], new_[0]));
		tsbpf_put32(b, new_[0]);
		if (tsbpf_nat_store_hk(ctx, hk, l3 + 10, c, 2))
			return -1;
		return tsbpf_nat_store_hk(ctx, hk, l3 + (dst ? 16 : 12), b, 4);
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		tsbpf_put32(b + 4 * i, new_[i]);
	return tsbpf_nat_store_hk(ctx, hk, l3 + (dst ? 24 : 8), b, 16);
}

/* Address a in net/mask (all four words). */
static __always_inline int tsbpf_nat_in_net(const __u32 *a, const __u32 *net, const __u32 *mask)
{
	return (a[0] & mask[0]) == net[0] && (a[1] & mask[1]) == net[1] && (a[2] & mask[2]) == net[2] && (a[3] & mask[3]) == net[3];
}

/* Pick the translated address from a rule's range by hash (a client keeps its address); the range spans
 * the address's last 32-bit word (word 0 for IPv4, word 3 for IPv6). */
static __always_inline void tsbpf_nat_pick_addr(__u32 *out, const struct tsbpf_nat_rule *r, __u32 hash)
{
	out[0] = r->to_min[0];
	out[1] = r->to_min[1];
	out[2] = r->to_min[2];
	out[3] = r->to_min[3];
	if (r->family == 4) {
		__u32 span = r->to_max[0] - r->to_min[0] + 1;
		out[0] = span ? r->to_min[0] + hash % span : r->to_min[0];
	} else {
		__u32 span = r->to_max[3] - r->to_min[3] + 1;
		out[3] = span ? r->to_min[3] + hash % span : r->to_min[3];
	}
}

/* The first rule of one of `kinds` (bit 1 << kind) that matches tuple x on ifindex (bpf_loop callback). */
struct tsbpf_nat_match_ctx {
	const struct tsbpf_tuple *x;
	__u32 ifindex;
	__u32 kinds;
	__u32 found; /* 1 + rule index, 0: none */
};

/* DNAT rule r for a new connection: x->dst (and x->dport when the rule has ports) from the flow hash. */
static __always_inline void tsbpf_nat_dnat_to(struct tsbpf_tuple *x, const struct tsbpf_nat_rule *r, __u32 hash)
{
	tsbpf_nat_pick_addr(x->dst, r, hash);
	if (r->port_min || r->port_max) {
		__u32 span = (__u32)r->port_max - r->port_min + 1;
		x->dport = (__u16)(r->port_min + hash % span);
	}
}

/*
 * SNAT or masquerade rule r for connection x leaving through ifindex: *to is
 * x with the new source address, [*pmin, *pmax] the source ports to allocate
 * from. -1: masquerade, and the interface has no address of x's family.
 */
static __always_inline int tsbpf_nat_snat_to(struct tsbpf_tuple *to, const struct tsbpf_tuple *x, const struct tsbpf_nat_rule *r, __u32 ifindex,
					     __u32 hash, __u16 *pmin, __u16 *pmax)
{
	__builtin_memcpy(to, x, sizeof(*x));
	if (r->kind == TSBPF_NAT_MASQUERADE) {
		struct tsbpf_nat_ifaddr *ia = bpf_map_lookup_elem(&tsbpf_nat_ifaddr, &ifindex);
		if (!ia || (x->family == 4 ? !ia->has4 : !ia->has6))
			return -1;
		if (x->family == 4) {
			to->src[0] = ia->v4;
			to->src[1] = to->src[2] = to->src[3] = 0;
		} else {
			__builtin_memcpy(to->src, ia->v6, 16);
		}
	} else {
		tsbpf_nat_pick_addr(to->src, r, hash);
	}
	*pmin = r->port_min;
	*pmax = r->port_max;
	if (*pmin == 0 && *pmax == 0) {
		*pmin = x->icmp ? 0 : 1024;
		*pmax = 65535;
	}
	return 0;
}

static long tsbpf_nat_match_cb(__u32 i, void *data)
{
	struct tsbpf_nat_match_ctx *c = data;
	const struct tsbpf_tuple *x = c->x;
	__u32 slot = i;
	struct tsbpf_nat_rule *r = bpf_map_lookup_elem(&tsbpf_nat_rules, &slot);

	if (!r)
		return 1;
	if (!(c->kinds & (1u << (r->kind & 7))))
		return 0;
	if (r->family != x->family || (r->proto && r->proto != x->proto) || (r->ifindex && r->ifindex != c->ifindex))
		return 0;
	if (!tsbpf_nat_in_net(x->src, r->src_net, r->src_mask) || !tsbpf_nat_in_net(x->dst, r->dst_net, r->dst_mask))
		return 0;
	if ((r->dport_min || r->dport_max) && (x->dport < r->dport_min || x->dport > r->dport_max))
		return 0;
	c->found = i + 1;
	return 1;
}

/* The first rule of `kinds` among the first n that matches x (its index in *index), NULL when none. */
static __always_inline struct tsbpf_nat_rule *tsbpf_nat_find(const struct tsbpf_tuple *x, __u32 ifindex, __u32 kinds, __u32 n, __u32 *index)
{
	struct tsbpf_nat_match_ctx c = { .x = x, .ifindex = ifindex, .kinds = kinds, .found = 0 };
	if (n > TSBPF_NAT_RULES)
		n = TSBPF_NAT_RULES;
	bpf_loop(n, tsbpf_nat_match_cb, &c, 0);
	if (!c.found)
		return NULL;
	*index = c.found - 1;
	return bpf_map_lookup_elem(&tsbpf_nat_rules, index);
}

struct tsbpf_nat_probe_ctx {
	struct tsbpf_tuple *x;
	struct tsbpf_ct_key *key;
	struct tsbpf_ct_entry *alias;
	__u64 now;
	__u32 pmin;
	__u32 range;
	__u32 start;
	__u32 found;
};

static long tsbpf_nat_probe_cb(__u32 i, void *data)
{
	struct tsbpf_nat_probe_ctx *c = data;
	__u32 range = c->range ? c->range : 1;

	c->x->sport = (__u16)(c->pmin + (c->start + i) % range);
	tsbpf_ct_key_of(c->key, c->x);
	if (bpf_map_update_elem(&tsbpf_ct, c->key, c->alias, BPF_NOEXIST) == 0 ||
	    (tsbpf_ct_key_free(c->key, &c->alias->primary, c->now) && bpf_map_update_elem(&tsbpf_ct, c->key, c->alias, BPF_ANY) == 0)) {
		c->found = 1;
		return 1;
	}
	return 0;
}

/*
 * Reserve a source port for the translated tuple *x (x->src already set) by
 * inserting its alias entry (`alias`, prepared by the caller) under `key`.
 * Tries `prefer` first when it lies in [pmin, pmax], then upwards from
 * hash % range, at most TSBPF_NAT_PROBES ports. Sets x->sport and returns 0,
 * or -1 when every port tried is taken.
 */
static __always_inline int tsbpf_nat_alloc(struct tsbpf_tuple *x, struct tsbpf_ct_key *key, struct tsbpf_ct_entry *alias, __u16 pmin,
					   __u16 pmax, __u16 prefer, __u32 hash, __u64 now)
{
	__u32 range = (__u32)pmax - pmin + 1;
	struct tsbpf_nat_probe_ctx c = {
		.x = x,
		.key = key,
		.alias = alias,
		.now = now,
		.pmin = pmin,
		.range = range,
		.start = (prefer >= pmin && prefer <= pmax) ? (__u32)(prefer - pmin) : hash % range,
		.found = 0,
	};
	bpf_loop(range < TSBPF_NAT_PROBES ? range : TSBPF_NAT_PROBES, tsbpf_nat_probe_cb, &c, 0);
	return c.found ? 0 : -1;
}

#endif /* TSBPF_NAT_H */
