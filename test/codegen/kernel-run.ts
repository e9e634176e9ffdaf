/**
 * Run a compiled filter in the kernel the way the evaluator runs it: load the
 * object, write the sets' initial elements and the interface slots, then
 * BPF_PROG_TEST_RUN the hook's entry program with the packet (and, at TC, the
 * mark through the __sk_buff context).
 */
import type { CompileResult } from '../../codegen/compile.js';
import type { Hook, Verdict } from '../../sdk/model.js';
import { loadObject, u32key, type LoadedObject } from './helpers.js';

export interface KernelFilter {
  object: LoadedObject;
  run(hook: Hook, data: Buffer, opts?: { mark?: number }): { retval: number; data: Buffer; verdict: Verdict | 'tx-or-redirect' };
  close(): void;
}

const SKB_SIZE = 192;
const SKB_MARK = 8;

export function loadFilter(result: CompileResult, interfaces: Record<string, number> = { lo: 1 }): KernelFilter {
  const o = loadObject(result.object.path);
  try {
    for (const m of result.maps) for (const e of m.initial ?? []) o.update(m.name, e.key, e.value);
    result.ifnames.forEach((name, slot) => {
      const idx = interfaces[name];
      if (idx !== undefined) o.update('tsbpf_ifindex', u32key(slot), u32key(idx));
    });
  } catch (e) {
    o.close();
    throw e;
  }
  return {
    object: o,
    run(hook, data, opts = {}) {
      const prog = result.programs.find((p) => p.hook === hook && p.entry);
      if (!prog) throw new Error(`no program for ${hook}`);
      let ctx: Buffer | undefined;
      if (hook !== 'xdp' && opts.mark) {
        ctx = Buffer.alloc(SKB_SIZE);
        ctx.writeUInt32LE(opts.mark >>> 0, SKB_MARK);
      }
      const r = o.run(prog.name, data, ctx);
      return { ...r, verdict: verdictOf(hook, r.retval) };
    },
    close: () => o.close(),
  };
}

/**
 * The verdict a return value stands for. XDP_TX and TC redirect after a
 * reject both mean "reject with a reply"; a TC redirect is also a redirect
 * verdict, so callers tell them apart by the data.
 */
export function verdictOf(hook: Hook, retval: number): Verdict | 'tx-or-redirect' {
  if (hook === 'xdp') return (({ 1: 'drop', 2: 'accept', 3: 'reject', 4: 'redirect' }) as Record<number, Verdict>)[retval] ?? 'drop';
  return (({ 0: 'accept', 2: 'drop', 7: 'tx-or-redirect' }) as Record<number, Verdict | 'tx-or-redirect'>)[retval] ?? 'drop';
}

/** The return value the evaluator's result implies at a hook (reject depends on whether a reply is sent). */
export function expectedRetval(hook: Hook, verdict: Verdict, replies: boolean): number {
  if (hook === 'xdp') return { accept: 2, drop: 1, reject: replies ? 3 : 1, redirect: 4 }[verdict];
  return { accept: 0, drop: 2, reject: replies ? 7 : 2, redirect: 7 }[verdict];
}
