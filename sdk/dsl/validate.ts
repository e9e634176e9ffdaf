/**
 * Validation of a model before any codegen: every value in range, every name
 * known and unique, no jump cycles, jump nesting bounded. Works on the plain
 * model (so a hand-written or deserialised Definition gets the same checks);
 * each problem names the rule (or chain, set, map) and where it was written.
 */
import { canonicalMac, parseCidr, parseIpv4, parseIpv6 } from '../addr.js';
import { DslError, type SourcePosition } from '../errors.js';
import {
  FINAL_KINDS,
  HOOKS,
  INTERVAL_NS,
  MAX_JUMP_DEPTH,
  NUM_FIELD_MAX,
  type ActionDef,
  type ChainDef,
  type Definition,
  type FieldPredicate,
  type MatchExpr,
  type NumField,
  type RuleDef,
  CT_STATES,
  ruleUsesCt,
  type Hook,
} from '../model.js';

export interface Problem {
  message: string;
  rule?: string;
  source?: SourcePosition;
  hint?: string;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_NAME = 64;
const LAYERS = new Set(['eth', 'vlan', 'ip4', 'ip6', 'tcp', 'udp', 'sctp', 'icmp', 'icmp6', 'frag']);
const MAP_KINDS = new Set(['hash', 'lru_hash', 'array', 'percpu_array', 'percpu_hash', 'lpm_trie', 'ringbuf']);
const ACTION_KINDS = new Set(['count', 'log', 'mark', 'limit', 'ctMark', ...FINAL_KINDS]);
const CT_TIMEOUT_NAMES = new Set(['tcp-syn-sent', 'tcp-syn-recv', 'tcp-established', 'tcp-fin-wait', 'tcp-closing', 'tcp-time-wait', 'tcp-close', 'udp', 'udp-replied', 'icmp', 'icmp-replied']);

/** What a value of each numeric field is called in messages. */
const NOUN: Record<NumField, string> = {
  'pkt.len': 'packet length',
  'meta.ifindex': 'interface index',
  'meta.mark': 'mark',
  'eth.type': 'ethertype',
  'vlan.id': 'VLAN id',
  'ip.proto': 'protocol',
  'ip.ttl': 'TTL/hop limit',
  'ip.dscp': 'DSCP',
  'l4.sport': 'port',
  'l4.dport': 'port',
  'tcp.flags': 'TCP flags',
  'icmp.type': 'ICMP type',
  'icmp.code': 'ICMP code',
  'icmp6.type': 'ICMPv6 type',
  'icmp6.code': 'ICMPv6 code',
  'ct.mark': 'conntrack mark',
};

const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
const where = (p: SourcePosition | undefined) => (p ? ` (at ${p.file}:${p.line}:${p.column})` : '');

/** Every problem of the definition, in definition order. */
export function validateDefinition(def: Definition, extra: Problem[] = []): Problem[] {
  const problems: Problem[] = [...extra];
  const defProblem = (message: string, hint?: string) => problems.push({ message, source: def.source, ...(hint ? { hint } : {}) });

  if (typeof def.name !== 'string' || !NAME_RE.test(def.name) || def.name.length > MAX_NAME) {
    defProblem(`filter name '${String(def.name)}' is not valid`, 'use letters, digits, _ and -, starting with a letter or _ (at most 64)');
  }

  // Chains: names, policies.
  const chains = new Map<string, ChainDef>();
  for (const c of def.chains) {
    if (typeof c.name !== 'string' || !NAME_RE.test(c.name) || c.name.length > MAX_NAME) {
      problems.push({ message: `chain name '${String(c.name)}' is not valid`, source: c.source, hint: 'use letters, digits, _ and -, starting with a letter or _' });
    }
    const first = chains.get(c.name);
    if (first) problems.push({ message: `duplicate chain name '${c.name}'${where(first.source)}`, source: c.source });
    else chains.set(c.name, c);
    if (!['accept', 'drop', 'reject', 'return'].includes(c.policy)) {
      problems.push({ message: `chain '${c.name}' has an unknown policy '${String(c.policy)}'`, source: c.source, hint: 'use accept, drop, reject or return' });
    }
  }

  // Programs and entry chains.
  const entries = new Set<string>();
  if (def.programs.length === 0) defProblem('the filter has no program', "give a hook: filter(name, { hook: 'tc-ingress' }, ...)");
  const hooksSeen = new Set<string>();
  for (const p of def.programs) {
    if (!HOOKS.includes(p.hook)) defProblem(`unknown hook '${String(p.hook)}'`, `use one of ${HOOKS.join(', ')}`);
    else if (hooksSeen.has(p.hook)) defProblem(`two programs for hook '${p.hook}'`);
    hooksSeen.add(p.hook);
    const entry = chains.get(p.entry);
    if (!entry) {
      defProblem(`program '${p.name}' starts in unknown chain '${p.entry}'`);
      continue;
    }
    entries.add(p.entry);
    if (entry.policy === 'return') {
      problems.push({
        message: `chain '${entry.name}' is the entry chain of ${p.hook} and cannot have policy 'return'`,
        source: entry.source,
        hint: 'an entry chain needs a verdict at its end: accept, drop or reject',
      });
    }
  }

  // Sets and maps share the kernel's map namespace.
  const sets = new Map<string, Definition['sets'][number]>();
  const mapNames = new Map<string, SourcePosition | undefined>();
  for (const s of def.sets) {
    const at = { source: s.source };
    if (typeof s.name !== 'string' || !IDENT_RE.test(s.name) || s.name.length > MAX_NAME) {
      problems.push({ message: `set name '${String(s.name)}' is not valid`, ...at, hint: 'use letters, digits and _, starting with a letter or _' });
    }
    if (mapNames.has(s.name)) problems.push({ message: `duplicate set or map name '${s.name}'${where(mapNames.get(s.name))}`, ...at });
    mapNames.set(s.name, s.source);
    sets.set(s.name, s);
    if (!['ipv4', 'ipv6', 'port'].includes(s.type)) problems.push({ message: `set '${s.name}' has unknown type '${String(s.type)}'`, ...at });
    if (!Number.isInteger(s.maxEntries) || s.maxEntries < 1 || s.maxEntries > 1 << 24) {
      problems.push({ message: `set '${s.name}': maxEntries must be an integer from 1 to ${1 << 24}, got ${String(s.maxEntries)}`, ...at });
    } else if (s.elements.length > s.maxEntries) {
      problems.push({ message: `set '${s.name}' has ${s.elements.length} elements but maxEntries is ${s.maxEntries}`, ...at });
    }
    for (const e of s.elements) {
      if (s.type === 'port') {
        if (typeof e !== 'number' || !Number.isInteger(e) || e < 0 || e > 0xffff) problems.push({ message: `set '${s.name}': port ${String(e)} is out of range (0..65535)`, ...at });
      } else {
        const c = typeof e === 'string' ? parseCidr(e) : { error: `'${String(e)}' is not an address` };
        if ('error' in c) problems.push({ message: `set '${s.name}': ${c.error}`, ...at });
        else if (`ipv${c.family}` !== s.type) problems.push({ message: `set '${s.name}' holds ${s.type} addresses, but '${String(e)}' is IPv${c.family}`, ...at });
      }
    }
  }
  for (const m of def.maps) {
    const at = { source: m.source };
    if (typeof m.name !== 'string' || !IDENT_RE.test(m.name) || m.name.length > MAX_NAME) {
      problems.push({ message: `map name '${String(m.name)}' is not valid`, ...at, hint: 'use letters, digits and _, starting with a letter or _' });
    }
    if (mapNames.has(m.name)) problems.push({ message: `duplicate set or map name '${m.name}'${where(mapNames.get(m.name))}`, ...at });
    mapNames.set(m.name, m.source);
    if (!MAP_KINDS.has(m.kind)) {
      problems.push({ message: `map '${m.name}' has unknown kind '${String(m.kind)}'`, ...at, hint: [...MAP_KINDS].join(', ') });
      continue;
    }
    if (!Number.isInteger(m.maxEntries) || m.maxEntries < 1) problems.push({ message: `map '${m.name}': maxEntries must be a positive integer, got ${String(m.maxEntries)}`, ...at });
    if (m.kind === 'ringbuf') {
      if (m.key || m.value) problems.push({ message: `map '${m.name}': a ring buffer has no key or value layout`, ...at });
      if (!(m.maxEntries >= 4096 && (m.maxEntries & (m.maxEntries - 1)) === 0)) {
        problems.push({ message: `map '${m.name}': a ring buffer's size must be a power of 2 of at least 4096 bytes, got ${m.maxEntries}`, ...at });
      }
    } else {
      if (!m.key || !m.value) problems.push({ message: `map '${m.name}' needs a key and a value layout`, ...at });
      else if (m.kind.endsWith('array') && m.key.size !== 4) problems.push({ message: `map '${m.name}': an array's key must be 4 bytes (u32), got ${m.key.size}`, ...at });
    }
  }

  // Rules.
  const ruleNames = new Map<string, SourcePosition | undefined>();
  let nextId = 0;
  let nextLimit = 0;
  for (const c of def.chains) {
    c.rules.forEach((r, index) => {
      const add = (message: string, hint?: string) => problems.push({ message, rule: r.name, source: r.source, ...(hint ? { hint } : {}) });
      if (r.id !== nextId) add(`rule id ${r.id} should be ${nextId} (ids are 0-based in definition order)`);
      if (r.chain !== c.name || r.index !== index) add(`rule's chain/index (${r.chain}#${r.index}) does not match its place (${c.name}#${index})`);
      nextId++;
      if (typeof r.name !== 'string' || r.name === '' || r.name.length > MAX_NAME || /[\n\r]/.test(r.name)) add(`rule name '${String(r.name)}' is not valid`);
      else if (ruleNames.has(r.name)) add(`duplicate rule name '${r.name}'${where(ruleNames.get(r.name))}`);
      ruleNames.set(r.name, r.source);
      checkMatch(r.match, sets, add);
      checkActions(r, chains, entries, add, () => nextLimit++);
    });
  }

  checkGraph(def, chains, entries, problems);
  checkConntrack(def, chains, problems);
  return problems;
}

/** Where NAT actions may run: DNAT where packets arrive, SNAT/masquerade where they leave. */
export const NAT_HOOKS: Record<'snat' | 'dnat' | 'masquerade', Hook> = { dnat: 'tc-ingress', snat: 'tc-egress', masquerade: 'tc-egress' };

/** Conntrack config, and which hooks may use ct matches and NAT actions (by the chains each program reaches). */
function checkConntrack(def: Definition, chains: Map<string, ChainDef>, problems: Problem[]): void {
  const ct = def.conntrack;
  const uses = def.chains.some((c) => c.rules.some(ruleUsesCt));
  if (ct !== undefined) {
    if (!Number.isInteger(ct.maxEntries) || ct.maxEntries < 16 || ct.maxEntries > 1 << 24) {
      problems.push({ message: `conntrack maxEntries must be an integer from 16 to ${1 << 24}, got ${String(ct.maxEntries)}`, source: def.source });
    }
    if (ct.tcpLoose !== undefined && typeof ct.tcpLoose !== 'boolean') problems.push({ message: 'conntrack tcpLoose must be true or false', source: def.source });
    for (const [k, v] of Object.entries(ct.timeouts ?? {})) {
      if (!CT_TIMEOUT_NAMES.has(k)) problems.push({ message: `unknown conntrack timeout '${k}'`, source: def.source, hint: [...CT_TIMEOUT_NAMES].join(', ') });
      else if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 0x7fffffff) problems.push({ message: `conntrack timeout '${k}' must be a positive integer of seconds, got ${String(v)}`, source: def.source });
    }
  } else if (uses) {
    for (const c of def.chains) {
      for (const r of c.rules) {
        if (!ruleUsesCt(r)) continue;
        problems.push({
          message: `rule '${r.name}' uses conntrack (a ct match, ctMark or NAT), but the definition has no conntrack table`,
          rule: r.name,
          source: r.source,
          hint: 'set definition.conntrack = { maxEntries } (filter() does it for you)',
        });
      }
    }
    return;
  }
  if (ct === undefined && !uses) return;
  for (const p of def.programs) {
    if (!chains.has(p.entry)) continue;
    const seen = new Set<string>();
    const todo = [p.entry];
    while (todo.length) {
      const name = todo.pop()!;
      if (seen.has(name)) continue;
      seen.add(name);
      for (const r of chains.get(name)!.rules) {
        const last = r.actions[r.actions.length - 1];
        if (last && (last.kind === 'jump' || last.kind === 'goto') && chains.has(last.chain)) todo.push(last.chain);
        const add = (message: string, hint?: string) => problems.push({ message, rule: r.name, source: r.source, ...(hint ? { hint } : {}) });
        if (p.hook === 'xdp' && ruleUsesCt(r)) {
          add(`rule '${r.name}' uses conntrack, which runs at tc hooks only, but chain '${name}' is reached from the xdp program`, "use hook 'tc-ingress' (or 'tc-egress') for stateful rules");
          continue;
        }
        if (last && (last.kind === 'snat' || last.kind === 'dnat' || last.kind === 'masquerade') && NAT_HOOKS[last.kind] !== p.hook) {
          add(
            `rule '${r.name}': ${last.kind} is allowed at ${NAT_HOOKS[last.kind]} only, but chain '${name}' is reached from the ${p.hook} program`,
            last.kind === 'dnat' ? 'DNAT decides where a connection goes: put it where packets arrive (tc-ingress)' : 'SNAT and masquerade change the source where packets leave: put them at tc-egress',
          );
        }
      }
    }
  }
  if (ct !== undefined && def.programs.length > 0 && def.programs.every((p) => p.hook === 'xdp')) {
    problems.push({ message: 'conntrack runs at tc hooks only, and this filter has only an xdp program', source: def.source });
  }
}

function parseAddr(text: string): { family: 4 | 6; value: bigint } | undefined {
  if (typeof text !== 'string' || text.includes('/')) return undefined;
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: BigInt(v4 >>> 0) };
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

function checkAddrRange(kind: string, to: unknown, add: (m: string, hint?: string) => void): void {
  if (!Array.isArray(to) || to.length !== 2) return add(`${kind} needs an address or an address range in 'to'`);
  const a = parseAddr(to[0] as string);
  const b = parseAddr(to[1] as string);
  if (!a || !b) return add(`${kind}: '${String(!a ? to[0] : to[1])}' is not an IPv4 or IPv6 address`, "give an address ('10.0.0.1') or a range ('10.0.0.1-10.0.0.8')");
  if (a.family !== b.family) return add(`${kind}: the range ${to[0]}-${to[1]} mixes IPv4 and IPv6`);
  if (a.value > b.value) return add(`${kind}: the range ${to[0]}-${to[1]} is empty (first > last)`);
  if (a.family === 6 && a.value >> 32n !== b.value >> 32n) add(`${kind}: an IPv6 range may only vary in its last 32 bits (${to[0]}-${to[1]})`);
}

function checkPorts(kind: string, ports: unknown, add: (m: string, hint?: string) => void): void {
  if (ports === undefined) return;
  if (!Array.isArray(ports) || ports.length !== 2) return add(`${kind}: ports must be a port or a [from, to] range`);
  const [a, b] = ports as number[];
  for (const v of [a, b]) if (!Number.isInteger(v) || v! < 0 || v! > 0xffff) return add(`${kind}: port ${String(v)} is out of range (0..65535)`);
  if (a! > b!) add(`${kind}: port range ${a}-${b} is empty (from > to)`);
  else if (a === 0 && b === 0) add(`${kind}: port range 0-0 is not usable`);
}

function checkMatch(e: MatchExpr, sets: Map<string, Definition['sets'][number]>, add: (m: string, hint?: string) => void): void {
  switch (e.kind) {
    case 'all':
      return;
    case 'and':
    case 'or':
      if (!Array.isArray(e.args)) add(`'${e.kind}' needs a list of matches`);
      else for (const a of e.args) checkMatch(a, sets, add);
      return;
    case 'not':
      checkMatch(e.arg, sets, add);
      return;
    default:
      checkPredicate(e, sets, add);
  }
}

function checkPredicate(p: FieldPredicate, sets: Map<string, Definition['sets'][number]>, add: (m: string, hint?: string) => void): void {
  switch (p.kind) {
    case 'has':
      if (!LAYERS.has(p.layer)) add(`unknown layer '${String(p.layer)}'`);
      return;
    case 'num': {
      const max = NUM_FIELD_MAX[p.field];
      if (max === undefined) return add(`unknown field '${String(p.field)}'`);
      const noun = NOUN[p.field];
      for (const r of p.ranges) {
        const [a, b] = r;
        for (const v of a === b ? [a] : [a, b]) {
          if (typeof v !== 'number' || !Number.isInteger(v)) add(`${noun} ${String(v)} is not an integer`);
          else if (v < 0 || v > max) add(`${noun} ${v} is out of range (0..${max})`);
        }
        if (a > b) add(`${noun} range ${a}..${b} is empty (from > to)`);
      }
      return;
    }
    case 'bits': {
      const max = NUM_FIELD_MAX[p.field];
      if (max === undefined) return add(`unknown field '${String(p.field)}'`);
      if (!isU32(p.mask) || p.mask > max) add(`${NOUN[p.field]} mask ${String(p.mask)} is out of range (0..${max})`);
      else if (!isU32(p.value) || (p.value & ~p.mask) !== 0) add(`${NOUN[p.field]} value ${String(p.value)} has bits outside the mask ${p.mask}`);
      return;
    }
    case 'numSet': {
      const s = sets.get(p.set);
      if (!s) add(`unknown set '${p.set}'`, 'declare it with set.port(name) in this filter');
      else if (s.type !== 'port') add(`set '${p.set}' holds ${s.type} addresses, but ${p.field} is a port`);
      return;
    }
    case 'addr': {
      const want = p.field.startsWith('ip4') ? 4 : 6;
      if (p.cidrs.length === 0) add(`empty list of addresses for ${p.field}`);
      for (const text of p.cidrs) {
        const c = parseCidr(text);
        if ('error' in c) add(c.error);
        else if (c.family !== want) add(`'${text}' is an IPv${c.family} ${text.includes('/') ? 'CIDR' : 'address'}, but ${p.field} needs an IPv${want} address or CIDR`, `use match.ip${c.family}.${p.field.slice(4)} for IPv${c.family}`);
      }
      return;
    }
    case 'addrSet': {
      const want = p.field.startsWith('ip4') ? 'ipv4' : 'ipv6';
      const s = sets.get(p.set);
      if (!s) add(`unknown set '${p.set}'`, `declare it with set.${want}(name) in this filter`);
      else if (s.type !== want) add(`set '${p.set}' holds ${s.type === 'port' ? 'ports' : `${s.type} addresses`}, but ${p.field} is an ${want} address`);
      return;
    }
    case 'mac':
      if (p.addrs.length === 0) add(`empty list of addresses for ${p.field}`);
      for (const a of p.addrs) if (canonicalMac(a) === undefined) add(`'${a}' is not a valid MAC address (use 'aa:bb:cc:dd:ee:ff')`);
      return;
    case 'ifname':
      if (p.names.length === 0) add('empty list of interface names');
      for (const n of p.names) if (typeof n !== 'string' || n.length === 0 || n.length > 15 || /[\s/]/.test(n)) add(`'${String(n)}' is not a valid interface name (1 to 15 characters, no space or /)`);
      return;
    case 'ct':
      if (!Array.isArray(p.states) || p.states.length === 0) add('a conntrack state match needs at least one state');
      else for (const st of p.states) if (!CT_STATES.includes(st)) add(`unknown conntrack state '${String(st)}' (known: ${CT_STATES.join(', ')})`);
      return;
    default:
      add(`unknown match kind '${String((p as { kind: unknown }).kind)}'`);
  }
}

function checkActions(
  r: RuleDef,
  chains: Map<string, ChainDef>,
  entries: Set<string>,
  add: (m: string, hint?: string) => void,
  nextLimit: () => number,
): void {
  r.actions.forEach((a: ActionDef, i) => {
    if (!ACTION_KINDS.has(a.kind)) return add(`unknown action '${String(a.kind)}'`);
    if ((FINAL_KINDS as readonly string[]).includes(a.kind) && i !== r.actions.length - 1) {
      add(`'${a.kind}' must be the rule's last action (found '${r.actions[i + 1]!.kind}' after it)`);
    }
    switch (a.kind) {
      case 'jump':
      case 'goto': {
        const target = chains.get(a.chain);
        if (!target) add(`${a.kind} to unknown chain '${String(a.chain)}'`, chains.size ? `known chains: ${[...chains.keys()].join(', ')}` : undefined);
        else if (entries.has(a.chain)) add(`cannot ${a.kind} to '${a.chain}': it is a program's entry chain`, 'declare a separate chain for the shared rules');
        break;
      }
      case 'ctMark':
      case 'mark':
        if (!isU32(a.value) || !isU32(a.mask)) add(`${a.kind === 'ctMark' ? 'ctMark' : 'mark'} value and mask must be integers from 0 to 0xffffffff, got ${String(a.value)} / ${String(a.mask)}`);
        else if ((a.value & ~a.mask) !== 0) add(`${a.kind} value 0x${a.value.toString(16)} has bits outside the mask 0x${a.mask.toString(16)}`);
        break;
      case 'limit': {
        const id = nextLimit();
        if (a.limitId !== id) add(`limit id ${a.limitId} should be ${id} (0-based in definition order)`);
        if (!Number.isInteger(a.rate) || a.rate < 1) add(`limit rate must be a positive integer, got ${String(a.rate)}`);
        else if (!(a.interval in INTERVAL_NS)) add(`limit interval '${String(a.interval)}' is unknown (second, minute, hour, day)`);
        else if (a.costNs !== Number(INTERVAL_NS[a.interval] / BigInt(a.rate)) || a.costNs < 1) add(`limit rate ${a.rate} per ${a.interval} is too high (at most one packet per nanosecond)`);
        if (!Number.isInteger(a.burst) || a.burst < 1 || a.burst > 1e9) add(`limit burst must be a positive integer (at most 1e9), got ${String(a.burst)}`);
        else if (a.costNs >= 1 && BigInt(a.costNs) * BigInt(a.burst) >= 1n << 62n) add(`limit burst ${a.burst} at ${a.rate} per ${a.interval} holds too much credit (burst x interval / rate must stay below 2^62 ns)`);
        if (a.mode !== 'under' && a.mode !== 'over') add(`limit mode must be 'under' or 'over'`);
        if (a.key !== undefined) {
          if (a.key !== 'ip.src' && a.key !== 'ip.dst') add(`limit key must be 'ip.src' or 'ip.dst'`);
          if (!Number.isInteger(a.maxKeys) || (a.maxKeys ?? 0) < 1) add(`limit maxKeys must be a positive integer, got ${String(a.maxKeys)}`);
        }
        break;
      }
      case 'redirect': {
        const byIndex = a.ifindex !== undefined;
        const byName = a.ifname !== undefined;
        if (byIndex === byName) add('redirect needs exactly one of an interface index or name');
        else if (byIndex && (!isU32(a.ifindex) || a.ifindex === 0)) add(`redirect interface index must be a positive integer, got ${String(a.ifindex)}`);
        else if (byName && (typeof a.ifname !== 'string' || a.ifname.length === 0 || a.ifname.length > 15)) add(`'${String(a.ifname)}' is not a valid interface name (1 to 15 characters)`);
        break;
      }
      case 'snat':
      case 'dnat':
        checkAddrRange(a.kind, a.to, add);
        checkPorts(a.kind, a.kind === 'snat' ? a.ports : a.port, add);
        break;
      case 'masquerade':
        checkPorts(a.kind, a.ports, add);
        break;
      case 'log':
        if (a.prefix !== undefined && (typeof a.prefix !== 'string' || a.prefix.length > 64 || !/^[\x20-\x7e]*$/.test(a.prefix))) {
          add('log prefix must be printable ASCII of at most 64 characters');
        }
        break;
      default:
        break;
    }
  });
}

/** Jump/goto cycles and nesting depth. */
function checkGraph(def: Definition, chains: Map<string, ChainDef>, entries: Set<string>, problems: Problem[]): void {
  // Edges in rule order; only to known chains (unknown ones are reported already).
  const edges = (c: ChainDef) =>
    c.rules.flatMap((r) => {
      const last = r.actions[r.actions.length - 1];
      return last && (last.kind === 'jump' || last.kind === 'goto') && chains.has(last.chain) && !entries.has(last.chain)
        ? [{ rule: r, kind: last.kind, to: last.chain }]
        : [];
    });
  const state = new Map<string, 'active' | 'done'>();
  const depth = new Map<string, number>(); // jump frames needed below this chain
  const cyclic = new Set<string>();
  const stack: string[] = [];
  const visit = (name: string): number => {
    const st = state.get(name);
    if (st === 'done') return depth.get(name)!;
    if (st === 'active') return 0;
    state.set(name, 'active');
    stack.push(name);
    let d = 0;
    for (const e of edges(chains.get(name)!)) {
      if (state.get(e.to) === 'active') {
        const path = [...stack.slice(stack.indexOf(e.to)), e.to];
        const key = [...path].sort().join(',');
        if (!cyclic.has(key)) {
          cyclic.add(key);
          problems.push({ message: `${e.kind} cycle: ${path.join(' -> ')}`, rule: e.rule.name, source: e.rule.source, hint: 'a chain may not (directly or indirectly) jump or goto itself' });
        }
        continue;
      }
      d = Math.max(d, visit(e.to) + (e.kind === 'jump' ? 1 : 0));
    }
    stack.pop();
    state.set(name, 'done');
    depth.set(name, d);
    return d;
  };
  for (const c of def.chains) visit(c.name);
  if (cyclic.size) return;
  for (const p of def.programs) {
    if (!chains.has(p.entry)) continue;
    const d = depth.get(p.entry) ?? 0;
    if (d > MAX_JUMP_DEPTH) {
      // Follow the deepest path to name the jump that goes too deep.
      let name = p.entry;
      let frames = 0;
      const path = [name];
      let culprit: RuleDef | undefined;
      while (true) {
        const next = edges(chains.get(name)!).find((e) => (depth.get(e.to) ?? 0) + (e.kind === 'jump' ? 1 : 0) === depth.get(name));
        if (!next) break;
        if (next.kind === 'jump') frames++;
        if (frames > MAX_JUMP_DEPTH && !culprit) culprit = next.rule;
        name = next.to;
        path.push(name);
      }
      problems.push({
        message: `jumps nest ${d} deep (at most ${MAX_JUMP_DEPTH}): ${path.join(' -> ')}`,
        rule: culprit?.name,
        source: culprit?.source ?? def.source,
        hint: 'use goto where the caller has nothing left to do, or flatten chains',
      });
    }
  }
}

/** Throw a DslError for the first problem (all of them are in details.problems). */
export function throwProblems(problems: Problem[]): void {
  if (problems.length === 0) return;
  const first = problems[0]!;
  const all = problems.map((p) => {
    const pos = p.source ? `${p.source.file}:${p.source.line}:${p.source.column}: ` : '';
    return `${pos}${p.rule ? `rule '${p.rule}': ` : ''}${p.message}`;
  });
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
  throw new DslError(`${first.message}${more}`, { ...(first.rule ? { rule: first.rule } : {}), ...(first.source ? { source: first.source } : {}) }, {
    ...(first.hint ? { hint: first.hint } : {}),
    details: { problems: all },
  });
}

/** Validate a definition; throws DslError naming the first bad rule and its position. */
export function assertValidDefinition(def: Definition): void {
  throwProblems(validateDefinition(def));
}

/** IPv4 text in canonical form (no leading zeros, optional /0../32): valid for parseCidr without parsing it there. */
function plainIpv4Cidr(text: string): boolean {
  let octets = 0;
  let digits = 0;
  let octet = 0;
  let first = 0;
  let i = 0;
  for (; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch >= 48 && ch <= 57) {
      if (digits === 0) first = ch;
      else if (first === 48) return false;
      octet = octet * 10 + ch - 48;
      if (++digits > 3 || octet > 255) return false;
    } else if (ch === 46 && digits && octets < 3) {
      octets++;
      digits = 0;
      octet = 0;
    } else break;
  }
  if (octets !== 3 || !digits) return false;
  if (i === text.length) return true;
  if (text.charCodeAt(i) !== 47 || text.length - i < 2 || text.length - i > 3) return false;
  let len = 0;
  for (let j = i + 1; j < text.length; j++) {
    const ch = text.charCodeAt(j);
    if (ch < 48 || ch > 57) return false;
    len = len * 10 + ch - 48;
  }
  return len <= 32;
}

function plainMatch(e: MatchExpr): boolean {
  switch (e.kind) {
    case 'and':
      if (!Array.isArray(e.args)) return false;
      for (const a of e.args) if (!plainMatch(a)) return false;
      return true;
    case 'has':
      return LAYERS.has(e.layer);
    case 'num': {
      const max = NUM_FIELD_MAX[e.field];
      if (max === undefined || !Array.isArray(e.ranges)) return false;
      for (const r of e.ranges) {
        const [a, b] = r;
        if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > max || a > b) return false;
      }
      return true;
    }
    case 'addr': {
      if (!Array.isArray(e.cidrs) || e.cidrs.length === 0) return false;
      const want = e.field.startsWith('ip4') ? 4 : 6;
      for (const text of e.cidrs) {
        if (want === 4 && typeof text === 'string' && plainIpv4Cidr(text)) continue;
        const c = parseCidr(text);
        if ('error' in c || c.family !== want) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * Whether validateDefinition certainly finds nothing wrong with rule r on
 * its own (its id, index and name's uniqueness aside): a match of `and`,
 * presence, numbers and addresses with valid values, and actions that are
 * counts then accept, drop or return. Such a rule uses no chain, set or
 * conntrack, so nothing else in a definition can make it invalid. False
 * says nothing: validate it in full. A fast path for many rules at once.
 */
export function isPlainValidRule(r: RuleDef): boolean {
  const name = r.name;
  if (typeof name !== 'string' || name === '' || name.length > MAX_NAME || /[\n\r]/.test(name)) return false;
  const acts = r.actions;
  const n = acts.length;
  if (n === 0) return false;
  for (let i = 0; i < n - 1; i++) if (acts[i]!.kind !== 'count') return false;
  const last = acts[n - 1]!.kind;
  if (last !== 'accept' && last !== 'drop' && last !== 'return') return false;
  return plainMatch(r.match);
}
