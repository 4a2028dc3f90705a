import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Webhook } from 'standardwebhooks';
import type { Actor } from 'xstate';
import { ERRORS, RelayError, asRelayError, errorBody, type AnyErrorCode } from '../../errors.js';
import type { SessionMachine } from '../../machines/session.js';
import { CallLink } from '../call-link.js';
import { failureOf } from '../calls.js';
import type { Admission, Caller, Gatekeeper, PhoneDirectory, PhoneRoute } from '../ports.js';
import type { LinkTimings, SessionObserver } from '../session-link.js';
import type { UpgradeEnv } from '../upgrade.js';
import type { Upstream } from '../upstream.js';
import { readSipHeaders, type SipHeader } from './headers.js';
import { PendingCalls, type PendingCall } from './pending.js';
import { routeFor } from './routing.js';
import { forwardIncomingCall } from './tenant-webhook.js';
import { SipUpstreamCall, controlCall } from './upstream-control.js';

/** A webhook event is a few kilobytes: its SIP headers are bounded. */
const MAX_WEBHOOK_BYTES = 64 * 1024;
const MAX_CONTROL_BYTES = 64 * 1024;
/** How long one call control request to the upstream may take. */
const CONTROL_TIMEOUT_MS = 10_000;
const REFER_TARGET = '"target_uri" is a sip:, sips: or tel: URI of at most 256 characters.';
const TARGET_URI = /^(sips?|tel):[^\s\u0000-\u001f\u007f<>"]{1,250}$/i;

/** How an incoming call ended before any session began, for logs and metrics. */
export type PhoneCallOutcome = 'unrouted' | 'refused' | 'busy' | 'forwarded' | 'tenant_rejected' | 'tenant_referred' | 'tenant_timeout' | 'forward_failed' | 'accepted' | 'accept_failed';

export interface PhoneCallEvents {
  /** An incoming call was decided (every call is, once). `reason` explains a refusal. */
  decided?(call: { upstreamCallId: string; callId: string | null; keyName: string | null; outcome: PhoneCallOutcome; sipStatus: number | null; reason: string | null }): void;
  /** A webhook was refused or ignored. */
  webhook?(verdict: 'invalid_signature' | 'invalid_event' | 'replayed' | 'ignored' | 'not_configured'): void;
  /** A call control request to the upstream failed (the call may be left to ring out). */
  controlFailed?(upstreamCallId: string, action: string, error: RelayError): void;
}

export interface PhoneCallsOptions {
  /** OPENAI_WEBHOOK_SECRET; without it the webhook refuses every request. */
  webhookSecret: string | undefined;
  directory: PhoneDirectory;
  gatekeeper: Gatekeeper;
  /** The upstream whose SIP trunk the calls come in on; null when none takes calls. */
  upstream: Upstream | null;
  statuses: { unrouted: number; refused: number; busy: number };
  tenantTimeoutMs: number;
  timings: LinkTimings;
  observer?: SessionObserver;
  events?: PhoneCallEvents;
  isShuttingDown(): boolean;
  run(link: CallLink, admission: Admission): Actor<SessionMachine>;
  findCall(callId: string): { link: CallLink; actor: Actor<SessionMachine> } | undefined;
}

export interface PhoneCalls {
  /** `POST /v1/sip/webhook`. */
  webhook: Hono<UpgradeEnv>;
  /** `POST /v1/realtime/calls/{id}/accept|reject|refer`, for the tenant that owns the call. */
  control: Hono<UpgradeEnv>;
  /** Rejects every call still waiting for its tenant (shutdown). */
  close(): Promise<void>;
}

function refuse(c: Context, code: AnyErrorCode, message?: string): Response {
  return c.json(errorBody(code, message), ERRORS[code].status as 400);
}

function refuseWith(c: Context, error: RelayError): Response {
  return c.json(error.toBody(), error.status as 400);
}

function bearer(header: string | undefined): string | undefined {
  const match = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  return match ? match[1]!.trim() : undefined;
}

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

/** The body's JSON object (empty when there is no body); null when it is not one. */
async function jsonBody(c: Context): Promise<Record<string, unknown> | null> {
  const text = await c.req.text();
  if (text.trim() === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Answered below.
  }
  return null;
}

/** Resolves once the machine has left `connecting`: null when the call was accepted and its sideband opened, else why not. */
function acceptedOf(link: CallLink, actor: Actor<SessionMachine>): Promise<RelayError | null> {
  return new Promise((resolve) => {
    const decide = () => {
      const snapshot = actor.getSnapshot();
      if (snapshot.matches('connecting')) return false;
      resolve(snapshot.context.upstreamOpened ? null : failureOf(link, actor));
      return true;
    };
    if (decide()) return;
    const watch = actor.subscribe(() => {
      if (decide()) watch.unsubscribe();
    });
  });
}

/**
 * OpenAI's SIP interface through the relay. The operator registers
 * `POST /v1/sip/webhook` with OpenAI; each verified, first-seen
 * `realtime.call.incoming` is routed to a tenant's key. A route without a
 * tenant webhook is accepted at once and metered as one session (transport
 * `sip`); with one, the event goes to the tenant re-signed with its secret
 * and the relay's call id, and the tenant accepts, rejects or refers through
 * the relay. Unrouted calls and keys that cannot pay are rejected upstream
 * before any audio is billed.
 */
export function phoneCalls(options: PhoneCallsOptions): PhoneCalls {
  const { statuses, events } = options;
  const verifier = options.webhookSecret ? new Webhook(options.webhookSecret) : null;
  const pending = new PendingCalls(options.tenantTimeoutMs, (call) => {
    void rejectUpstream(call.upstream, call.upstreamCallId, statuses.refused);
    call.admission.release();
    events?.decided?.({ upstreamCallId: call.upstreamCallId, callId: call.callId, keyName: call.admission.caller.keyName, outcome: 'tenant_timeout', sipStatus: statuses.refused, reason: 'the tenant did not answer in time' });
  });

  async function control(upstream: Upstream, upstreamCallId: string, action: 'reject' | 'refer', body: Record<string, unknown>): Promise<RelayError | null> {
    try {
      await controlCall(upstream, upstreamCallId, action, body, AbortSignal.timeout(CONTROL_TIMEOUT_MS));
      return null;
    } catch (error) {
      const failure = asRelayError(error, 'upstream_error');
      events?.controlFailed?.(upstreamCallId, action, failure);
      return failure;
    }
  }

  function rejectUpstream(upstream: Upstream, upstreamCallId: string, sipStatus: number): Promise<RelayError | null> {
    return control(upstream, upstreamCallId, 'reject', { status_code: sipStatus });
  }

  /** Opens the call's session and accepts it upstream through the session machine; resolves with why it failed, or null. */
  async function start(call: PendingCall, session: Record<string, unknown>): Promise<RelayError | null> {
    const { admission } = call;
    const sessionId = `sess_${call.callId.slice(4)}`;
    let meter;
    try {
      meter = await admission.openMeter({ sessionId, transport: 'sip', caller: admission.caller, model: admission.model, intent: undefined, startedAt: new Date() });
    } catch (error) {
      admission.release();
      void rejectUpstream(call.upstream, call.upstreamCallId, statuses.refused);
      return asRelayError(error, 'billing_unavailable');
    }
    const { model: _model, ...config } = session;
    const link = new CallLink({
      sessionId,
      callId: call.callId,
      caller: admission.caller,
      model: admission.model,
      offer: { sdp: '', session: config },
      transport: 'sip',
      call: new SipUpstreamCall(admission.model, config, call.upstream, call.upstreamCallId),
      upstreams: [call.upstream],
      meter,
      timings: options.timings,
      observer: options.observer,
    });
    const actor = options.run(link, admission);
    return acceptedOf(link, actor);
  }

  function statusFor(error: RelayError): number {
    return error.code === 'rate_limit_exceeded' ? statuses.busy : statuses.refused;
  }

  /** Decides one first-seen incoming call; never rejects. */
  async function ring(incoming: Extract<Incoming, { kind: 'call' }>, upstream: Upstream): Promise<void> {
    const decided = (outcome: PhoneCallOutcome, extra: { callId?: string; keyName?: string; sipStatus?: number; reason?: string } = {}) =>
      events?.decided?.({ upstreamCallId: incoming.upstreamCallId, callId: extra.callId ?? null, keyName: extra.keyName ?? null, outcome, sipStatus: extra.sipStatus ?? null, reason: extra.reason ?? null });
    let route: PhoneRoute | undefined;
    try {
      route = routeFor(await options.directory.routes(), incoming.headers);
    } catch (error) {
      decided('refused', { sipStatus: statuses.refused, reason: `the routes could not be read: ${(error as Error).message}` });
      await rejectUpstream(upstream, incoming.upstreamCallId, statuses.refused);
      return;
    }
    if (!route) {
      decided('unrouted', { sipStatus: statuses.unrouted, reason: 'no route matches the call' });
      await rejectUpstream(upstream, incoming.upstreamCallId, statuses.unrouted);
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
      decided(sipStatus === statuses.busy ? 'busy' : 'refused', { sipStatus, reason: failure.code });
      await rejectUpstream(upstream, incoming.upstreamCallId, sipStatus);
      return;
    }
    const call: PendingCall = { callId: `rtc_${randomBytes(16).toString('hex')}`, upstream, upstreamCallId: incoming.upstreamCallId, route, admission };
    const keyName = admission.caller.keyName;
    if (!route.webhookUrl || !route.webhookSecret) {
      const failure = await start(call, route.session);
      decided(failure ? 'accept_failed' : 'accepted', { callId: call.callId, keyName, reason: failure?.code });
      return;
    }
    pending.add(call);
    decided('forwarded', { callId: call.callId, keyName });
    const problem = await forwardIncomingCall(route.webhookUrl, route.webhookSecret, { id: incoming.id, createdAt: incoming.createdAt, callId: call.callId, sipHeaders: incoming.headers }, options.tenantTimeoutMs);
    if (problem === null) return;
    // The tenant never heard of the call: nobody will answer it.
    if (!pending.take(call.callId)) return;
    admission.release();
    decided('forward_failed', { callId: call.callId, keyName, sipStatus: statuses.refused, reason: problem });
    await rejectUpstream(upstream, incoming.upstreamCallId, statuses.refused);
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

  async function callerOf(c: Context): Promise<Caller | RelayError> {
    const key = bearer(c.req.header('authorization'));
    if (key === undefined) return new RelayError('missing_api_key');
    if (!options.gatekeeper.identify) return new RelayError('billing_unavailable');
    const caller = await options.gatekeeper.identify(key).catch(() => undefined);
    if (caller === undefined) return new RelayError('billing_unavailable');
    return caller ?? new RelayError('invalid_api_key');
  }

  const controlApp = new Hono<UpgradeEnv>();
  controlApp.post(
    '/:callId/:action{accept|reject|refer}',
    bodyLimit({ maxSize: MAX_CONTROL_BYTES, onError: (c) => refuse(c, 'request_too_large') }),
    async (c) => {
      const caller = await callerOf(c);
      if (caller instanceof RelayError) return refuseWith(c, caller);
      const callId = c.req.param('callId');
      const action = c.req.param('action') as 'accept' | 'reject' | 'refer';
      const body = await jsonBody(c);
      if (body === null) return refuse(c, 'invalid_json');
      const waiting = pending.get(callId);
      // Another key's call is not told apart from no call at all.
      if (waiting && waiting.admission.caller.keyId === caller.keyId) return decide(c, waiting, action, body);
      const live = options.findCall(callId);
      if (!live || live.link.transport !== 'sip' || live.link.caller.keyId !== caller.keyId) return refuse(c, 'call_not_found');
      if (action !== 'refer') return refuse(c, 'call_not_pending');
      const target = referTarget(body);
      if (target === null) return refuse(c, 'invalid_call_control', REFER_TARGET);
      const { upstream, upstreamCallId } = live.link.call;
      if (!upstream || !upstreamCallId) return refuse(c, 'call_not_pending');
      // The upstream ends the call once it is transferred; its session then settles.
      const failure = await control(upstream, upstreamCallId, 'refer', { target_uri: target });
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    },
  );

  function referTarget(body: Record<string, unknown>): string | null {
    const target = body.target_uri;
    return typeof target === 'string' && TARGET_URI.test(target) ? target : null;
  }

  async function decide(c: Context, waiting: PendingCall, action: 'accept' | 'reject' | 'refer', body: Record<string, unknown>): Promise<Response> {
    const keyName = waiting.admission.caller.keyName;
    const decided = (outcome: PhoneCallOutcome, sipStatus: number | null, reason: string | null = null) =>
      events?.decided?.({ upstreamCallId: waiting.upstreamCallId, callId: waiting.callId, keyName, outcome, sipStatus, reason });
    if (action === 'reject') {
      const status = body.status_code ?? statuses.refused;
      if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 699) return refuse(c, 'invalid_call_control', '"status_code" is a SIP status from 400 to 699.');
      if (!pending.take(waiting.callId)) return refuse(c, 'call_not_pending');
      waiting.admission.release();
      decided('tenant_rejected', status);
      const failure = await rejectUpstream(waiting.upstream, waiting.upstreamCallId, status);
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    }
    if (action === 'refer') {
      const target = referTarget(body);
      if (target === null) return refuse(c, 'invalid_call_control', REFER_TARGET);
      if (!pending.take(waiting.callId)) return refuse(c, 'call_not_pending');
      waiting.admission.release();
      decided('tenant_referred', null, target);
      const failure = await control(waiting.upstream, waiting.upstreamCallId, 'refer', { target_uri: target });
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    }
    if (body.type !== undefined && body.type !== 'realtime') return refuse(c, 'invalid_call_control', 'A call is accepted with a "realtime" session.');
    const session = { ...waiting.route.session, ...body };
    delete session.type;
    const model = typeof session.model === 'string' && session.model ? session.model : String(waiting.route.session.model);
    let call = waiting;
    if (model !== waiting.admission.model) {
      // Another model than the route's: admitted again for it, the route's slot given back.
      let admission: Admission;
      try {
        admission = await options.gatekeeper.admitRouted!(waiting.route.keyId, model);
      } catch (error) {
        return refuseWith(c, asRelayError(error, 'billing_unavailable'));
      }
      if (admission.model !== waiting.admission.model) {
        if (!pending.get(waiting.callId)) {
          admission.release();
          return refuse(c, 'call_not_pending');
        }
        waiting.admission.release();
        call = { ...waiting, admission };
      } else {
        admission.release();
      }
    }
    if (!pending.take(waiting.callId)) {
      if (call !== waiting) call.admission.release();
      return refuse(c, 'call_not_pending');
    }
    const failure = await start(call, session);
    decided(failure ? 'accept_failed' : 'accepted', null, failure?.code ?? null);
    return failure ? refuseWith(c, failure) : c.body(null, 200);
  }

  return {
    webhook,
    control: controlApp,
    async close() {
      await Promise.all(
        pending.takeAll().map((call) => {
          call.admission.release();
          return rejectUpstream(call.upstream, call.upstreamCallId, statuses.refused);
        }),
      );
    },
  };
}
