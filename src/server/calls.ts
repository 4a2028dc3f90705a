import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import type { Actor } from 'xstate';
import { ERRORS, RelayError, errorBody, type AnyErrorCode } from '../errors.js';
import { CANCEL_ERRORS, type SessionMachine } from '../machines/session.js';
import { CallLink } from './call-link.js';
import { isClientSecret } from '../protocol/client-secret.js';
import type { ClientAddressOptions } from './client-address.js';
import { bearer, clientAddressOf, isTrustedTransport } from './handshake.js';
import { mayControl } from './live-link.js';
import type { Admission, Gatekeeper, SessionMeter } from './ports.js';
import type { LinkTimings, SessionObserver } from './session-link.js';
import { takesCalls, type CallOffer } from './upstream-call.js';
import type { UpgradeEnv } from './upgrade.js';
import type { Upstream } from './upstream.js';

/** An SDP offer is a few kilobytes; a session config, a few more. */
const MAX_OFFER_BYTES = 256 * 1024;

export interface CallRoutesOptions {
  gatekeeper: Gatekeeper;
  allowedOrigins: string[];
  /** Who a request is from behind trusted balancers. */
  clientAddresses?: ClientAddressOptions;
  isShuttingDown(): boolean;
  /** Upstreams that serve `model`, in the order they are tried. */
  upstreamsFor(model: string): Upstream[];
  timings: LinkTimings;
  observer?: SessionObserver;
  /** Runs the call's session machine, as every session's, until it has ended. */
  run(link: CallLink, admission: Admission): Actor<SessionMachine>;
  /** The live call with this relay call id. */
  findCall(callId: string): { link: CallLink; actor: Actor<SessionMachine> } | undefined;
}

/** A refusal of the request itself (its shape, its origin, its key), in OpenAI's error envelope. */
export function refuse(c: Context, code: AnyErrorCode, message?: string): Response {
  return c.json(errorBody(code, message), ERRORS[code].status as 400);
}

/** A refusal of admission or of the call's placement, with `Retry-After` where retrying later helps. */
export function refuseWith(c: Context, error: RelayError): Response {
  const headers: Record<string, string> = {};
  if (error.retryAfterSeconds !== undefined || error.status === 429) headers['Retry-After'] = String(error.retryAfterSeconds ?? 1);
  return c.json(error.toBody(), error.status as 400, headers);
}

/** A body the upstream could take for an SDP offer: checked here so that a wrong body never costs an upstream request. */
function looksLikeOffer(sdp: string): boolean {
  return /^v=0\r?\n/.test(sdp) && /\r?\nm=audio /.test(sdp);
}

async function fieldText(value: unknown): Promise<string | undefined> {
  if (typeof value === 'string') return value;
  if (value instanceof Blob) return value.text();
  return undefined;
}

type ParsedOffer = { offer: CallOffer; model: string | undefined } | { refusal: string };

/** Either of OpenAI's two shapes: the offer as the body, or multipart `sdp` + `session`. */
async function readOffer(c: Context): Promise<ParsedOffer> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const queryModel = c.req.query('model') || undefined;
  if (type === 'application/sdp') {
    const sdp = await c.req.text();
    return looksLikeOffer(sdp) ? { offer: { sdp, session: {} }, model: queryModel } : { refusal: 'The body is not an SDP offer with an audio section.' };
  }
  if (type === 'multipart/form-data') {
    let form: Record<string, unknown>;
    try {
      form = await c.req.parseBody();
    } catch {
      return { refusal: 'The multipart body could not be read.' };
    }
    const sdp = await fieldText(form.sdp);
    if (sdp === undefined || !looksLikeOffer(sdp)) return { refusal: 'The "sdp" field is not an SDP offer with an audio section.' };
    const sessionText = await fieldText(form.session);
    let session: unknown = {};
    if (sessionText !== undefined) {
      try {
        session = JSON.parse(sessionText);
      } catch {
        return { refusal: 'The "session" field is not JSON.' };
      }
    }
    if (typeof session !== 'object' || session === null || Array.isArray(session)) return { refusal: 'The "session" field must be a JSON object.' };
    const { model, ...rest } = session as Record<string, unknown>;
    return { offer: { sdp, session: rest }, model: typeof model === 'string' && model ? model : queryModel };
  }
  return { refusal: `A call is opened with "Content-Type: application/sdp" or "multipart/form-data", not "${type || '(none)'}".` };
}

/** A session config a client secret carries: its model picks the model, the rest starts the call. */
function secretSession(admission: Admission): Record<string, unknown> {
  const carried = admission.clientSecretSession;
  if (!carried) return {};
  const { model: _model, ...rest } = carried;
  return rest;
}

/** How a call that never answered ended, as the HTTP error its caller gets. */
function failureOf(link: CallLink, actor: Actor<SessionMachine>): RelayError {
  const { cause } = actor.getSnapshot().context;
  if (link.upstream.dialError) return link.upstream.dialError;
  if (cause?.kind === 'dial_failed') return new RelayError(cause.error.code, cause.error.message);
  if (cause?.kind === 'cancelled') return new RelayError(CANCEL_ERRORS[cause.reason]);
  if (cause?.kind === 'error') return new RelayError(cause.error.code, cause.error.message);
  return new RelayError('upstream_timeout');
}

/** Resolves once the machine has left `connecting`: null if the call's sideband opened, else why not. */
export function connectedOf(link: CallLink, actor: Actor<SessionMachine>): Promise<RelayError | null> {
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

/** Relay call ids name the session they belong to: `rtc_<hex>` is the call of `sess_<hex>`. */
export function sessionIdOfCall(callId: string): string | null {
  return /^rtc_[0-9a-f]{32}$/.test(callId) ? `sess_${callId.slice(4)}` : null;
}

/**
 * WebRTC calls through the relay, in OpenAI's shapes: `POST /v1/realtime/calls`
 * takes the caller's offer (admitted like a WebSocket handshake, in the same
 * order and with the same errors), places the call at an upstream with the
 * relay's own key and answers `201` with the upstream's SDP answer and the
 * relay's own call id in `Location`. The call is a session of the same
 * machine as a WebSocket's, metered over the upstream's sideband.
 * `POST /v1/realtime/calls/{id}/hangup` ends it, for the key that opened it.
 */
export function callRoutes(options: CallRoutesOptions): Hono<UpgradeEnv> {
  const app = new Hono<UpgradeEnv>();
  const originAllowed = (origin: string | undefined) => !origin || options.allowedOrigins.length === 0 || options.allowedOrigins.includes(origin);
  // Browsers call from their page's origin: the Agents SDK sends these headers and reads the call id from Location.
  app.use(
    '*',
    cors({
      origin: (origin) => (origin && originAllowed(origin) ? origin : null),
      allowMethods: ['POST', 'OPTIONS'],
      allowHeaders: ['Authorization', 'Content-Type', 'X-OpenAI-Agents-SDK'],
      exposeHeaders: ['Location'],
      maxAge: 600,
    }),
  );
  app.use('*', async (c, next) => {
    if (!originAllowed(c.req.header('origin'))) return refuse(c, 'origin_not_allowed');
    await next();
  });

  app.post(
    '/',
    bodyLimit({ maxSize: MAX_OFFER_BYTES, onError: (c) => refuse(c, 'request_too_large') }),
    async (c) => {
      if (options.isShuttingDown()) return refuse(c, 'server_shutting_down');
      const parsed = await readOffer(c);
      if ('refusal' in parsed) return refuse(c, 'invalid_offer', parsed.refusal);
      const key = bearer(c.req.header('authorization'));
      const socket = c.env.incoming.socket;
      const clientAddress = clientAddressOf(c.env.incoming, options.clientAddresses);
      let admission: Admission;
      try {
        // Without a model only a client secret can name one (its session's).
        if (parsed.model === undefined && !isClientSecret(key)) throw new RelayError('missing_model', 'The model is required: "?model=" or the "model" of the "session" field.');
        admission = await options.gatekeeper.admit({
          key,
          keySource: key === undefined ? 'none' : 'header',
          model: parsed.model,
          intent: undefined,
          ip: clientAddress,
          origin: c.req.header('origin'),
          trustedTransport: isTrustedTransport(c.env.incoming, clientAddress),
        });
      } catch (error) {
        return refuseWith(c, error instanceof RelayError ? error : new RelayError('internal_error', undefined, { cause: error }));
      }
      const hex = randomBytes(16).toString('hex');
      const sessionId = `sess_${hex}`;
      const callId = `rtc_${hex}`;
      let meter: SessionMeter;
      try {
        // The session row exists before the call is placed, so a crash from here on leaves something to recover.
        meter = await admission.openMeter({ sessionId, transport: 'webrtc', caller: admission.caller, model: admission.model, intent: undefined, startedAt: new Date() });
      } catch (error) {
        admission.release();
        return refuseWith(c, error instanceof RelayError ? error : new RelayError('billing_unavailable', undefined, { cause: error }));
      }
      const link = new CallLink({
        sessionId,
        callId,
        clientAddress,
        caller: admission.caller,
        model: admission.model,
        offer: { sdp: parsed.offer.sdp, session: { ...secretSession(admission), ...parsed.offer.session } },
        upstreams: options.upstreamsFor(admission.model).filter(takesCalls),
        meter,
        timings: options.timings,
        observer: options.observer,
      });
      const actor = options.run(link, admission);
      const failure = await connectedOf(link, actor);
      const answer = link.call.answer;
      if (failure || !answer) return refuseWith(c, failure ?? failureOf(link, actor));
      // A caller that left while the call was placed will never connect to it: it is not left running.
      if (socket.destroyed) link.client.hangUp();
      return c.body(answer, 201, { 'Content-Type': 'application/sdp', Location: `/v1/realtime/calls/${callId}` });
    },
  );

  app.post('/:callId/hangup', async (c) => {
    const key = bearer(c.req.header('authorization'));
    if (key === undefined) return refuse(c, 'missing_api_key');
    const caller = options.gatekeeper.identify ? await options.gatekeeper.identify(key).catch(() => undefined) : null;
    if (caller === undefined) return refuse(c, 'billing_unavailable');
    if (caller === null) return refuse(c, 'invalid_api_key');
    const live = options.findCall(c.req.param('callId'));
    // Another key's call is not told apart from no call at all.
    if (!live || !mayControl(caller, live.link)) return refuse(c, 'call_not_found');
    live.link.client.hangUp();
    return c.body(null, 200);
  });

  return app;
}
