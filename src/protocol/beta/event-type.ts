/**
 * Finds and rewrites the top-level `"type"` value of a JSON frame in place of
 * parsing it.
 *
 * Audio deltas are the bulk of upstream traffic (~64 KB/s of base64 per
 * session); renaming their type must not cost a JSON.parse/stringify of the
 * payload. The scan walks the top-level object structurally, so a `"type"`
 * nested inside an earlier member, or inside a string, is never mistaken for
 * the event's own. It jumps over strings with a native `indexOf`, so even a
 * frame whose `type` comes after a large payload is scanned without
 * allocating. OpenAI writes `type` first, so usually only the head is read.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const TYPE = 'type';

/** The character codes of a frame, whether it arrived as a Buffer or a string. */
interface FrameText {
  readonly length: number;
  codeAt(index: number): number | undefined;
  indexOfQuote(from: number): number;
}

function bufferText(data: Buffer): FrameText {
  return {
    length: data.length,
    codeAt: (index) => data[index],
    indexOfQuote: (from) => data.indexOf(QUOTE, from),
  };
}

function stringText(frame: string): FrameText {
  return {
    length: frame.length,
    codeAt: (index) => (index < frame.length ? frame.charCodeAt(index) : undefined),
    indexOfQuote: (from) => frame.indexOf('"', from),
  };
}

/** Where the characters of the top-level `type` value lie (quotes excluded). */
interface Span {
  readonly start: number;
  readonly end: number;
}

function isSpace(code: number | undefined): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

function skipSpace(text: FrameText, at: number): number {
  while (isSpace(text.codeAt(at))) at++;
  return at;
}

/** Index of the quote closing the string opened at `open`, or -1. */
function closingQuote(text: FrameText, open: number): number {
  let from = open + 1;
  for (;;) {
    const quote = text.indexOfQuote(from);
    if (quote === -1) return -1;
    let backslashes = 0;
    for (let i = quote - 1; i > open && text.codeAt(i) === BACKSLASH; i--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

function hasBackslash(text: FrameText, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (text.codeAt(i) === BACKSLASH) return true;
  return false;
}

function isTypeKey(text: FrameText, start: number, end: number): boolean {
  if (end - start !== TYPE.length) return false;
  for (let i = 0; i < TYPE.length; i++) if (text.codeAt(start + i) !== TYPE.charCodeAt(i)) return false;
  return true;
}

/**
 * Locates the string value of the top-level object's first `type` key.
 * Null when the frame is not an object, has no such key, or spells the key or
 * value with escapes (then only a full parse can be trusted).
 */
function locateTopLevelType(text: FrameText): Span | null {
  let at = skipSpace(text, 0);
  if (text.codeAt(at) !== OPEN_BRACE) return null;
  at++;
  let depth = 1;
  let expectingKey = true;
  while (at < text.length) {
    const code = text.codeAt(at);
    if (code === QUOTE) {
      const close = closingQuote(text, at);
      if (close === -1) return null;
      if (depth === 1 && expectingKey) {
        expectingKey = false;
        if (hasBackslash(text, at + 1, close)) return null;
        const colon = skipSpace(text, close + 1);
        if (text.codeAt(colon) !== COLON) return null;
        if (isTypeKey(text, at + 1, close)) {
          const open = skipSpace(text, colon + 1);
          if (text.codeAt(open) !== QUOTE) return null;
          const end = closingQuote(text, open);
          if (end === -1 || hasBackslash(text, open + 1, end)) return null;
          return { start: open + 1, end };
        }
        at = colon + 1;
        continue;
      }
      at = close + 1;
      continue;
    }
    if (code === OPEN_BRACE || code === OPEN_BRACKET) depth++;
    else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return null;
    } else if (code === COMMA && depth === 1) expectingKey = true;
    at++;
  }
  return null;
}

/** The top-level `type` of a text frame, read without parsing; null when it cannot be read safely. */
export function readEventType(frame: string): string | null {
  const span = locateTopLevelType(stringText(frame));
  return span ? frame.slice(span.start, span.end) : null;
}

/**
 * Returns a copy of `data` whose top-level `type` is `to`, every other byte
 * untouched. Null when the top-level `type` is not exactly `from` or cannot be
 * located safely; the caller then falls back to a full parse.
 */
export function renameEventType(data: Buffer, from: string, to: string): Buffer | null {
  const span = locateTopLevelType(bufferText(data));
  if (!span || data.toString('utf8', span.start, span.end) !== from) return null;
  const replacement = Buffer.from(JSON.stringify(to).slice(1, -1), 'utf8');
  const out = Buffer.allocUnsafe(data.length - (span.end - span.start) + replacement.length);
  data.copy(out, 0, 0, span.start);
  replacement.copy(out, span.start);
  data.copy(out, span.start + replacement.length, span.end);
  return out;
}
