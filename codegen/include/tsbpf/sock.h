/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket-level load balancing (cgroup/connect4|6, sendmsg4|6, recvmsg4|6,
 * getpeername4|6): a socket that connects or sends to a service VIP is given
 * a backend's address before any packet exists, so translation happens once
 * per connection instead of per packet. recvmsg and getpeername put the VIP
 * back, so the application only ever sees the address it asked for.
 *
 * Selection: the service's lookup table at a slot chosen by the socket
 * cookie's hash (Maglev) or at random; session affinity is not applied here
 * (the client address is not known before the socket is bound). Packets of
 * sockets outside the cgroup still meet the per-packet path (svc.h).
 */
#ifndef TSBPF_SOCK_H
#define TSBPF_SOCK_H

#include <tsbpf/ct.h>
#include <tsbpf/lb.h>

#ifndef TSBPF_SOCK_REV_MAX
#define TSBPF_SOCK_REV_MAX 65536
#endif

struct tsbpf_sock_rev_key {
	__u64 cookie;
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 _pad[5];
};

struct tsbpf_sock_rev {
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TSBPF_SOCK_REV_MAX);
	__type(key, struct tsbpf_sock_rev_key);
	__type(value, struct tsbpf_sock_rev);
} tsbpf_sock_rev SEC(".maps");

static __always_inline void tsbpf_sock_dst(struct bpf_sock_addr *ctx, int v6, __u32 *addr, __u16 *port)
{
	if (v6) {
		addr[0] = bpf_ntohl(ctx->user_ip6[0]);
		addr[1] = bpf_ntohl(ctx->user_ip6[1]);
		addr[2] = bpf_ntohl(ctx->user_ip6[2]);
		addr[3] = bpf_ntohl(ctx->user_ip6[3]);
	} else {
		addr[0] = bpf_ntohl(ctx->user_ip4);
		addr[1] = addr[2] = addr[3] = 0;
	}
	*port = bpf_ntohs((__u16)ctx->user_port);
}

static __always_inline void tsbpf_sock_set_dst(struct bpf_sock_addr *ctx, int v6, const __u32 *addr, __u16 port)
{
	if (v6) {
		ctx->user_ip6[0] = bpf_htonl(addr[0]);
		ctx->user_ip6[1] = bpf_htonl(addr[1]);
		ctx->user_ip6[2] = bpf_htonl(addr[2]);
		ctx->user_ip6[3] = bpf_htonl(addr[3]);
	} else {
		ctx->user_ip4 = bpf_htonl(addr[0]);
	}
	ctx->user_port = bpf_htons(port);
}

/* connect / sendmsg: a VIP becomes a backend. Always lets the call proceed. */
static __always_inline int tsbpf_sock_forward(struct bpf_sock_addr *ctx, const int v6)
{
	struct tsbpf_lb_key k;
	struct tsbpf_lb_service *svc;
	struct tsbpf_lb_table *tab;
	struct tsbpf_lb_backend *b;
	struct tsbpf_sock_rev_key rk;
	struct tsbpf_sock_rev rv;
	__u32 addr[4];
	__u16 port;
	__u32 table, idx, id;
	__u8 proto = ctx->protocol;

	if (proto != TSBPF_IPPROTO_TCP && proto != TSBPF_IPPROTO_UDP)
		return 1;
	tsbpf_sock_dst(ctx, v6, addr, &port);
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.addr, addr, 16);
	k.port = port;
	k.proto = proto;
	k.family = v6 ? 6 : 4;
	svc = bpf_map_lookup_elem(&tsbpf_lb_services, &k);
	if (!svc || svc->count == 0)
		return 1;
	table = svc->table;
	tab = bpf_map_lookup_elem(&tsbpf_lb_tables, &table);
	if (!tab)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	idx = (svc->mode == TSBPF_LB_MAGLEV ? tsbpf_hash_fin((__u32)cookie ^ (__u32)(cookie >> 32)) : bpf_get_prandom_u32()) % TSBPF_LB_M;
	asm volatile("" : "+r"(idx));
	if (idx >= TSBPF_LB_M)
		return 1;
	id = tab->ids[idx];
	b = tsbpf_lb_ready_backend(id, svc->id);
	if (!b)
		return 1;
	__builtin_memset(&rk, 0, sizeof(rk));
	rk.cookie = cookie;
	__builtin_memcpy(rk.addr, b->addr, 16);
	rk.port = b->port;
	rk.family = k.family;
	__builtin_memset(&rv, 0, sizeof(rv));
	__builtin_memcpy(rv.addr, addr, 16);
	rv.port = port;
	rv.family = k.family;
	bpf_map_update_elem(&tsbpf_sock_rev, &rk, &rv, BPF_ANY);
	tsbpf_sock_set_dst(ctx, v6, b->addr, b->port);
	return 1;
}

/* recvmsg / getpeername: a backend this socket was sent to shows as its VIP. */
static __always_inline int tsbpf_sock_reverse(struct bpf_sock_addr *ctx, const int v6)
{
	struct tsbpf_sock_rev_key rk;
	struct tsbpf_sock_rev *rv;
	__u32 addr[4];
	__u16 port;

	tsbpf_sock_dst(ctx, v6, addr, &port);
	__builtin_memset(&rk, 0, sizeof(rk));
	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, addr, 16);
	rk.port = port;
	rk.family = v6 ? 6 : 4;
	rv = bpf_map_lookup_elem(&tsbpf_sock_rev, &rk);
	if (rv)
		tsbpf_sock_set_dst(ctx, v6, rv->addr, rv->port);
	return 1;
}

#endif /* TSBPF_SOCK_H */
