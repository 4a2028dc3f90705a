import { Writable } from 'node:stream';

/** One JSON line of the relay's log, parsed; a line that is not JSON is kept as `{ level: 0, msg }`. */
export interface LogLine {
  level: number;
  msg?: string;
  [field: string]: unknown;
}

export function parseLogLine(text: string): LogLine {
  try {
    return JSON.parse(text) as LogLine;
  } catch {
    return { level: 0, msg: text };
  }
}

/**
 * Feeds a stream of text in chunks, calls `onLine` with each whole non-blank
 * line; a line cut between two chunks waits for the rest.
 */
export function lineReader(onLine: (line: string) => void): (chunk: string) => void {
  let partial = '';
  return function readChunk(chunk) {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line.trim() !== '') onLine(line);
  };
}

/** A pino destination that keeps each line it is given, as text, in `lines`. */
export function logTextSink(lines: string[]): Writable {
  const read = lineReader((line) => lines.push(line));
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      read(chunk.toString('utf8'));
      done();
    },
  });
}
