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
  {
    version: 3,
    name: 'one round trip per write',
    /*
     * A charge and a settlement are each one call of a function, so each costs
     * one round trip instead of one per statement of a client-side transaction.
     * A function rather than one statement of CTEs: each statement inside it
     * reads the rows as they are after the session lock is granted (a fresh
     * snapshot per statement), so a replay reads back the balance and spend
     * the first write left, and a settlement counts the charge it waited for.
     * The call runs as one implicit transaction; an error rolls all of it back.
     *
     * Lock order, as everywhere in the ledger: the session row, then the key row.
     * Outcomes the caller turns into errors come back as an 'outcome' value, so
     * error mapping stays in one place, the ledger's TypeScript.
     */
    sql: `
      CREATE FUNCTION ledger_record_charge(
        p_session_id TEXT, p_key_id TEXT, p_kind TEXT, p_item_id TEXT, p_model TEXT,
        p_cost_nano BIGINT, p_usage_json TEXT
      ) RETURNS TABLE (outcome TEXT, balance_nano BIGINT, spend_nano BIGINT)
      LANGUAGE plpgsql AS $$
      #variable_conflict use_column
      DECLARE
        v_key_id TEXT;
        v_spend BIGINT;
        v_balance BIGINT;
        v_released BIGINT;
      BEGIN
        -- Taken first, so a settlement of this session waits for this charge and counts it.
        SELECT s.key_id, s.spend_nano INTO v_key_id, v_spend
        FROM sessions s WHERE s.id = p_session_id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
          RETURN QUERY SELECT 'session_not_found'::text, NULL::bigint, NULL::bigint;
          RETURN;
        END IF;
        IF v_key_id <> p_key_id THEN
          RETURN QUERY SELECT 'key_mismatch'::text, NULL::bigint, NULL::bigint;
          RETURN;
        END IF;

        INSERT INTO charges (session_id, key_id, kind, item_id, model, cost_nano, usage_json)
        VALUES (p_session_id, p_key_id, p_kind, p_item_id, p_model, p_cost_nano, p_usage_json)
        ON CONFLICT (session_id, kind, item_id) DO NOTHING;
        IF NOT FOUND THEN
          -- A replay: nothing is debited and no hold released; report the key as it is.
          SELECT k.balance_nano INTO v_balance FROM keys k WHERE k.id = p_key_id;
          RETURN QUERY SELECT 'replayed'::text, v_balance, v_spend;
          RETURN;
        END IF;

        -- A response's charge captures the session's oldest hold, if it has one.
        IF p_kind = 'response' THEN
          DELETE FROM holds h
          WHERE h.id = (SELECT o.id FROM holds o WHERE o.session_id = p_session_id ORDER BY o.id LIMIT 1)
          RETURNING h.amount_nano INTO v_released;
        END IF;
        -- One atomic UPDATE: concurrent debits of one key queue on its row lock,
        -- and each subtracts from the balance the previous one left.
        UPDATE keys k SET balance_nano = k.balance_nano - p_cost_nano,
          held_nano = k.held_nano - COALESCE(v_released, 0)
        WHERE k.id = p_key_id RETURNING k.balance_nano INTO v_balance;
        UPDATE sessions s SET spend_nano = s.spend_nano + p_cost_nano
        WHERE s.id = p_session_id RETURNING s.spend_nano INTO v_spend;
        RETURN QUERY SELECT 'applied'::text, v_balance, v_spend;
      END $$;

      CREATE FUNCTION ledger_settle_session(
        p_session_id TEXT, p_status TEXT, p_ended_at TIMESTAMPTZ, p_end_reason TEXT, p_summary_json TEXT
      ) RETURNS TABLE (outcome TEXT, total_nano BIGINT, charge_count INTEGER)
      LANGUAGE plpgsql AS $$
      #variable_conflict use_column
      DECLARE
        v_key_id TEXT;
        v_released BIGINT;
        v_total BIGINT;
        v_count INTEGER;
      BEGIN
        -- Waits for any charge of this session still in flight, so the sum below includes it.
        SELECT s.key_id INTO v_key_id FROM sessions s WHERE s.id = p_session_id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
          RETURN QUERY SELECT 'session_not_found'::text, NULL::bigint, NULL::integer;
          RETURN;
        END IF;

        -- Whatever the session still holds (a refused or unfinished response) goes back to its key.
        WITH released AS (DELETE FROM holds h WHERE h.session_id = p_session_id RETURNING h.amount_nano)
        SELECT SUM(r.amount_nano) INTO v_released FROM released r;
        IF v_released IS NOT NULL THEN
          UPDATE keys k SET held_nano = k.held_nano - v_released WHERE k.id = v_key_id;
        END IF;

        SELECT COALESCE(SUM(c.cost_nano), 0)::bigint, COUNT(*)::integer INTO v_total, v_count
        FROM charges c WHERE c.session_id = p_session_id;
        INSERT INTO settlements (session_id, status, total_nano, charge_count, end_reason, summary_json)
        VALUES (p_session_id, p_status, v_total, v_count, p_end_reason, p_summary_json)
        ON CONFLICT (session_id) DO NOTHING;
        IF NOT FOUND THEN
          -- Settled before: report what that settlement recorded.
          RETURN QUERY SELECT 'replayed'::text, t.total_nano, t.charge_count
          FROM settlements t WHERE t.session_id = p_session_id;
          RETURN;
        END IF;
        UPDATE sessions s SET status = p_status, ended_at = p_ended_at, end_reason = p_end_reason
        WHERE s.id = p_session_id;
        RETURN QUERY SELECT 'applied'::text, v_total, v_count;
      END $$;
    `,
  },
  {
    version: 4,
    name: 'usage events outbox',
    /*
     * The outbox of usage events: the write functions insert a row in the
     * same call (so the same transaction) that applies a charge or a
     * settlement, and only then, so an event exists exactly when its ledger
     * row does and a replay adds none. The event's contents are read from that
     * row when it is delivered; the outbox keeps only what delivery needs.
     * p_usage_events is false unless the relay delivers events: without a
     * receiver nothing is written.
     *
     * The functions are those of migration 3 with the outbox insert added.
     */
    sql: `
      CREATE TABLE usage_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id TEXT NOT NULL CONSTRAINT usage_events_event_id_unique UNIQUE,
        type TEXT NOT NULL CHECK (type IN ('relay.usage.charged', 'relay.session.settled')),
        session_id TEXT NOT NULL REFERENCES sessions (id),
        charge_id BIGINT REFERENCES charges (id),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        delivered_at TIMESTAMPTZ,
        last_error TEXT,
        CHECK ((type = 'relay.usage.charged') = (charge_id IS NOT NULL))
      );
      CREATE INDEX usage_events_due ON usage_events (next_attempt_at, id) WHERE delivered_at IS NULL;

      DROP FUNCTION ledger_record_charge(TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT);
      DROP FUNCTION ledger_settle_session(TEXT, TEXT, TIMESTAMPTZ, TEXT, TEXT);

      CREATE FUNCTION ledger_record_charge(
        p_session_id TEXT, p_key_id TEXT, p_kind TEXT, p_item_id TEXT, p_model TEXT,
        p_cost_nano BIGINT, p_usage_json TEXT, p_usage_events BOOLEAN DEFAULT false
      ) RETURNS TABLE (outcome TEXT, balance_nano BIGINT, spend_nano BIGINT)
      LANGUAGE plpgsql AS $$
      #variable_conflict use_column
      DECLARE
        v_key_id TEXT;
        v_spend BIGINT;
        v_balance BIGINT;
        v_released BIGINT;
        v_charge_id BIGINT;
      BEGIN
        -- Taken first, so a settlement of this session waits for this charge and counts it.
        SELECT s.key_id, s.spend_nano INTO v_key_id, v_spend
        FROM sessions s WHERE s.id = p_session_id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
          RETURN QUERY SELECT 'session_not_found'::text, NULL::bigint, NULL::bigint;
          RETURN;
        END IF;
        IF v_key_id <> p_key_id THEN
          RETURN QUERY SELECT 'key_mismatch'::text, NULL::bigint, NULL::bigint;
          RETURN;
        END IF;

        INSERT INTO charges (session_id, key_id, kind, item_id, model, cost_nano, usage_json)
        VALUES (p_session_id, p_key_id, p_kind, p_item_id, p_model, p_cost_nano, p_usage_json)
        ON CONFLICT (session_id, kind, item_id) DO NOTHING
        RETURNING id INTO v_charge_id;
        IF v_charge_id IS NULL THEN
          -- A replay: nothing is debited, no hold released, no event added; report the key as it is.
          SELECT k.balance_nano INTO v_balance FROM keys k WHERE k.id = p_key_id;
          RETURN QUERY SELECT 'replayed'::text, v_balance, v_spend;
          RETURN;
        END IF;

        -- A response's charge captures the session's oldest hold, if it has one.
        IF p_kind = 'response' THEN
          DELETE FROM holds h
          WHERE h.id = (SELECT o.id FROM holds o WHERE o.session_id = p_session_id ORDER BY o.id LIMIT 1)
          RETURNING h.amount_nano INTO v_released;
        END IF;
        -- One atomic UPDATE: concurrent debits of one key queue on its row lock,
        -- and each subtracts from the balance the previous one left.
        UPDATE keys k SET balance_nano = k.balance_nano - p_cost_nano,
          held_nano = k.held_nano - COALESCE(v_released, 0)
        WHERE k.id = p_key_id RETURNING k.balance_nano INTO v_balance;
        UPDATE sessions s SET spend_nano = s.spend_nano + p_cost_nano
        WHERE s.id = p_session_id RETURNING s.spend_nano INTO v_spend;
        IF p_usage_events THEN
          INSERT INTO usage_events (event_id, type, session_id, charge_id)
          VALUES ('chg_' || p_session_id || '_' || v_charge_id, 'relay.usage.charged', p_session_id, v_charge_id);
        END IF;
        RETURN QUERY SELECT 'applied'::text, v_balance, v_spend;
      END $$;

      CREATE FUNCTION ledger_settle_session(
        p_session_id TEXT, p_status TEXT, p_ended_at TIMESTAMPTZ, p_end_reason TEXT, p_summary_json TEXT,
        p_usage_events BOOLEAN DEFAULT false
      ) RETURNS TABLE (outcome TEXT, total_nano BIGINT, charge_count INTEGER)
      LANGUAGE plpgsql AS $$
      #variable_conflict use_column
      DECLARE
        v_key_id TEXT;
        v_released BIGINT;
        v_total BIGINT;
        v_count INTEGER;
      BEGIN
        -- Waits for any charge of this session still in flight, so the sum below includes it.
        SELECT s.key_id INTO v_key_id FROM sessions s WHERE s.id = p_session_id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
          RETURN QUERY SELECT 'session_not_found'::text, NULL::bigint, NULL::integer;
          RETURN;
        END IF;

        -- Whatever the session still holds (a refused or unfinished response) goes back to its key.
        WITH released AS (DELETE FROM holds h WHERE h.session_id = p_session_id RETURNING h.amount_nano)
        SELECT SUM(r.amount_nano) INTO v_released FROM released r;
        IF v_released IS NOT NULL THEN
          UPDATE keys k SET held_nano = k.held_nano - v_released WHERE k.id = v_key_id;
        END IF;

        SELECT COALESCE(SUM(c.cost_nano), 0)::bigint, COUNT(*)::integer INTO v_total, v_count
        FROM charges c WHERE c.session_id = p_session_id;
        INSERT INTO settlements (session_id, status, total_nano, charge_count, end_reason, summary_json)
        VALUES (p_session_id, p_status, v_total, v_count, p_end_reason, p_summary_json)
        ON CONFLICT (session_id) DO NOTHING;
        IF NOT FOUND THEN
          -- Settled before: report what that settlement recorded, and add no event.
          RETURN QUERY SELECT 'replayed'::text, t.total_nano, t.charge_count
          FROM settlements t WHERE t.session_id = p_session_id;
          RETURN;
        END IF;
        UPDATE sessions s SET status = p_status, ended_at = p_ended_at, end_reason = p_end_reason
        WHERE s.id = p_session_id;
        IF p_usage_events THEN
          INSERT INTO usage_events (event_id, type, session_id)
          VALUES ('stl_' || p_session_id, 'relay.session.settled', p_session_id);
        END IF;
        RETURN QUERY SELECT 'applied'::text, v_total, v_count;
      END $$;
    `,
  },
  {
    version: 5,
    name: 'client secrets',
    /*
     * Ephemeral client secrets: only the secret's SHA-256 is stored, like a
     * key's. A session remembers the secret it was opened with, so a secret's
     * spend is the sum of its sessions' spend.
     */
    sql: `
      CREATE TABLE client_secrets (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL CONSTRAINT client_secrets_secret_hash_unique UNIQUE,
        key_id TEXT NOT NULL REFERENCES keys (id),
        expires_at TIMESTAMPTZ NOT NULL,
        session_json TEXT NOT NULL,
        spend_cap_nano BIGINT CHECK (spend_cap_nano IS NULL OR spend_cap_nano > 0),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
      );
      ALTER TABLE sessions ADD COLUMN client_secret_id TEXT REFERENCES client_secrets (id);
      CREATE INDEX sessions_by_client_secret ON sessions (client_secret_id) WHERE client_secret_id IS NOT NULL;
    `,
  },
  {
    version: 6,
    name: 'session transport',
    // Sessions before this one were all WebSocket sessions.
    sql: `
      ALTER TABLE sessions ADD COLUMN transport TEXT NOT NULL DEFAULT 'websocket'
        CONSTRAINT sessions_transport_known CHECK (transport IN ('websocket', 'webrtc'));
    `,
  },
  {
    version: 7,
    name: 'phone calls',
    /*
     * Phone calls (SIP) are sessions of their own transport. Routes map an
     * incoming call to the key it is billed to; webhook ids are remembered so
     * that a redelivered webhook never acts twice, across restarts too.
     */
    sql: `
      ALTER TABLE sessions DROP CONSTRAINT sessions_transport_known,
        ADD CONSTRAINT sessions_transport_known CHECK (transport IN ('websocket', 'webrtc', 'sip'));

      CREATE TABLE sip_routes (
        id TEXT PRIMARY KEY,
        -- The order routes were added in: header routes match oldest first.
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        match_kind TEXT NOT NULL CHECK (match_kind IN ('number', 'header')),
        header_name TEXT NOT NULL,
        match_value TEXT NOT NULL,
        key_id TEXT NOT NULL REFERENCES keys (id),
        session_json TEXT NOT NULL,
        webhook_url TEXT,
        webhook_secret TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (match_kind, header_name, match_value),
        CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
      );

      CREATE TABLE sip_webhooks (
        webhook_id TEXT PRIMARY KEY,
        received_at TIMESTAMPTZ NOT NULL
      );
    `,
  },
  {
    version: 8,
    name: 'housekeeping',
    /*
     * Indexes for the bounded clean-ups of delivered usage events and expired
     * client secrets, so each batch reads only the rows it deletes.
     *
     * A charge applied after its session was settled (a dead-lettered charge
     * replayed once the session had been recovered without it) adds itself to
     * that settlement, so a settlement's totals are always those of its
     * charges. A trigger rather than a change to ledger_record_charge: it fires
     * only on an inserted charge (a replay inserts nothing), and it runs under
     * the session row lock the charge took, so a charge counts either in the
     * settlement's sum or through this trigger, never both.
     */
    sql: `
      CREATE INDEX usage_events_delivered ON usage_events (delivered_at, id) WHERE delivered_at IS NOT NULL;
      CREATE INDEX client_secrets_by_expiry ON client_secrets (expires_at, id);

      CREATE FUNCTION ledger_charge_after_settlement() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE settlements SET total_nano = total_nano + NEW.cost_nano, charge_count = charge_count + 1
        WHERE session_id = NEW.session_id;
        RETURN NULL;
      END $$;
      CREATE TRIGGER charges_after_settlement AFTER INSERT ON charges
        FOR EACH ROW EXECUTE FUNCTION ledger_charge_after_settlement();
    `,
  },
  {
    version: 9,
    name: 'upstream call of a call session',
    // Where a call runs upstream, so that recovery can hang up a call whose relay died.
    sql: `
      ALTER TABLE sessions ADD COLUMN upstream_call_id TEXT;
    `,
  },
];
