/**
 * Reads a Realtime event's `type` from the raw frame without parsing it, and
 * reads it the way the upstream's JSON parser will.
 *
 * Audio frames carry up to megabytes of base64; a full JSON.parse of each one
 * is the single largest cost a relay can pay. So the scan walks the top-level
 * object only and jumps over each string value with a native `indexOf` for its
 * closing quote (a memchr over the base64). It walks every top-level member,
 * not just the first: the relay decides what a frame costs from its type (a
 * `response.create` is refused below the key's reserve), so the type it reads
 * must be the one the upstream acts on, whatever else the frame holds.
 *
 * The rules, each chosen so that a type the relay did not check never reaches
 * the upstream:
 * - The frame is one JSON object and nothing but whitespace follows it: a
 *   streaming parser would read a second object after the first.
 * - Exactly one top-level key is `type`. A second one (however spelled) makes
 *   the frame unreadable, because parsers disagree on which wins: JSON.parse,
 *   Python and Go take the last, others the first or refuse.
 * - A top-level key that equals `type` but for letter case (`"Type"`) makes the
 *   frame unreadable: Go's encoding/json matches keys case-insensitively.
 * - Keys and the type value spelled with escapes (`"typ\u0065"`,
 *   `"response.cre\u0061te"`) are decoded with JSON.parse of that one string,
 *   the reading every parser shares, then judged by the rules above. Nothing
 *   else of the frame is parsed; no SDK escapes these, so this costs nothing in
 *   practice.
 * - C-string parsers stop at U+0000: a key that reads as `type` up to one
 *   (`"type\u0000x"`) is a spelling of `type`, and a type value holding one
 *   is unreadable.
 * - Raw control characters in a key or the type value, malformed separators,
 *   strings or literals at the top level: unreadable (JSON.parse refuses them
 *   too).
 * Top-level numbers are checked for their characters only, and nested objects
 * and arrays are skipped by counting brackets outside strings: both exact for
 * valid JSON, which is all that decides where a value ends. What is invalid
 * inside them is left to the upstream's parser to refuse.
 *
 * "Unreadable" is `undefined` from `scanEventType`: the caller refuses a client
 * frame as `invalid_frame` and passes an upstream frame on untouched. Upstream
 * frames are trusted but read by the same rules: walking the whole frame costs
 * a memchr per string value (bench/scan-type.ts measures it), less than keeping
 * a second reading in step with this one.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const FIRST_PRINTABLE = 0x20;
const TYPE_KEY = [...Buffer.from('type')];

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/**
 * Index just past the closing quote of the string whose opening quote is at
 * `start`, or -1. One memchr per quote, whatever the string's length: a native
 * indexOf costs about what a JS loop over a dozen bytes does, and audio is
 * kilobytes. A quote closes the string when an even number of backslashes
 * precedes it.
 */
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

/** Bytes a JSON number is written with; which order they come in does not move any key. */
function isNumberByte(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x2b || byte === 0x2e || byte === 0x65 || byte === 0x45;
}

const LITERALS = ['true', 'false', 'null'].map((literal) => [...Buffer.from(literal)]);

/** Index just past a number or literal starting at `at`, or -1 when it is neither. */
function skipScalar(data: Buffer, at: number): number {
  const first = data[at];
  if (first === undefined) return -1;
  if (first === 0x2d || (first >= 0x30 && first <= 0x39)) {
    while (at < data.length && isNumberByte(data[at]!)) at++;
    return at;
  }
  for (const literal of LITERALS) if (bytesAt(data, literal, at)) return at + literal.length;
  return -1;
}

/** Index just past the value (string, object, array or scalar) starting at `at`, or -1. */
function skipValue(data: Buffer, at: number): number {
  const first = data[at];
  if (first === QUOTE) return skipString(data, at);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) return skipScalar(data, at);
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

/** The JSON string whose quotes are at `start` and `end - 1`, decoded; undefined when its escapes are invalid. */
function decodeString(data: Buffer, start: number, end: number): string | undefined {
  try {
    return JSON.parse(data.toString('utf8', start, end)) as string;
  } catch {
    return undefined;
  }
}

/** Whether `name`, up to any U+0000, is `type` in any letter case. */
function spellsType(name: string): boolean {
  const nul = name.indexOf('\u0000');
  const head = nul === -1 ? name : name.slice(0, nul);
  if (head.length !== TYPE_KEY.length) return false;
  for (let i = 0; i < TYPE_KEY.length; i++) if ((head.charCodeAt(i) | 0x20) !== TYPE_KEY[i]) return false;
  return true;
}

/** What a top-level key means for the type: another key, `type` (as written or spelled with escapes), or a frame not to be read. */
const OTHER_KEY = 0;
const THE_TYPE_KEY = 1;
const THE_TYPE_KEY_ESCAPED = 2;
const UNREADABLE_KEY = 3;

/** How a top-level key whose quotes are at `start` and `end - 1` reads. */
function classifyKey(data: Buffer, start: number, end: number): number {
  let escaped = false;
  for (let i = start + 1; i < end - 1; i++) {
    const byte = data[i]!;
    if (byte < FIRST_PRINTABLE) return UNREADABLE_KEY;
    if (byte === BACKSLASH) escaped = true;
  }
  if (escaped) {
    const name = decodeString(data, start, end);
    if (name === undefined) return UNREADABLE_KEY;
    if (!spellsType(name)) return OTHER_KEY;
    return name === 'type' ? THE_TYPE_KEY_ESCAPED : UNREADABLE_KEY;
  }
  if (end - start !== TYPE_KEY.length + 2) return OTHER_KEY;
  let exact = true;
  for (let i = 0; i < TYPE_KEY.length; i++) {
    const byte = data[start + 1 + i]!;
    if ((byte | 0x20) !== TYPE_KEY[i]) return OTHER_KEY;
    if (byte !== TYPE_KEY[i]) exact = false;
  }
  return exact ? THE_TYPE_KEY : UNREADABLE_KEY;
}

/**
 * Where the walk found the type value (its opening quote, the index past its
 * closing quote) and whether its key was spelled with escapes. Module state,
 * so that reading an audio frame allocates nothing; every walk sets it before
 * reading it.
 */
let typeQuote = -1;
let typeEnd = -1;
let typeKeyEscaped = false;

/**
 * Walks the top-level members from `at` to the end of the frame: just past
 * the `{` when `afterValue` is false, just past a member's value when true.
 * True when the rest of the frame is well formed and `type` is not met again
 * (the span of the one met is left in typeQuote/typeEnd).
 */
function walkMembers(data: Buffer, at: number, afterValue: boolean): boolean {
  for (;;) {
    at = skipSpace(data, at);
    if (afterValue) {
      if (data[at] === CLOSE_BRACE) return skipSpace(data, at + 1) === data.length;
      if (data[at] !== COMMA) return false;
      at = skipSpace(data, at + 1);
    }
    if (data[at] !== QUOTE) return false;
    const keyStart = at;
    const keyEnd = skipString(data, keyStart);
    if (keyEnd === -1) return false;
    const key = classifyKey(data, keyStart, keyEnd);
    if (key === UNREADABLE_KEY) return false;
    at = skipSpace(data, keyEnd);
    if (data[at] !== COLON) return false;
    at = skipSpace(data, at + 1);
    if (key === THE_TYPE_KEY || key === THE_TYPE_KEY_ESCAPED) {
      if (typeQuote !== -1 || data[at] !== QUOTE) return false;
      typeKeyEscaped = key === THE_TYPE_KEY_ESCAPED;
      typeQuote = at;
      at = typeEnd = skipString(data, at);
    } else at = skipValue(data, at);
    if (at === -1) return false;
    afterValue = true;
  }
}

/** Walks the whole frame; true when it is one object with exactly one top-level `type` whose value is a string. */
function findType(data: Buffer): boolean {
  typeQuote = -1;
  const at = skipSpace(data, 0);
  return data[at] === OPEN_BRACE && walkMembers(data, at + 1, false) && typeQuote !== -1;
}

const PLAIN = 0;
const ESCAPED = 1;
const INVALID = 2;

/** How the type value found is written: as its characters, with escapes, or with a raw control character (invalid JSON). */
function typeSpelling(data: Buffer): number {
  let spelling = PLAIN;
  for (let i = typeQuote + 1; i < typeEnd - 1; i++) {
    const byte = data[i]!;
    if (byte < FIRST_PRINTABLE) return INVALID;
    if (byte === BACKSLASH) spelling = ESCAPED;
  }
  return spelling;
}

/** Where the top-level `type` value's characters lie in a frame (quotes excluded). */
export interface TypeSpan {
  start: number;
  end: number;
  /** The key or the value is spelled with escapes: the bytes are not what they read as, so rewriting them in place is left to a full parse. */
  escaped: boolean;
}

/** Locates the value of the one top-level `type` key, or null when the frame has no type the relay can read. */
export function locateEventType(data: Buffer): TypeSpan | null {
  if (!findType(data)) return null;
  const spelling = typeSpelling(data);
  if (spelling === INVALID || (spelling === ESCAPED && decodedType(data) === undefined)) return null;
  return { start: typeQuote + 1, end: typeEnd - 1, escaped: spelling === ESCAPED || typeKeyEscaped };
}

/** The escaped type value found, decoded; undefined when its escapes are invalid or it holds U+0000. */
function decodedType(data: Buffer): string | undefined {
  const type = decodeString(data, typeQuote, typeEnd);
  return type === undefined || type.includes('\u0000') ? undefined : type;
}

/**
 * The top-level `type` of a frame as the upstream will read it, or undefined
 * when the frame is not a JSON object with one readable string `type` (see the
 * rules above).
 */
export function scanEventType(data: Buffer): string | undefined {
  const bulk = leadingBulkType(data);
  if (bulk !== undefined) return walkMembers(data, typeEnd, true) ? bulk : undefined;
  if (!findType(data)) return undefined;
  const spelling = typeSpelling(data);
  if (spelling === INVALID) return undefined;
  return spelling === ESCAPED ? decodedType(data) : data.toString('utf8', typeQuote + 1, typeEnd - 1);
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
 * first, unspaced): the type is matched in place and no string is made. On a
 * match the type's span is set, and the caller still walks the members after
 * it (a second `type` may follow the audio). Anything else is left to the full
 * walk, which would read the same type.
 */
function leadingBulkType(data: Buffer): string | undefined {
  if (!bytesAt(data, LEADING_TYPE, 0)) return undefined;
  bulkTypeBytes ??= [...BULK_EVENT_TYPES].map((type) => ({ type, bytes: [...Buffer.from(`${type}"`)] }));
  for (const { type, bytes } of bulkTypeBytes) {
    if (bytesAt(data, bytes, LEADING_TYPE.length)) {
      typeQuote = LEADING_TYPE.length - 1;
      typeEnd = LEADING_TYPE.length + bytes.length;
      return type;
    }
  }
  return undefined;
}

/** Events whose payload is bulk audio: forwarded without ever being parsed. */
export const BULK_EVENT_TYPES: ReadonlySet<string> = new Set([
  'input_audio_buffer.append',
  'response.output_audio.delta',
  'response.audio.delta',
]);
