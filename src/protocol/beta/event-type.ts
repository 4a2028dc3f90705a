import { locateEventType } from '../frame-type.js';

/**
 * Reads and rewrites the top-level `"type"` value of a JSON frame in place of
 * parsing it (the scan itself lives in ../frame-type.ts).
 *
 * Audio deltas are the bulk of upstream traffic (~64 KB/s of base64 per
 * session); renaming their type must not cost a JSON.parse/stringify of the
 * payload. Where escapes make the head ambiguous, these return null and the
 * caller falls back to a full parse.
 */

/** The top-level `type` of a text frame, read without parsing; null when it cannot be read safely. */
export function readEventType(frame: string): string | null {
  const data = Buffer.from(frame, 'utf8');
  const span = locateEventType(data);
  return span && !span.escaped ? data.toString('utf8', span.start, span.end) : null;
}

/**
 * Returns a copy of `data` whose top-level `type` is `to`, every other byte
 * untouched. Null when the top-level `type` is not exactly `from` or cannot be
 * located safely; the caller then falls back to a full parse.
 */
export function renameEventType(data: Buffer, from: string, to: string): Buffer | null {
  const span = locateEventType(data);
  if (!span || span.escaped || data.toString('utf8', span.start, span.end) !== from) return null;
  const replacement = Buffer.from(JSON.stringify(to).slice(1, -1), 'utf8');
  const out = Buffer.allocUnsafe(data.length - (span.end - span.start) + replacement.length);
  data.copy(out, 0, 0, span.start);
  replacement.copy(out, span.start);
  data.copy(out, span.start + replacement.length, span.end);
  return out;
}
