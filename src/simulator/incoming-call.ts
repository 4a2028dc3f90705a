/**
 * An incoming phone call as OpenAI announces one: the `realtime.call.incoming`
 * event, signed with the Standard Webhooks scheme and posted once to the
 * configured URL.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { Json } from './shapes.js';

export interface SipHeader {
  name: string;
  value: string;
}

/** What the simulator's owner learns of the one delivery attempt. */
export type WebhookDelivery = { status: number } | { error: string };

const DELIVERY_TIMEOUT_MS = 5_000;

/** A `whsec_…` secret standardwebhooks can sign with; throws a RangeError naming the problem. */
export function webhookSigner(secret: string): Webhook {
  try {
    return new Webhook(secret);
  } catch {
    throw new RangeError('callWebhook.secret must be a Standard Webhooks secret: whsec_ followed by base64');
  }
}

export function incomingCallEvent(callId: string, sipHeaders: readonly SipHeader[]): Json {
  return {
    object: 'event',
    id: `evt_${randomBytes(12).toString('hex')}`,
    type: 'realtime.call.incoming',
    created_at: Math.floor(Date.now() / 1000),
    data: { call_id: callId, sip_headers: sipHeaders.map(({ name, value }) => ({ name, value })) },
  };
}

export function newWebhookId(): string {
  return `wh_${randomBytes(12).toString('hex')}`;
}

/** Posts `event` once under the webhook id `id` (a redelivery reuses it); a receiver that is down or slow is reported, not retried. */
export async function deliverWebhook(url: string, signer: Webhook, event: Json, id: string = newWebhookId()): Promise<WebhookDelivery> {
  const payload = JSON.stringify(event);
  const at = new Date();
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': signer.sign(id, at, payload),
      },
      body: payload,
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    return { status: res.status };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
