/** Rendering typed map values for the terminal and for JSON. */
export function toPlain(v: unknown): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (Array.isArray(v)) return v.map(toPlain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('_pad')).map(([k, x]) => [k, toPlain(x)]));
  return v;
}

export function inline(v: unknown): string {
  const p = toPlain(v);
  return typeof p === 'string' ? p : JSON.stringify(p);
}
