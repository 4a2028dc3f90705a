import type { Webhook } from 'standardwebhooks';

/**
 * The three headers of a Standard Webhooks delivery: its id (the same on a
 * redelivery, so a receiver can drop repeats), when it was signed, and the
 * signature over both and the body.
 */
export function signedWebhookHeaders(signer: Webhook, id: string, body: string, at: Date = new Date()): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signer.sign(id, at, body),
  };
}
