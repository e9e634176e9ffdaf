/**
 * The C translation unit of function programs: includes, map definitions
 * (BTF-defined, types from the layouts), the small support library below,
 * the user's helper functions and the programs.
 */
import { cDecls, isStructLayout, type Layout } from '../../sdk/layout.js';
import type { FnMapKind } from '../../sdk/fn/maps.js';
import type { MapInfo } from './lower.js';

const MAP_TYPE: Record<FnMapKind, string> = {
  hash: 'BPF_MAP_TYPE_HASH',
  lru_hash: 'BPF_MAP_TYPE_LRU_HASH',
  percpu_hash: 'BPF_MAP_TYPE_PERCPU_HASH',
  lru_percpu_hash: 'BPF_MAP_TYPE_LRU_PERCPU_HASH',
  array: 'BPF_MAP_TYPE_ARRAY',
  percpu_array: 'BPF_MAP_TYPE_PERCPU_ARRAY',
  ringbuf: 'BPF_MAP_TYPE_RINGBUF',
  prog_array: 'BPF_MAP_TYPE_PROG_ARRAY',
};

/**
 * Support code every unit carries. fn_write is the one place packet bytes
 * change: XDP writes directly (bounds-checked), TC goes through the skb
 * helpers so checksum offload state (CHECKSUM_PARTIAL/COMPLETE) stays right
 * on real traffic. fn_csum_replace is csum_replace2/4 of the kernel
 * (sdk/fn/csum.ts is its JS twin).
 */
export const FN_SUPPORT_C = `struct fn_ip6 {
	__u64 hi;
	__u64 lo;
};

static __always_inline struct fn_ip6 fn_ip6_of(const __u32 *w)
{
	struct fn_ip6 a = { ((__u64)w[0] << 32) | w[1], ((__u64)w[2] << 32) | w[3] };
	return a;
}

static __always_inline int fn_ip6_eq(struct fn_ip6 a, struct fn_ip6 b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

/* The checksum after an n-byte (2 or 4) big-endian region changed from old to nw. */
static __always_inline __u16 fn_csum_replace(__u16 check, __u32 old, __u32 nw, const int n)
{
	__u64 s = 0xffff + (__u16)~check;

	if (n == 4) {
		s += (__u16)~(old >> 16) + (__u16)~old;
		s += (nw >> 16) + (nw & 0xffff);
	} else {
		s += (__u16)~old + (nw & 0xffff);
	}
	return (__u16)~tsbpf_csum_fold(s);
}

static __always_inline __u8 *fn_xdp_ptr(void *ctx, __u32 off, const __u32 n)
{
	struct xdp_md *x = ctx;
	void *data = (void *)(long)x->data;
	void *end = (void *)(long)x->data_end;
	__u8 *b;

	if (off > TSBPF_MAX_HDR_OFF)
		return 0;
	b = data + off;
	if ((void *)(b + n) > end)
		return 0;
	return b;
}

/* JS's % for a positive divisor: the result has the dividend's sign (BPF has no signed modulo). */
static __always_inline __s64 fn_smod(__s64 a, __s64 d)
{
	return a < 0 ? -(__s64)((__u64)-a % (__u64)d) : (__s64)((__u64)a % (__u64)d);
}

#define FN_CSUM_PSEUDO 1
#define FN_CSUM_MANGLED0 2

/*
 * Replace the bits (mask << shift) of the n-byte big-endian region at off
 * with v, then fix the IPv4 header checksum at ip4_off and the L4 checksum at
 * l4_off (0: none). FN_CSUM_PSEUDO: the region is part of the pseudo-header;
 * FN_CSUM_MANGLED0: UDP, where 0 means "no checksum".
 *
 * At TC, store_flags is BPF_F_RECOMPUTE_CSUM for fields no checksum covers
 * (IPv6 header fields), so a CHECKSUM_COMPLETE skb->csum follows the change;
 * a field whose checksum is fixed leaves the data's sum as it was (the field
 * and its checksum move by opposite amounts), and the Ethernet header is not
 * in skb->csum at all: both store with 0.
 */
static __always_inline void fn_write(void *ctx, const int hook, struct tsbpf_pkt *p, __u32 off, const int n,
				     const int shift, const __u64 mask, __u64 v, __u32 ip4_off, __u32 l4_off, int l4_flags,
				     const __u64 store_flags)
{
	__u8 buf[8] = {};
	__u64 old = 0, nw;
	__u8 *b = 0;

	if (hook == TSBPF_HOOK_XDP) {
		b = fn_xdp_ptr(ctx, off, n);
		if (!b)
			return;
		__builtin_memcpy(buf, b, n);
	} else if (bpf_skb_load_bytes(ctx, off, buf, n)) {
		return;
	}
#pragma unroll
	for (int i = 0; i < n; i++)
		old = (old << 8) | buf[i];
	nw = (old & ~(mask << shift)) | ((v & mask) << shift);
#pragma unroll
	for (int i = 0; i < n; i++)
		buf[i] = nw >> (8 * (n - 1 - i));
	if (hook == TSBPF_HOOK_XDP)
		__builtin_memcpy(b, buf, n);
	else
		bpf_skb_store_bytes(ctx, off, buf, n, store_flags);
	if (n == 6)
		return;
	if (ip4_off) {
		__u16 c = fn_csum_replace(p->ip4_csum, old, nw, n);
		if (hook == TSBPF_HOOK_XDP) {
			__u8 *cb = fn_xdp_ptr(ctx, ip4_off, 2);
			if (cb)
				tsbpf_put16(cb, c);
		} else if (n == 4) {
			bpf_l3_csum_replace(ctx, ip4_off, bpf_htonl(old), bpf_htonl(nw), 4);
		} else {
			bpf_l3_csum_replace(ctx, ip4_off, bpf_htons(old), bpf_htons(nw), 2);
		}
		p->ip4_csum = c;
	}
	if (l4_off) {
		__u16 c;
		if ((l4_flags & FN_CSUM_MANGLED0) && p->l4_csum == 0)
			return;
		c = fn_csum_replace(p->l4_csum, old, nw, n);
		if ((l4_flags & FN_CSUM_MANGLED0) && c == 0)
			c = 0xffff;
		if (hook == TSBPF_HOOK_XDP) {
			__u8 *cb = fn_xdp_ptr(ctx, l4_off, 2);
			if (cb)
				tsbpf_put16(cb, c);
		} else {
			__u64 f = n | ((l4_flags & FN_CSUM_PSEUDO) ? BPF_F_PSEUDO_HDR : 0) |
				  ((l4_flags & FN_CSUM_MANGLED0) ? BPF_F_MARK_MANGLED_0 : 0);
			if (n == 4)
				bpf_l4_csum_replace(ctx, l4_off, bpf_htonl(old), bpf_htonl(nw), f);
			else
				bpf_l4_csum_replace(ctx, l4_off, bpf_htons(old), bpf_htons(nw), f);
		}
		p->l4_csum = c;
	}
}

/*
 * An IPv6 address (the source at off = l3 + 8, the destination at l3 + 24):
 * four 4-byte regions, each with its incremental fix of the L4 checksum
 * (TCP, UDP, ICMPv6: the pseudo-header holds the addresses). store is the
 * address in the parse result, kept up to date.
 */
static __always_inline void fn_write_ip6(void *ctx, const int hook, struct tsbpf_pkt *p, __u32 off, struct fn_ip6 a, __u32 l4_off,
					 int l4_flags, __u32 *store)
{
	__u32 nw[4] = { a.hi >> 32, (__u32)a.hi, a.lo >> 32, (__u32)a.lo };
	__u32 old[4];
	__u8 buf[16];
	__u8 *b = 0;
	__u16 c = p->l4_csum;
	/* One pass, few branches: eight fn_write()s in a program are too many paths for the verifier. */
	int fix = l4_off != 0 && !((l4_flags & FN_CSUM_MANGLED0) && c == 0);

	if (hook == TSBPF_HOOK_XDP) {
		b = fn_xdp_ptr(ctx, off, 16);
		if (!b)
			return;
		__builtin_memcpy(buf, b, 16);
	} else if (bpf_skb_load_bytes(ctx, off, buf, 16)) {
		return;
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		old[i] = tsbpf_be32(buf + 4 * i);
		tsbpf_put32(buf + 4 * i, nw[i]);
		c = fn_csum_replace(c, old[i], nw[i], 4);
		if ((l4_flags & FN_CSUM_MANGLED0) && c == 0)
			c = 0xffff;
		store[i] = nw[i];
	}
	if (hook == TSBPF_HOOK_XDP)
		__builtin_memcpy(b, buf, 16);
	else
		bpf_skb_store_bytes(ctx, off, buf, 16, 0);
	if (!fix)
		return;
	if (hook == TSBPF_HOOK_XDP) {
		__u8 *cb = fn_xdp_ptr(ctx, l4_off, 2);
		if (cb)
			tsbpf_put16(cb, c);
	} else {
		__u64 f = 4 | BPF_F_PSEUDO_HDR | ((l4_flags & FN_CSUM_MANGLED0) ? BPF_F_MARK_MANGLED_0 : 0);
#pragma unroll
		for (int i = 0; i < 4; i++)
			bpf_l4_csum_replace(ctx, l4_off, bpf_htonl(old[i]), bpf_htonl(nw[i]), f);
	}
	p->l4_csum = c;
}

/*
 * The bits (mask << shift) of the outer VLAN tag's TCI. At XDP, and at TC when
 * the tag is in the bytes, the TCI is bytes 14..15 of the frame (at TC stored
 * with BPF_F_RECOMPUTE_CSUM: a CHECKSUM_COMPLETE sum that covers the tag
 * follows). At TC the kernel may hold the outer tag in skb metadata
 * (parse.h): then it is popped and pushed back with the new TCI, which
 * changes no bytes.
 */
static __always_inline void fn_vlan_write(void *ctx, const int hook, struct tsbpf_pkt *p, const int shift, const __u16 mask, __u16 v)
{
	__u16 tci = (p->vlan_tci[0] & (__u16)~(mask << shift)) | (__u16)((v & mask) << shift);

	if (hook == TSBPF_HOOK_TC && ((struct __sk_buff *)ctx)->vlan_present) {
		__u32 proto = ((struct __sk_buff *)ctx)->vlan_proto;

		if (bpf_skb_vlan_pop(ctx) || bpf_skb_vlan_push(ctx, proto, tci))
			return;
	} else {
		fn_write(ctx, hook, p, 14, 2, shift, mask, v, 0, 0, 0, hook == TSBPF_HOOK_XDP ? 0 : BPF_F_RECOMPUTE_CSUM);
	}
	p->vlan_tci[0] = tci;
}
`;

/** C type names for a map's key and value, and the declarations they need. */
export function mapTypes(name: string, key: Layout<unknown> | undefined, value: Layout<unknown> | undefined): { keyC?: string; valueC?: string; decls: Array<[string, Layout<unknown>]> } {
  const decls: Array<[string, Layout<unknown>]> = [];
  const one = (l: Layout<unknown> | undefined, suffix: string): string | undefined => {
    if (!l) return undefined;
    if (isStructLayout(l)) {
      const tag = l.name ?? `${name}_${suffix}`;
      decls.push([tag, l]);
      return `struct ${tag}`;
    }
    return `__${l.kind}`;
  };
  const keyC = one(key, 'key');
  const valueC = one(value, 'value');
  return { ...(keyC ? { keyC } : {}), ...(valueC ? { valueC } : {}), decls };
}

export interface UnitParts {
  file: string;
  programs: Array<{ name: string; text: string }>;
  helpers: string[];
  maps: MapInfo[];
  decls: Array<[string, Layout<unknown>]>;
  /** The C of a filter runChain runs (codegen/fn/filters.ts), and its runners. */
  filterC?: string;
  runners?: string[];
  /** DSL sets are used: their keys and lookups come from tsbpf/filter.h. */
  dslSets?: boolean;
}

export function emitUnit(u: UnitParts): string {
  const out: string[] = [];
  out.push(`/*
 * Generated by tsbpf from ${u.file}: ${u.programs.map((p) => p.name).join(', ')}.
 * Do not edit: change the TypeScript and build again. Comments give the line of
 * the TypeScript each part came from.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <tsbpf/parse.h>
#include <tsbpf/csum.h>
`);
  if (u.dslSets || u.filterC) out.push('#include <tsbpf/filter.h>\n');
  if (u.filterC) out.push(`/* ---- filter compiled in for runChain ---- */\n${u.filterC}\n/* ---- function programs ---- */\n`);
  if (u.decls.length) out.push(cDecls(u.decls));
  for (const m of u.maps) {
    const d = m.decl;
    if (m.set) {
      // As codegen/maps.ts declares a filter's set.
      const lpm = m.set !== 'port';
      out.push(`struct {\n\t__uint(type, ${lpm ? 'BPF_MAP_TYPE_LPM_TRIE' : 'BPF_MAP_TYPE_HASH'});\n\t__uint(max_entries, ${d.maxEntries});\n${lpm ? '\t__uint(map_flags, BPF_F_NO_PREALLOC);\n' : ''}\t__type(key, ${m.keyC});\n\t__type(value, __u8);\n} ${m.name} SEC(".maps");\n`);
      continue;
    }
    const lines = [`\t__uint(type, ${MAP_TYPE[d.kind]});`, `\t__uint(max_entries, ${d.maxEntries});`];
    if (d.kind !== 'ringbuf') {
      lines.push(`\t__type(key, ${m.keyC});`, `\t__type(value, ${m.valueC});`);
    }
    out.push(`struct {\n${lines.join('\n')}\n} ${m.name} SEC(".maps");\n`);
  }
  out.push(FN_SUPPORT_C);
  for (const r of u.runners ?? []) out.push(r + '\n');
  for (const h of u.helpers) out.push(h + '\n');
  for (const p of u.programs) out.push(p.text + '\n');
  out.push('char LICENSE[] SEC("license") = "GPL";\n');
  return out.join('\n');
}
