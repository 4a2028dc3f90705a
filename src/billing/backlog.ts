import { existsSync, renameSync, rmSync } from 'node:fs';
import { basename } from 'node:path';
import { isLedgerError, type ChargeInput, type Ledger, type SettlementInput } from './ledger/index.js';
import { isLockedError } from './ledger/lock-wait.js';
import { appendJsonLines, readJsonLines, rewriteJsonLines, spoolFiles, type SpoolFiles } from './spool-file.js';

/**
 * Ledger writes that could not be made when they were due. They are retried
 * until the ledger answers, and written to a spool file when the process
 * stops, to be replayed on the next start. Every write is idempotent in the
 * ledger (charges are unique per item, settlements per session), so a
 * replay never counts anything twice — which is what lets a replay that a
 * crash interrupted simply run again.
 *
 * Each write is retried on its own: one the ledger keeps refusing cannot hold
 * back the others. After MAX_WRITE_ATTEMPTS refusals while the ledger is
 * otherwise taking writes it is moved to the dead-letter file beside the
 * spool, for the operator to inspect and replay (`relay spool replay
 * --dead-letter`). An outage (the same refusal for every write) moves nothing.
 *
 * Order within a session: a settlement records the totals of the charges
 * written so far, so it waits while a charge of its session is still
 * pending. When that charge is dead-lettered the settlement follows it into
 * the dead-letter file (and so does any later settlement of that session):
 * the session is never settled without a charge it owes.
 */
export type PendingWrite = { kind: 'charge'; charge: ChargeInput } | { kind: 'settlement'; settlement: SettlementInput };

/** Refusals, while the ledger is otherwise answering, before a write is moved to the dead-letter file. */
export const MAX_WRITE_ATTEMPTS = 5;

export interface BacklogHooks {
  /** Unreadable spool lines (torn by a crash) were moved to the quarantine file. */
  quarantined(lines: readonly string[], file: string): void;
  /** A write was moved to the dead-letter file. */
  deadLettered(write: PendingWrite, reason: string, file: string): void;
}

export interface BacklogOptions {
  retryMs?: number;
  maxAttempts?: number;
  hooks?: Partial<BacklogHooks>;
  onWritten?: (write: PendingWrite) => void;
  /**
   * A harmless write (the instance's heartbeat) that tells whether the
   * ledger takes writes at all, when a pass wrote nothing else.
   */
  probe?: () => Promise<unknown>;
}

/** What a spool replay really did, entry by entry. */
export interface ReplayReport {
  /** Entries written to the ledger (or found already there). */
  written: number;
  /** Entries the ledger did not take yet: retried in the background, spooled again on stop. */
  pending: number;
  /** Unreadable lines moved to the quarantine file. */
  quarantined: number;
  /** Entries moved to the dead-letter file. */
  deadLettered: number;
}

interface Spooled {
  kind: 'charge' | 'settlement';
  data: Record<string, unknown>;
  /** Refusals so far, kept across restarts so that a poison write does reach the dead-letter file. */
  attempts?: number;
  /** The last refusal, for the operator reading a dead-letter file. */
  error?: string;
}

interface Entry {
  write: PendingWrite;
  attempts: number;
  lastError?: string;
  /** Read from the claimed spool, whose file is kept until these are written. */
  claimed: boolean;
  outcome?: 'written' | 'dead';
}

function toSpool(entry: Pick<Entry, 'write' | 'attempts' | 'lastError'>): Spooled {
  const { write } = entry;
  const data = write.kind === 'charge' ? { ...write.charge, costNano: write.charge.costNano.toString() } : { ...write.settlement, endedAt: write.settlement.endedAt.toISOString() };
  return { kind: write.kind, data, ...(entry.attempts > 0 ? { attempts: entry.attempts } : {}), ...(entry.lastError ? { error: entry.lastError } : {}) };
}

/** A spooled record as a write, or null if it is not one (it is then quarantined like a torn line). */
function fromSpool(record: Record<string, unknown>): { write: PendingWrite; attempts: number; lastError?: string } | null {
  const data = record.data as Record<string, unknown> | undefined;
  if (typeof data !== 'object' || data === null || typeof data.sessionId !== 'string') return null;
  const attempts = typeof record.attempts === 'number' && record.attempts >= 0 ? record.attempts : 0;
  const known = { attempts, ...(typeof record.error === 'string' ? { lastError: record.error } : {}) };
  if (record.kind === 'charge' && typeof data.costNano === 'string' && /^\d+$/.test(data.costNano)) {
    return { write: { kind: 'charge', charge: { ...(data as unknown as ChargeInput), costNano: BigInt(data.costNano) } }, ...known };
  }
  if (record.kind === 'settlement' && typeof data.endedAt === 'string' && !Number.isNaN(Date.parse(data.endedAt))) {
    return { write: { kind: 'settlement', settlement: { ...(data as unknown as SettlementInput), endedAt: new Date(data.endedAt) } }, ...known };
  }
  return null;
}

function sessionOf(write: PendingWrite): string {
  return write.kind === 'charge' ? write.charge.sessionId : write.settlement.sessionId;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? `${(error as { code?: unknown }).code ?? error.name}: ${error.message}` : String(error);
}

function write(ledger: Ledger, pending: PendingWrite): Promise<unknown> {
  return pending.kind === 'charge' ? ledger.recordCharge(pending.charge) : ledger.settleSession(pending.settlement);
}

/** A write as read back from a file, with what is known of its refusals. */
type ReadEntry = NonNullable<ReturnType<typeof fromSpool>>;

/** Reads a spool-format file; lines that are not writes are returned apart, as read. */
function readSpool(path: string): { entries: ReadEntry[]; unreadable: string[] } {
  const { records, unreadable } = readJsonLines(path);
  const entries: ReadEntry[] = [];
  for (const record of records) {
    const entry = fromSpool(record);
    if (entry) entries.push(entry);
    else unreadable.push(JSON.stringify(record));
  }
  return { entries, unreadable };
}

function quarantine(files: SpoolFiles, source: string, lines: readonly string[], hooks: Partial<BacklogHooks>): void {
  if (lines.length === 0) return;
  const at = new Date().toISOString();
  appendJsonLines(files.quarantine, lines.map((line) => ({ quarantinedAt: at, from: basename(source), line })));
  hooks.quarantined?.(lines, files.quarantine);
}

export class WriteBacklog {
  private readonly pending: Entry[] = [];
  private readonly files: SpoolFiles | null;
  private readonly retryMs: number;
  private readonly maxAttempts: number;
  private readonly hooks: Partial<BacklogHooks>;
  private readonly onWritten: (write: PendingWrite) => void;
  private readonly probe: (() => Promise<unknown>) | undefined;
  /** Sessions with a charge in the dead-letter file: their settlements go there too. */
  private readonly deadSessions = new Set<string>();
  /** How many claimed entries the claimed file holds; null when there is no claimed file. */
  private claimedOnDisk: number | null = null;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly ledger: Ledger,
    spoolPath: string | null,
    options: BacklogOptions = {},
  ) {
    this.files = spoolPath ? spoolFiles(spoolPath) : null;
    this.retryMs = options.retryMs ?? 1_000;
    this.maxAttempts = options.maxAttempts ?? MAX_WRITE_ATTEMPTS;
    this.hooks = options.hooks ?? {};
    this.onWritten = options.onWritten ?? (() => undefined);
    this.probe = options.probe;
  }

  get size(): number {
    return this.pending.length;
  }

  /** Sessions with a charge not written: still pending, or in the dead-letter file. */
  sessionsOwed(): Set<string> {
    const owed = new Set(this.deadSessions);
    for (const entry of this.pending) if (entry.write.kind === 'charge') owed.add(entry.write.charge.sessionId);
    return owed;
  }

  add(write: PendingWrite): void {
    this.pending.push({ write, attempts: 0, claimed: false });
    this.schedule();
  }

  /** Tries every pending write once, each on its own; keeps what still fails. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    let wroteAny = false;
    let probed: boolean | null | undefined;
    const refused: Array<{ entry: Entry; error: unknown }> = [];
    for (const entry of [...this.pending]) {
      if (!this.pending.includes(entry)) continue;
      if (entry.write.kind === 'settlement') {
        const sessionId = entry.write.settlement.sessionId;
        if (this.deadSessions.has(sessionId)) {
          this.deadLetter(entry, 'a charge of this session is in the dead-letter file');
          continue;
        }
        // Held: the settlement would record totals without that charge.
        if (this.pending.some((other) => other.write.kind === 'charge' && other.write.charge.sessionId === sessionId)) continue;
      }
      try {
        await write(this.ledger, entry.write);
      } catch (error) {
        refused.push({ entry, error });
        // Nothing written yet and the ledger is locked or not taking writes:
        // every other write would wait and fail the same way, so the pass
        // ends here (a stop then spools at once instead of waiting on each).
        if (!wroteAny && isLockedError(error)) break;
        if (!wroteAny && isLedgerError(error, 'ledger_unavailable')) {
          probed ??= await this.probeAnswers();
          if (probed === false) break;
        }
        continue;
      }
      wroteAny = true;
      entry.outcome = 'written';
      this.remove(entry);
      this.onWritten(entry.write);
    }
    // An unavailable ledger refuses every write alike: that counts against
    // no entry, or an outage would dead-letter everything. It counts when
    // the ledger took another write in the same pass, or the probe after it.
    const answering = wroteAny || probed === true;
    for (const { entry, error } of refused) {
      entry.lastError = reasonOf(error);
      if (!isLedgerError(error, 'ledger_unavailable') || answering) entry.attempts++;
      if (entry.attempts >= this.maxAttempts && this.pending.includes(entry)) this.deadLetter(entry, entry.lastError);
    }
    this.saveClaim();
    if (this.pending.length > 0) this.schedule();
  }

  /** Whether the ledger takes the probe write; null without a probe. */
  private async probeAnswers(): Promise<boolean | null> {
    if (!this.probe) return null;
    try {
      await this.probe();
      return true;
    } catch {
      return false;
    }
  }

  private remove(entry: Entry): void {
    const index = this.pending.indexOf(entry);
    if (index >= 0) this.pending.splice(index, 1);
  }

  /**
   * Moves a write (and, for a charge, the pending settlements of its
   * session) to the dead-letter file. Without a spool file there is nowhere
   * to put it: it stays pending, retried on its own, blocking nothing else.
   */
  private deadLetter(entry: Entry, reason: string): void {
    if (!this.files) return;
    const moved = [entry];
    if (entry.write.kind === 'charge') {
      const sessionId = entry.write.charge.sessionId;
      this.deadSessions.add(sessionId);
      moved.push(...this.pending.filter((other) => other.write.kind === 'settlement' && other.write.settlement.sessionId === sessionId));
    }
    appendJsonLines(this.files.deadLetter, moved.map((m) => toSpool({ ...m, lastError: m.lastError ?? reason })));
    for (const m of moved) {
      m.outcome = 'dead';
      this.remove(m);
      this.hooks.deadLettered?.(m.write, m.lastError ?? reason, this.files.deadLetter);
    }
  }

  /** Keeps the claimed file equal to the claimed entries not yet written: a crash now replays only those. */
  private saveClaim(): void {
    if (!this.files || this.claimedOnDisk === null) return;
    const left = this.pending.filter((entry) => entry.claimed);
    if (left.length === this.claimedOnDisk) return;
    rewriteJsonLines(this.files.claimed, left.map(toSpool));
    this.claimedOnDisk = left.length === 0 ? null : left.length;
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.retryMs);
    this.timer.unref();
  }

  /**
   * Replays writes a previous process left: its spool, and a claimed spool
   * whose replay a crash interrupted (both, merged, when both exist).
   * Unreadable lines are quarantined; the rest is written once here, and
   * what the ledger does not take yet stays pending (and claimed on disk).
   */
  async replaySpool(): Promise<ReplayReport> {
    const report: ReplayReport = { written: 0, pending: 0, quarantined: 0, deadLettered: 0 };
    const files = this.files;
    if (!files || (!existsSync(files.spool) && !existsSync(files.claimed))) return report;
    const claimed = readSpool(files.claimed);
    const spooled = readSpool(files.spool);
    quarantine(files, files.claimed, claimed.unreadable, this.hooks);
    quarantine(files, files.spool, spooled.unreadable, this.hooks);
    report.quarantined = claimed.unreadable.length + spooled.unreadable.length;
    const entries: Entry[] = [...claimed.entries, ...spooled.entries].map((e) => ({ ...e, claimed: true }));
    // The merged claim is on disk before the spool goes: a crash from here on replays all of it again.
    rewriteJsonLines(files.claimed, entries.map(toSpool));
    rmSync(files.spool, { force: true });
    this.claimedOnDisk = entries.length === 0 ? null : entries.length;
    for (const record of readSpool(files.deadLetter).entries) {
      if (record.write.kind === 'charge') this.deadSessions.add(record.write.charge.sessionId);
    }
    this.pending.unshift(...entries);
    await this.flush();
    for (const entry of entries) {
      if (entry.outcome === 'written') report.written++;
      else if (entry.outcome === 'dead') report.deadLettered++;
      else report.pending++;
    }
    return report;
  }

  /** Stops retrying; whatever is still pending goes to the spool file (dead letters are already in theirs). */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.files && this.pending.length > 0) appendJsonLines(this.files.spool, this.pending.map(toSpool));
    // Its entries still pending are in the spool now.
    if (this.files && this.claimedOnDisk !== null) rmSync(this.files.claimed, { force: true });
    this.claimedOnDisk = null;
    this.pending.length = 0;
  }
}

export interface DeadLetterReport {
  written: number;
  /** Entries still refused, left in the dead-letter file with their last error. */
  left: Array<{ kind: PendingWrite['kind']; sessionId: string; itemId?: string; error: string }>;
  quarantined: number;
  /**
   * Sessions a charge was written to now, whose settlement was already in
   * the ledger (start-up recovery settles a session left open from the
   * charges written): the ledger added the charge to that settlement's
   * totals, as it did to the key's balance and the session's spend.
   */
  settledBefore: string[];
}

/**
 * Writes the dead-letter file's entries once each, in order, a settlement
 * only after every charge of its session in the file was written. What is
 * still refused stays in the file; the rest leaves it.
 */
export async function replayDeadLetters(ledger: Ledger, spoolPath: string, hooks: Partial<BacklogHooks> = {}): Promise<DeadLetterReport> {
  const files = spoolFiles(spoolPath);
  // Claimed by a rename, so that a running relay's new dead letters go to a
  // new file instead of being overwritten; a claim a crash left is finished.
  const claim = `${files.deadLetter}.replaying`;
  if (existsSync(files.deadLetter)) {
    if (existsSync(claim)) {
      const newer = readSpool(files.deadLetter);
      quarantine(files, files.deadLetter, newer.unreadable, hooks);
      appendJsonLines(claim, newer.entries.map(toSpool));
      rmSync(files.deadLetter);
    } else renameSync(files.deadLetter, claim);
  }
  const { entries, unreadable } = readSpool(claim);
  quarantine(files, files.deadLetter, unreadable, hooks);
  const report: DeadLetterReport = { written: 0, left: [], quarantined: unreadable.length, settledBefore: [] };
  const kept: Entry[] = [];
  const blocked = new Set<string>();
  const charged = new Set<string>();
  const ordered = [...entries.filter((e) => e.write.kind === 'charge'), ...entries.filter((e) => e.write.kind === 'settlement')];
  for (const { write: pending, attempts } of ordered) {
    const sessionId = sessionOf(pending);
    let error: string | null = null;
    if (pending.kind === 'settlement' && blocked.has(sessionId)) error = 'a charge of this session is still in the dead-letter file';
    else {
      try {
        if (pending.kind === 'charge') {
          if ((await ledger.recordCharge(pending.charge)).applied) charged.add(sessionId);
        } else if (!(await ledger.settleSession(pending.settlement)).applied && charged.has(sessionId)) report.settledBefore.push(sessionId);
      } catch (caught) {
        error = reasonOf(caught);
      }
    }
    if (error === null) {
      report.written++;
      continue;
    }
    if (pending.kind === 'charge') blocked.add(sessionId);
    kept.push({ write: pending, attempts, lastError: error, claimed: false });
    report.left.push({ kind: pending.kind, sessionId, ...(pending.kind === 'charge' ? { itemId: pending.charge.itemId } : {}), error });
  }
  appendJsonLines(files.deadLetter, kept.map(toSpool));
  rmSync(claim, { force: true });
  return report;
}
