/**
 * `tsbpf types file.o`: a TS module with the key and value types of every
 * map of a BPF object compiled elsewhere, read from its BTF, and the layouts
 * the runtime needs to encode and decode them. The module is written with
 * ts-morph, and its `layouts` are annotated with the generated interfaces,
 * so that type-checking it proves the two agree.
 */
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type * as TsMorph from 'ts-morph';
import { TsbpfError } from '../sdk/errors.js';
import {
  isArrayLayout, isStructLayout, struct, union, shapeOf, tsTypeText, layoutName,
  type Layout, type StructLayout, type Field,
} from '../sdk/layout.js';
import { mapDefsFromObject, type MapDef } from '../runtime/btf.js';

export interface TypesModuleOptions {
  /** Module the layout constructors are imported from. Default 'tsbpf'. */
  importFrom?: string;
  /** Shown in the header comment (e.g. the object's file name). */
  source?: string;
}

/** ts-morph is loaded only when a module is written: importing tsbpf stays cheap. */
function tsMorph(): typeof TsMorph {
  return createRequire(import.meta.url)('ts-morph') as typeof TsMorph;
}

const SCALARS = new Set(['u8', 'u16', 'u32', 'u64', 'i8', 'i16', 'i32', 'i64', 'be16', 'be32', 'be64', 'bool', 'f32', 'f64', 'ipv4', 'ipv6', 'mac']);

/** PascalCase of a map name: 'flow_stats' -> 'FlowStats'. */
export function typeNameOf(mapName: string): string {
  const parts = mapName.split(/[^A-Za-z0-9]+/).filter(Boolean);
  let name = parts.map((p) => p[0]!.toUpperCase() + p.slice(1)).join('');
  if (name === '' || /^[0-9]/.test(name)) name = `Map${name}`;
  return name;
}

function propName(name: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : q(name);
}

/** A single-quoted TS string literal. */
function q(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;
}

/** A layout for a key or value that BTF does not describe, from its size alone. */
function sizedLayoutExpr(size: number, uses: Set<string>): string {
  const name = ({ 1: 'u8', 2: 'u16', 4: 'u32', 8: 'u64' } as Record<number, string>)[size];
  if (name) {
    uses.add(name);
    return name;
  }
  uses.add('bytes');
  return `bytes(${size})`;
}

/**
 * TS source that rebuilds `layout` with the public constructors: struct()
 * when clang's natural layout gives BTF's offsets, structAt() with explicit
 * offsets otherwise (packed structs, bitfields, anonymous unions).
 */
export function layoutExpr(layout: Layout<unknown>, uses: Set<string>, typeArg?: string): string {
  if (SCALARS.has(layout.kind) && !isStructLayout(layout)) {
    uses.add(layout.kind);
    return layout.kind;
  }
  if (layout.kind === 'bytes') {
    uses.add('bytes');
    return layout.align > 1 ? `bytes(${layout.size}, { align: ${layout.align} })` : `bytes(${layout.size})`;
  }
  if (layout.kind === 'cstring') {
    uses.add('cstring');
    return `cstring(${layout.size})`;
  }
  if (isArrayLayout(layout)) {
    uses.add('array');
    return `array(${layoutExpr(layout.element, uses)}, ${layout.length})`;
  }
  if (isStructLayout(layout)) return structExpr(layout, uses, typeArg);
  throw new TsbpfError('LAYOUT_INVALID', `cannot write TS for a layout of kind '${layout.kind}'`);
}

function structExpr(l: StructLayout<unknown>, uses: Set<string>, typeArg?: string): string {
  const opts: string[] = [];
  if (l.name) opts.push(`name: ${q(l.name)}`);
  const simple = l.fields.every((f) => f.bitSize === undefined && !f.optional);
  if (simple) {
    const entries = Object.fromEntries(l.fields.map((f) => [f.name, f.layout]));
    const rebuilt = l.kind === 'union'
      ? union(entries, l.name ? { name: l.name } : {})
      : struct(entries, { ...(l.name ? { name: l.name } : {}), packed: l.packed });
    if (shapeOf(rebuilt) === shapeOf(l)) {
      const fields = l.fields.map((f) => `${propName(f.name)}: ${layoutExpr(f.layout, uses)}`).join(', ');
      if (l.kind === 'struct' && l.packed) opts.push('packed: true');
      uses.add(l.kind === 'union' ? 'union' : 'struct');
      return `${l.kind === 'union' ? 'union' : 'struct'}({ ${fields} }${opts.length ? `, { ${opts.join(', ')} }` : ''})`;
    }
  }
  uses.add('structAt');
  const fieldText = (f: Field): string => {
    const parts = [`name: ${q(f.name)}`, `layout: ${layoutExpr(f.layout, uses)}`, `offset: ${f.offset}`];
    if (f.bitSize !== undefined) parts.push(`bitOffset: ${f.bitOffset}`, `bitSize: ${f.bitSize}`);
    if (f.optional) parts.push('optional: true');
    return `{ ${parts.join(', ')} }`;
  };
  const spec = [
    ...(l.name ? [`name: ${q(l.name)}`] : []),
    ...(l.kind === 'union' ? [`kind: 'union'`] : []),
    `size: ${l.size}`,
    `align: ${l.align}`,
    `fields: [${l.fields.map(fieldText).join(', ')}]`,
  ];
  const type = typeArg ?? tsTypeText(l);
  return `structAt<${type}>({ ${spec.join(', ')} })`;
}

interface Side {
  typeName: string;
  /** The layout from BTF; undefined when only a size is known (fd arrays) or BTF's type has no layout. */
  layout: Layout<unknown> | undefined;
  size: number;
  /** Where the type came from, for the doc comment. */
  note: string;
}

function sideOf(def: MapDef, which: 'key' | 'value', typeName: string): Side | undefined {
  const layout = def[which];
  const size = which === 'key' ? def.keySize : def.valueSize;
  const cName = which === 'key' ? def.keyTypeName : def.valueTypeName;
  const err = which === 'key' ? def.keyError : def.valueError;
  if (layout) return { typeName, layout, size, note: `C type: ${cName ?? layoutName(layout)} (${layout.size} bytes)` };
  if (size === 0) return undefined;
  const why = err ? `BTF type ${cName} has no layout (${err})` : `no BTF type; ${which}_size ${size}`;
  return { typeName, layout: undefined, size, note: `${why}: raw ${size} bytes` };
}

function sizedTypeText(size: number): string {
  return size === 8 ? 'bigint' : [1, 2, 4].includes(size) ? 'number' : 'Buffer';
}

/**
 * The TS module for the maps of an object: for each map `<Map>Key` and
 * `<Map>Value` types, `layouts` (typed by them) and `maps` (kind, sizes).
 */
export function typesModuleSource(maps: MapDef[] | Buffer, options: TypesModuleOptions = {}): string {
  const defs = Buffer.isBuffer(maps) ? mapDefsFromObject(maps, options.source) : maps;
  const { Project, VariableDeclarationKind, IndentationText, QuoteKind } = tsMorph();
  const project = new Project({
    useInMemoryFileSystem: true,
    manipulationSettings: { indentationText: IndentationText.TwoSpaces, quoteKind: QuoteKind.Single },
  });
  const file = project.createSourceFile('types.ts', '', { overwrite: true });
  const uses = new Set<string>();
  const used = new Set<string>(['Layouts', 'MapTypes', 'Layout']);

  const entries: Array<{ def: MapDef; base: string; key?: Side; value?: Side }> = [];
  for (const def of defs) {
    let base = typeNameOf(def.name);
    for (let n = 2; used.has(`${base}Key`) || used.has(`${base}Value`); n++) base = `${typeNameOf(def.name)}${n}`;
    used.add(`${base}Key`);
    used.add(`${base}Value`);
    const key = sideOf(def, 'key', `${base}Key`);
    const value = sideOf(def, 'value', `${base}Value`);
    entries.push({ def, base, ...(key ? { key } : {}), ...(value ? { value } : {}) });
  }

  file.addStatements((w) => {
    w.writeLine(`// Generated by \`tsbpf types\`${options.source ? ` from ${path.basename(options.source)}` : ''}: the maps of a BPF object, typed from its BTF.`);
    w.writeLine('// Do not edit; generate it again when the object changes.');
  });

  for (const e of entries) {
    for (const side of [e.key, e.value]) {
      if (!side) continue;
      const docs = [side.note + (side === e.value && e.def.percpu ? '; per CPU: a lookup gives one per CPU' : '')];
      if (side.layout && isStructLayout(side.layout)) {
        const l = side.layout;
        file.addInterface({
          name: side.typeName,
          isExported: true,
          docs,
          properties: l.fields.map((f) => ({
            name: propName(f.name),
            type: tsTypeText(f.layout),
            hasQuestionToken: l.kind === 'union' || f.optional === true,
            docs: [fieldDoc(f)],
          })),
        });
      } else {
        const type = side.layout ? tsTypeText(side.layout) : sizedTypeText(side.size);
        file.addTypeAlias({ name: side.typeName, isExported: true, docs, type });
      }
    }
  }

  file.addInterface({
    name: 'MapTypes',
    isExported: true,
    docs: ['Key and value types of every map, by map name.'],
    properties: entries.map((e) => ({
      name: propName(e.def.name),
      type: `{ key: ${e.key?.typeName ?? 'never'}; value: ${e.value?.typeName ?? 'never'} }`,
    })),
  });

  const withLayouts = entries.filter((e) => e.key || e.value);
  file.addInterface({
    name: 'Layouts',
    isExported: true,
    docs: ['Codecs for the keys and values of the maps that have them.'],
    properties: withLayouts.map((e) => ({
      name: propName(e.def.name),
      type: `{ ${[e.key ? `key: Layout<${e.key.typeName}>` : '', e.value ? `value: Layout<${e.value.typeName}>` : ''].filter(Boolean).join('; ')} }`,
    })),
  });

  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    declarations: [{
      name: 'layouts',
      type: 'Layouts',
      initializer: (w) => {
        w.write('{').newLine();
        w.indent(() => {
          for (const e of withLayouts) {
            w.write(`${propName(e.def.name)}: {`).newLine();
            w.indent(() => {
              for (const [k, side] of [['key', e.key], ['value', e.value]] as const) {
                if (!side) continue;
                const text = side.layout ? layoutExpr(side.layout, uses, side.typeName) : sizedLayoutExpr(side.size, uses);
                w.write(`${k}: ${text},`).newLine();
              }
            });
            w.write('},').newLine();
          }
        });
        w.write('}');
      },
    }],
  });

  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    docs: ['What the object declares for each map (BTF-defined maps in .maps).'],
    declarations: [{
      name: 'maps',
      initializer: (w) => {
        w.write('{').newLine();
        w.indent(() => {
          for (const e of entries) {
            const d = e.def;
            const parts = [
              `type: ${q(d.type)}`,
              `keySize: ${d.keySize}`,
              `valueSize: ${d.valueSize}`,
              `maxEntries: ${d.maxEntries}`,
              `flags: ${d.flags}`,
              ...(d.pinning ? [`pinning: ${q(d.pinning === 1 ? 'by_name' : String(d.pinning))}`] : []),
              ...(d.percpu ? ['percpu: true'] : []),
            ];
            w.write(`${propName(d.name)}: { ${parts.join(', ')} },`).newLine();
          }
        });
        w.write('} as const');
      },
    }],
  });

  const names = ['type Layout', ...[...uses].sort()];
  file.insertImportDeclaration(0, { moduleSpecifier: options.importFrom ?? 'tsbpf', namedImports: names });
  // the header comment goes above the import
  file.formatText({ indentSize: 2, convertTabsToSpaces: true });
  const text = file.getFullText().replace(/;\n(\/\*\*|export )/g, ';\n\n$1');
  const header = /^(\/\/.*\n)+/m.exec(text.slice(text.indexOf('// Generated')))?.[0] ?? '';
  const body = text.replace(header, '');
  return header + body.replace(/^\s*\n/, '').replace(/\n{3,}/g, '\n\n');
}

function fieldDoc(f: Field): string {
  const at = f.bitSize !== undefined ? `bits ${f.bitOffset}..${f.bitOffset! + f.bitSize - 1}` : `offset ${f.offset}`;
  return `${layoutName(f.layout)}${f.bitSize !== undefined ? ` : ${f.bitSize}` : ''}, ${at}${f.optional ? ' (anonymous union member)' : ''}`;
}

/** Reads a BPF object and writes the TS module for its maps to `outPath`. */
export function writeTypesModule(objectPath: string, outPath: string, options: TypesModuleOptions = {}): { path: string; maps: string[] } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(objectPath);
  } catch (e) {
    throw new TsbpfError('OBJECT_NOT_FOUND', `cannot read object file '${objectPath}': ${(e as Error).message}`, {
      cause: e,
      hint: 'pass the path of a .o file built with clang -g -target bpf',
    });
  }
  const defs = mapDefsFromObject(bytes, objectPath);
  const text = typesModuleSource(defs, { source: objectPath, ...options });
  writeFileSync(outPath, text);
  return { path: outPath, maps: defs.map((d) => d.name) };
}
