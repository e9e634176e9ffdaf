/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fixed parts of the classifier (tuple-space search) that generated filters
 * use: the value of a classifier entry and the action record of a classified
 * rule. The key, the tuple record, the lookup loop and the key builder depend
 * on the fields a filter classifies on, so codegen/classify/emit.ts writes
 * them. docs/classification.md explains the design.
 */
#ifndef TSBPF_CLASSIFY_H
#define TSBPF_CLASSIFY_H

#include <tsbpf/filter.h>

/* A classified rule that leaves its chain (return): not a verdict. */
#define TSBPF_V_RETURN 5

/* Classifier failure (missing action record): the packet is dropped. */
#define TSBPF_ERR_CLS 5

/* Flags of struct tsbpf_cls_act. */
#define TSBPF_CLS_COUNT 1
#define TSBPF_CLS_LOG 2
#define TSBPF_CLS_MARK 4
#define TSBPF_CLS_MARK_FIRST 8 /* the mark action comes before the log action */


/*
 * An entry's value, per generation: the lowest priority (first rule) among
 * the rules with this masked key, and that rule's slot. A generation the
 * entry does not exist in has priority 0xffffffff. Userspace writes the
 * inactive generation, flips tsbpf_cls_ctl[0], then mirrors the other.
 */
struct tsbpf_cls_val {
	__u32 prio[2];
	__u32 slot[2];
};

/* What a classified rule does, indexed by its slot (stable across updates). */
struct tsbpf_cls_act {
	__u8 verdict;      /* TSBPF_V_ACCEPT..TSBPF_V_REDIRECT, or TSBPF_V_RETURN */
	__u8 flags;        /* TSBPF_CLS_* */
	__u8 log_verdict;  /* the verdict code log events report (0 for return) */
	__u8 _pad0;
	__u16 log_action;  /* index of the log action within the rule */
	__u16 _pad1;
	__u32 mark_value;
	__u32 mark_mask;
	__u32 ifindex;     /* redirect target */
	__u32 rule;        /* the rule's slot: counter index and log event rule id */
};

#endif /* TSBPF_CLASSIFY_H */
