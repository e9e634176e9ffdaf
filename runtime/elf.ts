/**
 * A reader for the ELF64 little-endian objects clang writes for -target bpf:
 * section headers, sections by name, symbols and relocations. Enough to find
 * .BTF, .BTF.ext, .maps, .rodata and the program sections without libbpf (so
 * it works unprivileged and on machines without the addon).
 */
import { TsbpfError } from '../sdk/errors.js';

export const EM_BPF = 247;

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_REL = 9;

export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;

const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
const SHN_XINDEX = 0xffff;

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
  /** The section's bytes (a view into the object; empty for SHT_NOBITS). */
  data: Buffer;
}

export interface ElfSymbol {
  index: number;
  name: string;
  /** STT_* */
  type: number;
  /** STB_* */
  bind: number;
  /** STV_* (st_other & 3) */
  visibility: number;
  /** Section header index (0: undefined, >= 0xff00: special). */
  sectionIndex: number;
  value: bigint;
  size: bigint;
}

export interface ElfRelocation {
  offset: bigint;
  /** Index into the symbol table. */
  symbol: number;
  type: number;
  addend?: bigint;
}

export interface ElfFile {
  machine: number;
  /** ET_REL for objects clang writes. */
  elfType: number;
  sections: ElfSection[];
  symbols: ElfSymbol[];
  /** The section named `name`, if present. */
  section(name: string): ElfSection | undefined;
  /** Relocations applying to section `index` (from its SHT_REL / SHT_RELA sections). */
  relocationsFor(index: number): ElfRelocation[];
  /** Executable sections that hold BPF programs (SHF_EXECINSTR, non-empty), '.text' included. */
  programSections(): ElfSection[];
  /** Global function symbols: the programs and their sections. */
  programs(): Array<{ name: string; section: string; offset: number; size: number }>;
  /** Bytes of a symbol's object in its section (e.g. a .rodata constant), undefined if it has none. */
  symbolData(sym: ElfSymbol): Buffer | undefined;
}

function bad(message: string, hint?: string): never {
  throw new TsbpfError('OBJECT_INVALID', message, { hint: hint ?? 'pass an object file built with clang -target bpf -c' });
}

/** Parses an ELF64 little-endian object (normally a BPF object) from its bytes. */
export function parseElf(bytes: Buffer, options: { requireBpf?: boolean; name?: string } = {}): ElfFile {
  const what = options.name ? `'${options.name}'` : 'the object';
  if (!Buffer.isBuffer(bytes)) bad(`${what} is not a Buffer`);
  if (bytes.length < 64) bad(`${what} is not an ELF file (${bytes.length} bytes is too short for an ELF header)`);
  if (bytes.readUInt32BE(0) !== 0x7f454c46) bad(`${what} is not an ELF file (bad magic)`);
  if (bytes[4] !== 2) bad(`${what} is not a 64-bit ELF file`);
  if (bytes[5] !== 1) bad(`${what} is big-endian; tsbpf reads little-endian BPF objects (-target bpf or bpfel)`);
  const elfType = bytes.readUInt16LE(16);
  const machine = bytes.readUInt16LE(18);
  if (options.requireBpf !== false && machine !== EM_BPF) {
    bad(`${what} is an ELF file for machine ${machine}, not BPF (${EM_BPF})`);
  }
  const shoff = num(bytes.readBigUInt64LE(40), 'e_shoff');
  const shentsize = bytes.readUInt16LE(58);
  let shnum = bytes.readUInt16LE(60);
  let shstrndx = bytes.readUInt16LE(62);
  if (shoff === 0) bad(`${what} has no section headers`);
  if (shentsize < 64) bad(`${what} has section headers of ${shentsize} bytes, expected 64`);
  const header = (i: number): number => {
    const at = shoff + i * shentsize;
    if (at + 64 > bytes.length) bad(`${what} is truncated: section header ${i} lies beyond the end of the file`);
    return at;
  };
  // Extended numbering: the real counts live in section header 0.
  if (shnum === 0) shnum = num(bytes.readBigUInt64LE(header(0) + 32), 'sh_size');
  if (shstrndx === SHN_XINDEX) shstrndx = bytes.readUInt32LE(header(0) + 40);
  if (shnum > 1 << 20) bad(`${what} claims ${shnum} sections`);

  const raw: Array<Omit<ElfSection, 'name' | 'data'> & { nameOff: number }> = [];
  for (let i = 0; i < shnum; i++) {
    const at = header(i);
    raw.push({
      index: i,
      nameOff: bytes.readUInt32LE(at),
      type: bytes.readUInt32LE(at + 4),
      flags: bytes.readBigUInt64LE(at + 8),
      offset: num(bytes.readBigUInt64LE(at + 24), 'sh_offset'),
      size: num(bytes.readBigUInt64LE(at + 32), 'sh_size'),
      link: bytes.readUInt32LE(at + 40),
      info: bytes.readUInt32LE(at + 44),
      addralign: num(bytes.readBigUInt64LE(at + 48), 'sh_addralign'),
      entsize: num(bytes.readBigUInt64LE(at + 56), 'sh_entsize'),
    });
  }
  const dataOf = (s: (typeof raw)[number]): Buffer => {
    if (s.type === SHT_NOBITS || s.type === SHT_NULL) return Buffer.alloc(0);
    if (s.offset + s.size > bytes.length) {
      bad(`${what} is truncated: section ${s.index} (${s.size} bytes at ${s.offset}) lies beyond the end of the file (${bytes.length} bytes)`);
    }
    return bytes.subarray(s.offset, s.offset + s.size);
  };
  if (shstrndx >= raw.length) bad(`${what} has a section name table index ${shstrndx} out of range`);
  const shstr = dataOf(raw[shstrndx]!);
  const sections: ElfSection[] = raw.map((s) => ({
    index: s.index,
    name: cstr(shstr, s.nameOff, what),
    type: s.type,
    flags: s.flags,
    offset: s.offset,
    size: s.size,
    link: s.link,
    info: s.info,
    addralign: s.addralign,
    entsize: s.entsize,
    data: dataOf(s),
  }));

  const symbols: ElfSymbol[] = [];
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (symtab) {
    if (symtab.link >= sections.length) bad(`${what} has a symbol table whose string table index is out of range`);
    const strtab = sections[symtab.link]!.data;
    const d = symtab.data;
    const n = Math.floor(d.length / 24);
    for (let i = 0; i < n; i++) {
      const at = i * 24;
      const info = d[at + 4]!;
      symbols.push({
        index: i,
        name: cstr(strtab, d.readUInt32LE(at), what),
        type: info & 0xf,
        bind: info >> 4,
        visibility: d[at + 5]! & 3,
        sectionIndex: d.readUInt16LE(at + 6),
        value: d.readBigUInt64LE(at + 8),
        size: d.readBigUInt64LE(at + 16),
      });
    }
  }

  const byName = new Map<string, ElfSection>();
  for (const s of sections) if (!byName.has(s.name)) byName.set(s.name, s);

  const file: ElfFile = {
    machine,
    elfType,
    sections,
    symbols,
    section: (name) => byName.get(name),
    relocationsFor(index) {
      const out: ElfRelocation[] = [];
      for (const s of sections) {
        if ((s.type !== SHT_REL && s.type !== SHT_RELA) || s.info !== index) continue;
        const rela = s.type === SHT_RELA;
        const ent = rela ? 24 : 16;
        for (let at = 0; at + ent <= s.data.length; at += ent) {
          const info = s.data.readBigUInt64LE(at + 8);
          const r: ElfRelocation = { offset: s.data.readBigUInt64LE(at), symbol: Number(info >> 32n), type: Number(info & 0xffffffffn) };
          if (rela) r.addend = s.data.readBigInt64LE(at + 16);
          out.push(r);
        }
      }
      return out;
    },
    programSections() {
      return sections.filter((s) => s.type === SHT_PROGBITS && (s.flags & BigInt(SHF_EXECINSTR)) !== 0n && s.size > 0);
    },
    programs() {
      const exec = new Set(file.programSections().map((s) => s.index));
      return symbols
        .filter((y) => y.type === STT_FUNC && y.bind === STB_GLOBAL && exec.has(y.sectionIndex))
        .map((y) => ({ name: y.name, section: sections[y.sectionIndex]!.name, offset: Number(y.value), size: Number(y.size) }));
    },
    symbolData(sym) {
      if (sym.sectionIndex === SHN_UNDEF || sym.sectionIndex >= SHN_LORESERVE || sym.sectionIndex >= sections.length) return undefined;
      const s = sections[sym.sectionIndex]!;
      if (s.type === SHT_NOBITS) return Buffer.alloc(Number(sym.size));
      const start = Number(sym.value);
      const end = start + Number(sym.size);
      if (end > s.data.length) return undefined;
      return s.data.subarray(start, end);
    },
  };
  return file;
}

function num(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`the object has an impossible ${what} (${v})`);
  return Number(v);
}

function cstr(table: Buffer, off: number, what: string): string {
  if (off === 0) return '';
  if (off >= table.length) bad(`${what} has a name offset ${off} outside its string table (${table.length} bytes)`);
  const end = table.indexOf(0, off);
  return table.toString('utf8', off, end === -1 ? table.length : end);
}
