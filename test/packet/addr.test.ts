/**
 * Address text the packet builder accepts (RFC 4291 section 2.2 forms) and
 * the text it prints (RFC 5952: lower case, longest zero run compressed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { ipv4ToBytes, ipv6ToBytes, ipv6ToText, isIpv4Text, isIpv6Text, macToBytes, macToText } from '../../sdk/packet-addr.js';

test('IPv4 dotted quads, and what is not one', () => {
  assert.is(ipv4ToBytes('192.168.0.199').toString('hex'), 'c0a800c7');
  for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.-4', '', 'a.b.c.d']) assert.not.ok(isIpv4Text(bad), bad);
  assert.throws(() => ipv4ToBytes('10.0.0'), (e: unknown) => e instanceof TsbpfError && e.code === 'INVALID_ARGUMENT' && /invalid IPv4 address '10\.0\.0'/.test(e.message));
});

test('IPv6 text forms: full, compressed, embedded IPv4', () => {
  const cases: Array<[string, string]> = [
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['fd00::', 'fd000000000000000000000000000000'],
    ['2001:DB8:0:0:8:800:200C:417A', '20010db80000000000080800200c417a'],
    ['2001:db8::8:800:200c:417a', '20010db80000000000080800200c417a'],
    ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001'],
    ['::10.0.0.1', '0000000000000000000000000a000001'],
    ['64:ff9b::192.0.2.33', '0064ff9b0000000000000000c0000221'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304'],
  ];
  for (const [text, hex] of cases) assert.is(ipv6ToBytes(text).toString('hex'), hex, text);
  for (const bad of ['1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1:::2', '::1.2.3', '1:2:3:4:5:6:7::8', '10.0.0.1', '']) {
    assert.not.ok(isIpv6Text(bad), bad);
  }
});

test('IPv6 output follows RFC 5952', () => {
  const out = (t: string) => ipv6ToText(ipv6ToBytes(t));
  assert.is(out('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  assert.is(out('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
  assert.is(out('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1', 'the longest run is compressed');
  assert.is(out('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'on a tie, the first run');
  assert.is(out('::'), '::');
  assert.is(out('fd00::'), 'fd00::');
});

test('MACs with colons or dashes', () => {
  assert.is(macToBytes('02:00:0A:0b:0c:d').toString('hex'), '02000a0b0c0d');
  assert.is(macToBytes('02-00-00-00-00-01').toString('hex'), '020000000001');
  assert.is(macToText(Buffer.from('020000000001', 'hex')), '02:00:00:00:00:01');
  assert.throws(() => macToBytes('02:00:00:00:00'), /invalid MAC address/);
});

test.run();
