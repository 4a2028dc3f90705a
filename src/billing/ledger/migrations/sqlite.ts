import type { Migration } from './migration.js';

/*
 * Times are milliseconds since the epoch, money is nano-USD; both fit
 * SQLite's 64-bit INTEGER. STRICT makes SQLite refuse a value of the wrong type.
 */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'ledger',
    sql: `
      CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        balance_nano INTEGER NOT NULL,
        spend_cap_nano INTEGER,
        max_sessions INTEGER,
        price_multiplier_ppm INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        created_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES keys (id),
        model TEXT NOT NULL,
        upstream TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled', 'recovered')),
        spend_nano INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        end_reason TEXT
      ) STRICT;
      CREATE INDEX sessions_open_by_instance ON sessions (instance_id) WHERE status = 'open';

      CREATE TABLE charges (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        key_id TEXT NOT NULL REFERENCES keys (id),
        kind TEXT NOT NULL CHECK (kind IN ('response', 'transcription')),
        item_id TEXT NOT NULL,
        model TEXT NOT NULL,
        cost_nano INTEGER NOT NULL,
        usage_json TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (session_id, kind, item_id)
      ) STRICT;
      CREATE INDEX charges_by_key_time ON charges (key_id, created_at);
      CREATE INDEX charges_by_time ON charges (created_at);

      CREATE TABLE settlements (
        session_id TEXT PRIMARY KEY REFERENCES sessions (id),
        status TEXT NOT NULL CHECK (status IN ('settled', 'recovered')),
        total_nano INTEGER NOT NULL,
        charge_count INTEGER NOT NULL,
        end_reason TEXT NOT NULL,
        summary_json TEXT NOT NULL,
        settled_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        heartbeat_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: 'holds',
    // One row per open hold; keys.held_nano is their sum per key, kept in the
    // same transactions, so that admission reads one row.
    sql: `
      ALTER TABLE keys ADD COLUMN held_nano INTEGER NOT NULL DEFAULT 0 CHECK (held_nano >= 0);

      CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        amount_nano INTEGER NOT NULL CHECK (amount_nano >= 0),
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX holds_by_session ON holds (session_id, id);
    `,
  },
  {
    version: 3,
    name: 'usage events outbox',
    /*
     * The outbox of usage events: a row is written in the transaction that
     * applies a charge or a settlement, so an event exists exactly when its
     * ledger row does. The event's contents are read from that row when it is
     * delivered; the outbox keeps only what delivery needs.
     */
    sql: `
      CREATE TABLE usage_events (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL CHECK (type IN ('relay.usage.charged', 'relay.session.settled')),
        session_id TEXT NOT NULL REFERENCES sessions (id),
        charge_id INTEGER REFERENCES charges (id),
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT,
        CHECK ((type = 'relay.usage.charged') = (charge_id IS NOT NULL))
      ) STRICT;
      CREATE INDEX usage_events_due ON usage_events (next_attempt_at, id) WHERE delivered_at IS NULL;
    `,
  },
  {
    version: 4,
    name: 'client secrets',
    /*
     * Ephemeral client secrets: only the secret's SHA-256 is stored, like a
     * key's. A session remembers the secret it was opened with, so a secret's
     * spend is the sum of its sessions' spend.
     */
    sql: `
      CREATE TABLE client_secrets (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        key_id TEXT NOT NULL REFERENCES keys (id),
        expires_at INTEGER NOT NULL,
        session_json TEXT NOT NULL,
        spend_cap_nano INTEGER CHECK (spend_cap_nano IS NULL OR spend_cap_nano > 0),
        created_at INTEGER NOT NULL
      ) STRICT;
      ALTER TABLE sessions ADD COLUMN client_secret_id TEXT REFERENCES client_secrets (id);
      CREATE INDEX sessions_by_client_secret ON sessions (client_secret_id) WHERE client_secret_id IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: 'session transport',
    // Sessions before this one were all WebSocket sessions.
    sql: `
      ALTER TABLE sessions ADD COLUMN transport TEXT NOT NULL DEFAULT 'websocket' CHECK (transport IN ('websocket', 'webrtc'));
    `,
  },
  {
    version: 6,
    name: 'phone calls',
    /*
     * Phone calls (SIP) are sessions of their own transport. SQLite cannot
     * alter a CHECK constraint; widening one changes nothing stored, so the
     * table's definition is edited in place (the procedure SQLite documents
     * for constraint changes) rather than the table rebuilt, which would drop
     * columns other changes add. Routes map an incoming call to the key it is
     * billed to; webhook ids are remembered so that a redelivered webhook
     * never acts twice, across restarts too.
     */
    editsSchema: true,
    sql: `
      PRAGMA writable_schema = ON;
      UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (transport IN (''websocket'', ''webrtc''))', 'CHECK (transport IN (''websocket'', ''webrtc'', ''sip''))')
        WHERE type = 'table' AND name = 'sessions';
      PRAGMA writable_schema = OFF;

      CREATE TABLE sip_routes (
        id TEXT PRIMARY KEY,
        match_kind TEXT NOT NULL CHECK (match_kind IN ('number', 'header')),
        header_name TEXT NOT NULL,
        match_value TEXT NOT NULL,
        key_id TEXT NOT NULL REFERENCES keys (id),
        session_json TEXT NOT NULL,
        webhook_url TEXT,
        webhook_secret TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (match_kind, header_name, match_value),
        CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
      ) STRICT;

      CREATE TABLE sip_webhooks (
        webhook_id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 7,
    name: 'housekeeping',
    /*
     * Indexes for the bounded clean-ups of delivered usage events and expired
     * client secrets, so each batch reads only the rows it deletes.
     *
     * A charge applied after its session was settled (a dead-lettered charge
     * replayed once the session had been recovered without it) adds itself to
     * that settlement, so a settlement's totals are always those of its
     * charges. It fires only on an inserted charge (a replay inserts nothing),
     * inside the charge's write transaction, so a charge counts either in the
     * settlement's sum or through this trigger, never both.
     */
    sql: `
      CREATE INDEX usage_events_delivered ON usage_events (delivered_at, id) WHERE delivered_at IS NOT NULL;
      CREATE INDEX client_secrets_by_expiry ON client_secrets (expires_at, id);

      CREATE TRIGGER charges_after_settlement AFTER INSERT ON charges
      BEGIN
        UPDATE settlements SET total_nano = total_nano + NEW.cost_nano, charge_count = charge_count + 1
        WHERE session_id = NEW.session_id;
      END;
    `,
  },
  {
    version: 8,
    name: 'upstream call of a call session',
    // Where a call runs upstream, so that recovery can hang up a call whose relay died.
    sql: `
      ALTER TABLE sessions ADD COLUMN upstream_call_id TEXT;
    `,
  },
];
