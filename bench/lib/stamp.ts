/**
 * Send times carried inside frames, as `"event_id":"t<ns>"`. The clock is
 * process.hrtime (CLOCK_MONOTONIC), which every process on the machine
 * shares, so a stamp written in one process is read against the clock of
 * another without skew.
 */
const MARKER = Buffer.from('"event_id":"t');
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
/** Stamps sit near the start of a frame; a frame without one is not searched further. */
const SEARCH_WINDOW = 96;

export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

export function stamp(): string {
  return `t${process.hrtime.bigint()}`;
}

/** The stamp in `frame` in nanoseconds, or -1. */
export function readStamp(frame: Buffer): number {
  const window = frame.length < SEARCH_WINDOW ? frame : frame.subarray(0, SEARCH_WINDOW);
  const at = window.indexOf(MARKER);
  if (at === -1) return -1;
  let value = 0;
  for (let i = at + MARKER.length; i < frame.length; i++) {
    const byte = frame[i]!;
    if (byte < DIGIT_0 || byte > DIGIT_9) return value;
    value = value * 10 + (byte - DIGIT_0);
  }
  return -1;
}

/** Microseconds since the stamp in `frame`, or -1 when it carries none. */
export function ageMicros(frame: Buffer): number {
  const sent = readStamp(frame);
  return sent < 0 ? -1 : (nowNs() - sent) / 1000;
}

/** True when `frame` is a JSON object whose first key is `"type":"<type>"`, as the Realtime API writes them. */
export function hasLeadingType(frame: Buffer, typePrefix: Buffer): boolean {
  return frame.length >= typePrefix.length && frame.compare(typePrefix, 0, typePrefix.length, 0, typePrefix.length) === 0;
}

export function leadingType(type: string): Buffer {
  return Buffer.from(`{"type":"${type}"`);
}
