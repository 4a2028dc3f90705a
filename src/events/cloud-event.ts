import type { UsageEvent } from '../billing/ledger/index.js';

/**
 * What a receiver is sent for each usage event: a CloudEvent 1.0 in the
 * structured JSON mode (the whole event is the body). Money is integer
 * nano-USD as a decimal string, since JSON numbers lose digits past 2^53.
 */

/** The CloudEvents `source` of every event this relay sends. */
export const USAGE_EVENT_SOURCE = 'realtime-relay';

/** The body's media type in the structured mode. */
export const CLOUD_EVENT_CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';

export interface UsageCloudEvent {
  specversion: '1.0';
  /** Stable per charge or settlement: a repeat delivery carries the same id (and webhook-id). */
  id: string;
  source: string;
  type: UsageEvent['type'];
  /** The session the event belongs to. */
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: ChargedData | SettledData;
}

interface EventKey {
  id: string;
  name: string;
}

export interface ChargedData {
  key: EventKey;
  session_id: string;
  item: { kind: string; id: string };
  model: string;
  /** What this charge debited, in nano-USD (1 USD = 1e9). */
  cost_nano: string;
  /** The provider's usage object, as it was charged. */
  usage: unknown;
}

export interface SettledData {
  key: EventKey;
  session_id: string;
  model: string;
  status: 'settled' | 'recovered';
  end_reason: string;
  started_at: string;
  ended_at: string;
  /** The sum of the session's charges, in nano-USD. */
  cost_nano: string;
  charge_count: number;
}

export function toCloudEvent(event: UsageEvent, source: string = USAGE_EVENT_SOURCE): UsageCloudEvent {
  const key = { id: event.keyId, name: event.keyName };
  const data: ChargedData | SettledData =
    event.type === 'relay.usage.charged'
      ? { key, session_id: event.sessionId, item: { kind: event.kind, id: event.itemId }, model: event.model, cost_nano: event.costNano.toString(), usage: event.usage }
      : {
          key,
          session_id: event.sessionId,
          model: event.model,
          status: event.status,
          end_reason: event.endReason,
          started_at: event.startedAt.toISOString(),
          ended_at: event.endedAt.toISOString(),
          cost_nano: event.totalNano.toString(),
          charge_count: event.chargeCount,
        };
  return {
    specversion: '1.0',
    id: event.id,
    source,
    type: event.type,
    subject: event.sessionId,
    time: event.time.toISOString(),
    datacontenttype: 'application/json',
    data,
  };
}
