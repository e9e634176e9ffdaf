/**
 * Verdicts a function program returns. They are branded numbers so that an
 * XDP program cannot return a TC verdict by mistake (and the editor says so).
 */
declare const xdpBrand: unique symbol;
declare const tcBrand: unique symbol;

/** What an XDP program returns: XDP_PASS, XDP_DROP, XDP_TX, XDP_ABORTED or redirect(...). */
export type XdpAction = number & { readonly [xdpBrand]: true };
/** What a TC program returns: TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC, TC_ACT_PIPE or redirect(...). */
export type TcAction = number & { readonly [tcBrand]: true };

export const XDP_ABORTED = 0 as XdpAction;
export const XDP_DROP = 1 as XdpAction;
export const XDP_PASS = 2 as XdpAction;
export const XDP_TX = 3 as XdpAction;
export const XDP_REDIRECT = 4 as XdpAction;

export const TC_ACT_UNSPEC = -1 as TcAction;
export const TC_ACT_OK = 0 as TcAction;
export const TC_ACT_RECLASSIFY = 1 as TcAction;
export const TC_ACT_SHOT = 2 as TcAction;
export const TC_ACT_PIPE = 3 as TcAction;
export const TC_ACT_STOLEN = 4 as TcAction;
export const TC_ACT_REDIRECT = 7 as TcAction;

/** The verdict constants by name, as C knows them (linux/bpf.h, linux/pkt_cls.h). */
export const VERDICT_CONSTANTS: Readonly<Record<string, { value: number; hook: 'xdp' | 'tc' }>> = {
  XDP_ABORTED: { value: 0, hook: 'xdp' },
  XDP_DROP: { value: 1, hook: 'xdp' },
  XDP_PASS: { value: 2, hook: 'xdp' },
  XDP_TX: { value: 3, hook: 'xdp' },
  XDP_REDIRECT: { value: 4, hook: 'xdp' },
  TC_ACT_UNSPEC: { value: -1, hook: 'tc' },
  TC_ACT_OK: { value: 0, hook: 'tc' },
  TC_ACT_RECLASSIFY: { value: 1, hook: 'tc' },
  TC_ACT_SHOT: { value: 2, hook: 'tc' },
  TC_ACT_PIPE: { value: 3, hook: 'tc' },
  TC_ACT_STOLEN: { value: 4, hook: 'tc' },
  TC_ACT_REDIRECT: { value: 7, hook: 'tc' },
};

/** A readable name of a return value at a hook: 'XDP_PASS', 'TC_ACT_SHOT', or the number. */
export function verdictName(hook: 'xdp' | 'tc-ingress' | 'tc-egress', value: number): string {
  const family = hook === 'xdp' ? 'xdp' : 'tc';
  for (const [name, v] of Object.entries(VERDICT_CONSTANTS)) if (v.hook === family && v.value === value) return name;
  return String(value);
}
