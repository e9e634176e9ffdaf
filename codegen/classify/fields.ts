/**
 * The classifier's key: the packet fields a classified rule may test, each a
 * bit string that a tuple masks. One key layout per object (the union of the
 * fields its classified rules use), so every block shares one hash map.
 *
 * Presence is part of the key, so "a match on an absent field is false"
 * holds without special cases: a field the packet lacks is 0 and so is its
 * presence bit, and every entry that tests a field also requires its
 * presence (`pres` bits, or the `l4` layer code).
 *
 * In TS a conjunction of field constraints is a Uint32Array of WORDS masks
 * then WORDS values (a flat form: planning 100,000 rules allocates little).
 */

/** Presence bits of the key's `pres` field (not the parser's HAS bits). */
export const PRES = {
  /** Ethertype known (Ethernet whole, tags whole): `eth.type` present. */
  L3: 1,
  /** IPv4 or IPv6 header present: `ip.proto` present. */
  IP: 2,
  IP4: 4,
  IP6: 8,
  /** A TCP, UDP or SCTP header present: `l4.sport/dport` present. */
  PORTS: 16,
} as const;

/** Codes of the key's `l4` field: the L4 header the parser found (0: none). */
export const L4_CODE = { tcp: 6, udp: 17, sctp: 132, icmp: 1, icmp6: 58 } as const;

export type ClsField = 'pres' | 'l4' | 'proto' | 'tflags' | 'itype' | 'icode' | 'etype' | 'sport' | 'dport' | 'src' | 'dst';

/** Canonical order; also the order fields are printed in. */
export const FIELDS: readonly ClsField[] = ['pres', 'l4', 'proto', 'tflags', 'itype', 'icode', 'etype', 'sport', 'dport', 'src', 'dst'];

/** Bits of each field (addresses: 4 words; IPv4 uses the first). */
export const FIELD_BITS: Record<ClsField, number> = {
  pres: 8,
  l4: 8,
  proto: 8,
  tflags: 8,
  itype: 8,
  icode: 8,
  etype: 16,
  sport: 16,
  dport: 16,
  src: 128,
  dst: 128,
};

/** First word of each field in a conjunction. */
export const WORD: Record<ClsField, number> = { pres: 0, l4: 1, proto: 2, tflags: 3, itype: 4, icode: 5, etype: 6, sport: 7, dport: 8, src: 9, dst: 13 };
/** Words per conjunction half (masks, then values). */
export const WORDS = 17;

/**
 * A conjunction: masks in [0, WORDS), values in [WORDS, 2 * WORDS), each an
 * unsigned 32-bit number; (packet & m) == v per word. A plain array: small
 * typed arrays cost far more to allocate.
 */
export type Conj = number[];

const ZERO: readonly number[] = new Array<number>(2 * WORDS).fill(0);

export function newConj(): Conj {
  return ZERO.slice();
}

/** Set a ≤32-bit field's constraint on a fresh conjunction (no check). */
export function setWord(c: Conj, f: ClsField, m: number, v: number): Conj {
  c[WORD[f]] = m >>> 0;
  c[WORDS + WORD[f]] = (v & m) >>> 0;
  return c;
}

/** c ∧ d, or undefined when no packet meets both. */
export function meet(c: Conj, d: Conj): Conj | undefined {
  const out = new Array<number>(2 * WORDS);
  for (let i = 0; i < WORDS; i++) {
    const m1 = c[i]!;
    const m2 = d[i]!;
    const v1 = c[WORDS + i]!;
    const v2 = d[WORDS + i]!;
    if (((v1 & m2) ^ (v2 & m1)) !== 0) return undefined;
    out[i] = (m1 | m2) >>> 0;
    out[WORDS + i] = (v1 | v2) >>> 0;
  }
  return out;
}

/** Whether the conjunction constrains field f. */
export function hasField(c: Conj, f: ClsField): boolean {
  const w = WORD[f];
  if (f === 'src' || f === 'dst') return (c[w]! | c[w + 1]! | c[w + 2]! | c[w + 3]!) !== 0;
  return c[w] !== 0;
}

/** Whether an address field's mask reaches past the first word (needs an IPv6-wide key). */
export function wideAddr(c: Conj, f: 'src' | 'dst'): boolean {
  const w = WORD[f];
  return (c[w + 1]! | c[w + 2]! | c[w + 3]!) !== 0;
}

/** Scratch char codes for the ids below: one String.fromCharCode call, no string concatenation. */
const CODES: number[] = new Array<number>(4 * WORDS + 2).fill(0);

function codesOf(n: number): string {
  CODES.length = n;
  return String.fromCharCode.apply(null, CODES);
}

/** Identity of the tuple (the masks), as a short string. */
export function tupleId(c: Conj): string {
  for (let i = 0; i < WORDS; i++) {
    const m = c[i]!;
    CODES[2 * i] = m & 0xffff;
    CODES[2 * i + 1] = m >>> 16;
  }
  return codesOf(2 * WORDS);
}

/** Identity of the whole conjunction (masks and values). */
export function conjId(c: Conj): string {
  for (let i = 0; i < 2 * WORDS; i++) {
    const m = c[i]!;
    CODES[2 * i] = m & 0xffff;
    CODES[2 * i + 1] = m >>> 16;
  }
  return codesOf(4 * WORDS);
}

/**
 * Identity of an entry: the tag, then the values of the words its masks
 * constrain. The tag names the tuple, so the words left out are the same
 * ones (and zero) for every entry with that tag.
 */
export function maskedId(tag: number, c: Conj): string {
  CODES[0] = tag & 0xffff;
  CODES[1] = tag >>> 16;
  let n = 2;
  for (let i = 0; i < WORDS; i++) {
    if (c[i] === 0) continue;
    const v = c[WORDS + i]!;
    CODES[n++] = v & 0xffff;
    CODES[n++] = v >>> 16;
  }
  return codesOf(n);
}

/** Where each field lives in the key struct. */
export interface KeyField {
  field: ClsField;
  /** Byte offset in the key. */
  offset: number;
  /** Bytes: 1, 2, 4 or 16. */
  size: number;
  /** C declaration inside the struct. */
  decl: string;
}

/**
 * The layout of `struct tsbpf_cls_key` for one object: a u32 tag (block and
 * tuple id), then the fields by size (no implicit padding; explicit `_pad`
 * bytes are always zero).
 */
export interface KeyLayout {
  fields: KeyField[];
  /** Address fields hold IPv6 (16 bytes) or only their first word (4 bytes). */
  v6: boolean;
  size: number;
  /** Bytes of explicit padding at the end. */
  pad: number;
  /** The field set, for shape comparison: e.g. 'src,pres,l4,dport/4'. */
  signature: string;
}

const C_TYPE: Record<number, string> = { 1: '__u8', 2: '__u16', 4: '__u32' };

export function keyLayout(used: Iterable<ClsField>, v6: boolean): KeyLayout {
  const set = new Set<ClsField>(used);
  // pres is always there: most entries test a presence bit.
  set.add('pres');
  const fields: KeyField[] = [];
  let offset = 4; // tag
  const sizeOf = (f: ClsField) => (f === 'src' || f === 'dst' ? (v6 ? 16 : 4) : FIELD_BITS[f] / 8);
  const ordered = FIELDS.filter((f) => set.has(f)).sort((a, b) => sizeOf(b) - sizeOf(a) || FIELDS.indexOf(a) - FIELDS.indexOf(b));
  for (const f of ordered) {
    const size = sizeOf(f);
    const decl = f === 'src' || f === 'dst' ? `__u32 ${f}[${size / 4}];` : `${C_TYPE[size]} ${f};`;
    fields.push({ field: f, offset, size, decl });
    offset += size;
  }
  const pad = (4 - (offset % 4)) % 4;
  const size = offset + pad;
  const signature = `${ordered.join(',')}${v6 ? '/6' : '/4'}`;
  return { fields, v6, size, pad, signature };
}

/** The C struct of the key. */
export function keyStructC(k: KeyLayout): string {
  const lines = ['struct tsbpf_cls_key {', '\t__u32 tag;                 /* block << 8 | tuple id */'];
  for (const f of k.fields) lines.push(`\t${f.decl}`);
  if (k.pad) lines.push(`\t__u8 _pad[${k.pad}];`);
  lines.push('};');
  return lines.join('\n');
}

/**
 * Write a key (the values half of c, or with `masks` the masks half) into
 * buf at offset, host byte order (little endian).
 */
export function writeKey(k: KeyLayout, buf: Buffer, offset: number, tag: number, c: Conj, masks = false): void {
  // Byte stores: the tag and the fields cover the key but for its padding, which is zeroed.
  u32le(buf, offset, tag);
  const base = masks ? 0 : WORDS;
  const fields = k.fields;
  for (let j = 0; j < fields.length; j++) {
    const f = fields[j]!;
    const w = base + WORD[f.field];
    const at = offset + f.offset;
    const v = c[w]!;
    if (f.size === 1) buf[at] = v;
    else if (f.size === 2) {
      buf[at] = v & 255;
      buf[at + 1] = (v >>> 8) & 255;
    } else {
      u32le(buf, at, v);
      for (let i = 1; i < f.size / 4; i++) u32le(buf, at + 4 * i, c[w + i]!);
    }
  }
  for (let i = k.size - k.pad; i < k.size; i++) buf[offset + i] = 0;
}

/** A u32, little endian, by byte stores. */
export function u32le(buf: Buffer, at: number, v: number): void {
  buf[at] = v & 255;
  buf[at + 1] = (v >>> 8) & 255;
  buf[at + 2] = (v >>> 16) & 255;
  buf[at + 3] = (v >>> 24) & 255;
}

export function encodeKey(k: KeyLayout, tag: number, c: Conj, masks = false): Buffer {
  const buf = Buffer.allocUnsafe(k.size);
  writeKey(k, buf, 0, tag, c, masks);
  return buf;
}

function prefixLen(m: number, bits: number): number {
  // A prefix mask (ones then zeros) of `bits` bits: its length, else -1.
  for (let l = 0; l <= bits; l++) {
    const want = l === 0 ? 0 : (((0xffffffff << (bits - l)) >>> 0) & (bits === 32 ? 0xffffffff : (1 << bits) - 1)) >>> 0;
    if (want === m) return l;
  }
  return -1;
}

/** Text of a tuple (its masks), for explain: 'src4/32 dport l4'. */
export function tupleText(c: Conj): string {
  const parts: string[] = [];
  for (const f of FIELDS) {
    if (!hasField(c, f)) continue;
    const w = WORD[f];
    if (f === 'pres') {
      const names = Object.entries(PRES).filter(([, bit]) => (c[w]! & bit) !== 0).map(([n]) => n.toLowerCase());
      parts.push(`pres(${names.join('|')})`);
    } else if (f === 'src' || f === 'dst') {
      // Words of a prefix: full ones, then at most one partial one, then zeros.
      let len = 0;
      let open = true;
      for (let i = 0; i < 4 && len >= 0; i++) {
        const l = prefixLen(c[w + i]!, 32);
        if (l < 0 || (!open && l > 0)) len = -1;
        else {
          len += open ? l : 0;
          if (l < 32) open = false;
        }
      }
      parts.push(`${f}${wideAddr(c, f) ? '' : '4'}/${len >= 0 ? len : 'x'}`);
    } else {
      const bits = FIELD_BITS[f];
      const len = prefixLen(c[w]!, bits);
      parts.push(len === bits ? f : `${f}/${len >= 0 ? len : `0x${c[w]!.toString(16)}`}`);
    }
  }
  return parts.length ? parts.join(' ') : '(any packet)';
}
