/**
 * Plain, JSON-safe copies of values that leave the process for someone to
 * look at (the Stately inspector). Keys and audio never leave: fields that
 * carry them are replaced by name, and strings that look like them are
 * replaced by shape, in case one turns up where no field name says so.
 */

export const REDACTED = '[redacted]';

/** Field names whose values are never shown. */
const SECRET_FIELDS = new Set(['key', 'apikey', 'api_key', 'authorization', 'audio', 'delta', 'ports', 'password', 'token', 'secret']);

/**
 * Relay keys (rk_…), client secrets (ek_…), OpenAI keys (sk-…), bearer tokens, and long base64 runs
 * (audio, or a key without a known prefix). Ordinary identifiers are shorter
 * than 64 characters or contain other characters.
 */
const SECRET_SHAPES = [/\brk_[A-Za-z0-9_-]{8,}/g, /\bek_[A-Za-z0-9_-]{8,}/g, /\bsk-[A-Za-z0-9_-]{8,}/g, /\bBearer\s+\S+/gi, /[A-Za-z0-9+/_-]{64,}={0,2}/g];

export function redactString(text: string): string {
  let out = text;
  for (const shape of SECRET_SHAPES) out = out.replace(shape, REDACTED);
  return out;
}

export interface RedactOptions {
  /** Nesting deeper than this is cut off. Default 6. */
  maxDepth?: number;
}

/**
 * A copy of `value` made of plain objects, arrays, strings, finite numbers,
 * booleans and null. Functions are dropped, bigints become strings, errors
 * keep their name, code and message, and cycles end in "[circular]".
 */
export function redactValue(value: unknown, options: RedactOptions = {}): unknown {
  return copy(value, options.maxDepth ?? 6, new WeakSet());
}

function copy(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  switch (typeof value) {
    case 'string':
      return redactString(value);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
      return undefined;
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return null;
  const object = value as object;
  if (seen.has(object)) return '[circular]';
  if (depth <= 0) return '[…]';
  if (object instanceof Error) return errorView(object);
  if (object instanceof Date) return object.toISOString();
  if (Buffer.isBuffer(object) || ArrayBuffer.isView(object) || object instanceof ArrayBuffer) return REDACTED;
  seen.add(object);
  try {
    if (Array.isArray(object)) return object.map((item) => copy(item, depth - 1, seen) ?? null);
    const out: Record<string, unknown> = {};
    for (const [field, item] of Object.entries(object)) {
      if (SECRET_FIELDS.has(field.toLowerCase())) {
        out[field] = REDACTED;
        continue;
      }
      const copied = copy(item, depth - 1, seen);
      if (copied !== undefined) out[field] = copied;
    }
    return out;
  } finally {
    seen.delete(object);
  }
}

/** An error as the inspector may see it: never its cause, which may hold a request or a response. */
export function errorView(error: unknown): { name: string; code?: string; message: string } | null {
  if (error === undefined || error === null) return null;
  if (!(error instanceof Error)) return { name: 'Error', message: redactString(String(error)) };
  const code = (error as { code?: unknown }).code;
  return { name: error.name, ...(typeof code === 'string' ? { code } : {}), message: redactString(error.message) };
}
