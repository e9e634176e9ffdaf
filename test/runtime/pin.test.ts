/**
 * Pinning under bpffs: state that outlives the loader. A second process
 * reads a pinned map back; a reload reuses pinned maps; bad pins change
 * nothing; unpin leaves nothing behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TsbpfError } from '../../sdk/errors.js';
import { load, openPinnedMap } from '../../runtime/index.js';
import { native } from '../../runtime/native.js';
import { requireKernel } from '../kernel.js';
import { bpffsDir, fixture, repoRoot, tmpDir } from './helpers.js';

function thrown(fn: () => unknown): TsbpfError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TsbpfError, `expected a TsbpfError, got ${String(e)}`);
    return e as TsbpfError;
  }
  throw new Error('expected an error');
}

if (requireKernel('runtime pinning')) {
  test('a pinned map is read back, typed, by a second process', () => {
    const dir = bpffsDir('pin');
    const obj = load(fixture('rt_counter'));
    try {
      const pins = obj.pin(dir);
      assert.equal(Object.keys(pins.maps).sort(), ['by_source', 'tc_stats', 'xdp_packets']);
      assert.equal(Object.keys(pins.programs).sort(), ['tc_count', 'xdp_count']);
      obj.map<string, bigint>('by_source').set('192.168.7.7', 77n);
      obj.maps.tc_stats!.set(0, { packets: 3n, bytes: 180n });

      const script = `
        import { openPinnedMap } from ${JSON.stringify(path.join(repoRoot, 'dist/runtime/index.js'))};
        const m = openPinnedMap(${JSON.stringify(path.join(dir, 'by_source'))});
        const s = openPinnedMap(${JSON.stringify(path.join(dir, 'tc_stats'))});
        const out = { entries: [...m].map(([k, v]) => [k, String(v)]), stats: String(s.get(0).bytes) };
        m.close(); s.close();
        process.stdout.write(JSON.stringify(out));
      `;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      assert.equal(JSON.parse(out), { entries: [['192.168.7.7', '77']], stats: '180' });

      // In this process too, after the object is closed: the pin keeps the map alive.
      obj.close();
      const again = openPinnedMap<string, bigint>(path.join(dir, 'by_source'));
      try {
        assert.is(again.get('192.168.7.7'), 77n);
        assert.is(again.name, 'by_source');
      } finally {
        again.close();
      }
    } finally {
      obj.close();
      obj.unpin();
    }
    assert.not.ok(existsSync(dir), 'unpin removed the pins and the directories it made');
  });

  test('a reload with pinRoot reuses the pinned maps, so state survives a program update', () => {
    const dir = bpffsDir('reuse');
    const first = load(fixture('rt_counter'));
    try {
      first.pin(dir);
      first.map<string, bigint>('by_source').set('10.0.0.9', 9n);
      const second = load(fixture('rt_counter'), { pinRoot: dir });
      try {
        assert.is(second.map<string, bigint>('by_source').get('10.0.0.9'), 9n);
        assert.is(second.maps.by_source!.id, first.maps.by_source!.id);
      } finally {
        second.close();
      }
      // A map pinned under that name with another shape is refused, naming both.
      const other = load(fixture('rt_maps'));
      const wrong = path.join(dir, 'elsewhere', 'tc_stats');
      try {
        mkdirSync(path.dirname(wrong));
        native().objPin(other.maps.slots!.fd, wrong);
        const e = thrown(() => load(fixture('rt_counter'), { pinRoot: path.dirname(wrong) }));
        assert.is(e.code, 'PIN_FAILED');
        assert.match(e.message, /tc_stats/);
        assert.match(e.message, /max entries 8 where the object has 1/);
      } finally {
        other.close();
        if (existsSync(wrong)) unlinkSync(wrong);
        if (existsSync(path.dirname(wrong))) rmdirSync(path.dirname(wrong));
      }
    } finally {
      first.close();
      first.unpin();
    }
    assert.not.ok(existsSync(dir));
  });

  test('bad pins are clear errors and leave nothing pinned', () => {
    const dir = bpffsDir('bad');
    const obj = load(fixture('rt_counter'));
    try {
      const notBpffs = thrown(() => obj.pin(path.join(tmpDir(), 'pins')));
      assert.is(notBpffs.code, 'PIN_FAILED');
      assert.match(notBpffs.message, /not on a BPF filesystem/);

      // Something already pinned where the third map goes: the two pinned
      // before it are removed again, and so is the directory pin() made.
      mkdirSync(dir);
      const blocker = path.join(dir, 'by_source');
      native().objPin(obj.maps.tc_stats!.fd, blocker);
      const e = thrown(() => obj.pin(dir));
      assert.is(e.code, 'PIN_FAILED');
      assert.match(e.message, /by_source/);
      assert.equal(readdirSync(dir), ['by_source']);
      assert.is(obj.pinned, undefined);
      unlinkSync(blocker);
      assert.equal(readdirSync(dir), []);
      assert.is(thrown(() => openPinnedMap(path.join(dir, 'nothing'))).code, 'PIN_NOT_FOUND');
    } finally {
      obj.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
