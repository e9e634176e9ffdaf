/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stateful datapath of a `services()` program at TC: conntrack, service
 * load balancing (DNAT to a backend), static DNAT rules, SNAT/masquerade, and
 * the translation of replies and of ICMP errors about tracked connections.
 * sdk/stateful.ts is the TS reference (evaluateServices); docs/stateful.md
 * describes the model.
 *
 *   ingress: new connections meet services and DNAT rules (and hairpin SNAT);
 *            replies and ICMP errors are translated back;
 *   egress:  new connections meet services (client-side placement) and
 *            SNAT/masquerade rules, which are decided once per connection.
 *
 * A forwarded packet passes an ingress and an egress hook: each direction of
 * a connection is counted (and drives the TCP state) at the first hook that
 * saw it.
 */
#ifndef TSBPF_SVC_H
#define TSBPF_SVC_H

#include <tsbpf/parse.h>
#include <tsbpf/csum.h>
#include <tsbpf/ct.h>
#include <tsbpf/nat.h>
#include <tsbpf/icmperr.h>
#include <tsbpf/lb.h>

#include <bpf/bpf_core_read.h>

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

/* skb->ip_summed (include/linux/skbuff.h), read through the kernel's sk_buff (CO-RE). */
#define TSBPF_CHECKSUM_NONE 0
#define TSBPF_CHECKSUM_UNNECESSARY 1
#define TSBPF_CHECKSUM_COMPLETE 2
#define TSBPF_CHECKSUM_PARTIAL 3

struct sk_buff___tsbpf {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Slots of tsbpf_svc_stats (per CPU). sdk/stateful.ts SVC_STATS names them. */
#define TSBPF_SVC_PACKETS 0
#define TSBPF_SVC_UNTRACKED 1
#define TSBPF_SVC_CT_NEW 2
#define TSBPF_SVC_CT_ESTABLISHED 3
#define TSBPF_SVC_CT_RELATED 4
#define TSBPF_SVC_CT_INVALID 5
#define TSBPF_SVC_LB_NEW 6
#define TSBPF_SVC_DNAT_NEW 7
#define TSBPF_SVC_SNAT_NEW 8
#define TSBPF_SVC_HAIRPIN 9
#define TSBPF_SVC_AFFINITY 10
#define TSBPF_SVC_XLATE 11
#define TSBPF_SVC_ICMP_XLATE 12
#define TSBPF_SVC_DROP_NO_BACKEND 13
#define TSBPF_SVC_DROP_NAT_EXHAUSTED 14
#define TSBPF_SVC_DROP_CLASH 15
#define TSBPF_SVC_DROP_ERROR 16
#define TSBPF_SVC_NO_IFADDR 17
#define TSBPF_SVC_STATS 20

/* Event kinds (tsbpf_svc_events). */
#define TSBPF_SVC_EV_NO_BACKEND 1
#define TSBPF_SVC_EV_NAT_EXHAUSTED 2
#define TSBPF_SVC_EV_CLASH 3

#define TSBPF_HOOK_INGRESS TSBPF_CT_HOOK_INGRESS
#define TSBPF_HOOK_EGRESS TSBPF_CT_HOOK_EGRESS

struct tsbpf_svc_event {
	__u64 ts_ns;
	__u32 kind;
	__u32 ifindex;
	__u32 svc_id;
	__u32 rule;    /* NAT rule index, or 0xffffffff */
	__u8 family;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__u32 src[4];
	__u32 dst[4];
};

struct tsbpf_svc_scratch {
	struct tsbpf_pkt pkt;
	struct tsbpf_tuple t;  /* the packet */
	struct tsbpf_tuple to; /* what it becomes */
	struct tsbpf_tuple it; /* ICMP error: the quoted packet */
	struct tsbpf_tuple ito;
	struct tsbpf_ct_key key;
	struct tsbpf_ct_key key2;
	struct tsbpf_lb_key lbk;
	struct tsbpf_ct_entry ent;
	struct tsbpf_ct_entry alias;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_svc_scratch);
} tsbpf_svc_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TSBPF_SVC_STATS);
	__type(key, __u32);
	__type(value, __u64);
} tsbpf_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} tsbpf_svc_events SEC(".maps");

static __always_inline void tsbpf_svc_stat(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&tsbpf_svc_stats, &slot);
	if (c)
		*c += 1;
}

static __always_inline void tsbpf_svc_event(__u32 kind, const struct tsbpf_tuple *t, __u32 ifindex, __u32 svc_id, __u32 rule)
{
	struct tsbpf_svc_event *e = bpf_ringbuf_reserve(&tsbpf_svc_events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->ifindex = ifindex;
	e->svc_id = svc_id;
	e->rule = rule;
	e->family = t->family;
	e->proto = t->proto;
	e->sport = t->sport;
	e->dport = t->dport;
	e->_pad = 0;
	__builtin_memcpy(e->src, t->src, 16);
	__builtin_memcpy(e->dst, t->dst, 16);
	bpf_ringbuf_submit(e, 0);
}

/* What a tc or XDP (hk) program returns for a packet it lets through, and for one it drops. */
#ifdef TSBPF_SVC_CONTINUE
#define TSBPF_SVC_TC_PASS (-1) /* TC_ACT_UNSPEC: filters at later priorities of the hook run next */
#else
#define TSBPF_SVC_TC_PASS TC_ACT_OK
#endif
#define TSBPF_SVC_OK(hk) ((hk) == TSBPF_HOOK_XDP ? XDP_PASS : TSBPF_SVC_TC_PASS)
#define TSBPF_SVC_DROP(hk) ((hk) == TSBPF_HOOK_XDP ? XDP_DROP : TC_ACT_SHOT)

static __always_inline __u32 tsbpf_svc_ifindex(void *ctx, const int hk)
{
	if (hk == TSBPF_HOOK_XDP)
		return ((struct xdp_md *)ctx)->ingress_ifindex;
	return ((struct __sk_buff *)ctx)->ifindex;
}

/* tsbpf_nat_rewrite for tc and XDP: turn the packet whose tuple is `from` into `to`. */
static __always_inline int tsbpf_svc_rewrite(void *ctx, const int hk, const struct tsbpf_pkt *p, const struct tsbpf_tuple *from,
					     const struct tsbpf_tuple *to)
{
	__u8 b[4];

	if (hk == TSBPF_HOOK_TC)
		return tsbpf_nat_rewrite(ctx, p, from, to);
	if (tsbpf_nat_addr_hk(ctx, hk, p, 0, from->src, to->src) || tsbpf_nat_addr_hk(ctx, hk, p, 1, from->dst, to->dst))
		return -1;
	if (from->icmp) {
		__u16 o = from->icmp == TSBPF_CT_ICMP_ECHO_REQ ? from->sport : from->dport;
		__u16 n = from->icmp == TSBPF_CT_ICMP_ECHO_REQ ? to->sport : to->dport;
		if (o == n)
			return 0;
		if (tsbpf_nat_xdp_l4(ctx, p, 0, 0, 0, o, n))
			return -1;
		tsbpf_put16(b, n);
		return tsbpf_nat_store_hk(ctx, hk, p->l4_off + 4, b, 2);
	}
	if (from->sport == to->sport && from->dport == to->dport)
		return 0;
	if (tsbpf_nat_xdp_l4(ctx, p, 0, 0, 0, from->sport, to->sport) || tsbpf_nat_xdp_l4(ctx, p, 0, 0, 0, from->dport, to->dport))
		return -1;
	tsbpf_put16(b, to->sport);
	tsbpf_put16(b + 2, to->dport);
	return tsbpf_nat_store_hk(ctx, hk, p->l4_off, b, 4);
}

/*
 * Parse for the datapath: the common frame (no VLAN tag, IPv4 without
 * options and not a fragment, or IPv6 without extension headers, carrying
 * TCP or UDP, headers in the linear area) is read straight from the packet
 * into the fields the datapath uses; anything else goes through the full
 * parser (tsbpf_parse), which gives the same values for those fields. The
 * other fields of *p are left as they were (the scratch is per CPU: a
 * previous packet's): the datapath reads only present, len, l3_off, l4_off,
 * proto, the addresses, ip4_csum, ports, tcp_flags, l4_csum and icmp_type.
 * Code that needs more of the packet must add it here or call tsbpf_parse.
 */
static __always_inline void tsbpf_svc_parse(void *ctx, const int hook, struct tsbpf_pkt *p)
{
	struct tsbpf_cursor c;
	__u8 *d;
	__u32 l4;
	__u8 proto;

	tsbpf_cursor_init(&c, ctx, hook);
	d = c.data;
	if (hook == TSBPF_HOOK_TC && ((struct __sk_buff *)ctx)->vlan_present)
		goto full;
	if ((void *)(d + 14 + 40 + 20) > c.data_end)
		goto full; /* also the shortest IPv4 TCP frame: the checks below are on 54 bytes */
	if (d[12] == 0x08 && d[13] == 0x00) {
		if (d[14] != 0x45 || (tsbpf_be16(d + 20) & 0x3fff))
			goto full;
		proto = d[23];
		l4 = 34;
		p->present = TSBPF_HAS_ETH | TSBPF_HAS_L3 | TSBPF_HAS_IPV4 | TSBPF_HAS_PROTO | TSBPF_HAS_L4OFF;
		p->ip4_csum = tsbpf_be16(d + 24);
		p->ip4_src = tsbpf_be32(d + 26);
		p->ip4_dst = tsbpf_be32(d + 30);
	} else if (d[12] == 0x86 && d[13] == 0xdd) {
		if ((d[14] >> 4) != 6 || (void *)(d + 74 + 20) > c.data_end)
			goto full;
		proto = d[20];
		l4 = 54;
		p->present = TSBPF_HAS_ETH | TSBPF_HAS_L3 | TSBPF_HAS_IPV6 | TSBPF_HAS_PROTO | TSBPF_HAS_L4OFF;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			p->ip6_src[i] = tsbpf_be32(d + 22 + 4 * i);
			p->ip6_dst[i] = tsbpf_be32(d + 38 + 4 * i);
		}
	} else {
		goto full;
	}
	if (proto == TSBPF_IPPROTO_TCP) {
		__u8 *h = d + l4;
		if ((void *)(h + 20) > c.data_end)
			goto full;
		p->present |= TSBPF_HAS_TCP;
		p->tcp_flags = h[13];
		p->l4_csum = tsbpf_be16(h + 16);
		p->sport = tsbpf_be16(h);
		p->dport = tsbpf_be16(h + 2);
	} else if (proto == TSBPF_IPPROTO_UDP) {
		__u8 *h = d + l4;
		if ((void *)(h + 8) > c.data_end)
			goto full;
		p->present |= TSBPF_HAS_UDP;
		p->tcp_flags = 0;
		p->l4_csum = tsbpf_be16(h + 6);
		p->sport = tsbpf_be16(h);
		p->dport = tsbpf_be16(h + 2);
	} else {
		goto full;
	}
	p->len = c.len;
	p->proto = proto;
	p->l3_off = 14;
	p->l4_off = l4;
	p->icmp_type = 0;
	return;
full:
	tsbpf_parse(ctx, hook, p);
}

/*
 * SNAT/masquerade rules for a connection leaving through `ifindex`: on the
 * first rule that matches, reserve a source (address, port) and set *x.
 * Returns 0 (no rule matched), 1 (translated) or -1 (the range is exhausted;
 * *rule is the rule).
 */
static __always_inline int tsbpf_svc_snat(struct tsbpf_svc_scratch *s, const struct tsbpf_ct_config *cfg, struct tsbpf_tuple *x,
					  const struct tsbpf_ct_key *pkey, __u32 ifindex, __u32 hash, __u64 now, __u32 *rule)
{
	__u32 i;
	struct tsbpf_nat_rule *r = tsbpf_nat_find(x, ifindex, (1u << TSBPF_NAT_SNAT) | (1u << TSBPF_NAT_MASQUERADE), cfg->nat_rules, &i);

	if (!r)
		return 0;
	__u16 pmin, pmax;
	if (tsbpf_nat_snat_to(&s->to, x, r, ifindex, hash, &pmin, &pmax)) {
		tsbpf_svc_stat(TSBPF_SVC_NO_IFADDR);
		return 0;
	}
	*rule = i;
	tsbpf_ct_alias_init(&s->alias, pkey, x, now);
	if (tsbpf_nat_alloc(&s->to, &s->key2, &s->alias, pmin, pmax, x->sport, hash, now))
		return -1;
	__builtin_memcpy(x, &s->to, sizeof(*x));
	return 1;
}

/* Static DNAT rules for a new connection arriving on `ifindex`: 1 when one applied (x->dst/dport set). */
static __always_inline int tsbpf_svc_dnat(const struct tsbpf_ct_config *cfg, struct tsbpf_tuple *x, __u32 ifindex, __u32 hash, __u32 *rule)
{
	__u32 i;
	struct tsbpf_nat_rule *r = tsbpf_nat_find(x, ifindex, 1u << TSBPF_NAT_DNAT, cfg->nat_rules, &i);

	if (!r)
		return 0;
	tsbpf_nat_dnat_to(x, r, hash);
	*rule = i;
	return 1;
}

/* The tuple a packet of the original direction leaves this hook with. */
static __always_inline void tsbpf_svc_forward(struct tsbpf_tuple *to, const struct tsbpf_ct_entry *e, const struct tsbpf_tuple *t, __u8 hook)
{
	__builtin_memcpy(to, &e->x, sizeof(*to));
	/* At ingress only DNAT applies (and the hairpin's SNAT); other SNAT waits for egress. */
	if (hook == TSBPF_HOOK_INGRESS && !(e->flags & TSBPF_CTF_HAIRPIN)) {
		__builtin_memcpy(to->src, t->src, 16);
		to->sport = t->sport;
	}
	to->icmp = t->icmp;
}

/*
 * The fast rewrite of a TCP/UDP packet whose headers were read by the fast
 * parse (IPv4 without options or IPv6 without extension headers): the L4
 * checksum is updated here, with the arithmetic of bpf_l4_csum_replace, and
 * written with the addresses and ports through one packet pointer. Only for
 * ip_summed NONE/UNNECESSARY (the L4 checksum is a full one; nothing else to
 * keep) and PARTIAL (the field holds the pseudo-header sum: addresses change
 * it, ports do not); CHECKSUM_COMPLETE (skb->csum to follow) takes the
 * helpers. Returns 1 when done, 0 when the caller must take the general path.
 */
static __always_inline int tsbpf_svc_rewrite_fast(void *ctx, const int hk, const struct tsbpf_pkt *p, const struct tsbpf_tuple *from,
						  const struct tsbpf_tuple *to)
{
	/* XDP sees bytes only: checksums there are full ones (docs/stateful.md, XDP). */
	__u8 ips = hk == TSBPF_HOOK_XDP ? TSBPF_CHECKSUM_NONE : BPF_CORE_READ_BITFIELD((struct sk_buff___tsbpf *)bpf_cast_to_kern_ctx(ctx), ip_summed);
	int v4 = p->present & TSBPF_HAS_IPV4, udp = p->present & TSBPF_HAS_UDP;
	__u32 l4 = v4 ? 34 : 54, cf = udp ? 6 : 16;
	__u16 c = p->l4_csum, ipc = p->ip4_csum;
	__u8 *d, *end;

	if (ips == TSBPF_CHECKSUM_COMPLETE || p->l3_off != 14 || p->l4_off != l4 || !(p->present & (TSBPF_HAS_TCP | TSBPF_HAS_UDP)))
		return 0;
	if (!(udp && c == 0)) {
		if (ips == TSBPF_CHECKSUM_PARTIAL)
			c = ~c; /* the complement of the pseudo-header sum updates like a checksum */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (i > 0 && v4)
				break;
			c = tsbpf_nat_csum_upd32(c, from->src[i], to->src[i]);
			c = tsbpf_nat_csum_upd32(c, from->dst[i], to->dst[i]);
		}
		if (ips == TSBPF_CHECKSUM_PARTIAL) {
			c = ~c;
		} else {
			c = tsbpf_nat_csum_upd16(c, from->sport, to->sport);
			c = tsbpf_nat_csum_upd16(c, from->dport, to->dport);
		}
		if (udp && c == 0)
			c = 0xffff;
	}
	if (v4) {
		ipc = tsbpf_nat_csum_upd32(ipc, from->src[0], to->src[0]);
		ipc = tsbpf_nat_csum_upd32(ipc, from->dst[0], to->dst[0]);
	}
	{
		struct tsbpf_cursor cur;
		tsbpf_cursor_init(&cur, ctx, hk);
		d = cur.data;
		end = cur.data_end;
	}
	if ((void *)(d + 54 + 20) > (void *)end)
		return 0;
	if (v4) {
		tsbpf_put16(d + 24, ipc);
		tsbpf_put32(d + 26, to->src[0]);
		tsbpf_put32(d + 30, to->dst[0]);
		tsbpf_put16(d + 34, to->sport);
		tsbpf_put16(d + 36, to->dport);
		tsbpf_put16(d + 34 + cf, c);
	} else {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			tsbpf_put32(d + 22 + 4 * i, to->src[i]);
			tsbpf_put32(d + 38 + 4 * i, to->dst[i]);
		}
		tsbpf_put16(d + 54, to->sport);
		tsbpf_put16(d + 56, to->dport);
		tsbpf_put16(d + 54 + cf, c);
	}
	return 1;
}

static __always_inline int tsbpf_svc_apply(void *ctx, const int hk, struct tsbpf_svc_scratch *s)
{
	if (tsbpf_tuple_eq(&s->t, &s->to))
		return TSBPF_SVC_OK(hk);
	if (!s->t.icmp && tsbpf_svc_rewrite_fast(ctx, hk, &s->pkt, &s->t, &s->to)) {
		tsbpf_svc_stat(TSBPF_SVC_XLATE);
		return TSBPF_SVC_OK(hk);
	}
	if (tsbpf_svc_rewrite(ctx, hk, &s->pkt, &s->t, &s->to)) {
		tsbpf_svc_stat(TSBPF_SVC_DROP_ERROR);
		return TSBPF_SVC_DROP(hk);
	}
	tsbpf_svc_stat(TSBPF_SVC_XLATE);
	return TSBPF_SVC_OK(hk);
}

/*
 * A packet of a looped hairpin connection (TSBPF_CTF_LOOP) leaving by egress:
 * translated, it is addressed to this host, so it goes back in at this
 * interface's ingress (Ethernet addresses swapped, so it is for us there).
 */
static __always_inline int tsbpf_svc_loop(void *ctx, int verdict)
{
	struct __sk_buff *skb = ctx; /* tc only: callers test hk */
	__u8 mac[12], sw[12];

	if (verdict == TC_ACT_SHOT)
		return verdict; /* any passing verdict loops */
	if (bpf_skb_load_bytes(skb, 0, mac, 12))
		goto fail;
	__builtin_memcpy(sw, mac + 6, 6);
	__builtin_memcpy(sw + 6, mac, 6);
	if (bpf_skb_store_bytes(skb, 0, sw, 12, 0))
		goto fail;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
fail:
	tsbpf_svc_stat(TSBPF_SVC_DROP_ERROR);
	return TC_ACT_SHOT;
}

/* A packet of a connection that exists. */
static __always_inline int tsbpf_svc_existing(void *ctx, const int hk, struct tsbpf_svc_scratch *s, const struct tsbpf_ct_config *cfg,
					      struct tsbpf_ct_entry *e, int dir, int stage, __u8 hook, __u64 now)
{
	struct tsbpf_pkt *p = &s->pkt;
	struct tsbpf_tuple *t = &s->t;

	/* SNAT is decided once, at the first egress of the original direction. */
	if (hook == TSBPF_HOOK_EGRESS && dir == 0 && !(e->flags & TSBPF_CTF_SNAT_DONE)) {
		__u32 rule = 0;
		struct tsbpf_tuple *x = &s->ito;
		__builtin_memcpy(x, &e->x, sizeof(*x));
		/* No NAT rules (the common service-only program): nothing to match, no hash to compute. */
		int r = cfg->nat_rules ? tsbpf_svc_snat(s, cfg, x, &s->key, tsbpf_svc_ifindex(ctx, hk), tsbpf_flow_hash(&e->o, cfg->seed), now, &rule) : 0;
		if (r < 0) {
			tsbpf_svc_stat(TSBPF_SVC_DROP_NAT_EXHAUSTED);
			tsbpf_svc_event(TSBPF_SVC_EV_NAT_EXHAUSTED, t, tsbpf_svc_ifindex(ctx, hk), e->svc_id, rule);
			return TSBPF_SVC_DROP(hk);
		}
		if (r > 0) {
			__builtin_memcpy(e->x.src, x->src, 16);
			e->x.sport = x->sport;
			e->flags |= TSBPF_CTF_SNAT;
			e->nat_rule = rule + 1;
			tsbpf_svc_stat(TSBPF_SVC_SNAT_NEW);
		}
		e->flags |= TSBPF_CTF_SNAT_DONE;
		/* Without DNAT the packet looked translated (o == x) until SNAT changed x. */
		if (stage == 2 && !tsbpf_tuple_eq(t, &e->x))
			stage = 0;
	}
	int invalid = (p->present & TSBPF_HAS_TCP) && tsbpf_tcp_flags_invalid(p->tcp_flags);
	tsbpf_ct_update(e, p, cfg, dir, hook, now);
	if (invalid)
		tsbpf_svc_stat(TSBPF_SVC_CT_INVALID);
	else if (dir == 0 && !(e->flags & TSBPF_CTF_SEEN_REPLY))
		tsbpf_svc_stat(TSBPF_SVC_CT_NEW);
	else
		tsbpf_svc_stat(TSBPF_SVC_CT_ESTABLISHED);

	if (dir == 0) {
		if (stage == 2)
			return TSBPF_SVC_OK(hk); /* translated already */
		tsbpf_svc_forward(&s->to, e, t, hook);
		if (stage == 1 && hook == TSBPF_HOOK_INGRESS)
			return TSBPF_SVC_OK(hk); /* between DNAT and SNAT: nothing more at ingress */
	} else {
		if (stage == 2)
			return TSBPF_SVC_OK(hk);
		tsbpf_tuple_reverse(&s->to, &e->o);
		s->to.icmp = t->icmp;
	}
	if (hk != TSBPF_HOOK_XDP && hook == TSBPF_HOOK_EGRESS && (e->flags & TSBPF_CTF_LOOP))
		return tsbpf_svc_loop(ctx, tsbpf_svc_apply(ctx, hk, s));
	return tsbpf_svc_apply(ctx, hk, s);
}

/* The first packet of a connection. */
static __always_inline int tsbpf_svc_new(void *ctx, const int hk, struct tsbpf_svc_scratch *s, const struct tsbpf_ct_config *cfg, __u8 hook,
					 __u64 now)
{
	struct tsbpf_pkt *p = &s->pkt;
	struct tsbpf_tuple *t = &s->t;
	struct tsbpf_ct_entry *ent = &s->ent;
	__u8 state = tsbpf_ct_initial_state(p);
	__u32 ifindex = tsbpf_svc_ifindex(ctx, hk);
	__u32 hash, rule = 0;
	int track;

	if (state == TSBPF_CT_NONE) {
		tsbpf_svc_stat(TSBPF_SVC_CT_INVALID);
		return TSBPF_SVC_OK(hk);
	}
	hash = tsbpf_flow_hash(t, cfg->seed);
	tsbpf_ct_init(ent, t, p, cfg, state, hook, now);
	tsbpf_ct_key_of(&s->key, t);
	track = cfg->flags & TSBPF_CTC_TRACK_ALL;

	struct tsbpf_lb_service *svc = tsbpf_lb_lookup(&s->lbk, t);
	if (svc) {
		__u32 bid = 0;
		int aff = 0;
		struct tsbpf_lb_backend *b = tsbpf_lb_select(svc, t, hash, now, &bid, &aff);
		if (!b) {
			tsbpf_svc_stat(TSBPF_SVC_DROP_NO_BACKEND);
			tsbpf_svc_event(TSBPF_SVC_EV_NO_BACKEND, t, ifindex, svc->id, 0xffffffff);
			return TSBPF_SVC_DROP(hk);
		}
		__builtin_memcpy(ent->x.dst, b->addr, 16);
		ent->x.dport = b->port;
		ent->svc_id = svc->id;
		ent->backend_id = bid;
		ent->flags |= TSBPF_CTF_DNAT | (aff ? TSBPF_CTF_AFFINITY : 0);
		tsbpf_svc_stat(TSBPF_SVC_LB_NEW);
		if (aff)
			tsbpf_svc_stat(TSBPF_SVC_AFFINITY);
		track = 1;
		/*
		 * Hairpin: the client is the backend; it must see the reply come from the VIP, so SNAT it to the VIP.
		 * At egress (client-side placement) the connection is also looped back into this interface.
		 */
		if (tsbpf_addr_eq(b->addr, t->src)) {
			__builtin_memcpy(&s->ito, &ent->x, sizeof(s->ito));
			__builtin_memcpy(s->ito.src, t->dst, 16);
			tsbpf_ct_alias_init(&s->alias, &s->key, t, now);
			if (tsbpf_nat_alloc(&s->ito, &s->key2, &s->alias, 1024, 65535, t->sport, hash, now)) {
				tsbpf_svc_stat(TSBPF_SVC_DROP_NAT_EXHAUSTED);
				tsbpf_svc_event(TSBPF_SVC_EV_NAT_EXHAUSTED, t, ifindex, svc->id, 0xffffffff);
				return TSBPF_SVC_DROP(hk);
			}
			__builtin_memcpy(ent->x.src, s->ito.src, 16);
			ent->x.sport = s->ito.sport;
			ent->flags |= TSBPF_CTF_SNAT | TSBPF_CTF_SNAT_DONE | TSBPF_CTF_HAIRPIN | (hook == TSBPF_HOOK_EGRESS ? TSBPF_CTF_LOOP : 0);
			tsbpf_svc_stat(TSBPF_SVC_HAIRPIN);
		}
	} else if (hook == TSBPF_HOOK_INGRESS && tsbpf_svc_dnat(cfg, &ent->x, ifindex, hash, &rule)) {
		ent->flags |= TSBPF_CTF_DNAT;
		ent->nat_rule = rule + 1;
		tsbpf_svc_stat(TSBPF_SVC_DNAT_NEW);
		track = 1;
	}

	if (hook == TSBPF_HOOK_EGRESS && !(ent->flags & TSBPF_CTF_SNAT_DONE)) {
		int r;
		rule = 0;
		__builtin_memcpy(&s->ito, &ent->x, sizeof(s->ito));
		r = tsbpf_svc_snat(s, cfg, &s->ito, &s->key, ifindex, hash, now, &rule);
		if (r < 0) {
			tsbpf_svc_stat(TSBPF_SVC_DROP_NAT_EXHAUSTED);
			tsbpf_svc_event(TSBPF_SVC_EV_NAT_EXHAUSTED, t, ifindex, ent->svc_id, rule);
			return TSBPF_SVC_DROP(hk);
		}
		if (r > 0) {
			__builtin_memcpy(ent->x.src, s->ito.src, 16);
			ent->x.sport = s->ito.sport;
			ent->flags |= TSBPF_CTF_SNAT;
			ent->nat_rule = rule + 1;
			tsbpf_svc_stat(TSBPF_SVC_SNAT_NEW);
			track = 1;
		}
		ent->flags |= TSBPF_CTF_SNAT_DONE;
	}
	if (!track) {
		tsbpf_svc_stat(TSBPF_SVC_UNTRACKED);
		return TSBPF_SVC_OK(hk);
	}

	/* DNAT: the tuple between DNAT and SNAT finds the connection at egress and (without SNAT) its replies. */
	if (ent->flags & TSBPF_CTF_DNAT) {
		struct tsbpf_tuple *pre = &s->ito;
		__builtin_memcpy(pre, t, sizeof(*pre));
		__builtin_memcpy(pre->dst, ent->x.dst, 16);
		pre->dport = ent->x.dport;
		tsbpf_ct_key_of(&s->key2, pre);
		if (!tsbpf_ct_key_eq(&s->key2, &s->key)) {
			tsbpf_ct_alias_init(&s->alias, &s->key, t, now);
			if (tsbpf_ct_reserve(&s->key2, &s->alias, now)) {
				tsbpf_svc_stat(TSBPF_SVC_DROP_CLASH);
				tsbpf_svc_event(TSBPF_SVC_EV_CLASH, t, ifindex, ent->svc_id, 0xffffffff);
				return TSBPF_SVC_DROP(hk);
			}
		}
	}
	if (bpf_map_update_elem(&tsbpf_ct, &s->key, ent, BPF_ANY)) {
		tsbpf_svc_stat(TSBPF_SVC_DROP_ERROR);
		return TSBPF_SVC_DROP(hk);
	}
	tsbpf_svc_stat(TSBPF_SVC_CT_NEW);
	tsbpf_svc_forward(&s->to, ent, t, hook);
	if (hk != TSBPF_HOOK_XDP && (ent->flags & TSBPF_CTF_LOOP))
		return tsbpf_svc_loop(ctx, tsbpf_svc_apply(ctx, hk, s));
	return tsbpf_svc_apply(ctx, hk, s);
}

/* An ICMP error (ingress): translate the quoted packet and the outer addresses of a tracked connection (icmperr.h). */
static __always_inline int tsbpf_svc_icmp_error(void *ctx, const int hk, struct tsbpf_svc_scratch *s, __u64 now)
{
	struct tsbpf_pkt *p = &s->pkt;
	struct tsbpf_ct_entry *e;
	__u32 ioff = 0, il4 = 0;
	int r;

	if (tsbpf_icmperr_quoted(ctx, hk, p, &s->it, &ioff, &il4)) {
		tsbpf_svc_stat(TSBPF_SVC_CT_INVALID);
		return TSBPF_SVC_OK(hk);
	}
	tsbpf_ct_key_of(&s->key, &s->it);
	e = tsbpf_ct_primary(&s->key, now);
	if (!e) {
		tsbpf_svc_stat(TSBPF_SVC_CT_INVALID);
		return TSBPF_SVC_OK(hk);
	}
	tsbpf_svc_stat(TSBPF_SVC_CT_RELATED);
	if (tsbpf_icmperr_target(&s->it, e, &s->ito) || tsbpf_tuple_eq(&s->it, &s->ito))
		return TSBPF_SVC_OK(hk);
	r = tsbpf_icmperr_rewrite(ctx, hk, p, &s->t, &s->to, &s->it, &s->ito, ioff, il4);
	if (r < 0) {
		tsbpf_svc_stat(TSBPF_SVC_DROP_ERROR);
		return TSBPF_SVC_DROP(hk);
	}
	if (r == 0)
		tsbpf_svc_stat(TSBPF_SVC_ICMP_XLATE);
	return TSBPF_SVC_OK(hk);
}

/* The whole datapath for one packet at `hook` (TSBPF_HOOK_INGRESS / TSBPF_HOOK_EGRESS) of a tc or XDP (hk) program. */
static __always_inline int tsbpf_svc_run(void *ctx, const int hk, const __u8 hook)
{
	__u32 zero = 0;
	struct tsbpf_svc_scratch *s = bpf_map_lookup_elem(&tsbpf_svc_scratch, &zero);
	struct tsbpf_ct_config *cfg = bpf_map_lookup_elem(&tsbpf_ct_config, &zero);
	struct tsbpf_ct_entry *e;
	__u64 now;
	int r, dir, stage;

	if (!s || !cfg)
		return TSBPF_SVC_OK(hk);
	tsbpf_svc_parse(ctx, hk, &s->pkt);
	tsbpf_svc_stat(TSBPF_SVC_PACKETS);
	r = tsbpf_pkt_tuple(ctx, hk, &s->pkt, &s->t);
	if (r < 0 || (r == 1 && hook != TSBPF_HOOK_INGRESS)) {
		tsbpf_svc_stat(TSBPF_SVC_UNTRACKED);
		return TSBPF_SVC_OK(hk);
	}
	now = bpf_ktime_get_coarse_ns();
	if (r == 1)
		return tsbpf_svc_icmp_error(ctx, hk, s, now);

	tsbpf_ct_key_of(&s->key, &s->t);
	e = tsbpf_ct_primary(&s->key, now);
	if (e) {
		dir = stage = 0;
		if (tsbpf_ct_position(&s->t, e, &dir, &stage))
			e = 0; /* the key is a leftover of another connection */
		/* A SYN on a closed connection opens a new one (which may pick another backend). */
		if (e && dir == 0 && stage == 0 && (s->pkt.present & TSBPF_HAS_TCP) &&
		    (s->pkt.tcp_flags & (TSBPF_TCP_SYN | TSBPF_TCP_ACK | TSBPF_TCP_RST)) == TSBPF_TCP_SYN &&
		    (e->state == TSBPF_CT_TCP_CLOSE || e->state == TSBPF_CT_TCP_TIME_WAIT))
			e = 0;
		if (e)
			return tsbpf_svc_existing(ctx, hk, s, cfg, e, dir, stage, hook, now);
	}
	return tsbpf_svc_new(ctx, hk, s, cfg, hook, now);
}

/* The tc programs: `hook` is TSBPF_HOOK_INGRESS or TSBPF_HOOK_EGRESS. */
static __always_inline int tsbpf_svc(struct __sk_buff *skb, const __u8 hook)
{
	return tsbpf_svc_run(skb, TSBPF_HOOK_TC, hook);
}

/* The XDP program: the ingress half of the datapath (services, DNAT rules, replies, ICMP errors). */
static __always_inline int tsbpf_svc_xdp(struct xdp_md *ctx)
{
	return tsbpf_svc_run(ctx, TSBPF_HOOK_XDP, TSBPF_HOOK_INGRESS);
}

#ifdef TSBPF_SVC_BENCH
/*
 * Benchmark harness (bench/services.ts only): a test run repeats on one
 * packet and a translating path rewrites it, so each run first restores the
 * saved frame's first TSBPF_SVC_BENCH_BYTES bytes. A harness program that
 * only restores measures what that costs.
 */
#define TSBPF_SVC_BENCH_BYTES 64
struct tsbpf_svc_bench_frame {
	__u8 b[TSBPF_SVC_BENCH_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_svc_bench_frame);
} tsbpf_svc_bench SEC(".maps");

static __always_inline void tsbpf_svc_bench_restore(void *ctx, const int hook)
{
	__u32 zero = 0;
	struct tsbpf_svc_bench_frame *f = bpf_map_lookup_elem(&tsbpf_svc_bench, &zero);
	struct tsbpf_cursor c;

	if (!f)
		return;
	tsbpf_cursor_init(&c, ctx, hook);
	if (c.data + TSBPF_SVC_BENCH_BYTES <= c.data_end)
		__builtin_memcpy(c.data, f->b, TSBPF_SVC_BENCH_BYTES);
}
#endif

#endif /* TSBPF_SVC_H */
