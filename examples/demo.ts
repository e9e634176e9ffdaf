/**
 * `npm run demo`: the example web-server firewall (examples/firewall.ts)
 * compiled to BPF, attached at tc-ingress of a server in a throwaway pair of
 * network namespaces, and exercised with real traffic from a client; then the
 * per-rule counters as a table. Everything it makes is removed at the end.
 */
import { createPair, ping, type PairTopology } from '../test/net/topology.js';
import { tcpConnect, tcpServer, udpSend, type Server } from '../test/net/traffic.js';
import { load, type FilterLogEvent } from '../runtime/index.js';
import { formatTable } from '../cli/table.js';
import { webFirewall } from './firewall.js';

const say = (s = '') => process.stdout.write(`${s}\n`);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('the demo loads BPF programs and makes network namespaces: run it as root\n');
    return 1;
  }
  let topo: PairTopology | undefined;
  const servers: Server[] = [];
  const fw = webFirewall({ adminNet: '192.168.200.0/24' }); // never the pair's 10.x.y.0/24: ssh from the client is denied
  say('compiling examples/firewall.ts (TypeScript -> C -> clang -target bpf) and loading it ...');
  const started = Date.now();
  const f = load(fw);
  say(`  ${f.compiled.programs.length} BPF programs, ${f.compiled.ruleTable.length} rules, ${f.compiled.maps.length} maps (${Date.now() - started} ms${f.compiled.cached ? ', clang cached' : ''})`);
  try {
    topo = createPair({ prefix: 'demo' });
    const { a: client, b: server } = topo;
    say(`topology: client ${client.ipv4} (netns ${client.ns}) <-veth-> server ${server.ipv4} (netns ${server.ns})`);
    for (const port of [80, 443, 22, 8080]) servers.push(await tcpServer(server.ns, port));
    const events: FilterLogEvent[] = [];
    const rb = f.onLog((e) => events.push(e));
    f.attach({ hook: 'tc-ingress', ifname: server.ifname, netns: server.ns });
    say(`attached at tc-ingress of ${server.ifname} in ${server.ns}`);
    say();

    const results: Array<[string, string, string]> = [];
    const tcp = (port: number, expect: string) => {
      const got = tcpConnect(client.ns, server.ipv4, port, { timeoutMs: 700, payload: 'hello' });
      results.push([`TCP connect to :${port}`, expect, got]);
    };
    tcp(80, 'connected');
    tcp(443, 'connected');
    tcp(22, 'timeout (dropped: not from the admin net)');
    tcp(8080, 'refused (RST from the filter)');
    const udp = udpSend(client.ns, server.ipv4, 5353, 3, 300);
    results.push(['UDP to :5353', 'refused (ICMP port unreachable)', udp.refused ? 'refused' : `${udp.replies} replies`]);
    results.push(['ping x30 (limit 10/s, burst 20)', 'about 20 answered', `${ping(client.ns, server.ipv4, 30, { intervalS: 0.01 })} answered`]);
    f.sets['blocked']!.add(`${client.ipv4}/32`);
    results.push([`TCP :80 after blocking ${client.ipv4}`, 'timeout (dropped by the set)', tcpConnect(client.ns, server.ipv4, 80, { timeoutMs: 700 })]);
    f.sets['blocked']!.delete(`${client.ipv4}/32`);
    results.push(['TCP :80 after unblocking', 'connected', tcpConnect(client.ns, server.ipv4, 80, { payload: 'again' })]);

    say('traffic from the client:');
    say(formatTable(['what', 'expected', 'got'], results));
    say();
    say('per-rule counters (from the per-CPU counters map):');
    say(
      formatTable(
        ['rule', 'chain', 'packets', 'bytes', 'match and actions'],
        f.counters().map((c) => [c.name, c.chain, c.packets, c.bytes, f.compiled.ruleTable[c.id]!.text]),
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
    rb.close();
    say();
    say(`log events (ring buffer): ${events.length}`);
    for (const e of events.slice(0, 5)) say(`  ${e.rule}: '${e.prefix}' ${e.src}:${e.sport} -> ${e.dst}:${e.dport} proto ${e.proto} => ${e.verdict}`);
    const ok = results.every(([, expect, got]) => expect.startsWith(got.split(' ')[0]!) || /answered/.test(got));
    return ok ? 0 : 1;
  } finally {
    for (const s of servers) s.stop();
    f.close();
    topo?.destroy();
    say();
    say('cleaned up: programs detached, namespaces removed');
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo failed: ${(e as { describe?: () => string }).describe?.() ?? (e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
