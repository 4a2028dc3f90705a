import { RelayError, asRelayError } from '../errors.js';
import type { FailoverReport } from './failover.js';
import { isFailoverable, statusError, type Upstream } from './upstream.js';

/** What the caller offered: its SDP, and the session config to start the call with (without the model: the relay sets it). */
export interface CallOffer {
  sdp: string;
  session: Record<string, unknown>;
}

/** Upstreams that speak OpenAI's calls interface (`POST /v1/realtime/calls` and the sideband); Azure's do not. */
export function takesCalls(upstream: Upstream): boolean {
  return upstream.kind === 'openai';
}

const MAX_ERROR_BODY = 16 * 1024;

function httpBase(upstream: Upstream): URL {
  const base = new URL(upstream.baseUrl);
  base.protocol = base.protocol === 'ws:' || base.protocol === 'http:' ? 'http:' : 'https:';
  base.pathname = base.pathname.replace(/\/+$/, '');
  base.search = '';
  return base;
}

export function endpoint(upstream: Upstream, path: string): string {
  const base = httpBase(upstream);
  base.pathname = `${base.pathname}${path}`;
  return base.toString();
}

/** The model's name at this upstream (own properties only: the name comes from the client). */
export function deploymentOf(upstream: Upstream, model: string): string {
  return Object.hasOwn(upstream.deployments, model) ? upstream.deployments[model]! : model;
}

/** Keys and the upstream's own ids never leave the relay, even quoted in an upstream's message. */
function redacted(message: string, upstreamKey: string): string {
  const withoutKey = upstreamKey ? message.split(upstreamKey).join('[redacted]') : message;
  return withoutKey.replace(/\b(?:sk|ek)[-_][A-Za-z0-9_-]{6,}/g, '[redacted]').replace(/\b(?:rtc|sess|call|req)_[A-Za-z0-9]{6,}/g, '[redacted]');
}

/**
 * A 400 or 422 in OpenAI's envelope with `invalid_request_error` is about what
 * the caller sent (its offer or its session config), not about the relay: the
 * caller gets it as its own error, with the upstream's message and param.
 */
function callerError(status: number, body: string, upstreamKey: string): RelayError | null {
  if (status !== 400 && status !== 422) return null;
  let error: { type?: unknown; message?: unknown; param?: unknown } | undefined;
  try {
    error = (JSON.parse(body) as { error?: typeof error })?.error;
  } catch {
    return null;
  }
  if (error?.type !== 'invalid_request_error' || typeof error.message !== 'string' || !error.message) return null;
  const param = typeof error.param === 'string' && error.param ? redacted(error.param, upstreamKey).slice(0, 200) : null;
  return new RelayError('upstream_invalid_request', redacted(error.message, upstreamKey).slice(0, 500), { param });
}

/** An upstream's non-success answer as a RelayError; with `callerInput`, the refusal of the caller's own offer or session config is the caller's. */
export async function refusal(response: Response, callerInput?: { upstreamKey: string }): Promise<RelayError> {
  const body = (await response.text().catch(() => '')).slice(0, MAX_ERROR_BODY);
  return (callerInput && callerError(response.status, body, callerInput.upstreamKey)) ?? statusError(response.status, body);
}

/**
 * Asks the upstream to end one of its calls, with the relay's key for it.
 * Resolves with the upstream's status (404: the call was gone already), or
 * with the reason no answer came within `timeoutMs`; never rejects.
 */
export function hangUpAt(upstream: Upstream, callId: string, timeoutMs: number): Promise<{ status: number } | { failed: string }> {
  return fetch(endpoint(upstream, `/realtime/calls/${encodeURIComponent(callId)}/hangup`), {
    method: 'POST',
    headers: { Authorization: `Bearer ${upstream.apiKey}` },
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs),
  }).then(
    (response) => {
      void response.body?.cancel().catch(() => undefined);
      return { status: response.status };
    },
    (error: unknown) => ({ failed: (error as Error).message }),
  );
}

/**
 * One WebRTC call placed at an upstream on a caller's behalf: the offer goes
 * there with the relay's own key, the upstream's call id stays here (the
 * caller only ever sees the relay's), and the call is hung up once.
 */
export class UpstreamCall {
  upstream: Upstream | null = null;
  /** The upstream's id of the call; null until it answered. */
  upstreamCallId: string | null = null;
  answer: string | null = null;
  private hangingUp: Promise<void> | null = null;

  constructor(
    protected readonly model: string,
    protected readonly offer: CallOffer,
  ) {}

  /** The model the call's upstream serves, as priced (a deployment is only its name there). */
  get servedModel(): string {
    return this.model;
  }

  /**
   * Posts the offer to each upstream in turn until one answers `201`; moves
   * on only when the failure leaves nothing behind (the upstream refused or
   * could not be reached). Rejects with a RelayError.
   */
  async place(candidates: Upstream[], signal: AbortSignal, report: FailoverReport = {}): Promise<void> {
    if (candidates.length === 0) throw new RelayError('calls_unsupported', `No upstream of this relay that serves "${this.model}" takes WebRTC calls; connect over WebSocket instead.`);
    let lastError: RelayError | null = null;
    for (const upstream of candidates) {
      if (signal.aborted) throw new RelayError('upstream_timeout');
      const began = Date.now();
      try {
        await this.placeAt(upstream, signal);
        report.dialed?.(upstream.name, Date.now() - began);
        return;
      } catch (error) {
        lastError = signal.aborted ? new RelayError('upstream_timeout') : asRelayError(error, 'upstream_error');
        if (signal.aborted) throw lastError;
        report.dialFailed?.(upstream.name, lastError, Date.now() - began);
        // A call that exists upstream (its answer unreadable) is this one, to be hung up: another would replace its id.
        if (!isFailoverable(lastError) || this.upstreamCallId !== null) throw lastError;
      }
    }
    throw lastError ?? new RelayError('upstream_unavailable');
  }

  private async placeAt(upstream: Upstream, signal: AbortSignal): Promise<void> {
    const form = new FormData();
    form.set('sdp', this.offer.sdp);
    form.set('session', JSON.stringify({ type: 'realtime', ...this.offer.session, model: deploymentOf(upstream, this.model) }));
    let response: Response;
    try {
      response = await fetch(endpoint(upstream, '/realtime/calls'), {
        method: 'POST',
        headers: { Authorization: `Bearer ${upstream.apiKey}` },
        body: form,
        redirect: 'manual',
        signal,
      });
    } catch (error) {
      throw new RelayError('upstream_unavailable', `The upstream could not be reached: ${(error as Error).message}`, { cause: error });
    }
    if (response.status !== 201) throw await refusal(response, { upstreamKey: upstream.apiKey });
    const location = response.headers.get('location') ?? '';
    const callId = location.split('/').filter(Boolean).pop();
    if (!callId) throw new RelayError('upstream_error', 'The upstream answered the call without a Location.');
    // Known before the answer is read: a call that exists upstream is always hung up.
    this.upstream = upstream;
    this.upstreamCallId = callId;
    const answer = await response.text();
    if (!answer) throw new RelayError('upstream_error', 'The upstream answered the call without an SDP answer.');
    this.answer = answer;
  }

  /** The sideband WebSocket that joins the call's session: its server events carry the usage. */
  sidebandRequest(): { url: string; headers: Record<string, string> } {
    const upstream = this.upstream!;
    const url = httpBase(upstream);
    url.protocol = url.protocol === 'http:' ? 'ws:' : 'wss:';
    url.pathname = `${url.pathname}/realtime`;
    url.search = new URLSearchParams({ call_id: this.upstreamCallId! }).toString();
    return { url: url.toString(), headers: { Authorization: `Bearer ${upstream.apiKey}` } };
  }

  /**
   * Ends the call upstream, once, however many paths ask. Never rejects: a
   * call already gone (404) or an upstream that does not answer within
   * `timeoutMs` leaves nothing the relay could do more.
   */
  hangUp(timeoutMs: number): Promise<void> {
    if (this.hangingUp) return this.hangingUp;
    const upstream = this.upstream;
    const callId = this.upstreamCallId;
    if (!upstream || !callId) return (this.hangingUp = Promise.resolve());
    this.hangingUp = hangUpAt(upstream, callId, timeoutMs).then(() => undefined);
    return this.hangingUp;
  }
}
