/**
 * Reloading a services program over its pinned maps: connections tracked by
 * the old program survive (and keep their backend), while the service maps
 * end up holding exactly the new definition's services.
 */
import { existsSync, rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { uniqueId } from '../net/topology.js';
import { packet } from '../../sdk/packet.js';
import { formatIpv4, parsePacket } from '../../sdk/parse.js';
import { services } from '../../sdk/services.js';
import { loadServices } from '../../runtime/services.js';

const syn = (sport: number, dst: string, flags = 'S') => packet().ipv4({ src: '10.0.0.5', dst }).tcp({ sport, dport: 80, flags }).build();
const dstOf = (frame: Buffer) => formatIpv4(parsePacket(frame).ipv4!.dst);

if (requireKernel('stateful: reload over pinned maps')) {
  test('a reload keeps conntrack and replaces the services', () => {
    const dir = `/sys/fs/bpf/tsbpf-reload-${uniqueId()}`;
    const v1 = services('rl', { hashSeed: 5 }, (s) => {
      s.service('web', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.1', port: 80 }] });
      s.service('old', { vip: '10.96.0.2', port: 80, backends: [{ addr: '10.1.0.2', port: 80 }] });
    });
    const v2 = services('rl', { hashSeed: 5 }, (s) => {
      s.service('web', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.9', port: 80 }] });
      s.service('api', { vip: '10.96.0.3', port: 80, backends: [{ addr: '10.1.0.3', port: 80 }] });
    });
    try {
      const a = loadServices(v1, { pinRoot: dir });
      try {
        a.pin(dir);
        assert.is(dstOf(a.testRun('tc-ingress', syn(40000, '10.96.0.1')).data), '10.1.0.1');
      } finally {
        a.close();
      }
      const b = loadServices(v2, { pinRoot: dir });
      try {
        const [c] = b.conntrack({ sport: 40000 });
        assert.ok(c, 'the connection made by the first program is still tracked');
        assert.is(dstOf(b.testRun('tc-ingress', syn(40000, '10.96.0.1', 'A')).data), '10.1.0.1', 'and keeps its backend');
        assert.is(dstOf(b.testRun('tc-ingress', syn(40001, '10.96.0.1')).data), '10.1.0.9', 'a new connection gets the new backend');
        assert.is(dstOf(b.testRun('tc-ingress', syn(40002, '10.96.0.2')).data), '10.96.0.2', 'the removed service is gone');
        assert.is(dstOf(b.testRun('tc-ingress', syn(40003, '10.96.0.3')).data), '10.1.0.3', 'the new service is there');
        assert.is([...b.map('tsbpf_lb_services').raw.keys()].length, 2);
        assert.is([...b.map('tsbpf_lb_backends').raw.keys()].length, 2, 'no backend left behind');
        assert.is([...b.map('tsbpf_lb_tables').raw.keys()].length, 2, 'no table left behind');
      } finally {
        b.close();
      }
    } finally {
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
