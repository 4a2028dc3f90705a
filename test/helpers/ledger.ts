/**
 * What a ledger's database holds, read the way an operator would check a
 * bill: rows for sessions, charges and settlements, per key or for a whole
 * SQLite file, and a key with a unique name for each test.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { KeyRecord, Ledger, NewKey } from '../../src/billing/ledger/index.js';
import type { ScratchSchema } from './postgres.js';

export interface SessionRow {
  id: string;
  keyId: string;
  model: string;
  status: string;
  spendNano: bigint;
  instanceId: string;
  endReason: string | null;
}

export interface ChargeRow {
  sessionId: string;
  kind: string;
  itemId: string;
  model: string;
  costNano: bigint;
  usage: unknown;
}

export interface SettlementRow {
  sessionId: string;
  status: string;
  totalNano: bigint;
  chargeCount: number;
  endReason: string;
  summary: Record<string, unknown>;
}

/** One key's money, as the database holds it. */
export interface KeyBook {
  balanceNano: bigint;
  sessions: SessionRow[];
  charges: ChargeRow[];
  settlements: SettlementRow[];
}

/** Reads the ledger's tables over a connection of its own. */
export interface LedgerView {
  book(keyId: string): Promise<KeyBook>;
}

type Row = Record<string, unknown>;

export function sessionRow(r: Row): SessionRow {
  return {
    id: r.id as string,
    keyId: r.key_id as string,
    model: r.model as string,
    status: r.status as string,
    spendNano: r.spend_nano as bigint,
    instanceId: r.instance_id as string,
    endReason: (r.end_reason as string | null) ?? null,
  };
}

export function chargeRow(r: Row): ChargeRow {
  return {
    sessionId: r.session_id as string,
    kind: r.kind as string,
    itemId: r.item_id as string,
    model: r.model as string,
    costNano: r.cost_nano as bigint,
    usage: JSON.parse(r.usage_json as string) as unknown,
  };
}

export function settlementRow(r: Row): SettlementRow {
  return {
    sessionId: r.session_id as string,
    status: r.status as string,
    totalNano: r.total_nano as bigint,
    chargeCount: Number(r.charge_count),
    endReason: r.end_reason as string,
    summary: JSON.parse(r.summary_json as string) as Record<string, unknown>,
  };
}

function toBook(key: Row | undefined, sessions: Row[], charges: Row[], settlements: Row[]): KeyBook {
  if (!key) throw new Error('no such key');
  return { balanceNano: key.balance_nano as bigint, sessions: sessions.map(sessionRow), charges: charges.map(chargeRow), settlements: settlements.map(settlementRow) };
}

const BOOK_SQL = {
  key: 'SELECT balance_nano FROM keys WHERE id = $1',
  sessions: 'SELECT * FROM sessions WHERE key_id = $1 ORDER BY started_at, id',
  charges: 'SELECT * FROM charges WHERE key_id = $1 ORDER BY id',
  settlements: 'SELECT t.* FROM settlements t JOIN sessions s ON s.id = t.session_id WHERE s.key_id = $1 ORDER BY t.session_id',
};

/** Runs `read` on a read-only connection to an SQLite ledger file, opened and closed around it. */
export function readSqlite<T>(path: string, read: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    db.defaultSafeIntegers(true);
    return read(db);
  } finally {
    db.close();
  }
}

/** The ledger file a relay keeps in its data folder. */
export function sqliteLedgerFile(dataDir: string): string {
  return join(dataDir, 'ledger.db');
}

/** A read-only view of an SQLite ledger file; each read opens and closes its own connection. */
export function sqliteView(path: string): LedgerView {
  return {
    async book(keyId) {
      return readSqlite(path, (db) => {
        const all = (sql: string) => db.prepare(sql.replace('$1', '?')).all(keyId) as Row[];
        return toBook(all(BOOK_SQL.key)[0], all(BOOK_SQL.sessions), all(BOOK_SQL.charges), all(BOOK_SQL.settlements));
      });
    },
  };
}

export function postgresView(schema: ScratchSchema): LedgerView {
  return {
    async book(keyId) {
      // One connection, one query at a time.
      const all = (sql: string) => schema.query<Row>(sql, [keyId]);
      const key = await all(BOOK_SQL.key);
      const sessions = await all(BOOK_SQL.sessions);
      const charges = await all(BOOK_SQL.charges);
      return toBook(key[0], sessions, charges, await all(BOOK_SQL.settlements));
    },
  };
}

/** Every settlement in an SQLite ledger file, oldest first. */
export function allSettlements(path: string): SettlementRow[] {
  return readSqlite(path, (db) => (db.prepare('SELECT * FROM settlements ORDER BY settled_at, session_id').all() as Row[]).map(settlementRow));
}

/** Every session in an SQLite ledger file, oldest first. */
export function allSessions(path: string): SessionRow[] {
  return readSqlite(path, (db) => (db.prepare('SELECT * FROM sessions ORDER BY started_at, id').all() as Row[]).map(sessionRow));
}

/** A session with its settlement, if it has one. */
export interface SettledSessionRow {
  id: string;
  status: string;
  endReason: string | null;
  spendNano: bigint;
  settlement: Omit<SettlementRow, 'sessionId'> | null;
}

/** The sessions in a relay's SQLite ledger with their settlements, oldest first. */
export function sessionsWithSettlements(path: string): SettledSessionRow[] {
  const settlements = new Map(allSettlements(path).map((s) => [s.sessionId, s]));
  return allSessions(path).map((s) => {
    const settlement = settlements.get(s.id);
    return {
      id: s.id,
      status: s.status,
      endReason: s.endReason,
      spendNano: s.spendNano,
      settlement: settlement ? { status: settlement.status, endReason: settlement.endReason, chargeCount: settlement.chargeCount, totalNano: settlement.totalNano, summary: settlement.summary } : null,
    };
  });
}

let keySeq = 0;

/** A key with a name no other test uses; the balance defaults to 10 USD. */
export function createTestKey(ledger: Ledger, input: Partial<NewKey> = {}): Promise<{ key: string; record: KeyRecord }> {
  return ledger.createKey({ balanceNano: 10_000_000_000n, ...input, name: input.name ?? `key_${process.pid}_${++keySeq}_${Date.now().toString(36)}` });
}
