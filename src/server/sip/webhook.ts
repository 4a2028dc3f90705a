import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Webhook } from 'standardwebhooks';
import { RelayError, asRelayError } from '../../errors.js';
import { refuse, refuseWith } from '../calls.js';
import type { Admission, PhoneRoute } from '../ports.js';
import type { UpgradeEnv } from '../upgrade.js';
import type { Upstream } from '../upstream.js';
import type { CallDesk } from './call-desk.js';
import { readSipHeaders, type SipHeader } from './headers.js';
import type { PendingCall } from './pending.js';
import type { PhoneCallsOptions } from './phone-calls.js';
import { routeFor } from './routing.js';
import { forwardIncomingCall } from './tenant-webhook.js';

/** A webhook event is a few kilobytes: its SIP headers are bounded. */
const MAX_WEBHOOK_BYTES = 64 * 1024;

type Incoming = { kind: 'call'; id: string; createdAt: number; upstreamCallId: string; headers: SipHeader[] } | { kind: 'other' } | { kind: 'problem'; message: string };

function readIncoming(event: unknown): Incoming {
  if (typeof event !== 'object' || event === null) return { kind: 'problem', message: 'The event is not a JSON object.' };
  const { type, id, created_at: createdAt, data } = event as Record<string, unknown>;
  if (type !== 'realtime.call.incoming') return { kind: 'other' };
  if (typeof data !== 'object' || data === null) return { kind: 'problem', message: '"data" is not an object.' };
  const callId = (data as Record<string, unknown>).call_id;
  if (typeof callId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(callId)) return { kind: 'problem', message: '"data.call_id" is not a call id.' };
  const headers = readSipHeaders((data as Record<string, unknown>).sip_headers);
  if (typeof headers === 'string') return { kind: 'problem', message: headers };
  return { kind: 'call', id: typeof id === 'string' ? id.slice(0, 128) : '', createdAt: typeof createdAt === 'number' ? createdAt : Math.floor(Date.now() / 1000), upstreamCallId: callId, headers };
}

/**
 * `POST /v1/sip/webhook`, registered with OpenAI: each verified, first-seen
 * `realtime.call.incoming` is routed to a tenant's key, then accepted at once
 * or forwarded to the tenant's own webhook. Unrouted calls and keys that
 * cannot pay are rejected upstream before any audio is billed.
 */
export function sipWebhook(options: PhoneCallsOptions, desk: CallDesk): Hono<UpgradeEnv> {
  const { statuses, events } = options;
  const verifier = options.webhookSecret ? new Webhook(options.webhookSecret) : null;

  function statusFor(error: RelayError): number {
    return error.code === 'rate_limit_exceeded' ? statuses.busy : statuses.refused;
  }

  /** Decides one first-seen incoming call; never rejects. */
  async function ring(incoming: Extract<Incoming, { kind: 'call' }>, upstream: Upstream): Promise<void> {
    let route: PhoneRoute | undefined;
    try {
      route = routeFor(await options.directory.routes(), incoming.headers);
    } catch (error) {
      desk.decided(incoming, 'refused', statuses.refused, `the routes could not be read: ${(error as Error).message}`);
      await desk.reject(upstream, incoming.upstreamCallId, statuses.refused);
      return;
    }
    if (!route) {
      desk.decided(incoming, 'unrouted', statuses.unrouted, 'no route matches the call');
      await desk.reject(upstream, incoming.upstreamCallId, statuses.unrouted);
      return;
    }
    let admission: Admission;
    try {
      if (!options.gatekeeper.admitRouted) throw new RelayError('billing_unavailable', 'This relay cannot admit routed calls.');
      if (options.isShuttingDown()) throw new RelayError('server_shutting_down');
      admission = await options.gatekeeper.admitRouted(route.keyId, String(route.session.model ?? ''));
    } catch (error) {
      const failure = asRelayError(error, 'billing_unavailable');
      const sipStatus = statusFor(failure);
      desk.decided(incoming, sipStatus === statuses.busy ? 'busy' : 'refused', sipStatus, failure.code);
      await desk.reject(upstream, incoming.upstreamCallId, sipStatus);
      return;
    }
    const call: PendingCall = { callId: `rtc_${randomBytes(16).toString('hex')}`, upstream, upstreamCallId: incoming.upstreamCallId, route, admission };
    if (!route.webhookUrl || !route.webhookSecret) {
      const failure = await desk.start(call, route.session);
      desk.decided(call, failure ? 'accept_failed' : 'accepted', null, failure?.code ?? null);
      return;
    }
    desk.pending.add(call);
    desk.decided(call, 'forwarded');
    const problem = await forwardIncomingCall(route.webhookUrl, route.webhookSecret, { id: incoming.id, createdAt: incoming.createdAt, callId: call.callId, sipHeaders: incoming.headers }, options.tenantTimeoutMs);
    if (problem === null) return;
    // The tenant never heard of the call: nobody will answer it.
    if (!desk.pending.take(call.callId)) return;
    admission.release();
    desk.decided(call, 'forward_failed', statuses.refused, problem);
    await desk.reject(upstream, incoming.upstreamCallId, statuses.refused);
  }

  const webhook = new Hono<UpgradeEnv>();
  webhook.post(
    '/',
    bodyLimit({ maxSize: MAX_WEBHOOK_BYTES, onError: (c) => refuse(c, 'request_too_large') }),
    async (c) => {
      if (!verifier) {
        events?.webhook?.('not_configured');
        return refuse(c, 'webhook_not_configured');
      }
      const raw = await c.req.text();
      const webhookId = c.req.header('webhook-id') ?? '';
      let event: unknown;
      try {
        event = verifier.verify(raw, {
          'webhook-id': webhookId,
          'webhook-timestamp': c.req.header('webhook-timestamp') ?? '',
          'webhook-signature': c.req.header('webhook-signature') ?? '',
        });
      } catch {
        events?.webhook?.('invalid_signature');
        return refuse(c, 'invalid_webhook_signature');
      }
      const incoming = readIncoming(event);
      if (incoming.kind === 'problem') {
        events?.webhook?.('invalid_event');
        return refuse(c, 'invalid_webhook', incoming.message);
      }
      if (incoming.kind === 'other') {
        events?.webhook?.('ignored');
        return c.body(null, 200);
      }
      if (!options.upstream) return refuse(c, 'calls_unsupported', 'No upstream of this relay takes phone calls.');
      if (webhookId.length > 256) return refuse(c, 'invalid_webhook', 'The webhook id is too long.');
      let first: boolean;
      try {
        first = await options.directory.firstDelivery(webhookId);
      } catch (error) {
        // Not recorded, not acted on: OpenAI delivers it again.
        return refuseWith(c, asRelayError(error, 'billing_unavailable'));
      }
      if (!first) {
        events?.webhook?.('replayed');
        return c.body(null, 200);
      }
      // OpenAI waits for a quick answer: the call is decided meanwhile.
      void ring(incoming, options.upstream).catch(() => undefined);
      return c.body(null, 200);
    },
  );

  return webhook;
}
