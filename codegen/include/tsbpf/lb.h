/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Service load balancing: a virtual IP, port and protocol map to a service,
 * whose lookup table (TSBPF_LB_M slots, a prime) holds backend ids: built by
 * Maglev (selection by flow hash) or by weight (selection at random) in TS
 * (sdk/maglev.ts) and written by the runtime. Twin of sdk/services.ts.
 *
 * Updates are atomic per service: the runtime writes new backends and a new
 * table under a fresh table id, then replaces the service entry (one map
 * update), then removes what is no longer referenced. A packet sees the old
 * service or the new one, never a mix.
 */
#ifndef TSBPF_LB_H
#define TSBPF_LB_H

#include <tsbpf/ct.h>

#ifndef TSBPF_LB_M
#define TSBPF_LB_M 1021
#endif
#ifndef TSBPF_LB_SERVICES
#define TSBPF_LB_SERVICES 1024
#endif
#ifndef TSBPF_LB_BACKENDS
#define TSBPF_LB_BACKENDS 16384
#endif
#ifndef TSBPF_LB_AFFINITY
#define TSBPF_LB_AFFINITY 65536
#endif

#define TSBPF_LB_RANDOM 1
#define TSBPF_LB_MAGLEV 2

/* backend.flags */
#define TSBPF_LBB_READY (1u << 0)

struct tsbpf_lb_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 family;
};

struct tsbpf_lb_service {
	__u32 id;
	__u32 table;      /* key of its lookup table in tsbpf_lb_tables */
	__u32 affinity_s; /* session affinity timeout in seconds (0: off) */
	__u16 count;      /* ready backends (0: no backend: new connections are dropped) */
	__u8 mode;        /* TSBPF_LB_RANDOM / TSBPF_LB_MAGLEV */
	__u8 flags;
};

struct tsbpf_lb_backend {
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 flags;
	__u32 svc_id;
	__u32 weight;
};

struct tsbpf_lb_table {
	__u32 ids[TSBPF_LB_M];
};

struct tsbpf_lb_aff_key {
	__u32 svc_id;
	__u32 family;
	__u32 addr[4];
};

struct tsbpf_lb_aff {
	__u32 backend_id;
	__u32 _pad;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TSBPF_LB_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tsbpf_lb_key);
	__type(value, struct tsbpf_lb_service);
} tsbpf_lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TSBPF_LB_BACKENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct tsbpf_lb_backend);
} tsbpf_lb_backends SEC(".maps");

/* Two tables per service at most while one is being replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TSBPF_LB_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct tsbpf_lb_table);
} tsbpf_lb_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TSBPF_LB_AFFINITY);
	__type(key, struct tsbpf_lb_aff_key);
	__type(value, struct tsbpf_lb_aff);
} tsbpf_lb_affinity SEC(".maps");

static __always_inline struct tsbpf_lb_service *tsbpf_lb_lookup(struct tsbpf_lb_key *k, const struct tsbpf_tuple *t)
{
	__builtin_memcpy(k->addr, t->dst, 16);
	k->port = t->dport;
	k->proto = t->proto;
	k->family = t->family;
	return bpf_map_lookup_elem(&tsbpf_lb_services, k);
}

/* A backend usable for a new connection of service svc_id. */
static __always_inline struct tsbpf_lb_backend *tsbpf_lb_ready_backend(__u32 id, __u32 svc_id)
{
	struct tsbpf_lb_backend *b = bpf_map_lookup_elem(&tsbpf_lb_backends, &id);
	if (!b || b->svc_id != svc_id || !(b->flags & TSBPF_LBB_READY))
		return 0;
	return b;
}

/*
 * Choose the backend of a new connection: the client's affinity entry when
 * it is alive and its backend ready, else the lookup table (flow hash for
 * Maglev, random otherwise). *backend_id and *from_affinity are set; NULL
 * when the service has no usable backend.
 */
static __always_inline struct tsbpf_lb_backend *tsbpf_lb_select(const struct tsbpf_lb_service *svc, const struct tsbpf_tuple *t,
								 __u32 hash, __u64 now, __u32 *backend_id, int *from_affinity)
{
	struct tsbpf_lb_aff_key ak;
	struct tsbpf_lb_backend *b;
	struct tsbpf_lb_table *tab;
	__u32 id, idx, table = svc->table, affinity_s = svc->affinity_s;

	*from_affinity = 0;
	if (svc->count == 0)
		return 0;
	__builtin_memset(&ak, 0, sizeof(ak));
	ak.svc_id = svc->id;
	ak.family = t->family;
	__builtin_memcpy(ak.addr, t->src, 16);
	if (affinity_s) {
		struct tsbpf_lb_aff *a = bpf_map_lookup_elem(&tsbpf_lb_affinity, &ak);
		if (a && now - a->last_ns <= (__u64)affinity_s * 1000000000ull) {
			b = tsbpf_lb_ready_backend(a->backend_id, svc->id);
			if (b) {
				*backend_id = a->backend_id;
				*from_affinity = 1;
				a->last_ns = now;
				return b;
			}
		}
	}
	tab = bpf_map_lookup_elem(&tsbpf_lb_tables, &table);
	if (!tab)
		return 0;
	idx = (svc->mode == TSBPF_LB_MAGLEV ? hash : bpf_get_prandom_u32()) % TSBPF_LB_M;
	/* clang knows idx < M and would drop the check the verifier needs. */
	asm volatile("" : "+r"(idx));
	if (idx >= TSBPF_LB_M)
		return 0;
	id = tab->ids[idx];
	b = tsbpf_lb_ready_backend(id, svc->id);
	if (!b)
		return 0;
	*backend_id = id;
	if (affinity_s) {
		struct tsbpf_lb_aff v = { .backend_id = id, .last_ns = now };
		bpf_map_update_elem(&tsbpf_lb_affinity, &ak, &v, BPF_ANY);
	}
	return b;
}

#endif /* TSBPF_LB_H */
