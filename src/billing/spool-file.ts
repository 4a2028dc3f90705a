import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The files that keep ledger writes across a restart, one JSON object per
 * line. A process can die in the middle of an append (kill -9, a full disk),
 * so a reader never trusts the last line to be whole: every line that does
 * not parse is handed back apart, to be quarantined, instead of stopping the
 * read. Appends write whole lines in one buffer and fsync before returning,
 * so a line that was reported written survives the process.
 */

/** Where each file of one spool lives, beside the spool itself. */
export interface SpoolFiles {
  /** Writes pending when the process stopped: `unwritten.jsonl`. */
  spool: string;
  /** A spool being replayed; left behind only by a crash during the replay. */
  claimed: string;
  /** Lines that could not be read (a torn last line), kept for the operator. */
  quarantine: string;
  /** Writes the ledger refused again and again; replayed by `relay spool replay --dead-letter`. */
  deadLetter: string;
}

/** The spool of a relay whose data folder is `dataDir`. */
export function spoolPathIn(dataDir: string): string {
  return join(dataDir, 'unwritten.jsonl');
}

export function spoolFiles(spoolPath: string): SpoolFiles {
  const base = spoolPath.replace(/\.jsonl$/, '');
  return { spool: spoolPath, claimed: `${spoolPath}.replaying`, quarantine: `${base}.quarantined.jsonl`, deadLetter: `${base}.dead-letter.jsonl` };
}

export interface ReadLines {
  /** Each line that parsed as a JSON object. */
  records: Array<Record<string, unknown>>;
  /** Each non-empty line that did not. */
  unreadable: string[];
}

export function readJsonLines(path: string): ReadLines {
  const result: ReadLines = { records: [], unreadable: [] };
  if (!existsSync(path)) return result;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) result.records.push(value as Record<string, unknown>);
      else result.unreadable.push(line);
    } catch {
      result.unreadable.push(line);
    }
  }
  return result;
}

function writeAll(fd: number, buffer: Buffer): void {
  let offset = 0;
  while (offset < buffer.length) offset += writeSync(fd, buffer, offset, buffer.length - offset);
}

/**
 * Appends whole lines and syncs them. A file whose last line was torn by a
 * crash gets a newline first, so the torn line stays alone (and is
 * quarantined on read) instead of swallowing the first new line.
 */
export function appendJsonLines(path: string, records: readonly unknown[]): void {
  if (records.length === 0) return;
  const fd = openSync(path, 'a+');
  try {
    const size = fstatSync(fd).size;
    let lead = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) lead = '\n';
    }
    writeAll(fd, Buffer.from(lead + records.map((record) => `${JSON.stringify(record)}\n`).join(''), 'utf8'));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces the file's content at once (a temp file renamed over it); no records removes it. */
export function rewriteJsonLines(path: string, records: readonly unknown[]): void {
  if (records.length === 0) {
    rmSync(path, { force: true });
    return;
  }
  const temp = `${path}.tmp`;
  rmSync(temp, { force: true });
  appendJsonLines(temp, records);
  renameSync(temp, path);
}
