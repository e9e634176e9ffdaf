/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking: the C twin of sdk/ct.ts (the TS reference defines the
 * semantics; docs/stateful.md is the long form).
 *
 * A connection is one LRU-hash entry (the "primary") keyed by the normalized
 * 5-tuple of its first packet: the lower (address, port) end first, so both
 * directions of an un-NATed flow find the same key. NAT gives a connection
 * other tuples (after DNAT, after SNAT); each is an "alias" entry that holds
 * the primary's key. State, timestamps and counters live in the primary.
 *
 * Tuples: addresses are host-order 32-bit words (IPv4 in word 0, the rest 0);
 * ports are host order. ICMP echo is a pseudo-connection whose "client port"
 * is the echo identifier: a request has sport = id, dport = 0; a reply
 * sport = 0, dport = id.
 *
 * Maps the includer must define before including this header:
 *   TSBPF_CT_MAX  size of the conntrack LRU hash.
 */
#ifndef TSBPF_CT_H
#define TSBPF_CT_H

#include <tsbpf/parse.h>

#ifndef TSBPF_CT_MAX
#define TSBPF_CT_MAX 65536
#endif

/* Connection states (entry.state). */
#define TSBPF_CT_NONE 0
#define TSBPF_CT_TCP_SYN_SENT 1
#define TSBPF_CT_TCP_SYN_RECV 2
#define TSBPF_CT_TCP_ESTABLISHED 3
#define TSBPF_CT_TCP_FIN_WAIT 4
#define TSBPF_CT_TCP_CLOSING 5
#define TSBPF_CT_TCP_TIME_WAIT 6
#define TSBPF_CT_TCP_CLOSE 7
#define TSBPF_CT_UDP 8
#define TSBPF_CT_UDP_REPLIED 9
#define TSBPF_CT_ICMP 10
#define TSBPF_CT_ICMP_REPLIED 11
#define TSBPF_CT_STATES 12

/* entry.role */
#define TSBPF_CT_PRIMARY 1
#define TSBPF_CT_ALIAS 2

/* entry.flags */
#define TSBPF_CTF_FIN_ORIG (1u << 0)
#define TSBPF_CTF_FIN_REPLY (1u << 1)
#define TSBPF_CTF_SEEN_REPLY (1u << 2)
#define TSBPF_CTF_DNAT (1u << 3)
#define TSBPF_CTF_SNAT (1u << 4)
#define TSBPF_CTF_SNAT_DONE (1u << 5) /* egress SNAT rules were evaluated */
#define TSBPF_CTF_HAIRPIN (1u << 6)
#define TSBPF_CTF_AFFINITY (1u << 7)  /* backend came from session affinity */
#define TSBPF_CTF_LOOP (1u << 8)      /* hairpin at the client's own egress: looped back into its ingress */

/* What a packet is to conntrack (the `ct.state` a rule sees). */
#define TSBPF_CTS_UNTRACKED 0
#define TSBPF_CTS_NEW 1
#define TSBPF_CTS_ESTABLISHED 2
#define TSBPF_CTS_RELATED 3
#define TSBPF_CTS_INVALID 4

/* entry.dir_hook: which hook counts a direction's packets (the first that saw one). */
#define TSBPF_CT_HOOK_INGRESS 1
#define TSBPF_CT_HOOK_EGRESS 2

/* tuple.icmp */
#define TSBPF_CT_ICMP_ECHO_REQ 1
#define TSBPF_CT_ICMP_ECHO_REP 2

struct tsbpf_tuple {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__u8 icmp;   /* TSBPF_CT_ICMP_ECHO_*: where the echo id lives */
	__u8 _pad;
};

struct tsbpf_ct_key {
	__u32 a[4];
	__u32 b[4];
	__u16 pa;
	__u16 pb;
	__u8 family;
	__u8 proto;
	__u16 _pad;
};

struct tsbpf_ct_entry {
	__u64 created_ns;
	__u64 last_ns;
	__u64 expires_ns;
	__u64 packets[2]; /* [0] original direction, [1] reply */
	__u64 bytes[2];
	__u32 mark;
	__u32 svc_id;     /* service that chose the backend (0: none) */
	__u32 backend_id;
	__u16 flags;
	__u8 role;
	__u8 state;
	__u8 family;
	__u8 proto;
	__u8 dir_hook[2];
	__u32 nat_rule;   /* 1 + index of the NAT rule applied (0: none) */
	struct tsbpf_tuple o; /* the original direction as its first packet had it */
	struct tsbpf_tuple x; /* the original direction after all NAT */
	struct tsbpf_ct_key primary; /* alias entries: the primary's key */
};

/* Run-time settings (array slot 0), written by the runtime at load. */
struct tsbpf_ct_config {
	__u32 timeouts[TSBPF_CT_STATES]; /* seconds, by state */
	__u32 seed;      /* hash seed (flow hash, SNAT port start) */
	__u32 nat_rules; /* NAT rules in use */
	__u32 flags;     /* TSBPF_CTC_* */
	__u32 _pad;
};

#define TSBPF_CTC_TRACK_ALL (1u << 0) /* track flows that no NAT touches too */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TSBPF_CT_MAX);
	__type(key, struct tsbpf_ct_key);
	__type(value, struct tsbpf_ct_entry);
} tsbpf_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tsbpf_ct_config);
} tsbpf_ct_config SEC(".maps");

/* murmur3-style mixing; sdk/ct.ts flowHash is the twin. */
static __always_inline __u32 tsbpf_hash_mix(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51;
	w = (w << 15) | (w >> 17);
	w *= 0x1b873593;
	h ^= w;
	h = (h << 13) | (h >> 19);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 tsbpf_hash_fin(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Hash of a tuple (Maglev selection, SNAT address and port start). */
static __always_inline __u32 tsbpf_flow_hash(const struct tsbpf_tuple *t, __u32 seed)
{
	__u32 h = seed;
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = tsbpf_hash_mix(h, t->src[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = tsbpf_hash_mix(h, t->dst[i]);
	h = tsbpf_hash_mix(h, ((__u32)t->sport << 16) | t->dport);
	h = tsbpf_hash_mix(h, ((__u32)t->family << 8) | t->proto);
	return tsbpf_hash_fin(h ^ 40);
}

/* (a, pa) < (b, pb), comparing address words first. */
static __always_inline int tsbpf_end_less(const __u32 *a, __u16 pa, const __u32 *b, __u16 pb)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (a[i] != b[i])
			return a[i] < b[i];
	}
	return pa < pb;
}

/* The normalized key of a tuple: the lower end first. */
static __always_inline void tsbpf_ct_key_of(struct tsbpf_ct_key *k, const struct tsbpf_tuple *t)
{
	int swap = tsbpf_end_less(t->dst, t->dport, t->src, t->sport);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		k->a[i] = swap ? t->dst[i] : t->src[i];
		k->b[i] = swap ? t->src[i] : t->dst[i];
	}
	k->pa = swap ? t->dport : t->sport;
	k->pb = swap ? t->sport : t->dport;
	k->family = t->family;
	k->proto = t->proto;
	k->_pad = 0;
}

static __always_inline int tsbpf_addr_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Same addresses and ports. */
static __always_inline int tsbpf_tuple_eq(const struct tsbpf_tuple *a, const struct tsbpf_tuple *b)
{
	return a->sport == b->sport && a->dport == b->dport && tsbpf_addr_eq(a->src, b->src) && tsbpf_addr_eq(a->dst, b->dst);
}

/* a is b seen from the other end. */
static __always_inline int tsbpf_tuple_rev_eq(const struct tsbpf_tuple *a, const struct tsbpf_tuple *b)
{
	return a->sport == b->dport && a->dport == b->sport && tsbpf_addr_eq(a->src, b->dst) && tsbpf_addr_eq(a->dst, b->src);
}

static __always_inline void tsbpf_tuple_reverse(struct tsbpf_tuple *out, const struct tsbpf_tuple *t)
{
	__builtin_memcpy(out->src, t->dst, 16);
	__builtin_memcpy(out->dst, t->src, 16);
	out->sport = t->dport;
	out->dport = t->sport;
	out->family = t->family;
	out->proto = t->proto;
	out->icmp = t->icmp == TSBPF_CT_ICMP_ECHO_REQ ? TSBPF_CT_ICMP_ECHO_REP : t->icmp == TSBPF_CT_ICMP_ECHO_REP ? TSBPF_CT_ICMP_ECHO_REQ : 0;
	out->_pad = 0;
}

/* A TCP flag combination no connection sends (dropped by conntrack as invalid in netfilter too). */
static __always_inline int tsbpf_tcp_flags_invalid(__u8 f)
{
	if ((f & (TSBPF_TCP_SYN | TSBPF_TCP_FIN)) == (TSBPF_TCP_SYN | TSBPF_TCP_FIN))
		return 1;
	if ((f & (TSBPF_TCP_SYN | TSBPF_TCP_RST)) == (TSBPF_TCP_SYN | TSBPF_TCP_RST))
		return 1;
	return !(f & (TSBPF_TCP_SYN | TSBPF_TCP_ACK | TSBPF_TCP_RST));
}

/* The state a new connection starts in, from its first packet; NONE: it starts none (invalid). */
static __always_inline __u8 tsbpf_ct_initial_state(const struct tsbpf_pkt *p)
{
	if (p->present & TSBPF_HAS_TCP) {
		__u8 f = p->tcp_flags;
		if (tsbpf_tcp_flags_invalid(f) || (f & TSBPF_TCP_RST))
			return TSBPF_CT_NONE;
		if ((f & (TSBPF_TCP_SYN | TSBPF_TCP_ACK)) == TSBPF_TCP_SYN)
			return TSBPF_CT_TCP_SYN_SENT;
		if (f & TSBPF_TCP_SYN)
			return TSBPF_CT_NONE; /* a SYN-ACK without a SYN */
		return TSBPF_CT_TCP_ESTABLISHED; /* picked up mid-stream (netfilter's loose mode) */
	}
	if (p->present & TSBPF_HAS_UDP)
		return TSBPF_CT_UDP;
	return TSBPF_CT_ICMP;
}

/* TCP state machine step for a packet with `f` in direction dir (0 original, 1 reply). */
static __always_inline void tsbpf_ct_tcp_step(struct tsbpf_ct_entry *e, __u8 f, int dir)
{
	__u8 st = e->state;
	if (f & TSBPF_TCP_RST) {
		e->state = TSBPF_CT_TCP_CLOSE;
		return;
	}
	if (f & TSBPF_TCP_SYN) {
		if ((f & TSBPF_TCP_ACK) && dir == 1 && st == TSBPF_CT_TCP_SYN_SENT)
			e->state = TSBPF_CT_TCP_SYN_RECV;
		return;
	}
	if (dir == 0 && st == TSBPF_CT_TCP_SYN_RECV && (f & TSBPF_TCP_ACK))
		st = TSBPF_CT_TCP_ESTABLISHED;
	if (f & TSBPF_TCP_FIN) {
		if (st == TSBPF_CT_TCP_ESTABLISHED || st == TSBPF_CT_TCP_SYN_RECV || st == TSBPF_CT_TCP_FIN_WAIT) {
			e->flags |= dir ? TSBPF_CTF_FIN_REPLY : TSBPF_CTF_FIN_ORIG;
			st = (e->flags & TSBPF_CTF_FIN_ORIG) && (e->flags & TSBPF_CTF_FIN_REPLY) ? TSBPF_CT_TCP_CLOSING : TSBPF_CT_TCP_FIN_WAIT;
		}
	} else if ((f & TSBPF_TCP_ACK) && st == TSBPF_CT_TCP_CLOSING) {
		st = TSBPF_CT_TCP_TIME_WAIT;
	}
	e->state = st;
}

static __always_inline __u64 tsbpf_ct_timeout_ns(const struct tsbpf_ct_config *cfg, __u8 state)
{
	__u32 s = state < TSBPF_CT_STATES ? cfg->timeouts[state & 15] : 0;
	return (__u64)s * 1000000000ull;
}

/*
 * One packet of a tracked connection: state, counters and expiry, when this
 * hook is the one that counts the direction (a forwarded packet passes an
 * ingress and an egress hook; it counts once).
 */
static __always_inline void tsbpf_ct_update(struct tsbpf_ct_entry *e, const struct tsbpf_pkt *p, const struct tsbpf_ct_config *cfg,
					    int dir, __u8 hook, __u64 now)
{
	__u8 h = e->dir_hook[dir & 1];
	if (h == 0) {
		e->dir_hook[dir & 1] = hook;
		h = hook;
	}
	if (h != hook)
		return;
	e->packets[dir & 1] += 1;
	e->bytes[dir & 1] += p->len;
	if (dir)
		e->flags |= TSBPF_CTF_SEEN_REPLY;
	if (p->present & TSBPF_HAS_TCP) {
		if (!tsbpf_tcp_flags_invalid(p->tcp_flags))
			tsbpf_ct_tcp_step(e, p->tcp_flags, dir);
	} else if (dir) {
		if (e->state == TSBPF_CT_UDP)
			e->state = TSBPF_CT_UDP_REPLIED;
		else if (e->state == TSBPF_CT_ICMP)
			e->state = TSBPF_CT_ICMP_REPLIED;
	}
	e->last_ns = now;
	e->expires_ns = now + tsbpf_ct_timeout_ns(cfg, e->state);
}

/* A fresh primary entry for tuple t, first seen at `hook`. */
static __always_inline void tsbpf_ct_init(struct tsbpf_ct_entry *e, const struct tsbpf_tuple *t, const struct tsbpf_pkt *p,
					  const struct tsbpf_ct_config *cfg, __u8 state, __u8 hook, __u64 now)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->created_ns = now;
	e->last_ns = now;
	e->role = TSBPF_CT_PRIMARY;
	e->state = state;
	e->family = t->family;
	e->proto = t->proto;
	e->dir_hook[0] = hook;
	e->packets[0] = 1;
	e->bytes[0] = p->len;
	__builtin_memcpy(&e->o, t, sizeof(*t));
	__builtin_memcpy(&e->x, t, sizeof(*t));
	e->expires_ns = now + tsbpf_ct_timeout_ns(cfg, state);
}

/*
 * The live primary entry of the connection whose key is *k, following an
 * alias; *k becomes the primary's key. NULL when there is none or it expired.
 */
static __always_inline struct tsbpf_ct_entry *tsbpf_ct_primary(struct tsbpf_ct_key *k, __u64 now)
{
	struct tsbpf_ct_entry *e = bpf_map_lookup_elem(&tsbpf_ct, k);
	if (!e)
		return 0;
	if (e->role == TSBPF_CT_ALIAS) {
		__builtin_memcpy(k, &e->primary, sizeof(*k));
		e = bpf_map_lookup_elem(&tsbpf_ct, k);
		if (!e || e->role != TSBPF_CT_PRIMARY)
			return 0;
	}
	if (e->expires_ns < now)
		return 0;
	return e;
}

/* A connection a new one may replace: expired, or TCP that has closed (netfilter lets a new SYN take it over too). */
static __always_inline int tsbpf_ct_over(const struct tsbpf_ct_entry *e, __u64 now)
{
	return e->expires_ns < now || e->state == TSBPF_CT_TCP_CLOSE || e->state == TSBPF_CT_TCP_TIME_WAIT;
}

static __always_inline int tsbpf_ct_key_eq(const struct tsbpf_ct_key *a, const struct tsbpf_ct_key *b)
{
	return a->pa == b->pa && a->pb == b->pb && a->family == b->family && a->proto == b->proto && tsbpf_addr_eq(a->a, b->a) &&
	       tsbpf_addr_eq(a->b, b->b);
}

/* Whether k is one of the primary's keys: its translated tuple, or (DNAT) the tuple between DNAT and SNAT. */
static __always_inline int tsbpf_ct_owns_key(const struct tsbpf_ct_entry *pe, const struct tsbpf_ct_key *k)
{
	struct tsbpf_ct_key mine;
	struct tsbpf_tuple pre;

	tsbpf_ct_key_of(&mine, &pe->x);
	if (tsbpf_ct_key_eq(&mine, k))
		return 1;
	__builtin_memcpy(pre.src, pe->o.src, 16);
	__builtin_memcpy(pre.dst, pe->x.dst, 16);
	pre.sport = pe->o.sport;
	pre.dport = pe->x.dport;
	pre.family = pe->o.family;
	pre.proto = pe->o.proto;
	tsbpf_ct_key_of(&mine, &pre);
	return tsbpf_ct_key_eq(&mine, k);
}

/*
 * Whether the entry at key *k may be taken over by a connection whose primary
 * key is *mine: absent, expired, an alias of a dead connection, or an alias
 * of *mine itself (a connection reopened on the same tuple replaces it).
 */
static __always_inline int tsbpf_ct_key_free(const struct tsbpf_ct_key *k, const struct tsbpf_ct_key *mine, __u64 now)
{
	struct tsbpf_ct_entry *e = bpf_map_lookup_elem(&tsbpf_ct, k);
	if (!e)
		return 1;
	if (e->role == TSBPF_CT_ALIAS) {
		if (tsbpf_ct_key_eq(&e->primary, mine))
			return 1;
		struct tsbpf_ct_entry *pe = bpf_map_lookup_elem(&tsbpf_ct, &e->primary);
		if (!pe || pe->role != TSBPF_CT_PRIMARY || tsbpf_ct_over(pe, now))
			return 1;
		/* An alias left behind by an earlier connection on the same primary key. */
		return !tsbpf_ct_owns_key(pe, k);
	}
	return tsbpf_ct_over(e, now);
}

/* An alias entry for translated tuple t, pointing at primary key *pkey. */
static __always_inline void tsbpf_ct_alias_init(struct tsbpf_ct_entry *a, const struct tsbpf_ct_key *pkey, const struct tsbpf_tuple *t, __u64 now)
{
	__builtin_memset(a, 0, sizeof(*a));
	a->role = TSBPF_CT_ALIAS;
	a->family = t->family;
	a->proto = t->proto;
	a->created_ns = now;
	__builtin_memcpy(&a->primary, pkey, sizeof(*pkey));
}

/* Insert the alias of key *k unless it is held by a live connection; 0 on success. */
static __always_inline int tsbpf_ct_reserve(struct tsbpf_ct_key *k, struct tsbpf_ct_entry *alias, __u64 now)
{
	if (bpf_map_update_elem(&tsbpf_ct, k, alias, BPF_NOEXIST) == 0)
		return 0;
	if (tsbpf_ct_key_free(k, &alias->primary, now) && bpf_map_update_elem(&tsbpf_ct, k, alias, BPF_ANY) == 0)
		return 0;
	return -1;
}

/*
 * Where a packet with tuple t stands in connection e: *dir 0 original,
 * 1 reply; *stage 0 untranslated, 1 between DNAT and SNAT, 2 translated.
 * -1: e's key is a leftover of another connection. Twin of connPosition (sdk/ct.ts).
 */
static __always_inline int tsbpf_ct_position(const struct tsbpf_tuple *t, const struct tsbpf_ct_entry *e, int *dir, int *stage)
{
	if (tsbpf_tuple_eq(t, &e->o)) {
		*dir = 0;
		*stage = tsbpf_tuple_eq(t, &e->x) ? 2 : 0;
	} else if (tsbpf_tuple_eq(t, &e->x)) {
		*dir = 0;
		*stage = 2;
	} else if ((e->flags & TSBPF_CTF_DNAT) && t->sport == e->o.sport && t->dport == e->x.dport && tsbpf_addr_eq(t->src, e->o.src) &&
		   tsbpf_addr_eq(t->dst, e->x.dst)) {
		*dir = 0;
		*stage = 1;
	} else if (tsbpf_tuple_rev_eq(t, &e->x)) {
		*dir = 1;
		*stage = tsbpf_tuple_rev_eq(t, &e->o) ? 2 : 0;
	} else if (tsbpf_tuple_rev_eq(t, &e->o)) {
		*dir = 1;
		*stage = 2;
	} else {
		return -1;
	}
	return 0;
}

#endif /* TSBPF_CT_H */
