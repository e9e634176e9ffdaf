/**
 * The TS layouts of the services program's maps (codegen/stateful/layouts.ts)
 * against the object's BTF, which is what clang laid out: every field at the
 * same offset with the same type, for every map.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requireKernel } from '../kernel.js';
import { compileServices } from '../../codegen/stateful/compile.js';
import { shapeOf } from '../../sdk/layout.js';
import { services } from '../../sdk/services.js';
import { load } from '../../runtime/load.js';
import { encode } from '../../sdk/layout.js';
import { LB_BACKEND, LB_KEY, LB_SERVICE } from '../../codegen/stateful/layouts.js';
import { encodeBackend, encodeLbKey, encodeService } from '../../codegen/stateful/records.js';

test('the fast record encoders write what the layouts write', () => {
  const b = { addr: [0x0a010203, 1, 2, 0xfffffffe], port: 8080, family: 6, flags: 1, svc_id: 77, weight: 65535 };
  assert.equal(encodeBackend(b as never), encode(LB_BACKEND, b));
  const k = { addr: [0x0a600001, 0, 0, 0], port: 443, proto: 17, family: 4 };
  assert.equal(encodeLbKey(k as never), encode(LB_KEY, k));
  const s = { id: 9, table: 0xfffffff0, affinity_s: 10800, count: 65535, mode: 2, flags: 0 };
  assert.equal(encodeService(s), encode(LB_SERVICE, s));
});

test('build options choose the programs: tc pair, XDP, continue verdict, bench harness', () => {
  const def = services('opt', {}, (s) => s.service('web', { vip: '10.96.0.1', port: 80, backends: [{ addr: '10.1.0.1', port: 8080 }] }));
  const tc = compileServices(def, { emitOnly: true });
  assert.equal(
    tc.programs.map((p) => [p.name, p.section, p.hook]),
    [
      ['opt_in', 'tc', 'tc-ingress'],
      ['opt_eg', 'tc', 'tc-egress'],
    ],
  );
  assert.not.match(tc.c, /TSBPF_SVC_CONTINUE/);
  const cont = compileServices(def, { emitOnly: true, verdict: 'continue' });
  assert.match(cont.c, /#define TSBPF_SVC_CONTINUE 1/);
  const xdp = compileServices(def, { emitOnly: true, hook: 'xdp', benchHarness: true });
  assert.equal(
    xdp.programs.map((p) => [p.name, p.section, p.kind]),
    [
      ['opt_xdp', 'xdp', 'xdp'],
      ['opt_bench', 'xdp', 'bench'],
      ['opt_bench0', 'xdp', 'bench'],
    ],
  );
  assert.match(xdp.c, /int opt_xdp\(struct xdp_md \*ctx\)\n\{\n\treturn tsbpf_svc_xdp\(ctx\);/);
});

if (requireKernel('stateful: map layouts against BTF')) {
  test('every map layout has the shape clang gave the C struct', () => {
    const def = services('lay', { socketLb: true, tableSize: 251 });
    const compiled = compileServices(def);
    const obj = load(compiled.object); // layouts from BTF only
    try {
      // u8 arrays are raw bytes in TS: the same bytes either way.
      const shape = (l: Parameters<typeof shapeOf>[0]) => shapeOf(l).replace(/bytes\((\d+)\/1\)/g, 'u8[$1]');
      for (const [name, l] of Object.entries(compiled.layouts)) {
        const m = obj.maps[name];
        assert.ok(m, `map ${name} exists`);
        if (l.key) assert.is(shape(l.key), shape(m!.keyLayout), `key of ${name}`);
        if (l.value && !m!.perCpu) assert.is(shape(l.value), shape(m!.valueLayout), `value of ${name}`);
      }
    } finally {
      obj.close();
    }
  });
}

test.run();
