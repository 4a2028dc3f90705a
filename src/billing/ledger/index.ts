import { waitingForLocks, whileLocked } from './lock-wait.js';
import { openPostgresLedger, type PostgresLedgerOptions } from './postgres.js';
import { openSqliteLedger } from './sqlite.js';
import type { Ledger } from './types.js';

export type * from './types.js';
export { LEDGER_ERROR_CODES, LedgerError, isLedgerError, type LedgerErrorCode } from './errors.js';
export { DEFAULT_SQLITE_PATH } from './sqlite.js';
export { pruneInBatches } from './prune.js';

export interface OpenLedgerOptions extends PostgresLedgerOptions {
  /** A PostgreSQL URL; when set, the ledger lives there. */
  databaseUrl?: string;
  /** The SQLite file used when no databaseUrl is given; default ./data/ledger.db. */
  sqlitePath?: string;
  /**
   * Write a usage event to the outbox with every newly applied charge and
   * settlement (in the same transaction). Off unless someone delivers them.
   */
  usageEvents?: boolean;
}

/**
 * Opens the ledger and brings its schema up to date. PostgreSQL when a
 * databaseUrl is given, otherwise an embedded SQLite file.
 */
export async function openLedger(options: OpenLedgerOptions = {}): Promise<Ledger> {
  const { databaseUrl, sqlitePath, usageEvents = false, ...postgresOptions } = options;
  if (databaseUrl !== undefined && databaseUrl !== '') return openPostgresLedger(databaseUrl, { ...postgresOptions, usageEvents });
  // Opening migrates in a write transaction: it waits for another process's lock like any write.
  return waitingForLocks(await whileLocked(async () => openSqliteLedger(sqlitePath, { usageEvents })));
}
