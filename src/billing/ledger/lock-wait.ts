import { setTimeout as sleep } from 'node:timers/promises';
import { isLedgerError } from './errors.js';
import type { Ledger } from './types.js';

/**
 * Waiting for another process's SQLite write lock without stopping the
 * event loop.
 *
 * better-sqlite3 is synchronous: SQLite's busy handler sleeps inside the
 * call, on the event loop, for as long as the busy timeout allows. With a
 * timeout of seconds, one write behind another process's `BEGIN IMMEDIATE`
 * or `EXCLUSIVE` froze every live session and `/healthz` for that long, and
 * the backlog's retry every second froze it again. So the connection's busy
 * timeout is a few milliseconds (enough for the short transactions of
 * another relay), and this wrapper does the real waiting: a call that finds
 * the database locked (SQLITE_BUSY / SQLITE_LOCKED, reported as
 * `ledger_unavailable`) is tried again after a timer, with backoff, until
 * LOCK_DEADLINE_MS has passed; then its error stands, and the paths for an
 * unavailable ledger take over (billing_unavailable, the backlog).
 *
 * Retrying is safe: a transaction that met the lock began with BEGIN
 * IMMEDIATE and failed before it wrote anything (better-sqlite3 rolls a
 * failed transaction back), and every ledger write is idempotent anyway.
 *
 * Why not a worker thread: the ledger's transactions are a few statements
 * on a local file and take microseconds; only the wait for a lock was ever
 * long, and timers take that off the loop without moving the ledger, its
 * bigint rows and its exactly-once transactions across a thread boundary.
 *
 * In WAL mode readers are not blocked by a writer, even one holding
 * EXCLUSIVE (which WAL treats as IMMEDIATE); a read that does meet
 * SQLITE_BUSY (a connection recovering the WAL) is retried the same way.
 *
 * The wrapper is a Proxy, so that every method of the ledger, present or
 * added later, waits the same way.
 */

/** How long one call keeps trying to get the lock (the busy timeout used to be 5 s: the same patience, off the loop). */
export const LOCK_DEADLINE_MS = 5_000;
const FIRST_WAIT_MS = 5;
const LONGEST_WAIT_MS = 100;

/** SQLite reported that another connection holds the lock. */
export function isLockedError(error: unknown): boolean {
  if (!isLedgerError(error, 'ledger_unavailable')) return false;
  const code = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code);
}

/** Runs `work` again while SQLite is locked, waiting on timers, until `deadlineMs` has passed. */
export async function whileLocked<T>(work: () => Promise<T>, deadlineMs = LOCK_DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let wait = FIRST_WAIT_MS;
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!isLockedError(error) || Date.now() >= deadline) throw error;
    }
    await sleep(Math.min(wait, Math.max(1, deadline - Date.now())));
    wait = Math.min(wait * 2, LONGEST_WAIT_MS);
  }
}

/** The ledger, each of whose calls waits for a locked database without blocking the event loop. */
export function waitingForLocks(ledger: Ledger, deadlineMs = LOCK_DEADLINE_MS): Ledger {
  return new Proxy(ledger, {
    get(target, property) {
      // Read from and called on the ledger itself, so its private state is its own.
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function' || property === 'close') return typeof value === 'function' ? value.bind(target) : value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      return function lockPatient(...args: unknown[]) {
        return whileLocked(() => method.apply(target, args), deadlineMs);
      };
    },
  });
}
