/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tsbpf packet parser: the C twin of sdk/parse.ts. Both must give the same
 * view of every frame, truncated and malformed ones included; the rules are
 * written once in sdk/parse.ts and docs/semantics.md.
 *
 * Reading: a header is "present" when its bytes lie within the frame length
 * (skb->len at TC, data_end - data at XDP). At TC, bytes beyond the linear
 * area are read with bpf_skb_load_bytes, so a non-linear skb parses the same
 * as a linear one. Every offset is bounded (TSBPF_MAX_HDR_OFF) before it
 * touches a packet pointer, and the IPv6 extension-header walk is unrolled,
 * so the verifier sees a fixed, small number of states.
 *
 * The frame is seen as it is on the wire. At TC the kernel may hold the outer
 * VLAN tag in skb metadata (skb->vlan_present / vlan_proto / vlan_tci: VLAN
 * offload, a VLAN device over a veth, the receive path's untagging) instead of
 * in the bytes: that tag is the outer tag, tags in the bytes come after it,
 * and `len` counts its 4 bytes. Offsets (l3_off, l4_off) stay byte offsets
 * into the packet data. XDP has no such metadata: a tag a driver strips
 * before XDP runs is not seen there.
 */
#ifndef TSBPF_PARSE_H
#define TSBPF_PARSE_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TSBPF_ETH_P_IP 0x0800
#define TSBPF_ETH_P_IPV6 0x86dd
#define TSBPF_ETH_P_8021Q 0x8100
#define TSBPF_ETH_P_8021AD 0x88a8

#define TSBPF_IPPROTO_HOPOPTS 0
#define TSBPF_IPPROTO_ICMP 1
#define TSBPF_IPPROTO_TCP 6
#define TSBPF_IPPROTO_UDP 17
#define TSBPF_IPPROTO_ROUTING 43
#define TSBPF_IPPROTO_FRAGMENT 44
#define TSBPF_IPPROTO_AH 51
#define TSBPF_IPPROTO_ICMPV6 58
#define TSBPF_IPPROTO_DSTOPTS 60
#define TSBPF_IPPROTO_SCTP 132

#define TSBPF_MAX_VLAN_TAGS 2
#define TSBPF_MAX_IPV6_EXT 6
/* Larger than any offset the walk can reach (14 + 8 + 40 + 6 * 2048 + 20). */
#define TSBPF_MAX_HDR_OFF 16383

#define TSBPF_TCP_FIN 0x01
#define TSBPF_TCP_SYN 0x02
#define TSBPF_TCP_RST 0x04
#define TSBPF_TCP_PSH 0x08
#define TSBPF_TCP_ACK 0x10
#define TSBPF_TCP_URG 0x20
#define TSBPF_TCP_ECE 0x40
#define TSBPF_TCP_CWR 0x80

/* Presence bits of struct tsbpf_pkt.present. */
#define TSBPF_HAS_ETH (1u << 0)
#define TSBPF_HAS_L3 (1u << 1)     /* ethertype (after VLAN tags) and l3_off known */
#define TSBPF_HAS_IPV4 (1u << 2)
#define TSBPF_HAS_IPV6 (1u << 3)
#define TSBPF_HAS_PROTO (1u << 4)
#define TSBPF_HAS_L4OFF (1u << 5)
#define TSBPF_HAS_FRAG (1u << 6)
#define TSBPF_HAS_TCP (1u << 7)
#define TSBPF_HAS_UDP (1u << 8)
#define TSBPF_HAS_SCTP (1u << 9)
#define TSBPF_HAS_ICMP (1u << 10)
#define TSBPF_HAS_ICMPV6 (1u << 11)
#define TSBPF_HAS_PORTS (TSBPF_HAS_TCP | TSBPF_HAS_UDP | TSBPF_HAS_SCTP)

/* Which hook a program is built for; a compile-time constant everywhere. */
#define TSBPF_HOOK_XDP 1
#define TSBPF_HOOK_TC 2

/*
 * The parsed view. Every multi-byte field is in host order; addresses are
 * host-order 32-bit words (IPv6: word 0 is the most significant). Fields of an
 * absent layer are zero. The layout is mirrored by test/codegen (keep in sync).
 */
struct tsbpf_pkt {
	__u32 present;
	__u32 len;
	__u64 eth_dst;     /* 48-bit MAC */
	__u64 eth_src;
	__u16 eth_type;    /* the Ethernet header's own type field */
	__u16 ethertype;   /* the type after the VLAN tags */
	__u16 l3_off;
	__u16 l4_off;
	__u16 vlan_tpid[TSBPF_MAX_VLAN_TAGS];
	__u16 vlan_tci[TSBPF_MAX_VLAN_TAGS];
	__u8 nvlan;
	__u8 proto;        /* IPv4 proto or the IPv6 next header where the walk stopped */
	__u8 ip_dscp;
	__u8 ip_ecn;
	__u8 ip_ttl;       /* TTL or hop limit */
	__u8 ip4_ihl;
	__u8 ip4_flags;    /* bit 1: DF, bit 0: MF */
	__u8 ip6_nexthdr;  /* next header of the fixed IPv6 header */
	__u16 ip_len;      /* IPv4 total length or IPv6 payload length */
	__u16 ip_id;       /* IPv4 id */
	__u16 ip4_csum;
	__u8 ip6_ext;      /* extension headers walked */
	__u8 frag_more;
	__u16 frag_off;    /* fragment offset, 8-byte units */
	__u16 _pad0;
	__u32 frag_id;
	__u32 ip6_flow;
	__u32 ip4_src;
	__u32 ip4_dst;
	__u32 ip6_src[4];
	__u32 ip6_dst[4];
	__u16 sport;       /* TCP, UDP, SCTP */
	__u16 dport;
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u8 tcp_doff;
	__u8 tcp_flags;
	__u16 tcp_window;
	__u16 tcp_urg;
	__u16 l4_csum;     /* TCP, UDP, ICMP, ICMPv6 checksum */
	__u16 udp_len;
	__u8 icmp_type;    /* ICMP or ICMPv6 */
	__u8 icmp_code;
	__u32 sctp_vtag;
	__u32 sctp_csum;
};

struct tsbpf_cursor {
	void *ctx;
	void *data;
	void *data_end;
	__u32 len;
};

static __always_inline __u16 tsbpf_be16(const __u8 *b)
{
	return ((__u16)b[0] << 8) | b[1];
}

static __always_inline __u32 tsbpf_be32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

/*
 * Copy n bytes (a constant) at off into `to`. The caller has checked that
 * off + n <= len; this reads from the linear area when it can and otherwise
 * (TC only: a non-linear skb) through bpf_skb_load_bytes.
 */
static __always_inline int tsbpf_load(struct tsbpf_cursor *c, int hook, __u32 off, void *to, const __u32 n)
{
	if (off > TSBPF_MAX_HDR_OFF)
		return -1;
	void *p = c->data + off;
	if (p + n <= c->data_end) {
		__builtin_memcpy(to, p, n);
		return 0;
	}
	if (hook == TSBPF_HOOK_TC)
		return bpf_skb_load_bytes(c->ctx, off, to, n);
	return -1;
}

static __always_inline void tsbpf_cursor_init(struct tsbpf_cursor *c, void *ctx, int hook)
{
	c->ctx = ctx;
	if (hook == TSBPF_HOOK_XDP) {
		struct xdp_md *x = ctx;
		c->data = (void *)(long)x->data;
		c->data_end = (void *)(long)x->data_end;
		c->len = (__u32)(c->data_end - c->data);
	} else {
		struct __sk_buff *s = ctx;
		c->data = (void *)(long)s->data;
		c->data_end = (void *)(long)s->data_end;
		c->len = s->len;
	}
}

static __always_inline int tsbpf_ipv6_ext(__u8 nh)
{
	return nh == TSBPF_IPPROTO_HOPOPTS || nh == TSBPF_IPPROTO_ROUTING || nh == TSBPF_IPPROTO_FRAGMENT ||
	       nh == TSBPF_IPPROTO_DSTOPTS || nh == TSBPF_IPPROTO_AH;
}

/* One step of the IPv6 extension-header walk; returns 1 to continue, 0 when done. */
static __always_inline int tsbpf_ipv6_ext_step(struct tsbpf_cursor *c, int hook, struct tsbpf_pkt *p, __u32 *off,
					       int *stopped, int *nonfirst)
{
	__u8 h[8];
	__u32 ext_len;

	if (!tsbpf_ipv6_ext(p->proto))
		return 0;
	if (*off + 8 > c->len || tsbpf_load(c, hook, *off, h, 8)) {
		*stopped = 1;
		return 0;
	}
	if (p->proto == TSBPF_IPPROTO_FRAGMENT)
		ext_len = 8;
	else if (p->proto == TSBPF_IPPROTO_AH)
		ext_len = ((__u32)h[1] + 2) * 4;
	else
		ext_len = ((__u32)h[1] + 1) * 8;
	if (*off + ext_len > c->len) {
		*stopped = 1;
		return 0;
	}
	if (p->proto == TSBPF_IPPROTO_FRAGMENT) {
		__u16 fo = tsbpf_be16(h + 2);
		p->present |= TSBPF_HAS_FRAG;
		p->frag_off = fo >> 3;
		p->frag_more = fo & 1;
		p->frag_id = tsbpf_be32(h + 4);
		if (p->frag_off)
			*nonfirst = 1;
	}
	p->proto = h[0];
	*off += ext_len;
	p->ip6_ext++;
	return 1;
}

static __always_inline void tsbpf_parse_l4(struct tsbpf_cursor *c, int hook, struct tsbpf_pkt *p, __u32 off)
{
	__u8 h[20];
	__u32 rest = c->len - off; /* off <= len here */

	if (p->proto == TSBPF_IPPROTO_TCP) {
		if (rest < 20 || tsbpf_load(c, hook, off, h, 20))
			return;
		p->present |= TSBPF_HAS_TCP;
		p->sport = tsbpf_be16(h);
		p->dport = tsbpf_be16(h + 2);
		p->tcp_seq = tsbpf_be32(h + 4);
		p->tcp_ack = tsbpf_be32(h + 8);
		p->tcp_doff = h[12] >> 4;
		p->tcp_flags = h[13];
		p->tcp_window = tsbpf_be16(h + 14);
		p->l4_csum = tsbpf_be16(h + 16);
		p->tcp_urg = tsbpf_be16(h + 18);
	} else if (p->proto == TSBPF_IPPROTO_UDP) {
		if (rest < 8 || tsbpf_load(c, hook, off, h, 8))
			return;
		p->present |= TSBPF_HAS_UDP;
		p->sport = tsbpf_be16(h);
		p->dport = tsbpf_be16(h + 2);
		p->udp_len = tsbpf_be16(h + 4);
		p->l4_csum = tsbpf_be16(h + 6);
	} else if (p->proto == TSBPF_IPPROTO_SCTP) {
		if (rest < 12 || tsbpf_load(c, hook, off, h, 12))
			return;
		p->present |= TSBPF_HAS_SCTP;
		p->sport = tsbpf_be16(h);
		p->dport = tsbpf_be16(h + 2);
		p->sctp_vtag = tsbpf_be32(h + 4);
		p->sctp_csum = tsbpf_be32(h + 8);
	} else if ((p->proto == TSBPF_IPPROTO_ICMP && (p->present & TSBPF_HAS_IPV4)) ||
		   (p->proto == TSBPF_IPPROTO_ICMPV6 && (p->present & TSBPF_HAS_IPV6))) {
		if (rest < 4 || tsbpf_load(c, hook, off, h, 4))
			return;
		p->present |= (p->present & TSBPF_HAS_IPV4) ? TSBPF_HAS_ICMP : TSBPF_HAS_ICMPV6;
		p->icmp_type = h[0];
		p->icmp_code = h[1];
		p->l4_csum = tsbpf_be16(h + 2);
	}
}

/* Parse the frame in ctx into p (which is cleared first). */
static __always_inline void tsbpf_parse(void *ctx, const int hook, struct tsbpf_pkt *p)
{
	struct tsbpf_cursor c;
	__u8 h[40];
	__u32 off = 14;
	__u16 type;
	int nonfirst = 0;

	__builtin_memset(p, 0, sizeof(*p));
	tsbpf_cursor_init(&c, ctx, hook);
	p->len = c.len;
	if (c.len < 14 || tsbpf_load(&c, hook, 0, h, 14))
		return;
	p->present = TSBPF_HAS_ETH;
	p->eth_dst = ((__u64)tsbpf_be16(h) << 32) | tsbpf_be32(h + 2);
	p->eth_src = ((__u64)tsbpf_be16(h + 6) << 32) | tsbpf_be32(h + 8);
	p->eth_type = tsbpf_be16(h + 12);
	type = p->eth_type;

	if (hook == TSBPF_HOOK_TC) {
		struct __sk_buff *skb = ctx;
		/* A tag in metadata is the outer tag of the wire frame: 4 more bytes on the wire. */
		if (skb->vlan_present) {
			p->vlan_tpid[0] = bpf_ntohs((__u16)skb->vlan_proto);
			p->vlan_tci[0] = (__u16)skb->vlan_tci;
			p->nvlan = 1;
			p->eth_type = p->vlan_tpid[0];
			p->len += 4;
		}
	}
#pragma unroll
	for (int i = 0; i < TSBPF_MAX_VLAN_TAGS; i++) {
		if (p->nvlan >= TSBPF_MAX_VLAN_TAGS)
			break;
		if (type != TSBPF_ETH_P_8021Q && type != TSBPF_ETH_P_8021AD)
			break;
		if (off + 4 > c.len || tsbpf_load(&c, hook, off, h, 4))
			return; /* a truncated tag ends the walk */
		if (p->nvlan == 0) {
			p->vlan_tpid[0] = type;
			p->vlan_tci[0] = tsbpf_be16(h);
		} else {
			p->vlan_tpid[1] = type;
			p->vlan_tci[1] = tsbpf_be16(h);
		}
		p->nvlan++;
		type = tsbpf_be16(h + 2);
		off += 4;
	}
	p->present |= TSBPF_HAS_L3;
	p->ethertype = type;
	p->l3_off = off;

	if (type == TSBPF_ETH_P_IP) {
		__u32 ihl;
		__u16 frag;
		if (off + 20 > c.len || tsbpf_load(&c, hook, off, h, 20))
			return;
		ihl = h[0] & 0xf;
		if ((h[0] >> 4) != 4 || ihl < 5 || off + ihl * 4 > c.len)
			return;
		p->present |= TSBPF_HAS_IPV4 | TSBPF_HAS_PROTO | TSBPF_HAS_L4OFF;
		p->ip4_ihl = ihl;
		p->ip_dscp = h[1] >> 2;
		p->ip_ecn = h[1] & 3;
		p->ip_len = tsbpf_be16(h + 2);
		p->ip_id = tsbpf_be16(h + 4);
		frag = tsbpf_be16(h + 6);
		p->ip4_flags = (frag >> 13) & 3;
		p->ip_ttl = h[8];
		p->proto = h[9];
		p->ip4_csum = tsbpf_be16(h + 10);
		p->ip4_src = tsbpf_be32(h + 12);
		p->ip4_dst = tsbpf_be32(h + 16);
		if (frag & 0x3fff) {
			p->present |= TSBPF_HAS_FRAG;
			p->frag_off = frag & 0x1fff;
			p->frag_more = (frag >> 13) & 1;
			p->frag_id = p->ip_id;
			if (p->frag_off)
				nonfirst = 1;
		}
		off += ihl * 4;
	} else if (type == TSBPF_ETH_P_IPV6) {
		__u32 w0;
		int stopped = 0;
		if (off + 40 > c.len || tsbpf_load(&c, hook, off, h, 40))
			return;
		w0 = tsbpf_be32(h);
		if ((w0 >> 28) != 6)
			return;
		p->present |= TSBPF_HAS_IPV6 | TSBPF_HAS_PROTO;
		p->ip_dscp = (w0 >> 22) & 0x3f;
		p->ip_ecn = (w0 >> 20) & 3;
		p->ip6_flow = w0 & 0xfffff;
		p->ip_len = tsbpf_be16(h + 4);
		p->ip6_nexthdr = h[6];
		p->ip_ttl = h[7];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			p->ip6_src[i] = tsbpf_be32(h + 8 + 4 * i);
			p->ip6_dst[i] = tsbpf_be32(h + 24 + 4 * i);
		}
		p->proto = h[6];
		off += 40;
#pragma unroll
		for (int i = 0; i < TSBPF_MAX_IPV6_EXT; i++) {
			if (!tsbpf_ipv6_ext_step(&c, hook, p, &off, &stopped, &nonfirst))
				break;
		}
		/* A 7th extension header is one too many: the walk stops on it. */
		if (!stopped && tsbpf_ipv6_ext(p->proto))
			stopped = 1;
		if (stopped)
			return;
		p->present |= TSBPF_HAS_L4OFF;
	} else {
		return;
	}
	p->l4_off = off;
	if (nonfirst)
		return;
	tsbpf_parse_l4(&c, hook, p, off);
}

#endif /* TSBPF_PARSE_H */
