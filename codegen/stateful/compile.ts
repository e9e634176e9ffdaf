/**
 * compileServices(definition): the C of a services program, its object
 * (clang, content-cached like every tsbpf object), its programs and the
 * layouts of its maps.
 */
import type { Layout } from '../../sdk/layout.js';
import { u32, u64 } from '../../sdk/layout.js';
import { validateServices, type ServicesDefinition } from '../../sdk/services.js';
import { assertServicesDefinition } from '../../sdk/stateful.js';
import { compileC, type ClangOptions } from '../clang.js';
import { emitServicesC, servicesPrograms, type ServicesEmitOptions, type ServicesProgram } from './emit.js';
import {
  CT_CONFIG,
  CT_ENTRY,
  CT_KEY,
  LB_AFF,
  LB_AFF_KEY,
  LB_BACKEND,
  LB_KEY,
  LB_SERVICE,
  lbTable,
  NAT_IFADDR,
  NAT_RULE,
  SOCK_REV,
  SOCK_REV_KEY,
} from './layouts.js';

export interface ServicesCompileOptions extends ClangOptions, ServicesEmitOptions {
  /** Stop after generating C: result.object is empty. */
  emitOnly?: boolean;
}

export interface ServicesCompileResult {
  definition: ServicesDefinition;
  c: string;
  object: { path: string; bytes: Buffer };
  key: string;
  cached: boolean;
  programs: ServicesProgram[];
  /** Key and value layouts of every keyed map, by name. */
  layouts: Record<string, { key?: Layout<any>; value?: Layout<any> }>;
}

/** Map layouts of a services object (sizes follow the definition). */
export function servicesLayouts(def: ServicesDefinition): Record<string, { key?: Layout<any>; value?: Layout<any> }> {
  const out: Record<string, { key?: Layout<any>; value?: Layout<any> }> = {
    tsbpf_ct: { key: CT_KEY, value: CT_ENTRY },
    tsbpf_ct_config: { key: u32, value: CT_CONFIG },
    tsbpf_nat_rules: { key: u32, value: NAT_RULE },
    tsbpf_nat_ifaddr: { key: u32, value: NAT_IFADDR },
    tsbpf_lb_services: { key: LB_KEY, value: LB_SERVICE },
    tsbpf_lb_backends: { key: u32, value: LB_BACKEND },
    tsbpf_lb_tables: { key: u32, value: lbTable(def.lb.tableSize) },
    tsbpf_lb_affinity: { key: LB_AFF_KEY, value: LB_AFF },
    tsbpf_svc_stats: { key: u32, value: u64 },
  };
  if (def.socketLb) out['tsbpf_sock_rev'] = { key: SOCK_REV_KEY, value: SOCK_REV };
  return out;
}

export function compileServices(def: ServicesDefinition, options: ServicesCompileOptions = {}): ServicesCompileResult {
  assertServicesDefinition(def);
  validateServices(def);
  const emit: ServicesEmitOptions = {
    ...(options.hook ? { hook: options.hook } : {}),
    ...(options.verdict ? { verdict: options.verdict } : {}),
    ...(options.benchHarness ? { benchHarness: true } : {}),
  };
  const c = emitServicesC(def, emit);
  const base = { definition: def, c, programs: servicesPrograms(def, emit), layouts: servicesLayouts(def) };
  if (options.emitOnly) return { ...base, object: { path: '', bytes: Buffer.alloc(0) }, key: '', cached: false };
  const obj = compileC(c, options);
  return { ...base, object: { path: obj.path, bytes: obj.bytes }, key: obj.key, cached: obj.cached };
}
