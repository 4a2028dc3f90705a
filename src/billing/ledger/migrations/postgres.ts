import type { Migration } from './migration.js';

/* Money is nano-USD in BIGINT; times are timestamptz. */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'ledger',
    sql: `
      CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL CONSTRAINT keys_name_unique UNIQUE,
        key_hash TEXT NOT NULL CONSTRAINT keys_key_hash_unique UNIQUE,
        balance_nano BIGINT NOT NULL,
        spend_cap_nano BIGINT,
        max_sessions INTEGER,
        price_multiplier_ppm INTEGER NOT NULL,
        disabled BOOLEAN NOT NULL DEFAULT false,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
      );

      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES keys (id),
        model TEXT NOT NULL,
        upstream TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled', 'recovered')),
        spend_nano BIGINT NOT NULL DEFAULT 0,
        started_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ,
        end_reason TEXT
      );
      CREATE INDEX sessions_open_by_instance ON sessions (instance_id) WHERE status = 'open';

      CREATE TABLE charges (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        key_id TEXT NOT NULL REFERENCES keys (id),
        kind TEXT NOT NULL CHECK (kind IN ('response', 'transcription')),
        item_id TEXT NOT NULL,
        model TEXT NOT NULL,
        cost_nano BIGINT NOT NULL,
        usage_json TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT charges_once_per_item UNIQUE (session_id, kind, item_id)
      );
      CREATE INDEX charges_by_key_time ON charges (key_id, created_at);
      CREATE INDEX charges_by_time ON charges (created_at);

      CREATE TABLE settlements (
        session_id TEXT PRIMARY KEY REFERENCES sessions (id),
        status TEXT NOT NULL CHECK (status IN ('settled', 'recovered')),
        total_nano BIGINT NOT NULL,
        charge_count INTEGER NOT NULL,
        end_reason TEXT NOT NULL,
        summary_json TEXT NOT NULL,
        settled_at TIMESTAMPTZ NOT NULL DEFAULT now()
      );

      CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        heartbeat_at TIMESTAMPTZ NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'holds',
    // One row per open hold; keys.held_nano is their sum per key, kept in the
    // same transactions, so that admission reads and locks one row.
    sql: `
      ALTER TABLE keys ADD COLUMN held_nano BIGINT NOT NULL DEFAULT 0
        CONSTRAINT keys_held_not_negative CHECK (held_nano >= 0);

      CREATE TABLE holds (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        amount_nano BIGINT NOT NULL CHECK (amount_nano >= 0),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
      );
      CREATE INDEX holds_by_session ON holds (session_id, id);
    `,
  },
];
