// SPDX-License-Identifier: GPL-2.0
/*
 * tsbpf-cni endpoint program: NetworkPolicy by identity at the host side of
 * each pod's veth. One object serves every endpoint; the endpoint is the
 * host veth's ifindex (skb->ifindex at both TC hooks).
 *
 *   tc-ingress of the host veth = packets leaving the pod  = pod egress  (dir 1)
 *   tc-egress  of the host veth = packets entering the pod = pod ingress (dir 0)
 *
 * Written in C rather than as a function program (sdk/fn) because the policy
 * needs LPM tries (IP -> identity, CIDR rules with except), which the
 * function subset does not declare.
 *
 * Addresses are 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so an
 * IPv4 /n prefix has prefix length 96 + n in the tries.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DIR_INGRESS 0
#define DIR_EGRESS 1
#define IDENTITY_WORLD 2
#define MAX_RANGES 16

/* IP -> identity. */
struct ip_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Per endpoint (host veth ifindex): identity and isolation per direction. */
struct ep_info {
	__u32 identity;
	__u8 isolated[2]; /* [DIR_INGRESS], [DIR_EGRESS] */
	__u8 pad[2];
};

/* One allowed (protocol, destination port range); proto 0 = every protocol and port. */
struct port_range {
	__u16 from;
	__u16 to;
	__u8 proto;
	__u8 pad[3];
};

struct rule_set {
	__u32 count;
	struct port_range r[MAX_RANGES];
};

/* Identity rules: peer 0 = any peer. */
struct policy_key {
	__u32 ifindex;
	__u32 peer;
	__u8 dir;
	__u8 pad[3];
};

/* CIDR rules with their exceptions already resolved (longest prefix wins). */
struct cidr_key {
	__u32 prefixlen; /* 64 + address prefix length */
	__u32 ifindex;
	__u8 dir;
	__u8 pad[3];
	__u8 addr[16];
};

/* A connection as seen at one endpoint in one direction. */
struct ct_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 proto;
	__u8 dir;
	__u8 pad[2];
};

struct ct_val {
	__u64 created;
};

#define STAT_ALLOWED_CT 0
#define STAT_ALLOWED_OPEN 1
#define STAT_ALLOWED_POLICY 2
#define STAT_DENIED 3
#define STAT_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct ip_key);
	__type(value, __u32);
} cni_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ep_info);
} cni_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct policy_key);
	__type(value, struct rule_set);
} cni_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct cidr_key);
	__type(value, struct rule_set);
} cni_policy_cidr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} cni_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} cni_stats SEC(".maps");

struct flow {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 always; /* neighbour discovery and the like: never policed */
};

static __always_inline void stat(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&cni_stats, &i);
	if (v)
		*v += 1;
}

static __always_inline void mapped4(__u8 *out, __be32 a)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &a, 4);
}

/* 1: an IP packet, parsed into f; 0: not IP (ARP, ...), left alone. */
static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	void *l4;
	int first = 1;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return 0;
		mapped4(f->src, ip->saddr);
		mapped4(f->dst, ip->daddr);
		f->proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
		if (ip->frag_off & bpf_htons(0x1fff))
			first = 0;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return 0;
		__builtin_memcpy(f->src, &ip6->saddr, 16);
		__builtin_memcpy(f->dst, &ip6->daddr, 16);
		f->proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return 0;
	}
	if (!first)
		return 1;
	switch (f->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 *ports = l4;
		if ((void *)(ports + 2) > end)
			return 1;
		f->sport = bpf_ntohs(ports[0]);
		f->dport = bpf_ntohs(ports[1]);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 *h = l4;
		if ((void *)(h + 8) > end)
			return 1;
		/* Echo request/reply: the identifier on both sides, so a reply is the reversed request. */
		if (h[0] == 8 || h[0] == 0 || h[0] == 128 || h[0] == 129) {
			f->sport = ((__u16)h[4] << 8) | h[5];
			f->dport = f->sport;
		}
		/* IPv6 neighbour discovery (router/neighbour solicitation/advertisement, redirect). */
		if (f->proto == IPPROTO_ICMPV6 && h[0] >= 133 && h[0] <= 137)
			f->always = 1;
		break;
	}
	}
	return 1;
}

static __always_inline int ranges_allow(const struct rule_set *rs, __u8 proto, __u16 port)
{
	if (!rs)
		return 0;
	for (int i = 0; i < MAX_RANGES; i++) {
		if (i >= rs->count)
			break;
		const struct port_range *r = &rs->r[i];
		if (r->proto == 0)
			return 1;
		if (r->proto == proto && port >= r->from && port <= r->to)
			return 1;
	}
	return 0;
}

static __always_inline int policy_allows(__u32 ifindex, __u8 dir, const struct flow *f)
{
	const __u8 *peer = dir == DIR_EGRESS ? f->dst : f->src;
	struct ip_key ik = { .prefixlen = 128 };
	struct policy_key pk = { .ifindex = ifindex, .dir = dir };
	struct cidr_key ck = { .prefixlen = 64 + 128, .ifindex = ifindex, .dir = dir };
	__u32 identity = IDENTITY_WORLD;
	__u32 *id;

	__builtin_memcpy(ik.addr, peer, 16);
	id = bpf_map_lookup_elem(&cni_ipcache, &ik);
	if (id)
		identity = *id;
	pk.peer = identity;
	if (ranges_allow(bpf_map_lookup_elem(&cni_policy, &pk), f->proto, f->dport))
		return 1;
	pk.peer = 0;
	if (ranges_allow(bpf_map_lookup_elem(&cni_policy, &pk), f->proto, f->dport))
		return 1;
	__builtin_memcpy(ck.addr, peer, 16);
	return ranges_allow(bpf_map_lookup_elem(&cni_policy_cidr, &ck), f->proto, f->dport);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	__u32 ifindex = skb->ifindex;
	struct ep_info *ep = bpf_map_lookup_elem(&cni_endpoints, &ifindex);
	struct flow f = {};
	struct ct_key k = {};
	struct ct_val v = {};

	if (!ep)
		return TC_ACT_OK; /* not an endpoint of ours (yet) */
	if (!parse(skb, &f) || f.always)
		return TC_ACT_OK;

	/* Established in this direction? */
	__builtin_memcpy(k.src, f.src, 16);
	__builtin_memcpy(k.dst, f.dst, 16);
	k.sport = f.sport;
	k.dport = f.dport;
	k.ifindex = ifindex;
	k.proto = f.proto;
	k.dir = dir;
	if (bpf_map_lookup_elem(&cni_ct, &k)) {
		stat(STAT_ALLOWED_CT);
		return TC_ACT_OK;
	}
	/* A reply of a connection allowed the other way? */
	{
		struct ct_key r = {};
		__builtin_memcpy(r.src, f.dst, 16);
		__builtin_memcpy(r.dst, f.src, 16);
		r.sport = f.dport;
		r.dport = f.sport;
		r.ifindex = ifindex;
		r.proto = f.proto;
		r.dir = !dir;
		if (bpf_map_lookup_elem(&cni_ct, &r)) {
			stat(STAT_ALLOWED_CT);
			return TC_ACT_OK;
		}
	}
	if (ep->isolated[dir & 1]) {
		if (!policy_allows(ifindex, dir, &f)) {
			stat(STAT_DENIED);
			return TC_ACT_SHOT;
		}
		stat(STAT_ALLOWED_POLICY);
	} else {
		stat(STAT_ALLOWED_OPEN);
	}
	/* Tracked even when the direction is open, so replies pass should the other side be isolated. */
	v.created = bpf_ktime_get_ns();
	bpf_map_update_elem(&cni_ct, &k, &v, BPF_ANY);
	return TC_ACT_OK;
}

SEC("tc")
int cni_from_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

SEC("tc")
int cni_to_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
