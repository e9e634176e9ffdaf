/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Conntrack and NAT for rule filters (`match.ct`, `ctMark`, `.snat()`,
 * `.dnat()`, `.masquerade()`): the C twin of sdk/ct-filter.ts. It reuses the
 * connection table of ct.h (same keys, entries, states and timeouts as the
 * services program, so `tsbpf ct` reads it) and the rewrites and port
 * allocator of nat.h; docs/semantics.md ("Conntrack", "NAT") is the long form.
 *
 * Per packet, in the parse program, before any rule (tsbpf_fct_pre):
 *   - a reply of a tracked connection is translated back and accepted: the
 *     rules do not run for it;
 *   - anything else gets its ct state (new, established, related, invalid,
 *     untracked) and the connection's mark, and the rules run.
 * When the rules accept (tsbpf_fct_need says whether there is anything to
 * do), the ct program commits (tsbpf_fct_commit): a new connection gets its
 * entry (with the NAT the deciding rule asked for), an existing one its mark
 * and its SNAT decision at the first egress, and the packet is translated.
 *
 * The includer defines TSBPF_CT_MAX and the per-CPU array tsbpf_fct
 * (struct tsbpf_fct, one slot per program), and TSBPF_FCT_SNAT (1 when a rule
 * SNATs or masquerades).
 */
#ifndef TSBPF_CTFILTER_H
#define TSBPF_CTFILTER_H

#include <tsbpf/parse.h>
#include <tsbpf/ct.h>
#ifndef TSBPF_NAT_RULES
#define TSBPF_NAT_RULES 1
#endif
#include <tsbpf/nat.h>
#include <tsbpf/icmperr.h>

#ifndef TSBPF_FCT_SNAT
#define TSBPF_FCT_SNAT 0
#endif

/* cs->kind */
#define TSBPF_FCT_UNTRACKED 0
#define TSBPF_FCT_CONN 1
#define TSBPF_FCT_ERROR 2

/* Slots of tsbpf_fct_stats (per CPU); sdk/ct-filter.ts FCT_STATS names them. */
#define TSBPF_FCT_ST_NEW 0        /* connections committed */
#define TSBPF_FCT_ST_REPLY 1      /* replies accepted before the rules */
#define TSBPF_FCT_ST_XLATE 2      /* packets translated */
#define TSBPF_FCT_ST_ICMP_XLATE 3 /* ICMP errors translated */
#define TSBPF_FCT_ST_EXHAUSTED 4  /* dropped: no free SNAT port */
#define TSBPF_FCT_ST_CLASH 5      /* dropped: the DNAT tuple belongs to another connection */
#define TSBPF_FCT_ST_ERROR 6      /* dropped: a map update or rewrite failed */
#define TSBPF_FCT_ST_NO_IFADDR 7  /* masquerade without an address: accepted untranslated */
#define TSBPF_FCT_STATS 8

#define TSBPF_FCT_EV_NAT_EXHAUSTED 2

/* tsbpf_ct_config.flags: a TCP connection may start with a non-SYN packet (picked up mid-stream). */
#define TSBPF_CTC_TCP_LOOSE (1u << 1)

/* The state a connection opened by this packet starts in; NONE: it opens none (the packet is invalid). */
static __always_inline __u8 tsbpf_fct_initial_state(const struct tsbpf_pkt *p, const struct tsbpf_ct_config *cfg)
{
	__u8 st = tsbpf_ct_initial_state(p);
	/* Strict by default: only a SYN opens a TCP connection (netfilter's nf_conntrack_tcp_loose=0). */
	if (st == TSBPF_CT_TCP_ESTABLISHED && !(cfg->flags & TSBPF_CTC_TCP_LOOSE))
		return TSBPF_CT_NONE;
	return st;
}

struct tsbpf_fct {
	struct tsbpf_tuple t;   /* the packet (an ICMP error: its outer addresses) */
	struct tsbpf_tuple to;  /* what it becomes */
	struct tsbpf_tuple it;  /* an ICMP error's quoted packet */
	struct tsbpf_tuple ito;
	struct tsbpf_ct_key key; /* the connection's primary key (found) */
	struct tsbpf_ct_key key2;
	struct tsbpf_ct_entry ent;
	struct tsbpf_ct_entry alias;
	struct tsbpf_nat_rule nr; /* the NAT action of the rule that accepted (nr.kind 0: none) */
	__u32 mark;     /* the connection's mark as the rules see and set it */
	__u32 nat_rule; /* 1 + id of the rule whose NAT action accepted */
	__u16 flags;    /* the entry's flags at lookup */
	__u8 kind;      /* TSBPF_FCT_* */
	__u8 state;     /* TSBPF_CTS_* */
	__u8 found;     /* an entry exists (key is its primary key) */
	__u8 dir;       /* 0 original, 1 reply */
	__u8 stage;     /* 0 untranslated, 1 between DNAT and SNAT, 2 translated */
	__u8 mark_set;  /* a ctMark action ran */
};

/* Layout of sdk/ct-filter.ts FCT_EVENT. */
struct tsbpf_fct_event {
	__u64 ts_ns;
	__u32 kind;
	__u32 ifindex;
	__u32 rule; /* rule id */
	__u8 family;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__u32 src[4];
	__u32 dst[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TSBPF_FCT_STATS);
	__type(key, __u32);
	__type(value, __u64);
} tsbpf_fct_stats SEC(".maps");

#if TSBPF_FCT_SNAT
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} tsbpf_fct_events SEC(".maps");
#endif

static __always_inline void tsbpf_fct_stat(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&tsbpf_fct_stats, &slot);
	if (c)
		*c += 1;
}

static __always_inline struct tsbpf_fct *tsbpf_fct_get(void *map, __u32 key)
{
	return bpf_map_lookup_elem(map, &key);
}

/* The rule's NAT action (its parameters are constants in the rule's code). */
static __always_inline void tsbpf_fct_set_nat(struct tsbpf_fct *cs, __u8 kind, __u8 family, __u32 lo0, __u32 lo1, __u32 lo2, __u32 lo3,
					      __u32 hi0, __u32 hi1, __u32 hi2, __u32 hi3, __u16 pmin, __u16 pmax, __u32 rule)
{
	__builtin_memset(&cs->nr, 0, sizeof(cs->nr));
	cs->nr.kind = kind;
	cs->nr.family = family;
	cs->nr.to_min[0] = lo0;
	cs->nr.to_min[1] = lo1;
	cs->nr.to_min[2] = lo2;
	cs->nr.to_min[3] = lo3;
	cs->nr.to_max[0] = hi0;
	cs->nr.to_max[1] = hi1;
	cs->nr.to_max[2] = hi2;
	cs->nr.to_max[3] = hi3;
	cs->nr.port_min = pmin;
	cs->nr.port_max = pmax;
	cs->nat_rule = rule + 1;
}

static __always_inline void tsbpf_fct_set_mark(struct tsbpf_fct *cs, __u32 value, __u32 mask)
{
	cs->mark = (cs->mark & ~mask) | value;
	cs->mark_set = 1;
}

/* The tuple a packet of the original direction leaves this hook with: DNAT at ingress, all NAT at egress. */
static __always_inline void tsbpf_fct_forward(struct tsbpf_tuple *to, const struct tsbpf_ct_entry *e, const struct tsbpf_tuple *t, __u8 hook)
{
	__builtin_memcpy(to, &e->x, sizeof(*to));
	if (hook == TSBPF_CT_HOOK_INGRESS) {
		__builtin_memcpy(to->src, t->src, 16);
		to->sport = t->sport;
	}
	to->icmp = t->icmp;
}

/* Rewrite cs->t into cs->to; TC_ACT_OK, or TC_ACT_SHOT when the rewrite failed. */
static __always_inline int tsbpf_fct_apply(struct __sk_buff *skb, const struct tsbpf_pkt *p, struct tsbpf_fct *cs)
{
	if (tsbpf_tuple_eq(&cs->t, &cs->to))
		return TC_ACT_OK;
	if (tsbpf_nat_rewrite(skb, p, &cs->t, &cs->to)) {
		tsbpf_fct_stat(TSBPF_FCT_ST_ERROR);
		return TC_ACT_SHOT;
	}
	tsbpf_fct_stat(TSBPF_FCT_ST_XLATE);
	return TC_ACT_OK;
}

/*
 * Before the rules. Returns -1 to run them (cs holds the packet's ct state),
 * or the program's return value for a reply accepted (and translated) here.
 */
static __always_inline int tsbpf_fct_pre(struct __sk_buff *skb, const struct tsbpf_pkt *p, struct tsbpf_fct *cs, __u8 hook)
{
	__u32 zero = 0;
	struct tsbpf_ct_config *cfg = bpf_map_lookup_elem(&tsbpf_ct_config, &zero);
	struct tsbpf_ct_entry *e;
	struct tsbpf_tuple *t = &cs->t;
	__u64 now;
	__u32 ioff = 0, il4 = 0;
	int r;

	cs->kind = TSBPF_FCT_UNTRACKED;
	cs->state = TSBPF_CTS_UNTRACKED;
	cs->found = 0;
	cs->dir = 0;
	cs->stage = 0;
	cs->mark = 0;
	cs->mark_set = 0;
	cs->flags = 0;
	cs->nat_rule = 0;
	cs->nr.kind = 0;
	if (!cfg)
		return -1;
	r = tsbpf_pkt_tuple(skb, TSBPF_HOOK_TC, p, t);
	if (r < 0)
		return -1;
	now = bpf_ktime_get_coarse_ns();
	if (r == 1) {
		cs->kind = TSBPF_FCT_ERROR;
		cs->state = TSBPF_CTS_INVALID;
		if (tsbpf_icmperr_quoted(skb, TSBPF_HOOK_TC, p, &cs->it, &ioff, &il4))
			return -1;
		tsbpf_ct_key_of(&cs->key, &cs->it);
		e = tsbpf_ct_primary(&cs->key, now);
		if (!e)
			return -1;
		cs->state = TSBPF_CTS_RELATED;
		cs->found = 1;
		cs->mark = e->mark;
		cs->flags = e->flags;
		return -1;
	}
	cs->kind = TSBPF_FCT_CONN;
	tsbpf_ct_key_of(&cs->key, t);
	e = tsbpf_ct_primary(&cs->key, now);
	if (e) {
		int dir = 0, stage = 0;
		if (tsbpf_ct_position(t, e, &dir, &stage))
			e = 0; /* the key is a leftover of another connection */
		/* A SYN on a closed connection opens a new one. */
		if (e && dir == 0 && (p->present & TSBPF_HAS_TCP) && (p->tcp_flags & (TSBPF_TCP_SYN | TSBPF_TCP_ACK | TSBPF_TCP_RST)) == TSBPF_TCP_SYN &&
		    (e->state == TSBPF_CT_TCP_CLOSE || e->state == TSBPF_CT_TCP_TIME_WAIT))
			e = 0;
		if (e) {
			int invalid = (p->present & TSBPF_HAS_TCP) && tsbpf_tcp_flags_invalid(p->tcp_flags);
			tsbpf_ct_update(e, p, cfg, dir, hook, now);
			cs->found = 1;
			cs->dir = dir;
			cs->stage = stage;
			cs->mark = e->mark;
			cs->flags = e->flags;
			if (invalid) {
				cs->state = TSBPF_CTS_INVALID;
				return -1;
			}
			if (dir == 0) {
				cs->state = (e->flags & TSBPF_CTF_SEEN_REPLY) ? TSBPF_CTS_ESTABLISHED : TSBPF_CTS_NEW;
				return -1;
			}
			/* A reply of an accepted connection: back to what its client knows, and accepted. */
			cs->state = TSBPF_CTS_ESTABLISHED;
			tsbpf_fct_stat(TSBPF_FCT_ST_REPLY);
			if (stage == 2)
				return TC_ACT_OK;
			tsbpf_tuple_reverse(&cs->to, &e->o);
			cs->to.icmp = t->icmp;
			return tsbpf_fct_apply(skb, p, cs);
		}
	}
	cs->state = tsbpf_fct_initial_state(p, cfg) == TSBPF_CT_NONE ? TSBPF_CTS_INVALID : TSBPF_CTS_NEW;
	return -1;
}

/* Whether an accepted packet needs the ct program (an entry to write or a translation to apply). */
static __always_inline int tsbpf_fct_need(const struct tsbpf_fct *cs, __u8 hook)
{
	if (cs->state == TSBPF_CTS_INVALID || cs->state == TSBPF_CTS_UNTRACKED)
		return 0;
	if (cs->kind == TSBPF_FCT_ERROR)
		return hook == TSBPF_CT_HOOK_INGRESS && (cs->flags & (TSBPF_CTF_DNAT | TSBPF_CTF_SNAT));
	if (!cs->found || cs->mark_set || cs->nat_rule || (cs->flags & (TSBPF_CTF_DNAT | TSBPF_CTF_SNAT)))
		return 1;
	return TSBPF_FCT_SNAT && hook == TSBPF_CT_HOOK_EGRESS && !(cs->flags & TSBPF_CTF_SNAT_DONE);
}

#if TSBPF_FCT_SNAT
static __always_inline void tsbpf_fct_event(__u32 kind, const struct tsbpf_tuple *t, __u32 ifindex, __u32 rule)
{
	struct tsbpf_fct_event *e = bpf_ringbuf_reserve(&tsbpf_fct_events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->ifindex = ifindex;
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

/*
 * The SNAT/masquerade action for a connection leaving through ifindex: pick
 * the source address, reserve a port (its alias entry). 0: nothing to do (no
 * such action, another family, no address), 1: *x translated, -1: no port free.
 */
static __always_inline int tsbpf_fct_snat(struct tsbpf_fct *cs, struct tsbpf_tuple *x, const struct tsbpf_ct_key *pkey, __u32 ifindex,
					  __u32 hash, __u64 now)
{
	const struct tsbpf_nat_rule *r = &cs->nr;
	struct tsbpf_tuple *to = &cs->ito;

	if (r->kind != TSBPF_NAT_SNAT && r->kind != TSBPF_NAT_MASQUERADE)
		return 0;
	if (r->kind == TSBPF_NAT_SNAT && r->family != x->family)
		return 0;
	__u16 pmin, pmax;
	if (tsbpf_nat_snat_to(to, x, r, ifindex, hash, &pmin, &pmax)) {
		tsbpf_fct_stat(TSBPF_FCT_ST_NO_IFADDR);
		return 0;
	}
	tsbpf_ct_alias_init(&cs->alias, pkey, x, now);
	if (tsbpf_nat_alloc(to, &cs->key2, &cs->alias, pmin, pmax, x->sport, hash, now))
		return -1;
	__builtin_memcpy(x->src, to->src, 16);
	x->sport = to->sport;
	return 1;
}
#endif

/* An accepted ICMP error about a NAT'd connection (ingress): the quoted packet and the outer addresses, as their receiver knows them (icmperr.h). */
static __always_inline int tsbpf_fct_icmp_error(struct __sk_buff *skb, const struct tsbpf_pkt *p, struct tsbpf_fct *cs, __u64 now)
{
	struct tsbpf_ct_entry *e;
	__u32 ioff = 0, il4 = 0;
	int r;

	if (tsbpf_icmperr_quoted(skb, TSBPF_HOOK_TC, p, &cs->it, &ioff, &il4))
		return TC_ACT_OK;
	e = bpf_map_lookup_elem(&tsbpf_ct, &cs->key);
	if (!e || e->role != TSBPF_CT_PRIMARY)
		return TC_ACT_OK;
	if (tsbpf_icmperr_target(&cs->it, e, &cs->ito) || tsbpf_tuple_eq(&cs->it, &cs->ito))
		return TC_ACT_OK;
	r = tsbpf_icmperr_rewrite(skb, TSBPF_HOOK_TC, p, &cs->t, &cs->to, &cs->it, &cs->ito, ioff, il4);
	if (r < 0) {
		tsbpf_fct_stat(TSBPF_FCT_ST_ERROR);
		return TC_ACT_SHOT;
	}
	if (r == 0)
		tsbpf_fct_stat(TSBPF_FCT_ST_ICMP_XLATE);
	return TC_ACT_OK;
}

/* The first packet of a connection, accepted: its entry (with the rule's NAT) and its translation. */
static __always_inline int tsbpf_fct_new(struct __sk_buff *skb, const struct tsbpf_pkt *p, struct tsbpf_fct *cs, const struct tsbpf_ct_config *cfg,
					 __u8 hook, __u32 ifindex, __u64 now)
{
	struct tsbpf_tuple *t = &cs->t;
	struct tsbpf_ct_entry *ent = &cs->ent;
	__u8 state = tsbpf_fct_initial_state(p, cfg);
	__u32 hash;

	if (state == TSBPF_CT_NONE)
		return TC_ACT_OK;
	hash = tsbpf_flow_hash(t, cfg->seed);
	tsbpf_ct_init(ent, t, p, cfg, state, hook, now);
	ent->mark = cs->mark;
	tsbpf_ct_key_of(&cs->key, t);
	if (cs->nr.kind == TSBPF_NAT_DNAT && cs->nr.family == t->family) {
		tsbpf_nat_dnat_to(&ent->x, &cs->nr, hash);
		if (!tsbpf_tuple_eq(&ent->x, t)) {
			ent->flags |= TSBPF_CTF_DNAT;
			ent->nat_rule = cs->nat_rule;
		}
	}
	if (hook == TSBPF_CT_HOOK_EGRESS) {
#if TSBPF_FCT_SNAT
		int r = tsbpf_fct_snat(cs, &ent->x, &cs->key, ifindex, hash, now);
		if (r < 0) {
			tsbpf_fct_stat(TSBPF_FCT_ST_EXHAUSTED);
			tsbpf_fct_event(TSBPF_FCT_EV_NAT_EXHAUSTED, t, ifindex, cs->nat_rule - 1);
			return TC_ACT_SHOT;
		}
		if (r > 0) {
			ent->flags |= TSBPF_CTF_SNAT;
			ent->nat_rule = cs->nat_rule;
		}
#endif
		ent->flags |= TSBPF_CTF_SNAT_DONE;
	}
	/* DNAT: the tuple between DNAT and SNAT finds the connection at egress and (without SNAT) its replies. */
	if (ent->flags & TSBPF_CTF_DNAT) {
		struct tsbpf_tuple *pre = &cs->ito;
		__builtin_memcpy(pre, t, sizeof(*pre));
		__builtin_memcpy(pre->dst, ent->x.dst, 16);
		pre->dport = ent->x.dport;
		tsbpf_ct_key_of(&cs->key2, pre);
		if (!tsbpf_ct_key_eq(&cs->key2, &cs->key)) {
			tsbpf_ct_alias_init(&cs->alias, &cs->key, t, now);
			if (tsbpf_ct_reserve(&cs->key2, &cs->alias, now)) {
				tsbpf_fct_stat(TSBPF_FCT_ST_CLASH);
				return TC_ACT_SHOT;
			}
		}
	}
	if (bpf_map_update_elem(&tsbpf_ct, &cs->key, ent, BPF_ANY)) {
		tsbpf_fct_stat(TSBPF_FCT_ST_ERROR);
		return TC_ACT_SHOT;
	}
	tsbpf_fct_stat(TSBPF_FCT_ST_NEW);
	tsbpf_fct_forward(&cs->to, ent, t, hook);
	return tsbpf_fct_apply(skb, p, cs);
}

/* After the rules accepted (tsbpf_fct_need said so): commit and translate. Returns the program's return value. */
static __always_inline int tsbpf_fct_commit(struct __sk_buff *skb, const struct tsbpf_pkt *p, struct tsbpf_fct *cs, __u8 hook)
{
	__u32 zero = 0;
	struct tsbpf_ct_config *cfg = bpf_map_lookup_elem(&tsbpf_ct_config, &zero);
	struct tsbpf_ct_entry *e;
	__u64 now = bpf_ktime_get_coarse_ns();
	int stage = cs->stage;
	__u32 ifindex;

	/* Read the context once, at a constant offset (the verifier refuses a reused &skb->ifindex). */
	asm volatile("" : "+r"(skb));
	ifindex = skb->ifindex;
	if (!cfg)
		return TC_ACT_OK;
	if (cs->kind == TSBPF_FCT_ERROR)
		return hook == TSBPF_CT_HOOK_INGRESS ? tsbpf_fct_icmp_error(skb, p, cs, now) : TC_ACT_OK;
	if (cs->kind != TSBPF_FCT_CONN)
		return TC_ACT_OK;
	if (!cs->found)
		return tsbpf_fct_new(skb, p, cs, cfg, hook, ifindex, now);
	e = bpf_map_lookup_elem(&tsbpf_ct, &cs->key);
	if (!e || e->role != TSBPF_CT_PRIMARY)
		return TC_ACT_OK;
	if (cs->mark_set)
		e->mark = cs->mark;
	/* SNAT is decided once, at the first egress of the original direction. */
	if (hook == TSBPF_CT_HOOK_EGRESS && cs->dir == 0 && !(e->flags & TSBPF_CTF_SNAT_DONE)) {
#if TSBPF_FCT_SNAT
		struct tsbpf_tuple *x = &cs->to;
		__builtin_memcpy(x, &e->x, sizeof(*x));
		int r = tsbpf_fct_snat(cs, x, &cs->key, ifindex, tsbpf_flow_hash(&e->o, cfg->seed), now);
		if (r < 0) {
			tsbpf_fct_stat(TSBPF_FCT_ST_EXHAUSTED);
			tsbpf_fct_event(TSBPF_FCT_EV_NAT_EXHAUSTED, &cs->t, ifindex, cs->nat_rule - 1);
			return TC_ACT_SHOT;
		}
		if (r > 0) {
			__builtin_memcpy(e->x.src, x->src, 16);
			e->x.sport = x->sport;
			e->flags |= TSBPF_CTF_SNAT;
			e->nat_rule = cs->nat_rule;
		}
#endif
		e->flags |= TSBPF_CTF_SNAT_DONE;
		/* Without DNAT the packet looked translated (o == x) until SNAT changed x. */
		if (stage == 2 && !tsbpf_tuple_eq(&cs->t, &e->x))
			stage = 0;
	}
	if (cs->dir != 0 || stage == 2)
		return TC_ACT_OK;
	if (stage == 1 && hook == TSBPF_CT_HOOK_INGRESS)
		return TC_ACT_OK;
	tsbpf_fct_forward(&cs->to, e, &cs->t, hook);
	return tsbpf_fct_apply(skb, p, cs);
}

#endif /* TSBPF_CTFILTER_H */
