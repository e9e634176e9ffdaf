/**
 * Masquerade in BPF (the agent's default with the BPF datapath): pod traffic
 * leaving by the node's uplink gets the uplink's address as its source from
 * the services program at the uplink, and its replies are translated back.
 * The "outside" namespace behind the uplink has no route to the pod CIDR, so
 * nothing reaches it without masquerade; no iptables rule is involved.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { nsExec, ping } from '../net/topology.js';
import { tcpServer } from '../net/traffic.js';
import { cni, createNode, ctl, echoClient, startAgent, type AgentProcess, type TestNode } from './harness.js';

/** Reads a whole connection, answers "<sha256 of what it read> <peer address>", closes. */
const DIGEST_SERVER = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const srv = net.createServer((s) => {
  const h = createHash('sha256'); let n = 0;
  s.on('data', (d) => { h.update(d); n += d.length; });
  s.on('end', () => s.end(h.digest('hex') + ' ' + n + ' ' + s.remoteAddress));
  s.on('error', () => {});
});
srv.listen(Number(process.argv[1]), () => console.log('listening'));
`;

/** Sends `size` bytes (a seeded pattern), half-closes, prints the answer. */
const SENDER = `
const net = require('node:net');
const [host, port, size] = process.argv.slice(1);
const buf = Buffer.alloc(Number(size));
for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
const s = net.connect({ host, port: Number(port) }, () => s.end(buf));
let out = '';
s.on('data', (d) => (out += d));
s.on('end', () => { console.log(out); process.exit(0); });
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
setTimeout(() => { console.log('timeout'); process.exit(1); }, 20000);
`;

function pattern(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
  return buf;
}

if (requireKernel('cni: masquerade in BPF')) {
  let node: TestNode;
  let agent: AgentProcess;
  const conf = () => ({ cniVersion: '1.1.0', name: 'tsbpf', type: 'tsbpf-cni', socket: agent.socket });
  const agentArgs = () => ['--node-netns', node.ns, '--pod-cidr', node.podCidr4, '--pin-dir', node.pinDir];

  test.before(async () => {
    node = createNode();
    agent = await startAgent(node.dir, agentArgs());
  });

  test.after(async () => {
    await agent?.stop();
    node?.destroy();
  });

  test('a 4 MiB TCP transfer from a pod to the outside arrives intact, from the uplink\'s address; no iptables rule', async () => {
    const st = JSON.parse(ctl(['status', '--socket', agent.socket, '--json']).stdout) as {
      node: { masquerade: string };
      datapath: { programs: Array<{ name: string; hook: string; attachedTo: string }>; masquerade: { uplink: string; address: { v4: string } } };
    };
    assert.is(st.node.masquerade, 'datapath', 'the default with the BPF datapath');
    assert.equal(
      st.datapath.programs.filter((p) => p.attachedTo === 'uplink').map((p) => `${p.name}@${p.hook}`).sort(),
      ['tsbmasq_eg@tc-egress', 'tsbmasq_in@tc-ingress'],
    );
    assert.equal([st.datapath.masquerade.uplink, st.datapath.masquerade.address.v4], ['uplink', node.uplinkIp]);
    assert.not.match(nsExec(node.ns, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING']), 'MASQUERADE');
    assert.match(ctl(['status', '--socket', agent.socket]).stdout, `masquerade: in BPF at uplink, as ${node.uplinkIp}`);
    // Not at 1/1 on the node's shared uplink: a fixed priority of its own.
    assert.match(nsExec(node.ns, 'tc', ['filter', 'show', 'dev', 'uplink', 'egress']), /pref 29811 bpf .*handle 0x7473 tsbmasq_eg/);

    const pa = node.pod('a');
    const ra = cni({ command: 'ADD', containerId: 'a', netns: pa, ifname: 'eth0', config: conf() });
    assert.is(ra.code, 0, ra.stdout);
    const server = spawn('ip', ['netns', 'exec', node.outside, process.execPath, '-e', DIGEST_SERVER, '9443'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await new Promise<void>((ok) => server.stdout.setEncoding('utf8').once('data', () => ok()));
      const size = 4 * 1024 * 1024;
      const out = nsExec(pa.split('/').pop()!, process.execPath, ['-e', SENDER, node.outsideIp, '9443', String(size)]).trim();
      const [digest, count, peer] = out.split(' ');
      assert.is(count, String(size), out);
      assert.is(digest, createHash('sha256').update(pattern(size)).digest('hex'), 'the bytes arrived intact');
      assert.is(peer?.replace(/^::ffff:/, ''), node.uplinkIp, 'the outside sees the uplink\'s address');
      assert.is(ping(pa.split('/').pop()!, node.outsideIp, 2), 2, 'ICMP echo is masqueraded too');
      const fill = JSON.parse(ctl(['status', '--socket', agent.socket, '--json']).stdout) as { datapath: { maps: Array<{ name: string; entries: number; maxEntries: number }> } };
      const ct = fill.datapath.maps.find((m) => m.name === 'masq/tsbpf_ct');
      assert.ok(ct && ct.entries > 0 && ct.maxEntries > 0, `the masquerade's connections are tracked: ${JSON.stringify(ct)}`);
    } finally {
      server.kill();
      assert.is(cni({ command: 'DEL', containerId: 'a', netns: pa, ifname: 'eth0', config: conf() }).code, 0);
    }
  });

  test('a masqueraded connection stays open across an agent crash and restart', async () => {
    const pb = node.pod('b');
    const rb = cni({ command: 'ADD', containerId: 'b', netns: pb, ifname: 'eth0', config: conf() });
    assert.is(rb.code, 0, rb.stdout);
    const srv = await tcpServer(node.outside, 9444);
    const client = echoClient(pb.split('/').pop()!, node.outsideIp, 9444);
    try {
      await client.waitFor('open');
      client.send('before');
      await client.waitFor('echo before');
      await agent.kill();
      client.send('during');
      await client.waitFor('echo during');
      agent = await startAgent(node.dir, agentArgs());
      client.send('after');
      await client.waitFor('echo after');
      assert.not.match(client.output(), 'closed');
    } finally {
      client.kill();
      srv.stop();
      assert.is(cni({ command: 'DEL', containerId: 'b', netns: pb, ifname: 'eth0', config: conf() }).code, 0);
    }
  });
}

test.run();
