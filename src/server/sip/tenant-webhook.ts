import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { signedWebhookHeaders } from '../../protocol/standard-webhooks.js';
import type { SipHeader } from './headers.js';

export interface IncomingCallEvent {
  id: string;
  createdAt: number;
  callId: string;
  sipHeaders: SipHeader[];
}

/**
 * Forwards `realtime.call.incoming` to a tenant's webhook, in OpenAI's shape
 * but with the relay's call id, signed with the tenant's own secret (Standard
 * Webhooks), so that the tenant verifies it exactly as it would OpenAI's.
 * Resolves with why it failed, or null once the tenant answered 2xx.
 */
export async function forwardIncomingCall(url: string, secret: string, event: IncomingCallEvent, timeoutMs: number): Promise<string | null> {
  const body = JSON.stringify({
    object: 'event',
    id: event.id,
    type: 'realtime.call.incoming',
    created_at: event.createdAt,
    data: { call_id: event.callId, sip_headers: event.sipHeaders },
  });
  const headers = signedWebhookHeaders(new Webhook(secret), `msg_${randomBytes(16).toString('hex')}`, body);
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel().catch(() => undefined);
    return response.status >= 200 && response.status <= 299 ? null : `the tenant's webhook answered ${response.status}`;
  } catch (error) {
    return `the tenant's webhook could not be reached: ${(error as Error).message}`;
  }
}
