/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Support code for generated filters: the per-packet state shared by the
 * programs of one hook across tail calls, the return stack that gives
 * jump/return their netfilter meaning across programs, verdicts, counters,
 * log events and token buckets. docs/codegen.md explains the design.
 *
 * Maps are declared by the generated C (their sizes depend on the filter)
 * and passed in to these helpers, which are all always_inline.
 */
#ifndef TSBPF_FILTER_H
#define TSBPF_FILTER_H

#include <tsbpf/parse.h>
#include <tsbpf/csum.h>
#include <tsbpf/reject.h>

#define TSBPF_MAX_DEPTH 8

/* Outcome of a chain (inline chains return it; program chains finish with it). */
#define TSBPF_V_CONTINUE 0
#define TSBPF_V_ACCEPT 1
#define TSBPF_V_DROP 2
#define TSBPF_V_REJECT 3
#define TSBPF_V_REDIRECT 4

/* Slots of the error counters (tsbpf_errors). */
#define TSBPF_ERR_TAIL_CALL 0  /* a tail call failed: missing program or the kernel's limit */
#define TSBPF_ERR_STACK 1      /* return stack overflow (cannot happen for a validated filter) */
#define TSBPF_ERR_STATE 2      /* per-CPU state missing */
#define TSBPF_ERR_REJECT 3     /* reject could not build a reply (dropped instead) */
#define TSBPF_ERR_LIMIT 4      /* a token bucket could not be created (the rule did not pass) */
#define TSBPF_ERR_COUNT 8

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7
#endif

/* A return point: which chain program, and the rule to resume at. */
struct tsbpf_frame {
	__u16 slot;
	__u16 rule;
};

/* Per packet, per hook program, per CPU: tail calls on one CPU run to completion without interleaving. */
struct tsbpf_state {
	struct tsbpf_pkt pkt;
	__u32 mark;             /* TC: mirrors skb->mark; XDP: lives for this run only */
	__u32 ifindex;          /* interface the program runs on */
	__u32 resume;           /* rule index the next chain program starts at */
	__u32 depth;            /* frames on the return stack */
	__u32 redirect_ifindex; /* target of a redirect verdict */
	__u32 tail_calls;       /* tail calls taken so far (diagnostics) */
	struct tsbpf_frame stack[TSBPF_MAX_DEPTH];
};

struct tsbpf_counter {
	__u64 packets;
	__u64 bytes;
};

/* Layout mirrored in codegen/maps.ts (LOG_EVENT); sizes are fixed. */
struct tsbpf_log_event {
	__u64 ts_ns;
	__u32 rule_id;
	__u16 action;    /* index of the log action within the rule */
	__u8 verdict;    /* TSBPF_V_* the rule ends with, 0 when it continues */
	__u8 family;     /* 4, 6, or 0 without IP */
	__u32 ifindex;
	__u32 len;
	__u32 mark;
	__u8 proto;
	__u8 _pad0;
	__u16 sport;
	__u16 dport;
	__u16 _pad1;
	__u8 src[16];    /* IPv4 in the first 4 bytes, network order */
	__u8 dst[16];
};

struct tsbpf_bucket {
	struct bpf_spin_lock lock;
	__u32 started;
	__u64 credit;
	__u64 last;
};

struct tsbpf_kbucket {
	__u64 credit;
	__u64 last;
};

struct tsbpf_limit_key {
	__u32 family;
	__u8 addr[16];
};

struct tsbpf_lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct tsbpf_lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

static __always_inline void tsbpf_error(void *errors, __u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(errors, &slot);
	if (c)
		*c += 1;
}

static __always_inline struct tsbpf_state *tsbpf_state_get(void *states, __u32 key)
{
	return bpf_map_lookup_elem(states, &key);
}

/* Per-rule counters: packets and frame bytes. */
static __always_inline void tsbpf_count(void *counters, __u32 rule, struct tsbpf_state *st)
{
	struct tsbpf_counter *c = bpf_map_lookup_elem(counters, &rule);
	if (c) {
		c->packets += 1;
		c->bytes += st->pkt.len;
	}
}

static __always_inline void tsbpf_addr_bytes(__u8 *out, const struct tsbpf_pkt *p, int dst)
{
	if (p->present & TSBPF_HAS_IPV4) {
		tsbpf_put32(out, dst ? p->ip4_dst : p->ip4_src);
	} else if (p->present & TSBPF_HAS_IPV6) {
#pragma unroll
		for (int i = 0; i < 4; i++)
			tsbpf_put32(out + 4 * i, dst ? p->ip6_dst[i] : p->ip6_src[i]);
	}
}

static __always_inline void tsbpf_log(void *events, struct tsbpf_state *st, __u32 rule, __u16 action, __u8 verdict)
{
	const struct tsbpf_pkt *p = &st->pkt;
	struct tsbpf_log_event *e = bpf_ringbuf_reserve(events, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->rule_id = rule;
	e->action = action;
	e->verdict = verdict;
	e->family = (p->present & TSBPF_HAS_IPV4) ? 4 : (p->present & TSBPF_HAS_IPV6) ? 6 : 0;
	e->ifindex = st->ifindex;
	e->len = p->len;
	e->mark = st->mark;
	e->proto = p->proto;
	if (p->present & TSBPF_HAS_PORTS) {
		e->sport = p->sport;
		e->dport = p->dport;
	}
	tsbpf_addr_bytes(e->src, p, 0);
	tsbpf_addr_bytes(e->dst, p, 1);
	bpf_ringbuf_submit(e, 0);
}

/*
 * mark = (mark & ~mask) | value; at TC the skb carries it on.
 *
 * The store to skb->mark is written in assembly: with several mark actions in
 * one program, clang may keep `&skb->mark` (ctx + 8) in a register and store
 * through it, and the verifier only accepts a context access as the context
 * pointer plus a constant offset in the instruction itself.
 */
static __always_inline void tsbpf_set_mark(void *ctx, const int hook, struct tsbpf_state *st, __u32 value, __u32 mask)
{
	__u32 mark = (st->mark & ~mask) | value;

	st->mark = mark;
	if (hook == TSBPF_HOOK_TC) {
		_Static_assert(__builtin_offsetof(struct __sk_buff, mark) == 8, "__sk_buff.mark moved");
		asm volatile("*(u32 *)(%[skb] + 8) = %[mark]" : : [skb] "r"(ctx), [mark] "r"(mark) : "memory");
	}
}

/*
 * One token-bucket step, integer-exact (sdk/model.ts LimitAction):
 * credit = min(capacity, credit + (now - last)); last = now; take `cost` if there.
 * Returns 1 when a token was taken.
 */
static __always_inline int tsbpf_bucket_step(__u64 *credit, __u64 *last, __u64 now, __u64 cost, __u64 capacity)
{
	/* A clock that goes backwards (another CPU's later stamp) adds nothing. */
	__u64 elapsed = now > *last ? now - *last : 0;
	if (elapsed >= capacity || *credit + elapsed >= capacity)
		*credit = capacity;
	else
		*credit += elapsed;
	if (now > *last)
		*last = now;
	if (*credit >= cost) {
		*credit -= cost;
		return 1;
	}
	return 0;
}

/* Unkeyed bucket in an array slot, under its spin lock (one bucket shared by all CPUs). */
static __always_inline int tsbpf_limit(void *limits, __u32 slot, __u64 cost, __u64 capacity)
{
	struct tsbpf_bucket *b = bpf_map_lookup_elem(limits, &slot);
	__u64 now = bpf_ktime_get_ns();
	int took;
	if (!b)
		return 0;
	bpf_spin_lock(&b->lock);
	if (!b->started) {
		b->started = 1;
		b->credit = capacity;
		b->last = now;
	}
	took = tsbpf_bucket_step(&b->credit, &b->last, now, cost, capacity);
	bpf_spin_unlock(&b->lock);
	return took;
}

/* Bucket per address (LRU). Concurrent CPUs on the same key may race by a token; see docs/codegen.md. */
static __always_inline int tsbpf_limit_keyed(void *buckets, void *errors, const struct tsbpf_pkt *p, int dst, __u64 cost,
					     __u64 capacity)
{
	struct tsbpf_limit_key k;
	struct tsbpf_kbucket *b;
	__u64 now = bpf_ktime_get_ns();

	__builtin_memset(&k, 0, sizeof(k));
	k.family = (p->present & TSBPF_HAS_IPV4) ? 4 : (p->present & TSBPF_HAS_IPV6) ? 6 : 0;
	tsbpf_addr_bytes(k.addr, p, dst);
	b = bpf_map_lookup_elem(buckets, &k);
	if (!b) {
		struct tsbpf_kbucket fresh = { .credit = capacity, .last = now };
		bpf_map_update_elem(buckets, &k, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(buckets, &k);
		if (!b) {
			tsbpf_error(errors, TSBPF_ERR_LIMIT);
			return 0;
		}
	}
	return tsbpf_bucket_step(&b->credit, &b->last, now, cost, capacity);
}

/* IPv4 address in an LPM-trie set. */
static __always_inline int tsbpf_in_lpm4(void *set, __u32 addr)
{
	struct tsbpf_lpm4_key k = { .prefixlen = 32 };
	tsbpf_put32(k.addr, addr);
	return bpf_map_lookup_elem(set, &k) != 0;
}

static __always_inline int tsbpf_in_lpm6(void *set, const __u32 *addr)
{
	struct tsbpf_lpm6_key k = { .prefixlen = 128 };
#pragma unroll
	for (int i = 0; i < 4; i++)
		tsbpf_put32(k.addr + 4 * i, addr[i]);
	return bpf_map_lookup_elem(set, &k) != 0;
}

/* Port in a hash set keyed by the host-order port. */
static __always_inline int tsbpf_in_ports(void *set, __u16 port)
{
	return bpf_map_lookup_elem(set, &port) != 0;
}

/* IPv6 address (4 host-order words) in the prefix given as words and masks. */
static __always_inline int tsbpf_ip6_in(const __u32 *a, __u32 n0, __u32 n1, __u32 n2, __u32 n3, __u32 m0, __u32 m1,
					__u32 m2, __u32 m3)
{
	return (a[0] & m0) == n0 && (a[1] & m1) == n1 && (a[2] & m2) == n2 && (a[3] & m3) == n3;
}

/* The interface index a load-time resolved name slot holds (0: unresolved, matches nothing). */
static __always_inline __u32 tsbpf_ifslot(void *ifindexes, __u32 slot)
{
	__u32 *v = bpf_map_lookup_elem(ifindexes, &slot);
	return v ? *v : 0;
}

/* Push a return point; 0 when the stack is full. */
static __always_inline int tsbpf_push(struct tsbpf_state *st, __u16 slot, __u16 rule)
{
	__u32 d = st->depth;
	if (d >= TSBPF_MAX_DEPTH)
		return 0;
	st->stack[d & (TSBPF_MAX_DEPTH - 1)].slot = slot;
	st->stack[d & (TSBPF_MAX_DEPTH - 1)].rule = rule;
	st->depth = d + 1;
	return 1;
}

/* Tail call into slot of jmp (a prog_array); returns only when the call failed. */
static __always_inline void tsbpf_tail(void *ctx, void *jmp, struct tsbpf_state *st, __u32 slot)
{
	st->tail_calls++;
	bpf_tail_call(ctx, jmp, slot);
}

/* The program's return value for a verdict other than reject. */
static __always_inline int tsbpf_verdict_ret(const int hook, struct tsbpf_state *st, int v)
{
	if (v == TSBPF_V_ACCEPT)
		return hook == TSBPF_HOOK_XDP ? XDP_PASS : TC_ACT_OK;
	/* An unresolved interface (index 0) still redirects: the kernel then drops it, as a redirect to nowhere. */
	if (v == TSBPF_V_REDIRECT)
		return bpf_redirect(st->redirect_ifindex, 0);
	return hook == TSBPF_HOOK_XDP ? XDP_DROP : TC_ACT_SHOT;
}

/* Fail closed: a broken tail call or state drops the packet and counts why. */
static __always_inline int tsbpf_fail(const int hook, void *errors, __u32 why)
{
	tsbpf_error(errors, why);
	return hook == TSBPF_HOOK_XDP ? XDP_DROP : TC_ACT_SHOT;
}

#endif /* TSBPF_FILTER_H */
