/** JSON text for a usage or summary column. Bigints are written as decimal strings. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value ?? null, function bigintAsString(_key, v: unknown) {
    return typeof v === 'bigint' ? v.toString() : v;
  });
}

export function fromJsonText(text: string): unknown {
  return JSON.parse(text) as unknown;
}
