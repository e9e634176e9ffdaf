/**
 * NetworkPolicy v1: a table of cases (pods with labels and named ports in two
 * namespaces; policies of every kind the API has), each with the expected
 * reachability written by hand from the Kubernetes documentation. Each case
 * checks three things agree: the expectations, the reference evaluator
 * (cni/policy/evaluate.ts), and the compiled per-endpoint form the BPF policy
 * maps will hold (cni/policy/compile.ts), the latter two on the whole matrix
 * of endpoints x protocols x ports.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { KubeObject, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from '../../cni/k8s/objects.js';
import { ObjectStore } from '../../cni/k8s/store.js';
import { allows, compileEndpointPolicy, normalizeRules } from '../../cni/policy/compile.js';
import { buildContext, policyProblems, type PodInfo, type PolicyContext } from '../../cni/policy/context.js';
import { isAllowed, type Endpointish, type TrafficProtocol } from '../../cni/policy/evaluate.js';
import { IdentityAllocator } from '../../cni/policy/identity.js';
import { matchesSelector } from '../../cni/policy/labels.js';
import { IDENTITY, type EndpointPolicy } from '../../cni/policy/types.js';

const HOST_IP = '10.50.0.1';
const WORLD = ['192.168.7.5', '192.168.8.1', '172.16.9.9'];

function pod(ns: string, name: string, ip: string, labels: Record<string, string>, ports: Array<[string, number, ('TCP' | 'UDP' | 'SCTP')?]> = []): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, labels },
    spec: { containers: [{ name: 'main', ports: ports.map(([n, p, proto]) => ({ name: n, containerPort: p, protocol: proto ?? 'TCP' })) }] },
    status: { podIP: ip, podIPs: [{ ip }] },
  };
}

const CLUSTER: KubeObject[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'shop' } } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ops', labels: { team: 'ops' } } },
  pod('shop', 'web', '10.50.0.10', { app: 'web', tier: 'front' }, [['http', 8080], ['metrics', 9090]]),
  pod('shop', 'api', '10.50.0.11', { app: 'api', tier: 'back' }, [['http', 8000], ['grpc', 9000], ['stats', 5353, 'UDP']]),
  pod('shop', 'db', '10.50.0.12', { app: 'db', tier: 'back' }, [['pg', 5432]]),
  pod('ops', 'monitor', '10.50.0.20', { app: 'monitor' }),
  pod('ops', 'debug', '10.50.0.21', { app: 'debug' }),
];

interface Rule {
  from?: NetworkPolicyPeer[];
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

function np(ns: string, name: string, podSelector: NetworkPolicy['spec']['podSelector'], spec: { types?: Array<'Ingress' | 'Egress'>; ingress?: Rule[]; egress?: Rule[] }): NetworkPolicy {
  const s: NetworkPolicy['spec'] = { podSelector };
  if (spec.types) s.policyTypes = spec.types;
  if (spec.ingress) s.ingress = spec.ingress.map((r) => ({ ...(r.from ? { from: r.from } : {}), ...(r.ports ? { ports: r.ports } : {}) }));
  if (spec.egress) s.egress = spec.egress.map((r) => ({ ...(r.to ? { to: r.to } : {}), ...(r.ports ? { ports: r.ports } : {}) }));
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name }, spec: s };
}

const app = (a: string) => ({ matchLabels: { app: a } });
const team = (t: string) => ({ matchLabels: { team: t } });

interface Case {
  name: string;
  policies: NetworkPolicy[];
  /** 'src > dst proto [port]': allowed? src/dst are 'ns/pod', 'host' or an address. */
  expect: Record<string, boolean>;
}

const CASES: Case[] = [
  {
    name: 'no policy: everything is allowed',
    policies: [],
    expect: { 'shop/web > shop/db tcp 5432': true, 'ops/debug > shop/api udp 5353': true, '192.168.7.5 > shop/web tcp 8080': true, 'shop/db > 172.16.9.9 icmp': true },
  },
  {
    name: 'default deny ingress in one namespace (podSelector {})',
    policies: [np('shop', 'deny-in', {}, { types: ['Ingress'] })],
    expect: {
      'ops/monitor > shop/web tcp 8080': false,
      'shop/web > shop/db tcp 5432': false,
      '192.168.7.5 > shop/web tcp 8080': false,
      'shop/web > ops/monitor tcp 80': true,
      'shop/web > 192.168.7.5 tcp 443': true,
      'host > shop/web tcp 8080': true,
      'shop/web > shop/web tcp 8080': true,
    },
  },
  {
    name: 'podSelector peer with a port: only api may reach db, on TCP 5432',
    policies: [np('shop', 'db', app('db'), { ingress: [{ from: [{ podSelector: app('api') }], ports: [{ protocol: 'TCP', port: 5432 }] }] })],
    expect: {
      'shop/api > shop/db tcp 5432': true,
      'shop/api > shop/db tcp 5433': false,
      'shop/api > shop/db udp 5432': false,
      'shop/api > shop/db icmp': false,
      'shop/web > shop/db tcp 5432': false,
      'ops/monitor > shop/db tcp 5432': false,
      'ops/monitor > shop/web tcp 8080': true,
    },
  },
  {
    name: 'namespaceSelector alone: every pod of the ops namespace',
    policies: [np('shop', 'web', app('web'), { ingress: [{ from: [{ namespaceSelector: team('ops') }] }] })],
    expect: { 'ops/monitor > shop/web tcp 8080': true, 'ops/debug > shop/web udp 53': true, 'ops/debug > shop/web icmp': true, 'shop/api > shop/web tcp 8080': false, '192.168.7.5 > shop/web tcp 8080': false },
  },
  {
    name: 'namespaceSelector and podSelector in one peer (AND) vs two peers (OR)',
    policies: [
      np('shop', 'web-and', app('web'), { ingress: [{ from: [{ namespaceSelector: team('ops'), podSelector: app('monitor') }] }] }),
      np('shop', 'db-or', app('db'), { ingress: [{ from: [{ namespaceSelector: team('ops') }, { podSelector: app('api') }] }] }),
    ],
    expect: {
      'ops/monitor > shop/web tcp 8080': true,
      'ops/debug > shop/web tcp 8080': false,
      'shop/api > shop/web tcp 8080': false,
      'ops/debug > shop/db tcp 5432': true,
      'shop/api > shop/db tcp 5432': true,
      'shop/web > shop/db tcp 5432': false,
    },
  },
  {
    name: 'namespaceSelector by the automatic kubernetes.io/metadata.name label, with matchExpressions',
    policies: [
      np('shop', 'api', app('api'), {
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ops' } }, podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['debug'] }] } }] }],
      }),
      np('shop', 'back', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }, { key: 'app', operator: 'NotIn', values: ['api'] }] }, {
        ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'tier', operator: 'Exists' }, { key: 'app', operator: 'In', values: ['api', 'web'] }] } }] }],
      }),
    ],
    expect: {
      'ops/monitor > shop/api tcp 8000': true,
      'ops/debug > shop/api tcp 8000': false,
      'shop/web > shop/api tcp 8000': false,
      'shop/web > shop/db tcp 5432': true,
      'shop/api > shop/db tcp 5432': true,
      'ops/monitor > shop/db tcp 5432': false,
    },
  },
  {
    name: 'ipBlock with except, ingress and egress',
    policies: [
      np('shop', 'db', app('db'), { ingress: [{ from: [{ ipBlock: { cidr: '10.50.0.0/24', except: ['10.50.0.10/32'] } }] }] }),
      np('ops', 'debug-out', app('debug'), { types: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.7.0/24'] } }], ports: [{ port: 443 }] }] }),
    ],
    expect: {
      'shop/api > shop/db tcp 5432': true,
      'ops/monitor > shop/db udp 9': true,
      'shop/web > shop/db tcp 5432': false,
      '192.168.7.5 > shop/db tcp 5432': false,
      'ops/debug > 192.168.8.1 tcp 443': true,
      'ops/debug > 192.168.7.5 tcp 443': false,
      'ops/debug > 192.168.8.1 tcp 80': false,
      'ops/debug > 172.16.9.9 tcp 443': false,
      'ops/debug > shop/web tcp 443': false,
      'ops/debug > host tcp 10250': true,
    },
  },
  {
    name: 'port ranges with endPort',
    policies: [np('shop', 'api', app('api'), { ingress: [{ ports: [{ protocol: 'TCP', port: 8000, endPort: 8100 }] }] })],
    expect: {
      'shop/web > shop/api tcp 8000': true,
      'shop/web > shop/api tcp 8100': true,
      'ops/debug > shop/api tcp 8050': true,
      'shop/web > shop/api tcp 8101': false,
      'shop/web > shop/api tcp 7999': false,
      'shop/web > shop/api udp 8000': false,
    },
  },
  {
    name: 'named ports: ingress resolves on the selected pod, egress on each destination pod',
    policies: [
      np('shop', 'back-http', { matchLabels: { tier: 'back' } }, { ingress: [{ ports: [{ port: 'http' }] }] }),
      np('shop', 'web-out', app('web'), { types: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { tier: 'back' } } }], ports: [{ port: 'grpc' }, { port: 'pg' }] }] }),
    ],
    expect: {
      'ops/monitor > shop/api tcp 8000': true,
      'ops/monitor > shop/api tcp 9000': false,
      'ops/monitor > shop/db tcp 5432': false,
      'shop/web > shop/api tcp 9000': false,
      'shop/web > shop/api tcp 8000': false,
      'shop/web > shop/db tcp 5432': false,
      'shop/web > 192.168.7.5 tcp 9000': false,
    },
  },
  {
    name: 'named egress ports reach the ports they name, when ingress allows',
    policies: [np('shop', 'web-out', app('web'), { types: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { tier: 'back' } } }], ports: [{ port: 'grpc' }, { port: 'pg' }] }] })],
    expect: {
      'shop/web > shop/api tcp 9000': true,
      'shop/web > shop/api tcp 8000': false,
      'shop/web > shop/db tcp 5432': true,
      'shop/web > shop/db tcp 9000': false,
      'shop/web > ops/monitor tcp 9000': false,
      'shop/web > host tcp 22': true,
    },
  },
  {
    name: 'UDP and SCTP, by number and by name',
    policies: [np('shop', 'api', app('api'), { ingress: [{ ports: [{ protocol: 'UDP', port: 'stats' }, { protocol: 'SCTP', port: 7000 }, { protocol: 'UDP', port: 53 }] }] })],
    expect: {
      'shop/web > shop/api udp 5353': true,
      'shop/web > shop/api tcp 5353': false,
      'shop/web > shop/api sctp 7000': true,
      'shop/web > shop/api sctp 7001': false,
      'shop/web > shop/api udp 53': true,
      'shop/web > shop/api tcp 53': false,
      'shop/web > shop/api icmp': false,
    },
  },
  {
    name: 'policyTypes Egress without rules: default deny egress, ingress untouched',
    policies: [np('ops', 'debug-deny-out', app('debug'), { types: ['Egress'] })],
    expect: { 'ops/debug > shop/web tcp 8080': false, 'ops/debug > 192.168.7.5 tcp 443': false, 'ops/debug > ops/monitor icmp': false, 'shop/web > ops/debug tcp 22': true, 'ops/debug > host udp 53': true },
  },
  {
    name: 'policyTypes left out: Ingress, plus Egress because there are egress rules',
    policies: [np('shop', 'web', app('web'), { egress: [{ to: [{ podSelector: app('api') }] }] })],
    expect: { 'ops/monitor > shop/web tcp 8080': false, 'shop/web > shop/api tcp 8000': true, 'shop/web > shop/db tcp 5432': false, 'host > shop/web tcp 8080': true },
  },
  {
    name: 'policies are additive',
    policies: [
      np('shop', 'db-api', app('db'), { ingress: [{ from: [{ podSelector: app('api') }], ports: [{ port: 5432 }] }] }),
      np('shop', 'db-ops', app('db'), { ingress: [{ from: [{ namespaceSelector: team('ops'), podSelector: app('monitor') }] }] }),
    ],
    expect: { 'shop/api > shop/db tcp 5432': true, 'shop/api > shop/db tcp 80': false, 'ops/monitor > shop/db tcp 80': true, 'ops/monitor > shop/db icmp': true, 'ops/debug > shop/db tcp 5432': false },
  },
  {
    name: 'an empty rule allows everything; a ports-only rule allows every peer on those ports',
    policies: [np('shop', 'db-all', app('db'), { ingress: [{}] }), np('shop', 'web-port', app('web'), { ingress: [{ ports: [{ port: 8080 }] }] })],
    expect: { '192.168.7.5 > shop/db udp 9': true, 'ops/debug > shop/db icmp': true, 'ops/debug > shop/web tcp 8080': true, '192.168.7.5 > shop/web tcp 8080': true, 'shop/api > shop/web tcp 9090': false },
  },
  {
    name: 'a connection needs egress at the source and ingress at the destination',
    policies: [np('shop', 'web-out', app('web'), { types: ['Egress'], egress: [{ to: [{ podSelector: app('api') }] }] }), np('shop', 'api-in', app('api'), { ingress: [{ from: [{ namespaceSelector: team('ops') }] }] })],
    expect: { 'shop/web > shop/api tcp 8000': false, 'ops/monitor > shop/api tcp 8000': true, 'shop/web > shop/db tcp 5432': false },
  },
  {
    name: 'a policy selects pods of its own namespace only',
    policies: [np('ops', 'deny-all', {}, { types: ['Ingress', 'Egress'] })],
    expect: { 'shop/web > shop/api tcp 8000': true, 'shop/web > ops/monitor tcp 80': false, 'ops/monitor > ops/debug tcp 80': false, 'ops/monitor > host tcp 10250': true, 'ops/monitor > ops/monitor tcp 80': true },
  },
];

function contextFor(policies: NetworkPolicy[]): { ctx: PolicyContext; byName: Map<string, PodInfo>; compiled: Map<string, EndpointPolicy> } {
  const store = new ObjectStore();
  store.apply([...CLUSTER, ...policies].map((object) => ({ type: 'add', object })));
  const { ctx, problems } = buildContext(store, new IdentityAllocator(), { hostIps: [HOST_IP] });
  assert.equal(problems, []);
  const byName = new Map(ctx.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  const compiled = new Map(ctx.pods.map((p) => [`${p.namespace}/${p.name}`, compileEndpointPolicy(ctx, p)]));
  return { ctx, byName, compiled };
}

function endpoint(name: string, byName: Map<string, PodInfo>): Endpointish {
  if (name === 'host') return { host: true, ip: HOST_IP };
  const p = byName.get(name);
  if (p) return { pod: p, ip: p.ips[0]! };
  return { ip: name };
}

/** Reachability from the compiled form only, as the datapath decides it: identity lookups, CIDR matches, ports. */
function compiledAllows(compiled: Map<string, EndpointPolicy>, src: Endpointish, dst: Endpointish, protocol: TrafficProtocol, port: number | undefined): boolean {
  const view = (e: Endpointish) => ({ identity: 'pod' in e ? e.pod.identity : 'host' in e ? IDENTITY.HOST : IDENTITY.WORLD, ip: e.ip });
  if ('pod' in src && 'pod' in dst && src.pod === dst.pod) return true;
  if ('pod' in src && !allows(compiled.get(`${src.pod.namespace}/${src.pod.name}`)!.egress, view(dst), protocol, port)) return false;
  if ('pod' in dst && !allows(compiled.get(`${dst.pod.namespace}/${dst.pod.name}`)!.ingress, view(src), protocol, port)) return false;
  return true;
}

const PROBES: Array<[TrafficProtocol, number | undefined]> = [
  ['ICMP', undefined],
  ...[22, 53, 80, 443, 5353, 5432, 5433, 7999, 8000, 8050, 8080, 8100, 8101, 9000, 9090].map((p): [TrafficProtocol, number] => ['TCP', p]),
  ...[9, 53, 5353, 8000].map((p): [TrafficProtocol, number] => ['UDP', p]),
  ['SCTP', 7000],
  ['SCTP', 7001],
];

for (const c of CASES) {
  test(`policy: ${c.name}`, () => {
    const { ctx, byName, compiled } = contextFor(c.policies);
    for (const [probe, want] of Object.entries(c.expect)) {
      const m = /^(\S+) > (\S+) (tcp|udp|sctp|icmp)(?: (\d+))?$/.exec(probe);
      assert.ok(m, `bad probe '${probe}'`);
      const src = endpoint(m![1]!, byName);
      const dst = endpoint(m![2]!, byName);
      const protocol = m![3]!.toUpperCase() as TrafficProtocol;
      const port = m![4] === undefined ? undefined : Number(m![4]);
      assert.is(isAllowed(ctx, { src, dst, protocol, port }), want, `evaluator: ${probe}`);
      assert.is(compiledAllows(compiled, src, dst, protocol, port), want, `compiled: ${probe}`);
    }
    // The whole matrix: the compiled form agrees with the evaluator everywhere.
    const names = [...byName.keys(), 'host', ...WORLD];
    let n = 0;
    for (const s of names) {
      for (const d of names) {
        const src = endpoint(s, byName);
        const dst = endpoint(d, byName);
        if (!('pod' in src) && !('pod' in dst)) continue;
        for (const [protocol, port] of PROBES) {
          const want = isAllowed(ctx, { src, dst, protocol, port });
          assert.is(compiledAllows(compiled, src, dst, protocol, port), want, `${s} > ${d} ${protocol} ${port ?? ''}`);
          n++;
        }
      }
    }
    assert.ok(n > 1000);
  });
}

test('compiled shape: identities for selectors, CIDRs with except, port ranges, the host always allowed once isolated', () => {
  const { byName, compiled } = contextFor([
    np('shop', 'db', app('db'), {
      ingress: [
        { from: [{ podSelector: app('api') }, { ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.7.0/24'] } }], ports: [{ port: 5432 }, { protocol: 'UDP', port: 9000, endPort: 9010 }] },
        { from: [{ namespaceSelector: team('ops') }] },
      ],
    }),
  ]);
  const db = compiled.get('shop/db')!;
  const api = byName.get('shop/api')!.identity;
  const ops = [byName.get('ops/monitor')!.identity, byName.get('ops/debug')!.identity];
  assert.is(db.ingress.isolated, true);
  assert.is(db.egress.isolated, false);
  assert.equal(db.ingress.policies, ['shop/db']);
  const text = db.ingress.rules.map((r) => `${r.peer.kind === 'identity' ? `id ${r.peer.identity}` : r.peer.kind === 'cidr' ? `${r.peer.cidr}-${r.peer.except}` : 'all'} ${r.protocol} ${r.portFrom}-${r.portTo}`).sort();
  assert.equal(
    text,
    [
      `192.168.0.0/16-192.168.7.0/24 TCP 5432-5432`,
      `192.168.0.0/16-192.168.7.0/24 UDP 9000-9010`,
      `id ${IDENTITY.HOST} ANY 0-65535`,
      `id ${api} TCP 5432-5432`,
      `id ${api} UDP 9000-9010`,
      `id ${ops[0]} ANY 0-65535`,
      `id ${ops[1]} ANY 0-65535`,
    ].sort(),
  );
});

test('identities: one per (namespace, labels); same labels share one; another namespace gets another', () => {
  const ids = new IdentityAllocator();
  const a = ids.identityOf('shop', { app: 'web', tier: 'front' });
  assert.is(ids.identityOf('shop', { tier: 'front', app: 'web' }), a, 'label order does not matter');
  assert.is.not(ids.identityOf('ops', { app: 'web', tier: 'front' }), a);
  assert.is.not(ids.identityOf('shop', { app: 'web' }), a);
  assert.ok(a >= IDENTITY.FIRST_POD);
  ids.commit(new Set([a]));
  assert.equal(ids.entries().map((e) => e.identity), [a], 'unused identities are released on commit');
});

test('normalizeRules drops duplicates and ranges another rule covers', () => {
  const peer = { kind: 'identity', identity: 300 } as const;
  const rules = normalizeRules([
    { peer, protocol: 'TCP', portFrom: 80, portTo: 80 },
    { peer, protocol: 'TCP', portFrom: 0, portTo: 65535 },
    { peer, protocol: 'UDP', portFrom: 53, portTo: 53 },
    { peer, protocol: 'UDP', portFrom: 53, portTo: 53 },
    { peer: { kind: 'identity', identity: 301 }, protocol: 'TCP', portFrom: 1, portTo: 2 },
    { peer: { kind: 'identity', identity: 301 }, protocol: 'ANY', portFrom: 0, portTo: 65535 },
  ]);
  assert.equal(
    rules.map((r) => `${(r.peer as { identity: number }).identity} ${r.protocol} ${r.portFrom}-${r.portTo}`),
    ['300 TCP 0-65535', '300 UDP 53-53', '301 ANY 0-65535'],
  );
});

test('label selectors: matchLabels and every matchExpressions operator', () => {
  const l = { app: 'web', tier: 'front' };
  assert.ok(matchesSelector({}, l));
  assert.ok(matchesSelector({ matchLabels: { app: 'web' } }, l));
  assert.not.ok(matchesSelector({ matchLabels: { app: 'api' } }, l));
  assert.ok(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }] }, l));
  assert.not.ok(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }] }, l));
  assert.ok(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] }, l), 'NotIn holds when the key is absent');
  assert.ok(matchesSelector({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, l));
  assert.ok(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'DoesNotExist' }] }, l));
  assert.not.ok(matchesSelector({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, l), 'matchLabels AND matchExpressions');
});

test('invalid policies (which the API server would refuse) are reported and not enforced', () => {
  const bad = [
    np('shop', 'b1', app('db'), { ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['192.168.0.0/16'] } }] }] }),
    np('shop', 'b2', app('db'), { ingress: [{ ports: [{ port: 'http', endPort: 90 }] }] }),
    np('shop', 'b3', app('db'), { ingress: [{ ports: [{ port: 80, endPort: 79 }] }] }),
    np('shop', 'b4', app('db'), { ingress: [{ from: [{}] }] }),
    np('shop', 'b5', { matchExpressions: [{ key: 'a', operator: 'In' }] }, {}),
    np('shop', 'b6', app('db'), { ingress: [{ from: [{ ipBlock: { cidr: 'nonsense' } }] }] }),
  ];
  for (const p of bad) assert.ok(policyProblems(p).length > 0, p.metadata.name);
  const store = new ObjectStore();
  store.apply([...CLUSTER, ...bad].map((object) => ({ type: 'add', object })));
  const { ctx, problems } = buildContext(store, new IdentityAllocator());
  assert.is(problems.length, bad.length);
  assert.is(ctx.policies.length, 0);
});

test.run();
