import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { balanceOverMaximum, chargeKeyMismatch, keyNotFound, LedgerError, sessionNotFound } from './errors.js';
import { fromJsonText, toJsonText } from './json.js';
import { generateClientSecret, generateKey, hashKey, hashMatches } from './key-material.js';
import type { Migration } from './migrations/migration.js';
import { SQLITE_MIGRATIONS } from './migrations/sqlite.js';
import { assertStaleAfter, recoverySettlement, upstreamCallOf } from './recovery.js';
import type {
  NewSipRoute,
  SipRoute,
  ChargeInput,
  ChargeKind,
  ChargeResult,
  ClientSecretGrant,
  ClientSecretRecord,
  HoldInput,
  HoldResult,
  KeyRecord,
  Ledger,
  NewClientSecret,
  NewKey,
  PruneBatch,
  EndedSession,
  EndedSessionsPage,
  EndedSessionsQuery,
  RecoveredSession,
  RecoveryOptions,
  UpstreamCallRef,
  SessionOpen,
  SpendBucket,
  SpendQuery,
  SettlementInput,
  SettlementResult,
  UsageEvent,
  UsageEventBacklog,
  UsageEventClaim,
  UsageQuery,
  UsageRow,
} from './types.js';
import { routeColumns, routeTaken, toSipRoute, type RouteRow } from './sip-routes.js';
import { BACKLOG_SQL, claimedEvents, toUsageEvent, type UsageEventDbRow } from './usage-events.js';
import { assertCost, assertHold, assertNewClientSecret, assertTopUp, validateNewKey } from './validate.js';

export const DEFAULT_SQLITE_PATH = './data/ledger.db';

/**
 * How long SQLite itself waits for another connection's lock. It waits on
 * the event loop, so only a few milliseconds: longer waits are retried on
 * timers by lock-wait.ts (openLedger wraps this ledger in it).
 */
const BUSY_TIMEOUT_MS = 5;

/*
 * Every integer comes back as a bigint (defaultSafeIntegers), so money never
 * passes through a double; the row mappers turn the small integers (times,
 * counts, limits) back into numbers.
 */
interface KeyRow {
  id: string;
  name: string;
  key_hash: string;
  balance_nano: bigint;
  held_nano: bigint;
  spend_cap_nano: bigint | null;
  max_sessions: bigint | null;
  price_multiplier_ppm: bigint;
  disabled: bigint;
  created_at: bigint;
}

interface SessionRow {
  key_id: string;
  spend_nano: bigint;
  status: string;
}

interface KeyMoney {
  balance_nano: bigint;
  held_nano: bigint;
}

interface UsageDbRow {
  created_at: bigint;
  key_name: string;
  session_id: string;
  kind: ChargeKind;
  item_id: string;
  model: string;
  cost_nano: bigint;
  usage_json: string;
}

/** SQLite codes that mean the file cannot be used, as opposed to a bad request. */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|READONLY|IOERR|CANTOPEN|FULL|PERM|NOTADB|CORRUPT|PROTOCOL)/;

export interface SqliteLedgerOptions {
  /** Write a usage event to the outbox with each newly applied charge and settlement. */
  usageEvents?: boolean;
}

export function openSqliteLedger(path: string = DEFAULT_SQLITE_PATH, options: SqliteLedgerOptions = {}): Ledger {
  const location = resolve(path);
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(location), { recursive: true });
    db = new Database(location, { timeout: BUSY_TIMEOUT_MS });
    // WAL with synchronous=NORMAL syncs the log only at checkpoints. A commit
    // is in the WAL file (the OS page cache) before it returns, so it survives
    // the process dying, kill -9 included; only an OS crash or power loss can
    // lose the last commits. That is the durability we promise.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.defaultSafeIntegers(true);
    migrate(db, SQLITE_MIGRATIONS);
    return new SqliteLedger(db, location, options.usageEvents ?? false);
  } catch (error) {
    db?.close();
    throw translate(error, location);
  }
}

function migrate(db: Database.Database, migrations: readonly Migration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
  ) STRICT`);
  const isApplied = db.prepare('SELECT 1 FROM schema_migrations WHERE version = ?').pluck();
  const record = db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)');
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    // IMMEDIATE takes the write lock first, so a second process opening the
    // same file waits here and then sees the version as applied.
    db.transaction(() => {
      if (isApplied.get(migration.version) !== undefined) return;
      if (migration.editsSchema) editSchema(db, migration.sql);
      else db.exec(migration.sql);
      record.run(migration.version, Date.now());
    }).immediate();
  }
}

/**
 * Runs a migration that edits the schema's text: with defensive mode off for
 * it alone, and the schema version bumped so that every connection rereads it.
 */
function editSchema(db: Database.Database, sql: string): void {
  const version = Number(db.pragma('schema_version', { simple: true }));
  db.unsafeMode(true);
  try {
    db.exec(sql);
    db.pragma(`schema_version = ${version + 1}`);
  } finally {
    db.unsafeMode(false);
  }
  const problems = db.pragma('integrity_check', { simple: true });
  if (problems !== 'ok') throw new LedgerError('ledger_unavailable', `The ledger's schema edit left it inconsistent: ${String(problems)}`);
}

function translate(error: unknown, location: string): unknown {
  if (error instanceof LedgerError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const isFileError = typeof code === 'string' && (UNAVAILABLE_CODES.test(code) || /^E[A-Z]+$/.test(code));
  if (!isFileError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new LedgerError('ledger_unavailable', `SQLite ledger at ${location} cannot be used: ${reason} (${code})`, {
    cause: error,
  });
}

function toKeyRecord(row: KeyRow): KeyRecord {
  return {
    id: row.id,
    name: row.name,
    balanceNano: row.balance_nano,
    heldNano: row.held_nano,
    spendCapNano: row.spend_cap_nano,
    maxSessions: row.max_sessions === null ? null : Number(row.max_sessions),
    priceMultiplierPpm: Number(row.price_multiplier_ppm),
    disabled: row.disabled !== 0n,
    createdAt: new Date(Number(row.created_at)),
  };
}

function toUsageRow(row: UsageDbRow): UsageRow {
  return {
    at: new Date(Number(row.created_at)),
    keyName: row.key_name,
    sessionId: row.session_id,
    kind: row.kind,
    itemId: row.item_id,
    model: row.model,
    costNano: row.cost_nano,
    usage: fromJsonText(row.usage_json),
  };
}

/*
 * A client secret, its key and its sessions' spend, in one read. The
 * secret's columns are renamed so that the key's keep their own names.
 */
const CLIENT_SECRET_BY_HASH = `
  SELECT s.id AS secret_id, s.secret_hash, s.key_id, s.expires_at, s.session_json,
    s.spend_cap_nano AS secret_spend_cap_nano, s.created_at AS secret_created_at,
    (SELECT COALESCE(SUM(x.spend_nano), 0) FROM sessions x WHERE x.client_secret_id = s.id) AS spent_nano,
    k.*
  FROM client_secrets s JOIN keys k ON k.id = s.key_id
  WHERE s.secret_hash = ?`;

interface ClientSecretRow {
  secret_id: string;
  key_id: string;
  expires_at: bigint;
  session_json: string;
  secret_spend_cap_nano: bigint | null;
  secret_created_at: bigint;
}

function toClientSecretRecord(row: ClientSecretRow): ClientSecretRecord {
  return {
    id: row.secret_id,
    keyId: row.key_id,
    expiresAt: new Date(Number(row.expires_at)),
    session: fromJsonText(row.session_json) as Record<string, unknown>,
    spendCapNano: row.secret_spend_cap_nano,
    createdAt: new Date(Number(row.secret_created_at)),
  };
}

/** Picks one key by id or by name; an id wins if a name happens to equal it. */
const KEY_BY_REF = 'SELECT id FROM keys WHERE id = @ref OR name = @ref ORDER BY id = @ref DESC LIMIT 1';

interface EndedDbRow {
  id: string;
  key_id: string;
  key_name: string;
  model: string;
  upstream: string;
  transport: EndedSession['transport'];
  status: EndedSession['status'];
  end_reason: string;
  started_at: bigint;
  ended_at: bigint;
  total_nano: bigint;
  charge_count: bigint;
}

function toEndedSession(row: EndedDbRow): EndedSession {
  return {
    id: row.id,
    keyId: row.key_id,
    keyName: row.key_name,
    model: row.model,
    upstream: row.upstream,
    transport: row.transport,
    status: row.status,
    endReason: row.end_reason,
    startedAt: new Date(Number(row.started_at)),
    endedAt: new Date(Number(row.ended_at)),
    totalNano: row.total_nano,
    chargeCount: Number(row.charge_count),
  };
}

/*
 * better-sqlite3 is synchronous: each method runs to completion on the event
 * loop, and writes run in IMMEDIATE transactions so that another process
 * writing the same file is waited for instead of failing mid-transaction: a
 * few milliseconds here (busy_timeout), the rest on timers (lock-wait.ts).
 */
class SqliteLedger implements Ledger {
  readonly kind = 'sqlite' as const;
  private closed = false;
  private readonly db: Database.Database;
  private readonly location: string;
  private readonly usageEvents: boolean;
  private readonly statements;
  /*
   * One transaction wrapper for every write, made once: better-sqlite3 builds
   * a new wrapper (and its BEGIN/COMMIT statements' bookkeeping) on each
   * db.transaction() call, which the hot path would otherwise pay per write.
   */
  private readonly inTransaction: Database.Transaction<(work: () => unknown) => unknown>;

  constructor(db: Database.Database, location: string, usageEvents: boolean) {
    this.db = db;
    this.location = location;
    this.usageEvents = usageEvents;
    this.inTransaction = db.transaction((work: () => unknown) => work());
    this.statements = {
      ping: db.prepare('SELECT 1'),
      insertUsageEvent: db.prepare(`INSERT INTO usage_events (event_id, type, session_id, charge_id, created_at, next_attempt_at)
        VALUES (@eventId, @type, @sessionId, @chargeId, @now, @now)`),
      // The lease: a claimed event is not due again until it has run out.
      claimUsageEvents: db.prepare(`UPDATE usage_events SET attempts = attempts + 1, next_attempt_at = @leaseEnd
        WHERE id IN (SELECT id FROM usage_events WHERE delivered_at IS NULL AND next_attempt_at <= @now
          ORDER BY next_attempt_at, id LIMIT @limit)
        RETURNING id`).pluck(),
      usageEventsByIds: db.prepare(claimedEvents('(SELECT * FROM usage_events WHERE id IN (SELECT value FROM json_each(?)))')),
      usageEventDelivered: db.prepare('UPDATE usage_events SET delivered_at = @now, last_error = NULL WHERE event_id = @eventId'),
      usageEventFailed: db.prepare(`UPDATE usage_events SET next_attempt_at = @retryAt, last_error = @reason
        WHERE event_id = @eventId AND delivered_at IS NULL`),
      usageEventBacklog: db.prepare(BACKLOG_SQL),
      pruneUsageEvents: db.prepare(`DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events
        WHERE delivered_at IS NOT NULL AND delivered_at < @before ORDER BY delivered_at, id LIMIT @limit)`),
      pruneClientSecrets: db.prepare(`DELETE FROM client_secrets WHERE id IN (SELECT c.id FROM client_secrets c
        WHERE c.expires_at < @before AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.client_secret_id = c.id)
        ORDER BY c.expires_at, c.id LIMIT @limit)`),
      insertKey: db.prepare(`INSERT INTO keys
        (id, name, key_hash, balance_nano, spend_cap_nano, max_sessions, price_multiplier_ppm, disabled, created_at)
        VALUES (@id, @name, @keyHash, @balanceNano, @spendCapNano, @maxSessions, @priceMultiplierPpm, 0, @createdAt)
        RETURNING *`),
      keyByName: db.prepare('SELECT 1 FROM keys WHERE name = ?'),
      insertClientSecret: db.prepare(`INSERT INTO client_secrets (id, secret_hash, key_id, expires_at, session_json, spend_cap_nano, created_at)
        VALUES (@id, @secretHash, @keyId, @expiresAt, @sessionJson, @spendCapNano, @createdAt)
        RETURNING id AS secret_id, key_id, expires_at, session_json, spend_cap_nano AS secret_spend_cap_nano, created_at AS secret_created_at`),
      clientSecretByHash: db.prepare(CLIENT_SECRET_BY_HASH),
      clientSecretSpend: db.prepare('SELECT COALESCE(SUM(spend_nano), 0) FROM sessions WHERE client_secret_id = ?').pluck(),
      keyByHash: db.prepare('SELECT * FROM keys WHERE key_hash = ?'),
      keyExists: db.prepare('SELECT 1 FROM keys WHERE id = ?').pluck(),
      keyByRef: db.prepare(`SELECT * FROM keys WHERE id = (${KEY_BY_REF})`),
      listKeys: db.prepare('SELECT * FROM keys ORDER BY created_at, name'),
      // The maximum as a bound on the balance before (max − amount), so the check itself cannot overflow.
      topUp: db.prepare(`UPDATE keys SET balance_nano = balance_nano + @amount
        WHERE id = (${KEY_BY_REF}) AND (@max IS NULL OR balance_nano <= @max - @amount) RETURNING *`),
      setDisabled: db.prepare(`UPDATE keys SET disabled = @disabled WHERE id = (${KEY_BY_REF}) RETURNING *`),
      insertSession: db.prepare(`INSERT INTO sessions (id, key_id, model, upstream, instance_id, status, spend_nano, started_at, client_secret_id, transport)
        VALUES (@id, @keyId, @model, @upstream, @instanceId, 'open', 0, @startedAt, @clientSecretId, @transport)
        ON CONFLICT (id) DO NOTHING`),
      sessionById: db.prepare('SELECT key_id, spend_nano, status FROM sessions WHERE id = ?'),
      // The admission rule and the hold in one statement: see HoldResult.
      holdOnKey: db.prepare(`UPDATE keys SET held_nano = held_nano + @amountNano
        WHERE id = @keyId AND balance_nano >= @reserveNano
          AND balance_nano - held_nano >= @amountNano AND balance_nano - held_nano > 0
        RETURNING balance_nano, held_nano`),
      insertHold: db.prepare('INSERT INTO holds (session_id, amount_nano, created_at) VALUES (@sessionId, @amountNano, @createdAt)'),
      keyMoney: db.prepare('SELECT balance_nano, held_nano FROM keys WHERE id = ?'),
      releaseOldestHold: db.prepare(`DELETE FROM holds
        WHERE id = (SELECT id FROM holds WHERE session_id = ? ORDER BY id LIMIT 1)
        RETURNING amount_nano`).pluck(),
      releaseHolds: db.prepare('DELETE FROM holds WHERE session_id = ? RETURNING amount_nano').pluck(),
      unholdKey: db.prepare('UPDATE keys SET held_nano = held_nano - @releasedNano WHERE id = @keyId'),
      insertCharge: db.prepare(`INSERT INTO charges
        (session_id, key_id, kind, item_id, model, cost_nano, usage_json, created_at)
        VALUES (@sessionId, @keyId, @kind, @itemId, @model, @costNano, @usageJson, @createdAt)
        ON CONFLICT (session_id, kind, item_id) DO NOTHING`),
      debitKey: db.prepare(`UPDATE keys SET balance_nano = balance_nano - @costNano, held_nano = held_nano - @releasedNano
        WHERE id = @keyId RETURNING balance_nano`),
      addSpend: db.prepare('UPDATE sessions SET spend_nano = spend_nano + @costNano WHERE id = @sessionId RETURNING spend_nano'),
      balanceOf: db.prepare('SELECT balance_nano FROM keys WHERE id = ?').pluck(),
      settlementOf: db.prepare('SELECT total_nano, charge_count FROM settlements WHERE session_id = ?'),
      // Totals and settlement in one statement; a settled session's row stays as it was
      // and nothing is returned. (The WHERE clause also keeps SQLite from reading
      // ON CONFLICT as a join constraint.)
      insertSettlement: db.prepare(`INSERT INTO settlements
        (session_id, status, total_nano, charge_count, end_reason, summary_json, settled_at)
        SELECT @sessionId, @status, COALESCE(SUM(cost_nano), 0), COUNT(*), @endReason, @summaryJson, @settledAt
        FROM charges WHERE session_id = @sessionId
        ON CONFLICT (session_id) DO NOTHING
        RETURNING total_nano, charge_count`),
      endSession: db.prepare(
        'UPDATE sessions SET status = @status, ended_at = @endedAt, end_reason = @endReason WHERE id = @sessionId',
      ),
      heartbeat: db.prepare(`INSERT INTO instances (id, heartbeat_at) VALUES (@id, @now)
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`),
      recordUpstreamCall: db.prepare('UPDATE sessions SET upstream = @upstream, upstream_call_id = @callId WHERE id = @sessionId'),
      orphanedSessions: db.prepare(`SELECT s.id, s.instance_id, i.heartbeat_at, s.upstream, s.upstream_call_id
        FROM sessions s LEFT JOIN instances i ON i.id = s.instance_id
        WHERE s.status = 'open'
          AND (s.instance_id = @instanceId OR i.heartbeat_at IS NULL OR i.heartbeat_at < @cutoff)
        ORDER BY s.started_at, s.id`),
      // A live instance's sweep: its own sessions are running, whatever its heartbeat says.
      staleSessionsOfOthers: db.prepare(`SELECT s.id, s.instance_id, i.heartbeat_at, s.upstream, s.upstream_call_id
        FROM sessions s LEFT JOIN instances i ON i.id = s.instance_id
        WHERE s.status = 'open' AND s.instance_id <> @instanceId
          AND (i.heartbeat_at IS NULL OR i.heartbeat_at < @cutoff)
        ORDER BY s.started_at, s.id`),
    };
  }

  async createKey(input: NewKey): Promise<{ key: string; record: KeyRecord }> {
    const valid = validateNewKey(input);
    const key = generateKey();
    const row = this.write(() => {
      if (this.statements.keyByName.get(valid.name) !== undefined) {
        throw new LedgerError('key_name_taken', `A key named "${valid.name}" already exists.`);
      }
      return this.statements.insertKey.get({
        ...valid,
        id: randomUUID(),
        keyHash: hashKey(key),
        createdAt: Date.now(),
      }) as KeyRow;
    });
    return { key, record: toKeyRecord(row) };
  }

  async authenticate(plaintextKey: string): Promise<KeyRecord | null> {
    const keyHash = hashKey(plaintextKey);
    const row = this.read(() => this.statements.keyByHash.get(keyHash) as KeyRow | undefined);
    return row !== undefined && hashMatches(row.key_hash, keyHash) ? toKeyRecord(row) : null;
  }

  async createClientSecret(input: NewClientSecret): Promise<{ secret: string; record: ClientSecretRecord }> {
    assertNewClientSecret(input);
    const secret = generateClientSecret();
    const row = this.write(() => {
      if (this.statements.keyExists.get(input.keyId) === undefined) keyNotFound(input.keyId);
      return this.statements.insertClientSecret.get({
        id: randomUUID(),
        secretHash: hashKey(secret),
        keyId: input.keyId,
        expiresAt: input.expiresAt.getTime(),
        sessionJson: toJsonText(input.session),
        spendCapNano: input.spendCapNano,
        createdAt: Date.now(),
      }) as ClientSecretRow;
    });
    return { secret, record: toClientSecretRecord(row) };
  }

  async authenticateClientSecret(plaintextSecret: string): Promise<ClientSecretGrant | null> {
    const secretHash = hashKey(plaintextSecret);
    const row = this.read(() => this.statements.clientSecretByHash.get(secretHash) as (ClientSecretRow & KeyRow & { secret_hash: string; spent_nano: bigint }) | undefined);
    if (row === undefined || !hashMatches(row.secret_hash, secretHash)) return null;
    return { secret: toClientSecretRecord(row), key: toKeyRecord(row), spentNano: row.spent_nano };
  }

  async clientSecretSpend(secretId: string): Promise<bigint> {
    return this.read(() => this.statements.clientSecretSpend.get(secretId) as bigint);
  }

  async getKey(idOrName: string): Promise<KeyRecord | null> {
    const row = this.read(() => this.statements.keyByRef.get({ ref: idOrName }) as KeyRow | undefined);
    return row === undefined ? null : toKeyRecord(row);
  }

  async listKeys(): Promise<KeyRecord[]> {
    return this.read(() => this.statements.listKeys.all() as KeyRow[]).map(toKeyRecord);
  }

  async topUp(idOrName: string, amountNano: bigint, maxBalanceNano?: bigint): Promise<KeyRecord> {
    assertTopUp(amountNano);
    const max = maxBalanceNano ?? null;
    const row = this.write(() => {
      const updated = this.statements.topUp.get({ ref: idOrName, amount: amountNano, max }) as KeyRow | undefined;
      if (updated === undefined && max !== null && this.statements.keyByRef.get({ ref: idOrName }) !== undefined) balanceOverMaximum(idOrName, max);
      return updated;
    });
    return toKeyRecord(row ?? keyNotFound(idOrName));
  }

  async setDisabled(idOrName: string, disabled: boolean): Promise<KeyRecord> {
    const row = this.write(
      () => this.statements.setDisabled.get({ ref: idOrName, disabled: disabled ? 1 : 0 }) as KeyRow | undefined,
    );
    return toKeyRecord(row ?? keyNotFound(idOrName));
  }

  async openSession(session: SessionOpen): Promise<void> {
    this.write(() => {
      if (this.statements.keyExists.get(session.keyId) === undefined) keyNotFound(session.keyId);
      this.statements.insertSession.run({ ...session, startedAt: session.startedAt.getTime(), clientSecretId: session.clientSecretId ?? null, transport: session.transport ?? 'websocket' });
      // An instance that opens a session is alive, even before its first heartbeat.
      this.statements.heartbeat.run({ id: session.instanceId, now: Date.now() });
    });
  }

  async placeHold(hold: HoldInput): Promise<HoldResult> {
    assertHold(hold.amountNano, hold.reserveNano);
    return this.write(() => {
      const session = this.statements.sessionById.get(hold.sessionId) as SessionRow | undefined;
      if (session === undefined) sessionNotFound(hold.sessionId);
      if (session.key_id !== hold.keyId) chargeKeyMismatch(hold.sessionId, hold.keyId);
      // A settled session's holds are gone for good: a late admission must not leave one behind.
      const params = { keyId: hold.keyId, amountNano: hold.amountNano, reserveNano: hold.reserveNano };
      const held = session.status === 'open' ? (this.statements.holdOnKey.get(params) as KeyMoney | undefined) : undefined;
      if (held === undefined) {
        const money = (this.statements.keyMoney.get(hold.keyId) as KeyMoney | undefined) ?? keyNotFound(hold.keyId);
        return { placed: false, balanceNano: money.balance_nano, heldNano: money.held_nano };
      }
      this.statements.insertHold.run({ sessionId: hold.sessionId, amountNano: hold.amountNano, createdAt: Date.now() });
      return { placed: true, balanceNano: held.balance_nano, heldNano: held.held_nano };
    });
  }

  async recordCharge(charge: ChargeInput): Promise<ChargeResult> {
    assertCost(charge.costNano);
    return this.write(() => {
      const session = this.statements.sessionById.get(charge.sessionId) as SessionRow | undefined;
      if (session === undefined) sessionNotFound(charge.sessionId);
      if (session.key_id !== charge.keyId) chargeKeyMismatch(charge.sessionId, charge.keyId);
      const inserted = this.statements.insertCharge.run({
        sessionId: charge.sessionId,
        keyId: charge.keyId,
        kind: charge.kind,
        itemId: charge.itemId,
        model: charge.model,
        costNano: charge.costNano,
        usageJson: toJsonText(charge.usage),
        createdAt: Date.now(),
      });
      if (inserted.changes === 0) {
        return {
          applied: false,
          balanceNano: this.statements.balanceOf.get(charge.keyId) as bigint,
          sessionSpendNano: session.spend_nano,
        };
      }
      // Captured: the response's hold gives way to its real cost. Only a new charge gets here, so a replay releases nothing.
      const releasedNano = charge.kind === 'response' ? ((this.statements.releaseOldestHold.get(charge.sessionId) as bigint | undefined) ?? 0n) : 0n;
      const params = { costNano: charge.costNano, releasedNano, keyId: charge.keyId, sessionId: charge.sessionId };
      const { balance_nano } = this.statements.debitKey.get(params) as { balance_nano: bigint };
      const { spend_nano } = this.statements.addSpend.get(params) as { spend_nano: bigint };
      // In this transaction, so the event exists exactly when the charge does (a replay returned above).
      if (this.usageEvents) {
        const chargeId = BigInt(inserted.lastInsertRowid);
        this.statements.insertUsageEvent.run({ eventId: `chg_${charge.sessionId}_${chargeId}`, type: 'relay.usage.charged', sessionId: charge.sessionId, chargeId, now: Date.now() });
      }
      return { applied: true, balanceNano: balance_nano, sessionSpendNano: spend_nano };
    });
  }

  async settleSession(settlement: SettlementInput): Promise<SettlementResult> {
    return this.write(() => this.settle(settlement));
  }

  async recordUpstreamCall(sessionId: string, call: UpstreamCallRef): Promise<void> {
    this.write(() => this.statements.recordUpstreamCall.run({ sessionId, upstream: call.upstream, callId: call.callId }));
  }

  async heartbeat(instanceId: string): Promise<void> {
    this.write(() => this.statements.heartbeat.run({ id: instanceId, now: Date.now() }));
  }

  async recoverOpenSessions(options: RecoveryOptions): Promise<RecoveredSession[]> {
    assertStaleAfter(options.staleAfterMs);
    const now = new Date();
    const select = options.ownSessions === 'keep' ? this.statements.staleSessionsOfOthers : this.statements.orphanedSessions;
    const orphans = this.read(
      () =>
        select.all({
          instanceId: options.instanceId,
          cutoff: now.getTime() - options.staleAfterMs,
        }) as Array<{ id: string; instance_id: string; heartbeat_at: bigint | null; upstream: string; upstream_call_id: string | null }>,
    );
    const recovered: RecoveredSession[] = [];
    for (const orphan of orphans) {
      const settlement = recoverySettlement(
        {
          sessionId: orphan.id,
          instanceId: orphan.instance_id,
          lastHeartbeatAt: orphan.heartbeat_at === null ? null : new Date(Number(orphan.heartbeat_at)),
        },
        options.instanceId,
        now,
      );
      const result = this.write(() => this.settle(settlement));
      if (result.applied) recovered.push({ sessionId: orphan.id, totalNano: result.totalNano, upstreamCall: upstreamCallOf(orphan) });
    }
    return recovered;
  }

  async usage(query: UsageQuery): Promise<UsageRow[]> {
    return this.read(() => {
      const conditions: string[] = [];
      const params: Record<string, unknown> = {};
      if (query.key !== undefined) {
        const key = this.statements.keyByRef.get({ ref: query.key }) as KeyRow | undefined;
        params.keyId = (key ?? keyNotFound(query.key)).id;
        conditions.push('c.key_id = @keyId');
      }
      if (query.since !== undefined) {
        params.since = query.since.getTime();
        conditions.push('c.created_at >= @since');
      }
      const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
      const rows = this.db
        .prepare(`SELECT c.created_at, k.name AS key_name, c.session_id, c.kind, c.item_id, c.model, c.cost_nano, c.usage_json
          FROM charges c JOIN keys k ON k.id = c.key_id ${where}
          ORDER BY c.created_at, c.id`)
        .all(params) as UsageDbRow[];
      return rows.map(toUsageRow);
    });
  }

  async endedSessions(query: EndedSessionsQuery): Promise<EndedSessionsPage> {
    return this.read(() => {
      const conditions = ["s.status <> 'open'"];
      // One more than asked tells whether another page follows.
      const params: Record<string, unknown> = { limit: query.limit + 1 };
      if (query.key !== undefined) {
        const key = this.statements.keyByRef.get({ ref: query.key }) as KeyRow | undefined;
        params.keyId = (key ?? keyNotFound(query.key)).id;
        conditions.push('s.key_id = @keyId');
      }
      if (query.before !== undefined) {
        const cursor = this.db.prepare('SELECT ended_at FROM sessions WHERE id = ?').get(query.before) as { ended_at: bigint | null } | undefined;
        params.beforeEndedAt = cursor?.ended_at ?? sessionNotFound(query.before);
        params.beforeId = query.before;
        conditions.push('(s.ended_at, s.id) < (@beforeEndedAt, @beforeId)');
      }
      const rows = this.db
        .prepare(`SELECT s.id, s.key_id, k.name AS key_name, s.model, s.upstream, s.transport, t.status, t.end_reason, s.started_at, s.ended_at, t.total_nano, t.charge_count
          FROM sessions s JOIN settlements t ON t.session_id = s.id JOIN keys k ON k.id = s.key_id
          WHERE ${conditions.join(' AND ')}
          ORDER BY s.ended_at DESC, s.id DESC LIMIT @limit`)
        .all(params) as EndedDbRow[];
      return { sessions: rows.slice(0, query.limit).map(toEndedSession), hasMore: rows.length > query.limit };
    });
  }

  async spend(query: SpendQuery): Promise<SpendBucket[]> {
    return this.read(() => {
      // A bigint binds as an INTEGER (a number would bind as REAL and the division would not floor).
      const params: Record<string, unknown> = { bucketMs: BigInt(query.bucketMs), since: query.since.getTime() };
      let byKey = '';
      if (query.key !== undefined) {
        const key = this.statements.keyByRef.get({ ref: query.key }) as KeyRow | undefined;
        params.keyId = (key ?? keyNotFound(query.key)).id;
        byKey = 'AND c.key_id = @keyId';
      }
      // created_at is integer milliseconds: integer division floors it to its bucket.
      const rows = this.db
        .prepare(`SELECT c.key_id, k.name AS key_name, (c.created_at / @bucketMs) * @bucketMs AS bucket_ms,
            SUM(c.cost_nano) AS total_nano, COUNT(*) AS charge_count
          FROM charges c JOIN keys k ON k.id = c.key_id
          WHERE c.created_at >= @since ${byKey}
          GROUP BY c.key_id, k.name, bucket_ms
          ORDER BY bucket_ms, k.name, c.key_id`)
        .all(params) as Array<{ key_id: string; key_name: string; bucket_ms: bigint; total_nano: bigint; charge_count: bigint }>;
      return rows.map((r) => ({ keyId: r.key_id, keyName: r.key_name, bucketStart: new Date(Number(r.bucket_ms)), totalNano: r.total_nano, chargeCount: Number(r.charge_count) }));
    });
  }

  async sessionSpend(sessionId: string): Promise<bigint> {
    const session = this.read(() => this.statements.sessionById.get(sessionId) as { spend_nano: bigint } | undefined);
    return (session ?? sessionNotFound(sessionId)).spend_nano;
  }

  async claimUsageEvents(claim: UsageEventClaim): Promise<UsageEvent[]> {
    const now = Date.now();
    const rows = this.write(() => {
      const ids = this.statements.claimUsageEvents.all({ now, leaseEnd: now + claim.leaseMs, limit: claim.limit }) as bigint[];
      if (ids.length === 0) return [];
      return this.statements.usageEventsByIds.all(JSON.stringify(ids.map(Number))) as Array<UsageEventDbRow<bigint, bigint>>;
    });
    return rows.map((row) => toUsageEvent(row, (ms) => new Date(Number(ms))));
  }

  async usageEventDelivered(eventId: string): Promise<void> {
    this.write(() => this.statements.usageEventDelivered.run({ eventId, now: Date.now() }));
  }

  async usageEventFailed(eventId: string, retryInMs: number, reason: string): Promise<void> {
    this.write(() => this.statements.usageEventFailed.run({ eventId, retryAt: Date.now() + Math.round(retryInMs), reason }));
  }

  async usageEventBacklog(): Promise<UsageEventBacklog> {
    const row = this.read(
      () => this.statements.usageEventBacklog.get() as { pending: bigint; delivered: bigint; failing: bigint; oldest_pending_at: bigint | null; last_error: string | null },
    );
    return {
      pending: Number(row.pending),
      delivered: Number(row.delivered),
      failing: Number(row.failing),
      oldestPendingAt: row.oldest_pending_at === null ? null : new Date(Number(row.oldest_pending_at)),
      lastError: row.last_error,
    };
  }

  async addRoute(route: NewSipRoute): Promise<SipRoute> {
    const columns = routeColumns(route);
    const row = this.write(() => {
      const keyId = this.db.prepare(KEY_BY_REF).pluck().get({ ref: route.key }) as string | undefined;
      if (keyId === undefined) keyNotFound(route.key);
      const taken = this.db.prepare('SELECT 1 FROM sip_routes WHERE match_kind = @matchKind AND header_name = @headerName AND match_value = @matchValue').get(columns);
      if (taken !== undefined) routeTaken(route.match);
      return this.db
        .prepare(
          `INSERT INTO sip_routes (id, match_kind, header_name, match_value, key_id, session_json, webhook_url, webhook_secret, created_at)
           VALUES (@id, @matchKind, @headerName, @matchValue, @keyId, @sessionJson, @webhookUrl, @webhookSecret, @createdAt) RETURNING *`,
        )
        .get({ ...columns, id: `route_${randomUUID().replaceAll('-', '')}`, keyId, createdAt: Date.now() }) as RouteRow;
    });
    return toSipRoute(row);
  }

  async listRoutes(): Promise<SipRoute[]> {
    return this.read(() => this.db.prepare('SELECT * FROM sip_routes ORDER BY rowid').all() as RouteRow[]).map(toSipRoute);
  }

  async removeRoute(id: string): Promise<boolean> {
    return this.write(() => this.db.prepare('DELETE FROM sip_routes WHERE id = ?').run(id).changes > 0);
  }

  async recordWebhook(webhookId: string, receivedAt: Date): Promise<boolean> {
    return this.write(() => this.db.prepare('INSERT INTO sip_webhooks (webhook_id, received_at) VALUES (?, ?) ON CONFLICT (webhook_id) DO NOTHING').run(webhookId, receivedAt.getTime()).changes > 0);
  }

  async pruneUsageEvents(prune: PruneBatch): Promise<number> {
    return this.write(() => this.statements.pruneUsageEvents.run({ before: prune.before.getTime(), limit: prune.limit }).changes);
  }

  async pruneClientSecrets(prune: PruneBatch): Promise<number> {
    return this.write(() => this.statements.pruneClientSecrets.run({ before: prune.before.getTime(), limit: prune.limit }).changes);
  }

  async ping(): Promise<void> {
    this.read(() => this.statements.ping.get());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  /** Runs inside a write transaction. */
  private settle(settlement: SettlementInput): SettlementResult {
    const session = this.statements.sessionById.get(settlement.sessionId) as SessionRow | undefined;
    if (session === undefined) sessionNotFound(settlement.sessionId);
    // Whatever the session still holds (a refused or unfinished response) goes back to its key.
    const released = (this.statements.releaseHolds.all(settlement.sessionId) as bigint[]).reduce((sum, amount) => sum + amount, 0n);
    if (released > 0n) this.statements.unholdKey.run({ releasedNano: released, keyId: session.key_id });
    const totals = this.statements.insertSettlement.get({
      sessionId: settlement.sessionId,
      status: settlement.status,
      endReason: settlement.endReason,
      summaryJson: toJsonText(settlement.summary),
      settledAt: Date.now(),
    }) as { total_nano: bigint; charge_count: bigint } | undefined;
    if (totals === undefined) {
      const existing = this.statements.settlementOf.get(settlement.sessionId) as { total_nano: bigint; charge_count: bigint };
      return { applied: false, totalNano: existing.total_nano, chargeCount: Number(existing.charge_count) };
    }
    this.statements.endSession.run({
      sessionId: settlement.sessionId,
      status: settlement.status,
      endedAt: settlement.endedAt.getTime(),
      endReason: settlement.endReason,
    });
    if (this.usageEvents) {
      this.statements.insertUsageEvent.run({ eventId: `stl_${settlement.sessionId}`, type: 'relay.session.settled', sessionId: settlement.sessionId, chargeId: null, now: Date.now() });
    }
    return { applied: true, totalNano: totals.total_nano, chargeCount: Number(totals.charge_count) };
  }

  private read<T>(work: () => T): T {
    this.assertOpen();
    try {
      return work();
    } catch (error) {
      throw translate(error, this.location);
    }
  }

  private write<T>(work: () => T): T {
    this.assertOpen();
    try {
      return this.inTransaction.immediate(work) as T;
    } catch (error) {
      throw translate(error, this.location);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new LedgerError('ledger_unavailable', `SQLite ledger at ${this.location} is closed.`);
  }
}
