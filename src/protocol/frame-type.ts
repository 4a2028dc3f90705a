/**
 * Reads a Realtime event's `type` from the raw frame without parsing it.
 *
 * Audio frames carry up to megabytes of base64; a full JSON.parse of each one
 * is the single largest cost a relay can pay. The scan walks the top-level
 * object only, jumps over string values with a native `indexOf`, and stops at
 * the first top-level `"type"` key, which OpenAI and the SDKs write first.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const TYPE_KEY = Buffer.from('type');

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** Index just past the closing quote of the string whose opening quote is at `start`, or -1. */
function skipString(data: Buffer, start: number): number {
  let at = start + 1;
  for (;;) {
    const quote = data.indexOf(QUOTE, at);
    if (quote === -1) return -1;
    let backslashes = 0;
    for (let i = quote - 1; i > start && data[i] === BACKSLASH; i--) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    at = quote + 1;
  }
}

function skipSpace(data: Buffer, at: number): number {
  while (at < data.length && isSpace(data[at]!)) at++;
  return at;
}

/** Index just past a nested value (object, array or scalar) starting at `at`, or -1. */
function skipValue(data: Buffer, at: number): number {
  const first = data[at];
  if (first === QUOTE) return skipString(data, at);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    while (at < data.length) {
      const byte = data[at]!;
      if (byte === COMMA || byte === CLOSE_BRACE || byte === CLOSE_BRACKET || isSpace(byte)) return at;
      at++;
    }
    return -1;
  }
  let depth = 0;
  while (at < data.length) {
    const byte = data[at]!;
    if (byte === QUOTE) {
      at = skipString(data, at);
      if (at === -1) return -1;
      continue;
    }
    if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
    else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return at + 1;
    }
    at++;
  }
  return -1;
}

function isTypeKey(data: Buffer, keyStart: number, keyEnd: number): boolean {
  // keyStart/keyEnd include the quotes.
  return keyEnd - keyStart === TYPE_KEY.length + 2 && data.compare(TYPE_KEY, 0, TYPE_KEY.length, keyStart + 1, keyEnd - 1) === 0;
}

/** Where the top-level `type` value's characters lie in a frame (quotes excluded). */
export interface TypeSpan {
  start: number;
  end: number;
  /** A backslash appears in the value or in a top-level key read before it: only a full parse can be trusted there. */
  escaped: boolean;
}

function hasBackslash(data: Buffer, start: number, end: number): boolean {
  const at = data.indexOf(BACKSLASH, start);
  return at !== -1 && at < end;
}

/** Locates the value of the top-level object's first `type` key, or null when the frame is not such an object. */
export function locateEventType(data: Buffer): TypeSpan | null {
  let escaped = false;
  let at = skipSpace(data, 0);
  if (data[at] !== OPEN_BRACE) return null;
  at++;
  for (;;) {
    at = skipSpace(data, at);
    if (data[at] !== QUOTE) return null;
    const keyStart = at;
    const keyEnd = skipString(data, keyStart);
    if (keyEnd === -1) return null;
    escaped ||= hasBackslash(data, keyStart + 1, keyEnd - 1);
    at = skipSpace(data, keyEnd);
    if (data[at] !== COLON) return null;
    at = skipSpace(data, at + 1);
    if (isTypeKey(data, keyStart, keyEnd)) {
      if (data[at] !== QUOTE) return null;
      const valueEnd = skipString(data, at);
      if (valueEnd === -1) return null;
      return { start: at + 1, end: valueEnd - 1, escaped: escaped || hasBackslash(data, at + 1, valueEnd - 1) };
    }
    at = skipValue(data, at);
    if (at === -1) return null;
    at = skipSpace(data, at);
    if (data[at] !== COMMA) return null;
    at++;
  }
}

/**
 * The top-level `type` of a JSON object frame, or undefined when the frame is
 * not an object or has no string `type` (escaped type values are read as
 * written; no Realtime event type needs escaping).
 */
export function scanEventType(data: Buffer): string | undefined {
  const bulk = leadingBulkType(data);
  if (bulk !== undefined) return bulk;
  const span = locateEventType(data);
  return span ? data.toString('utf8', span.start, span.end) : undefined;
}

/** `{"type":"`, then each bulk type with its closing quote, as bytes. */
const LEADING_TYPE = [...Buffer.from('{"type":"')];
let bulkTypeBytes: Array<{ type: string; bytes: number[] }> | undefined;

function bytesAt(data: Buffer, bytes: number[], at: number): boolean {
  if (data.length < at + bytes.length) return false;
  // For a few dozen bytes a JS loop is several times cheaper than a native Buffer.compare call.
  for (let i = 0; i < bytes.length; i++) if (data[at + i] !== bytes[i]) return false;
  return true;
}

/**
 * The fast path for audio frames as OpenAI and the SDKs write them (type
 * first, unspaced): the type is matched in place and no string is made.
 * Anything else is left to the full scan, which would read the same type.
 */
function leadingBulkType(data: Buffer): string | undefined {
  if (!bytesAt(data, LEADING_TYPE, 0)) return undefined;
  bulkTypeBytes ??= [...BULK_EVENT_TYPES].map((type) => ({ type, bytes: [...Buffer.from(`${type}"`)] }));
  for (const { type, bytes } of bulkTypeBytes) if (bytesAt(data, bytes, LEADING_TYPE.length)) return type;
  return undefined;
}

/** Events whose payload is bulk audio: forwarded without ever being parsed. */
export const BULK_EVENT_TYPES: ReadonlySet<string> = new Set([
  'input_audio_buffer.append',
  'response.output_audio.delta',
  'response.audio.delta',
]);
