/**
 * Kubernetes objects from a YAML file: parsing (multi-document, Lists,
 * kinds the agent does not read), the diff a change becomes, the watched
 * file source, and Services computed from Services + EndpointSlices.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diffObjects, FileObjectSource, parseObjects } from '../../cni/k8s/file-source.js';
import { objectKey, type KubeObject } from '../../cni/k8s/objects.js';
import { computeServices } from '../../cni/k8s/services.js';
import type { ObjectEvent } from '../../cni/k8s/source.js';
import { ObjectStore } from '../../cni/k8s/store.js';

const YAML = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { team: shop } }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
spec:
  containers:
    - name: main
      ports: [{ name: http, containerPort: 8080 }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: ignored }
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: { name: web, namespace: shop }
    spec:
      clusterIP: 10.96.0.10
      ports: [{ name: http, port: 80, targetPort: http }]
      sessionAffinity: ClientIP
  - apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: { name: web-1, namespace: shop, labels: { kubernetes.io/service-name: web } }
    addressType: IPv4
    ports: [{ name: http, port: 8080, protocol: TCP }]
    endpoints:
      - addresses: [10.50.0.10]
      - addresses: [10.50.0.11]
        conditions: { ready: true }
      - addresses: [10.50.0.12]
        conditions: { ready: false }
---
apiVersion: v1
kind: Pod
metadata: { name: nons }
`;

test('parse: documents and Lists, unknown kinds counted and skipped, namespace defaults to "default"', () => {
  const { objects, ignored } = parseObjects(YAML);
  assert.equal(objects.map(objectKey), ['Namespace//shop', 'Pod/shop/web', 'Service/shop/web', 'EndpointSlice/shop/web-1', 'Pod/default/nons']);
  assert.equal(ignored, { Deployment: 1 });
});

test('parse errors name the file and document', () => {
  assert.throws(() => parseObjects('kind: Pod\nmetadata: {name: a}\n---\nkind: [unclosed', 'objs.yaml'), /objs\.yaml: document 2/);
  assert.throws(() => parseObjects('kind: Pod\nmetadata: {}\n'), /without metadata.name/);
  assert.throws(() => parseObjects('kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: a}\n'), /appears twice/);
  assert.equal(parseObjects('').objects, []);
});

test('diff: add, update, delete; unchanged objects produce nothing', () => {
  const a = parseObjects(YAML).objects;
  const prev = new Map(a.map((o) => [objectKey(o), o]));
  const changed = a.filter((o) => o.kind !== 'EndpointSlice').map((o) => (o.kind === 'Pod' && o.metadata.name === 'web' ? { ...o, metadata: { ...o.metadata, labels: { app: 'web', v: '2' } } } : o));
  const added: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ops' } };
  const next = new Map([...changed, added].map((o) => [objectKey(o), o]));
  const d = diffObjects(prev, next).map((e) => `${e.type} ${objectKey(e.object)}`);
  assert.equal(d.sort(), ['add Namespace//ops', 'delete EndpointSlice/shop/web-1', 'update Pod/shop/web']);
  assert.equal(diffObjects(prev, prev), []);
});

test('services: ClusterIP x port with the ready backends of its EndpointSlices (missing ready = ready), ClientIP affinity', () => {
  const store = new ObjectStore();
  store.apply(parseObjects(YAML).objects.map((object) => ({ type: 'add', object })));
  assert.equal(computeServices(store), [
    {
      key: 'shop/web:10.96.0.10:80/TCP',
      namespace: 'shop',
      name: 'web',
      vip: '10.96.0.10',
      port: 80,
      protocol: 'TCP',
      affinityTimeout: 10800,
      backends: [
        { addr: '10.50.0.10', port: 8080 },
        { addr: '10.50.0.11', port: 8080 },
      ],
    },
  ]);
});

test('the file source delivers the whole file first, then each change as a diff; a broken file keeps the last good state', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-k8s-'));
  const file = join(dir, 'objects.yaml');
  writeFileSync(file, YAML);
  const src = new FileObjectSource(file, { debounceMs: 20 });
  const batches: ObjectEvent[][] = [];
  const errors: string[] = [];
  let wake: () => void = () => undefined;
  const next = () => new Promise<void>((r) => (wake = r));
  try {
    let got = next();
    await src.start({
      events: (b) => {
        batches.push(b);
        wake();
      },
      error: (e) => {
        errors.push(e.message);
        wake();
      },
    });
    await got;
    assert.is(batches[0]!.length, 5);
    assert.ok(batches[0]!.every((e) => e.type === 'add'));

    got = next();
    writeFileSync(file, YAML.replace('10.50.0.12]\n        conditions: { ready: false }', '10.50.0.12]\n        conditions: { ready: true }'));
    await got;
    assert.equal(batches[1]!.map((e) => `${e.type} ${objectKey(e.object)}`), ['update EndpointSlice/shop/web-1']);

    got = next();
    writeFileSync(file, 'kind: [broken');
    await got;
    assert.is(errors.length, 1);
    assert.is(batches.length, 2, 'nothing delivered for a broken file');

    // Editors replace the file by rename: still seen.
    got = next();
    writeFileSync(join(dir, 'tmp.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: only}\n');
    renameSync(join(dir, 'tmp.yaml'), file);
    await got;
    const last = batches[2]!.map((e) => `${e.type} ${objectKey(e.object)}`).sort();
    assert.equal(last, ['add Namespace//only', 'delete EndpointSlice/shop/web-1', 'delete Namespace//shop', 'delete Pod/default/nons', 'delete Pod/shop/web', 'delete Service/shop/web']);
  } finally {
    await src.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
