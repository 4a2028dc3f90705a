import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { balanceOverMaximum, chargeKeyMismatch, keyNotFound, LedgerError, sessionNotFound } from './errors.js';
import { fromJsonText, toJsonText } from './json.js';
import { generateClientSecret, generateKey, hashKey, hashMatches } from './key-material.js';
import type { Migration } from './migrations/migration.js';
import { POSTGRES_MIGRATIONS } from './migrations/postgres.js';
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

export interface PostgresLedgerOptions {
  /** How long to wait for a connection before reporting ledger_unavailable. */
  connectTimeoutMs?: number;
  /** How long one query may take before reporting ledger_unavailable. */
  queryTimeoutMs?: number;
  /** Most connections this process holds. */
  maxConnections?: number;
  /** Write a usage event to the outbox with each newly applied charge and settlement. */
  usageEvents?: boolean;
}

const INT8_OID = 20;

/*
 * int8 (BIGINT, COUNT) parses to bigint for this pool's clients only; pg's
 * global parser, shared with any other pool in the process, is left alone.
 */
const BIGINT_TYPES: pg.CustomTypesConfig = {
  getTypeParser(oid, format) {
    if (oid === INT8_OID && format !== 'binary') return (text: string) => BigInt(text);
    return pg.types.getTypeParser(oid, format);
  },
};

interface KeyRow {
  id: string;
  name: string;
  key_hash: string;
  balance_nano: bigint;
  held_nano: bigint;
  spend_cap_nano: bigint | null;
  max_sessions: number | null;
  price_multiplier_ppm: number;
  disabled: boolean;
  created_at: Date;
}

interface UsageDbRow {
  created_at: Date;
  key_name: string;
  session_id: string;
  kind: ChargeKind;
  item_id: string;
  model: string;
  cost_nano: bigint;
  usage_json: string;
}

/** SQLSTATE classes that mean the server cannot serve us, as opposed to a bad request. */
const UNAVAILABLE_SQLSTATE = /^(08|28|53|57|58|3D)/;

/** Picks one key by id or by name; an id wins if a name happens to equal it. */
const KEY_BY_REF = 'SELECT id FROM keys WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1';

/*
 * A hold in one round trip. The session row is locked first (the lock order
 * below), and an open session is required, so a settlement can never miss a
 * hold placed beside it. The key's UPDATE then waits for any other writer of
 * that key and re-checks its WHERE on the row that writer left: two holds of
 * one key, from any connection or process, cannot both pass one check.
 * Without a placed hold, the last branch reports the key as it was.
 */
const PLACE_HOLD = `
  WITH session AS (
    SELECT id FROM sessions WHERE id = $1 AND key_id = $2 AND status = 'open' FOR SHARE
  ), held AS (
    UPDATE keys SET held_nano = held_nano + $3::bigint
    WHERE id = $2 AND EXISTS (SELECT 1 FROM session)
      AND balance_nano >= $4::bigint
      AND balance_nano - held_nano >= $3::bigint AND balance_nano - held_nano > 0
    RETURNING balance_nano, held_nano
  ), hold AS (
    INSERT INTO holds (session_id, amount_nano) SELECT $1, $3::bigint FROM held RETURNING id
  )
  SELECT true AS placed, balance_nano, held_nano, $2 AS session_key_id FROM held
  UNION ALL
  SELECT false, balance_nano, held_nano, (SELECT key_id FROM sessions WHERE id = $1)
  FROM keys WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM held)`;

/*
 * A session's opening in one statement. Without its key nothing is written,
 * not even the heartbeat, as a transaction that failed on the key would have
 * left it. The heartbeat is written because an instance that opens a session
 * is alive, even before its first heartbeat.
 */
const OPEN_SESSION = `
  WITH key AS (
    SELECT id FROM keys WHERE id = $2
  ), session AS (
    INSERT INTO sessions (id, key_id, model, upstream, instance_id, started_at, client_secret_id, transport)
    SELECT $1, id, $3, $4, $5, $6, $7, $8 FROM key ON CONFLICT (id) DO NOTHING
  ), beat AS (
    INSERT INTO instances (id, heartbeat_at) SELECT $5, now() FROM key
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
  )
  SELECT EXISTS (SELECT 1 FROM key) AS key_found`;

/*
 * A client secret, its key and its sessions' spend, in one round trip. The
 * secret's columns are renamed so that the key's keep their own names.
 */
const CLIENT_SECRET_BY_HASH = `
  SELECT s.id AS secret_id, s.secret_hash, s.key_id, s.expires_at, s.session_json,
    s.spend_cap_nano AS secret_spend_cap_nano, s.created_at AS secret_created_at,
    (SELECT COALESCE(SUM(x.spend_nano), 0)::bigint FROM sessions x WHERE x.client_secret_id = s.id) AS spent_nano,
    k.*
  FROM client_secrets s JOIN keys k ON k.id = s.key_id
  WHERE s.secret_hash = $1`;

interface ClientSecretRow {
  secret_id: string;
  key_id: string;
  expires_at: Date;
  session_json: string;
  secret_spend_cap_nano: bigint | null;
  secret_created_at: Date;
}

function toClientSecretRecord(row: ClientSecretRow): ClientSecretRecord {
  return {
    id: row.secret_id,
    keyId: row.key_id,
    expiresAt: row.expires_at,
    session: fromJsonText(row.session_json) as Record<string, unknown>,
    spendCapNano: row.secret_spend_cap_nano,
    createdAt: row.secret_created_at,
  };
}

/** What the ledger's write functions (migration 3) report besides their figures. */
type WriteOutcome = 'applied' | 'replayed' | 'session_not_found' | 'key_mismatch';

/* Each is one round trip; the steps and why they are in this order are in migrations 3 and 4. */
const RECORD_CHARGE = 'SELECT outcome, balance_nano, spend_nano FROM ledger_record_charge($1, $2, $3, $4, $5, $6, $7, $8)';
const SETTLE_SESSION = 'SELECT outcome, total_nano, charge_count FROM ledger_settle_session($1, $2, $3, $4, $5, $6)';

/*
 * Claims due events in one statement. SKIP LOCKED: a row another instance is
 * claiming right now is left to it rather than waited for, and the lease
 * (next_attempt_at moved past now) keeps it from every other claim until
 * the claimer reports back or the lease runs out. Times are the database's,
 * the one clock every instance shares.
 */
const CLAIM_USAGE_EVENTS = `
  WITH due AS (
    SELECT id FROM usage_events
    WHERE delivered_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id LIMIT $1
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE usage_events e SET attempts = e.attempts + 1, next_attempt_at = now() + $2::bigint * interval '1 millisecond'
    FROM due WHERE e.id = due.id
    RETURNING e.*
  )
  ${claimedEvents('claimed')}`;

export async function openPostgresLedger(databaseUrl: string, options: PostgresLedgerOptions = {}): Promise<Ledger> {
  const location = describeLocation(databaseUrl);
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    query_timeout: options.queryTimeoutMs ?? 15_000,
    max: options.maxConnections ?? 10,
    keepAlive: true,
    types: BIGINT_TYPES,
  });
  // An idle client whose connection drops emits 'error' on the pool, which
  // would otherwise crash the process. The pool discards that client and the
  // next query reports ledger_unavailable, so there is nothing more to do here.
  pool.on('error', function poolOnIdleClientError() {});
  try {
    await migrate(pool, POSTGRES_MIGRATIONS);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw translate(error, location);
  }
  return new PostgresLedger(pool, location, options.usageEvents ?? false);
}

/** host:port/database, never the user or password. */
function describeLocation(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    return `PostgreSQL at ${url.hostname}:${url.port || '5432'}${url.pathname}`;
  } catch {
    return 'PostgreSQL (DATABASE_URL is not a valid URL)';
  }
}

async function migrate(pool: pg.Pool, migrations: readonly Migration[]): Promise<void> {
  const client = await pool.connect();
  let broken = false;
  try {
    // Two processes starting at once would otherwise race to create the
    // same tables; the lock is per schema, so separate schemas do not wait.
    await client.query(`SELECT pg_advisory_lock(hashtext('realtime-relay ledger migrations ' || current_schema()))`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const applied = new Set(rows.map((row) => row.version));
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(migration.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [migration.version]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => (broken = true));
        throw error;
      }
    }
    await client.query(`SELECT pg_advisory_unlock(hashtext('realtime-relay ledger migrations ' || current_schema()))`);
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    // A broken client is destroyed, which also releases its advisory lock.
    client.release(broken);
  }
}

function translate(error: unknown, location: string): unknown {
  if (error instanceof LedgerError) return error;
  if (error instanceof pg.DatabaseError && !UNAVAILABLE_SQLSTATE.test(error.code ?? '')) return error;
  const reason = error instanceof Error ? error.message || error.name : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  return new LedgerError(
    'ledger_unavailable',
    `${location} is unavailable: ${reason}${typeof code === 'string' ? ` (${code})` : ''}`,
    { cause: error },
  );
}

function isUniqueViolation(error: unknown, constraint: string): boolean {
  return error instanceof pg.DatabaseError && error.code === '23505' && error.constraint === constraint;
}

function toKeyRecord(row: KeyRow): KeyRecord {
  return {
    id: row.id,
    name: row.name,
    balanceNano: row.balance_nano,
    heldNano: row.held_nano,
    spendCapNano: row.spend_cap_nano,
    maxSessions: row.max_sessions,
    priceMultiplierPpm: row.price_multiplier_ppm,
    disabled: row.disabled,
    createdAt: row.created_at,
  };
}

function toUsageRow(row: UsageDbRow): UsageRow {
  return {
    at: row.created_at,
    keyName: row.key_name,
    sessionId: row.session_id,
    kind: row.kind,
    itemId: row.item_id,
    model: row.model,
    costNano: row.cost_nano,
    usage: fromJsonText(row.usage_json),
  };
}

interface EndedDbRow {
  id: string;
  key_id: string;
  key_name: string;
  model: string;
  upstream: string;
  transport: EndedSession['transport'];
  status: EndedSession['status'];
  end_reason: string;
  started_at: Date;
  ended_at: Date;
  total_nano: bigint;
  charge_count: number;
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
    startedAt: row.started_at,
    endedAt: row.ended_at,
    totalNano: row.total_nano,
    chargeCount: row.charge_count,
  };
}

type Queryable = Pick<pg.PoolClient, 'query'>;

/*
 * Lock order, so that concurrent transactions cannot deadlock: a hold or a
 * charge locks its session row, then its key row; a settlement locks the
 * session row, then the key row only to release holds.
 * Locking the session first also means a settlement waits for a charge in
 * flight and then counts it.
 *
 * Every hot-path write (open, hold, charge, settlement) is one statement, so
 * one round trip and its own transaction: no connection is held across round
 * trips, and none is left mid-transaction when the network drops.
 */
class PostgresLedger implements Ledger {
  readonly kind = 'postgres' as const;
  private closed = false;
  private readonly pool: pg.Pool;
  private readonly location: string;
  private readonly usageEvents: boolean;

  constructor(pool: pg.Pool, location: string, usageEvents: boolean) {
    this.pool = pool;
    this.location = location;
    this.usageEvents = usageEvents;
  }

  async createKey(input: NewKey): Promise<{ key: string; record: KeyRecord }> {
    const valid = validateNewKey(input);
    const key = generateKey();
    try {
      const { rows } = await this.query<KeyRow>(
        `INSERT INTO keys (id, name, key_hash, balance_nano, spend_cap_nano, max_sessions, price_multiplier_ppm)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [randomUUID(), valid.name, hashKey(key), valid.balanceNano, valid.spendCapNano, valid.maxSessions, valid.priceMultiplierPpm],
      );
      return { key, record: toKeyRecord(rows[0]) };
    } catch (error) {
      if (isUniqueViolation(error, 'keys_name_unique')) {
        throw new LedgerError('key_name_taken', `A key named "${valid.name}" already exists.`);
      }
      throw error;
    }
  }

  async authenticate(plaintextKey: string): Promise<KeyRecord | null> {
    const keyHash = hashKey(plaintextKey);
    const { rows } = await this.query<KeyRow>('SELECT * FROM keys WHERE key_hash = $1', [keyHash]);
    const row = rows[0];
    return row !== undefined && hashMatches(row.key_hash, keyHash) ? toKeyRecord(row) : null;
  }

  async createClientSecret(input: NewClientSecret): Promise<{ secret: string; record: ClientSecretRecord }> {
    assertNewClientSecret(input);
    const secret = generateClientSecret();
    const { rows } = await this.query<ClientSecretRow>(
      `INSERT INTO client_secrets (id, secret_hash, key_id, expires_at, session_json, spend_cap_nano)
       SELECT $1, $2, id, $4, $5, $6 FROM keys WHERE id = $3
       RETURNING id AS secret_id, key_id, expires_at, session_json, spend_cap_nano AS secret_spend_cap_nano, created_at AS secret_created_at`,
      [randomUUID(), hashKey(secret), input.keyId, input.expiresAt, toJsonText(input.session), input.spendCapNano],
    );
    return { secret, record: toClientSecretRecord(rows[0] ?? keyNotFound(input.keyId)) };
  }

  async authenticateClientSecret(plaintextSecret: string): Promise<ClientSecretGrant | null> {
    const secretHash = hashKey(plaintextSecret);
    const { rows } = await this.query<ClientSecretRow & KeyRow & { secret_hash: string; spent_nano: bigint }>(CLIENT_SECRET_BY_HASH, [secretHash]);
    const row = rows[0];
    if (row === undefined || !hashMatches(row.secret_hash, secretHash)) return null;
    return { secret: toClientSecretRecord(row), key: toKeyRecord(row), spentNano: row.spent_nano };
  }

  async clientSecretSpend(secretId: string): Promise<bigint> {
    const { rows } = await this.query<{ spent_nano: bigint }>('SELECT COALESCE(SUM(spend_nano), 0)::bigint AS spent_nano FROM sessions WHERE client_secret_id = $1', [secretId]);
    return rows[0].spent_nano;
  }

  async getKey(idOrName: string): Promise<KeyRecord | null> {
    const { rows } = await this.query<KeyRow>(`SELECT * FROM keys WHERE id = (${KEY_BY_REF})`, [idOrName]);
    return rows[0] === undefined ? null : toKeyRecord(rows[0]);
  }

  async listKeys(): Promise<KeyRecord[]> {
    const { rows } = await this.query<KeyRow>('SELECT * FROM keys ORDER BY created_at, name');
    return rows.map(toKeyRecord);
  }

  async topUp(idOrName: string, amountNano: bigint, maxBalanceNano?: bigint): Promise<KeyRecord> {
    assertTopUp(amountNano);
    const max = maxBalanceNano ?? null;
    // The maximum as a bound on the balance before (max − amount), so the check itself cannot overflow.
    const { rows } = await this.query<KeyRow>(
      `UPDATE keys SET balance_nano = balance_nano + $2
       WHERE id = (${KEY_BY_REF}) AND ($3::bigint IS NULL OR balance_nano <= $3::bigint - $2) RETURNING *`,
      [idOrName, amountNano, max],
    );
    if (rows[0] === undefined && max !== null && (await this.getKey(idOrName)) !== null) balanceOverMaximum(idOrName, max);
    return toKeyRecord(rows[0] ?? keyNotFound(idOrName));
  }

  async setDisabled(idOrName: string, disabled: boolean): Promise<KeyRecord> {
    const { rows } = await this.query<KeyRow>(
      `UPDATE keys SET disabled = $2 WHERE id = (${KEY_BY_REF}) RETURNING *`,
      [idOrName, disabled],
    );
    return toKeyRecord(rows[0] ?? keyNotFound(idOrName));
  }

  async openSession(session: SessionOpen): Promise<void> {
    const { rows } = await this.query<{ key_found: boolean }>(OPEN_SESSION, [
      session.id,
      session.keyId,
      session.model,
      session.upstream,
      session.instanceId,
      session.startedAt,
      session.clientSecretId ?? null,
      session.transport ?? 'websocket',
    ]);
    if (!rows[0].key_found) keyNotFound(session.keyId);
  }

  async placeHold(hold: HoldInput): Promise<HoldResult> {
    assertHold(hold.amountNano, hold.reserveNano);
    const { rows } = await this.query<{ placed: boolean; balance_nano: bigint; held_nano: bigint; session_key_id: string | null }>(PLACE_HOLD, [
      hold.sessionId,
      hold.keyId,
      hold.amountNano,
      hold.reserveNano,
    ]);
    const row = rows[0] ?? keyNotFound(hold.keyId);
    if (row.session_key_id === null) sessionNotFound(hold.sessionId);
    if (row.session_key_id !== hold.keyId) chargeKeyMismatch(hold.sessionId, hold.keyId);
    return { placed: row.placed, balanceNano: row.balance_nano, heldNano: row.held_nano };
  }

  async recordCharge(charge: ChargeInput): Promise<ChargeResult> {
    assertCost(charge.costNano);
    const { rows } = await this.query<{ outcome: WriteOutcome; balance_nano: bigint; spend_nano: bigint }>(RECORD_CHARGE, [
      charge.sessionId,
      charge.keyId,
      charge.kind,
      charge.itemId,
      charge.model,
      charge.costNano,
      toJsonText(charge.usage),
      this.usageEvents,
    ]);
    const row = rows[0];
    if (row.outcome === 'session_not_found') sessionNotFound(charge.sessionId);
    if (row.outcome === 'key_mismatch') chargeKeyMismatch(charge.sessionId, charge.keyId);
    return { applied: row.outcome === 'applied', balanceNano: row.balance_nano, sessionSpendNano: row.spend_nano };
  }

  async settleSession(settlement: SettlementInput): Promise<SettlementResult> {
    return this.run((client) => settle(client, settlement, this.usageEvents));
  }

  async recordUpstreamCall(sessionId: string, call: UpstreamCallRef): Promise<void> {
    await this.query('UPDATE sessions SET upstream = $2, upstream_call_id = $3 WHERE id = $1', [sessionId, call.upstream, call.callId]);
  }

  async heartbeat(instanceId: string): Promise<void> {
    await this.run((client) => upsertHeartbeat(client, instanceId));
  }

  async recoverOpenSessions(options: RecoveryOptions): Promise<RecoveredSession[]> {
    assertStaleAfter(options.staleAfterMs);
    // Staleness is judged by the database clock, the one every instance's
    // heartbeat was written with.
    const own = options.ownSessions === 'keep' ? 'AND s.instance_id <> $1' : 'OR s.instance_id = $1';
    const { rows } = await this.query<{ id: string; instance_id: string; heartbeat_at: Date | null; upstream: string; upstream_call_id: string | null }>(
      `SELECT s.id, s.instance_id, i.heartbeat_at, s.upstream, s.upstream_call_id
       FROM sessions s LEFT JOIN instances i ON i.id = s.instance_id
       WHERE s.status = 'open'
         AND ((i.heartbeat_at IS NULL OR i.heartbeat_at < now() - $2::bigint * interval '1 millisecond') ${own})
       ORDER BY s.started_at, s.id`,
      [options.instanceId, options.staleAfterMs],
    );
    const now = new Date();
    const recovered: RecoveredSession[] = [];
    for (const orphan of rows) {
      const settlement = recoverySettlement(
        { sessionId: orphan.id, instanceId: orphan.instance_id, lastHeartbeatAt: orphan.heartbeat_at },
        options.instanceId,
        now,
      );
      const result = await this.run((client) => settle(client, settlement, this.usageEvents));
      if (result.applied) recovered.push({ sessionId: orphan.id, totalNano: result.totalNano, upstreamCall: upstreamCallOf(orphan) });
    }
    return recovered;
  }

  async usage(query: UsageQuery): Promise<UsageRow[]> {
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (query.key !== undefined) {
      const key = await this.getKey(query.key);
      params.push((key ?? keyNotFound(query.key)).id);
      conditions.push(`c.key_id = $${params.length}`);
    }
    if (query.since !== undefined) {
      params.push(query.since);
      conditions.push(`c.created_at >= $${params.length}`);
    }
    const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
    const { rows } = await this.query<UsageDbRow>(
      `SELECT c.created_at, k.name AS key_name, c.session_id, c.kind, c.item_id, c.model, c.cost_nano, c.usage_json
       FROM charges c JOIN keys k ON k.id = c.key_id ${where}
       ORDER BY c.created_at, c.id`,
      params,
    );
    return rows.map(toUsageRow);
  }

  async endedSessions(query: EndedSessionsQuery): Promise<EndedSessionsPage> {
    const conditions = ["s.status <> 'open'"];
    const params: unknown[] = [];
    if (query.key !== undefined) {
      const key = await this.getKey(query.key);
      params.push((key ?? keyNotFound(query.key)).id);
      conditions.push(`s.key_id = $${params.length}`);
    }
    if (query.before !== undefined) {
      const { rows } = await this.query<{ ended_at: Date | null }>('SELECT ended_at FROM sessions WHERE id = $1', [query.before]);
      const cursor = rows[0]?.ended_at ?? sessionNotFound(query.before);
      params.push(cursor, query.before);
      conditions.push(`(s.ended_at, s.id) < ($${params.length - 1}, $${params.length})`);
    }
    // One more than asked tells whether another page follows.
    params.push(query.limit + 1);
    const { rows } = await this.query<EndedDbRow>(
      `SELECT s.id, s.key_id, k.name AS key_name, s.model, s.upstream, s.transport, t.status, t.end_reason, s.started_at, s.ended_at, t.total_nano, t.charge_count
       FROM sessions s JOIN settlements t ON t.session_id = s.id JOIN keys k ON k.id = s.key_id
       WHERE ${conditions.join(' AND ')}
       ORDER BY s.ended_at DESC, s.id DESC LIMIT $${params.length}`,
      params,
    );
    return { sessions: rows.slice(0, query.limit).map(toEndedSession), hasMore: rows.length > query.limit };
  }

  async spend(query: SpendQuery): Promise<SpendBucket[]> {
    const params: unknown[] = [query.bucketMs, query.since];
    let byKey = '';
    if (query.key !== undefined) {
      const key = await this.getKey(query.key);
      params.push((key ?? keyNotFound(query.key)).id);
      byKey = `AND c.key_id = $${params.length}`;
    }
    // Buckets are counted in milliseconds from the epoch, the same arithmetic as on SQLite.
    const { rows } = await this.query<{ key_id: string; key_name: string; bucket_ms: bigint; total_nano: bigint; charge_count: number }>(
      `SELECT c.key_id, k.name AS key_name,
              (floor(extract(epoch FROM c.created_at) * 1000 / $1::bigint) * $1::bigint)::bigint AS bucket_ms,
              SUM(c.cost_nano)::bigint AS total_nano, COUNT(*)::integer AS charge_count
       FROM charges c JOIN keys k ON k.id = c.key_id
       WHERE c.created_at >= $2 ${byKey}
       GROUP BY c.key_id, k.name, bucket_ms
       ORDER BY bucket_ms, k.name, c.key_id`,
      params,
    );
    return rows.map((r) => ({ keyId: r.key_id, keyName: r.key_name, bucketStart: new Date(Number(r.bucket_ms)), totalNano: r.total_nano, chargeCount: r.charge_count }));
  }

  async sessionSpend(sessionId: string): Promise<bigint> {
    const { rows } = await this.query<{ spend_nano: bigint }>('SELECT spend_nano FROM sessions WHERE id = $1', [sessionId]);
    return (rows[0] ?? sessionNotFound(sessionId)).spend_nano;
  }

  async claimUsageEvents(claim: UsageEventClaim): Promise<UsageEvent[]> {
    const { rows } = await this.query<UsageEventDbRow<Date, number>>(CLAIM_USAGE_EVENTS, [claim.limit, Math.round(claim.leaseMs)]);
    return rows.map((row) => toUsageEvent(row, (time) => time));
  }

  async usageEventDelivered(eventId: string): Promise<void> {
    await this.query('UPDATE usage_events SET delivered_at = now(), last_error = NULL WHERE event_id = $1', [eventId]);
  }

  async usageEventFailed(eventId: string, retryInMs: number, reason: string): Promise<void> {
    await this.query(
      `UPDATE usage_events SET next_attempt_at = now() + $2::bigint * interval '1 millisecond', last_error = $3
       WHERE event_id = $1 AND delivered_at IS NULL`,
      [eventId, Math.round(retryInMs), reason],
    );
  }

  async usageEventBacklog(): Promise<UsageEventBacklog> {
    const { rows } = await this.query<{ pending: bigint; delivered: bigint; failing: bigint; oldest_pending_at: Date | null; last_error: string | null }>(BACKLOG_SQL);
    const row = rows[0];
    return { pending: Number(row.pending), delivered: Number(row.delivered), failing: Number(row.failing), oldestPendingAt: row.oldest_pending_at, lastError: row.last_error };
  }

  async addRoute(route: NewSipRoute): Promise<SipRoute> {
    const c = routeColumns(route);
    // One statement: the key is resolved and the match checked where the row is written.
    const { rows } = await this.query<RouteRow & { key_found: boolean }>(
      `WITH key AS (${KEY_BY_REF}), added AS (
         INSERT INTO sip_routes (id, match_kind, header_name, match_value, key_id, session_json, webhook_url, webhook_secret)
         SELECT $2, $3, $4, $5, id, $6, $7, $8 FROM key
         ON CONFLICT (match_kind, header_name, match_value) DO NOTHING RETURNING *
       )
       SELECT added.*, EXISTS (SELECT 1 FROM key) AS key_found FROM (SELECT 1) one LEFT JOIN added ON true`,
      [route.key, `route_${randomUUID().replaceAll('-', '')}`, c.matchKind, c.headerName, c.matchValue, c.sessionJson, c.webhookUrl, c.webhookSecret],
    );
    const row = rows[0]!;
    if (!row.key_found) keyNotFound(route.key);
    if (row.id === null) routeTaken(route.match);
    return toSipRoute(row);
  }

  async listRoutes(): Promise<SipRoute[]> {
    const { rows } = await this.query<RouteRow>('SELECT * FROM sip_routes ORDER BY seq');
    return rows.map(toSipRoute);
  }

  async removeRoute(id: string): Promise<boolean> {
    const { rowCount } = await this.query('DELETE FROM sip_routes WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
  }

  async recordWebhook(webhookId: string, receivedAt: Date): Promise<boolean> {
    const { rowCount } = await this.query('INSERT INTO sip_webhooks (webhook_id, received_at) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING', [webhookId, receivedAt]);
    return (rowCount ?? 0) > 0;
  }

  // FOR UPDATE SKIP LOCKED: two instances pruning at once take different rows instead of waiting on each other.
  async pruneUsageEvents(prune: PruneBatch): Promise<number> {
    const { rowCount } = await this.query(
      `DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events
         WHERE delivered_at IS NOT NULL AND delivered_at < $1 ORDER BY delivered_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [prune.before, prune.limit],
    );
    return rowCount ?? 0;
  }

  async pruneClientSecrets(prune: PruneBatch): Promise<number> {
    const { rowCount } = await this.query(
      `DELETE FROM client_secrets WHERE id IN (SELECT c.id FROM client_secrets c
         WHERE c.expires_at < $1 AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.client_secret_id = c.id)
         ORDER BY c.expires_at, c.id LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [prune.before, prune.limit],
    );
    return rowCount ?? 0;
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    return this.run((client) => client.query<R>(text, params));
  }

  /** One statement on a pooled connection, outside an explicit transaction. */
  private async run<T>(work: (client: Queryable) => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await work(this.pool);
    } catch (error) {
      throw translate(error, this.location);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new LedgerError('ledger_unavailable', `${this.location} is closed.`);
  }
}

async function upsertHeartbeat(client: Queryable, instanceId: string): Promise<void> {
  await client.query(
    `INSERT INTO instances (id, heartbeat_at) VALUES ($1, now())
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`,
    [instanceId],
  );
}

async function settle(client: Queryable, settlement: SettlementInput, usageEvents: boolean): Promise<SettlementResult> {
  const { rows } = await client.query<{ outcome: WriteOutcome; total_nano: bigint; charge_count: number }>(SETTLE_SESSION, [
    settlement.sessionId,
    settlement.status,
    settlement.endedAt,
    settlement.endReason,
    toJsonText(settlement.summary),
    usageEvents,
  ]);
  const row = rows[0];
  if (row.outcome === 'session_not_found') sessionNotFound(settlement.sessionId);
  return { applied: row.outcome === 'applied', totalNano: row.total_nano, chargeCount: row.charge_count };
}
