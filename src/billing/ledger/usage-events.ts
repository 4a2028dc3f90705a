import { fromJsonText } from './json.js';
import type { ChargeKind, SettlementStatus, UsageEvent, UsageEventType } from './types.js';

/**
 * The outbox side shared by both databases: how an outbox row, joined to the
 * ledger row it announces, becomes a usage event. The outbox keeps only
 * delivery state; what an event says is read from the charge or settlement
 * itself, so the two can never disagree.
 */

/** Columns of `claimedEvents(...)`, with each database's own time and integer types. */
export interface UsageEventDbRow<Time, Int> {
  event_id: string;
  type: UsageEventType;
  attempts: Int;
  session_id: string;
  key_id: string;
  key_name: string;
  model: string;
  kind: ChargeKind | null;
  item_id: string | null;
  cost_nano: bigint | null;
  usage_json: string | null;
  charged_at: Time | null;
  status: SettlementStatus | null;
  end_reason: string | null;
  total_nano: bigint | null;
  charge_count: Int | null;
  settled_at: Time | null;
  started_at: Time;
  ended_at: Time | null;
}

/**
 * The events of the outbox rows `claimed` (a table or CTE with the outbox's
 * columns), each joined to its session, key and charge or settlement.
 */
export function claimedEvents(claimed: string): string {
  return `SELECT u.event_id, u.type, u.attempts, u.session_id, k.id AS key_id, k.name AS key_name,
      COALESCE(c.model, s.model) AS model, c.kind, c.item_id, c.cost_nano, c.usage_json, c.created_at AS charged_at,
      t.status, t.end_reason, t.total_nano, t.charge_count, t.settled_at, s.started_at, s.ended_at
    FROM ${claimed} u
    JOIN sessions s ON s.id = u.session_id
    JOIN keys k ON k.id = s.key_id
    LEFT JOIN charges c ON c.id = u.charge_id
    LEFT JOIN settlements t ON t.session_id = u.session_id AND u.type = 'relay.session.settled'
    ORDER BY u.id`;
}

/** The backlog counts, in one pass over the outbox. */
export const BACKLOG_SQL = `SELECT
    COUNT(*) FILTER (WHERE delivered_at IS NULL) AS pending,
    COUNT(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
    COUNT(*) FILTER (WHERE delivered_at IS NULL AND last_error IS NOT NULL) AS failing,
    MIN(created_at) FILTER (WHERE delivered_at IS NULL) AS oldest_pending_at,
    (SELECT last_error FROM usage_events WHERE delivered_at IS NULL AND last_error IS NOT NULL ORDER BY id LIMIT 1) AS last_error
  FROM usage_events`;

export function toUsageEvent<Time, Int>(row: UsageEventDbRow<Time, Int>, toDate: (time: Time) => Date): UsageEvent {
  const base = {
    id: row.event_id,
    attempts: Number(row.attempts),
    keyId: row.key_id,
    keyName: row.key_name,
    sessionId: row.session_id,
    model: row.model,
  };
  if (row.type === 'relay.usage.charged') {
    return {
      ...base,
      type: row.type,
      time: toDate(row.charged_at as Time),
      kind: row.kind as ChargeKind,
      itemId: row.item_id as string,
      costNano: row.cost_nano as bigint,
      usage: fromJsonText(row.usage_json as string),
    };
  }
  return {
    ...base,
    type: row.type,
    time: toDate(row.settled_at as Time),
    status: row.status as SettlementStatus,
    endReason: row.end_reason as string,
    startedAt: toDate(row.started_at),
    endedAt: toDate(row.ended_at as Time),
    totalNano: row.total_nano as bigint,
    chargeCount: Number(row.charge_count),
  };
}
