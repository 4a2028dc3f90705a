/**
 * Every error the relay reports, in one table: the session's refusals and
 * closes, the admin API's answers, and what `relay keys` refuses. Each code
 * carries the OpenAI error `type` a client sees, the HTTP status used when it
 * is reported before the WebSocket upgrade (or by the admin API), the close
 * code used after the upgrade, and its message. `close` is null for codes that
 * only ever answer an HTTP request. The README's "Errors and close codes"
 * section is generated from this table (`npm run readme`).
 *
 * A client that misses a pong is terminated and the session ends as
 * `client_closed` (a terminated client could not read an `error` event). An
 * upstream that misses one is terminated too, and its client is told
 * `upstream_timeout`; one whose connection drops without a close frame,
 * `upstream_closed`. Either way the `error` event comes before the close frame.
 */

/** The OpenAI error `type`s the relay reports. */
export const OPENAI_ERROR_TYPES = ['invalid_request_error', 'insufficient_quota', 'rate_limit_error', 'server_error'] as const;

export type OpenAIErrorType = (typeof OPENAI_ERROR_TYPES)[number];

export interface ErrorEntry {
  type: OpenAIErrorType;
  /** HTTP status: before the upgrade, or from the admin API. */
  status: number;
  /** Close code after the upgrade; null for codes only reported over HTTP. */
  close: number | null;
  message: string;
}

export const ERRORS = {
  // Sessions: refused before the upgrade with `status`, or ended after it with `close`.
  missing_api_key: { type: 'invalid_request_error', status: 401, close: 1008, message: 'No relay key was provided. Send "Authorization: Bearer <key>", or, from a browser, the subprotocol "openai-insecure-api-key.<key>".' },
  invalid_api_key: { type: 'invalid_request_error', status: 401, close: 1008, message: 'The relay key is not valid.' },
  key_disabled: { type: 'invalid_request_error', status: 401, close: 1008, message: 'The relay key has been disabled.' },
  client_secret_expired: { type: 'invalid_request_error', status: 401, close: 1008, message: 'The client secret has expired: mint a new one.' },
  insecure_key_transport: { type: 'invalid_request_error', status: 401, close: 1008, message: 'A key in a subprotocol is only accepted over TLS or from loopback.' },
  origin_not_allowed: { type: 'invalid_request_error', status: 403, close: 1008, message: 'This Origin is not allowed to connect.' },
  model_not_found: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The model does not exist or is not served by this relay.' },
  client_secret_mismatch: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The request asks for another model or session type than the client secret was minted for.' },
  missing_model: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The "model" query parameter is required.' },
  subprotocol_required: { type: 'invalid_request_error', status: 400, close: 1008, message: 'Browser clients must offer the "realtime" subprotocol.' },
  insufficient_quota: { type: 'insufficient_quota', status: 429, close: 1008, message: 'The relay key has no balance left for this request.' },
  client_secret_spend_cap_exceeded: { type: 'insufficient_quota', status: 429, close: 1008, message: 'The client secret has reached its spend cap.' },
  session_spend_cap_exceeded: { type: 'insufficient_quota', status: 429, close: 1008, message: 'This session has reached its spend cap.' },
  rate_limit_exceeded: { type: 'rate_limit_error', status: 429, close: 1008, message: 'Too many sessions for this key or address; retry later.' },
  limits_unavailable: { type: 'server_error', status: 503, close: 1011, message: 'The shared rate limits could not be checked; retry later.' },
  server_shutting_down: { type: 'server_error', status: 503, close: 1001, message: 'The relay is shutting down; reconnect to another instance.' },
  upstream_unavailable: { type: 'server_error', status: 502, close: 1011, message: 'The upstream Realtime API could not be reached.' },
  upstream_timeout: { type: 'server_error', status: 504, close: 1011, message: 'The upstream Realtime API did not answer in time.' },
  upstream_auth_failed: { type: 'server_error', status: 502, close: 1011, message: 'The relay is not authorised by the upstream Realtime API.' },
  upstream_rate_limited: { type: 'rate_limit_error', status: 429, close: 1013, message: 'The upstream Realtime API is rate limiting this relay.' },
  upstream_rejected: { type: 'server_error', status: 502, close: 1011, message: 'The upstream Realtime API refused the session.' },
  upstream_invalid_request: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The upstream Realtime API refused the call\'s offer or session config as invalid; its message and param say what to fix.' },
  upstream_error: { type: 'server_error', status: 502, close: 1011, message: 'The upstream connection failed.' },
  upstream_closed: { type: 'server_error', status: 502, close: 1011, message: 'The upstream connection was lost.' },
  calls_unsupported: { type: 'invalid_request_error', status: 400, close: 1008, message: 'No upstream of this relay that serves the model takes WebRTC calls; connect over WebSocket instead.' },
  queue_overflow: { type: 'invalid_request_error', status: 400, close: 1008, message: 'Too many events were sent before the upstream answered.' },
  message_too_big: { type: 'invalid_request_error', status: 413, close: 1009, message: 'A frame exceeded the maximum payload size.' },
  invalid_frame: { type: 'invalid_request_error', status: 400, close: 1007, message: 'A frame could not be read.' },
  client_error: { type: 'invalid_request_error', status: 400, close: 1002, message: 'The client connection failed.' },
  idle_timeout: { type: 'invalid_request_error', status: 408, close: 1000, message: 'The session was closed after being idle too long.' },
  session_expired: { type: 'invalid_request_error', status: 408, close: 1001, message: 'The session reached its maximum duration.' },
  backpressure_stall: { type: 'server_error', status: 503, close: 1011, message: 'A peer stopped reading and the session stalled.' },
  session_cancelled: { type: 'invalid_request_error', status: 409, close: 1000, message: 'The session was cancelled by an operator.' },
  billing_unavailable: { type: 'server_error', status: 503, close: 1011, message: 'Usage could not be recorded; the session was closed so that nothing goes unbilled.' },
  internal_error: { type: 'server_error', status: 500, close: 1011, message: 'The relay failed unexpectedly.' },
  // Answered over HTTP only: a request to the realtime endpoint that is not an upgrade, the client
  // secrets endpoint, and the admin API (`relay keys` refuses the same input with the same codes).
  upgrade_required: { type: 'invalid_request_error', status: 426, close: null, message: 'This endpoint speaks WebSocket: send an Upgrade request.' },
  missing_admin_token: { type: 'invalid_request_error', status: 401, close: null, message: 'The admin API needs "Authorization: Bearer <ADMIN_TOKEN>".' },
  client_secret_not_allowed: { type: 'invalid_request_error', status: 403, close: null, message: 'A client secret only opens Realtime sessions and calls: use a relay key here.' },
  invalid_admin_token: { type: 'invalid_request_error', status: 401, close: null, message: 'The admin token is not valid.' },
  invalid_json: { type: 'invalid_request_error', status: 400, close: null, message: 'The request body must be a JSON object.' },
  invalid_input: { type: 'invalid_request_error', status: 400, close: null, message: 'A parameter is not valid.' },
  invalid_type: { type: 'invalid_request_error', status: 400, close: null, message: 'A parameter has the wrong type.' },
  invalid_value: { type: 'invalid_request_error', status: 400, close: null, message: 'A parameter has a value this endpoint does not accept.' },
  integer_below_min_value: { type: 'invalid_request_error', status: 400, close: null, message: 'An integer parameter is below its minimum.' },
  integer_above_max_value: { type: 'invalid_request_error', status: 400, close: null, message: 'An integer parameter is above its maximum.' },
  invalid_amount: { type: 'invalid_request_error', status: 400, close: null, message: 'An amount is not valid.' },
  invalid_key_name: { type: 'invalid_request_error', status: 400, close: null, message: 'A key name has no control characters and no bidirectional overrides or isolates.' },
  unknown_parameter: { type: 'invalid_request_error', status: 400, close: null, message: 'The request has a parameter this endpoint does not take.' },
  invalid_key_ref: { type: 'invalid_request_error', status: 400, close: null, message: 'A key is named by its id or its name: 1 to 200 printable characters.' },
  invalid_session_id: { type: 'invalid_request_error', status: 400, close: null, message: 'A session id looks like "sess_" followed by 32 hex digits.' },
  key_not_found: { type: 'invalid_request_error', status: 404, close: null, message: 'No key has this id or name.' },
  session_not_found: { type: 'invalid_request_error', status: 404, close: null, message: 'No live session has this id (it may have ended).' },
  not_found: { type: 'invalid_request_error', status: 404, close: null, message: 'No such admin endpoint.' },
  key_name_taken: { type: 'invalid_request_error', status: 409, close: null, message: 'Another key already has this name.' },
  session_closing: { type: 'invalid_request_error', status: 409, close: null, message: 'The session is already closing.' },
  invalid_offer: { type: 'invalid_request_error', status: 400, close: null, message: 'A call is opened with an SDP offer: "Content-Type: application/sdp" with the offer as the body, or multipart/form-data with fields "sdp" and "session" (JSON).' },
  call_not_found: { type: 'invalid_request_error', status: 404, close: null, message: 'No live call has this id for this key.' },
  webhook_not_configured: { type: 'server_error', status: 503, close: null, message: 'Phone calls are off: OPENAI_WEBHOOK_SECRET is not set, so no incoming call webhook can be verified.' },
  invalid_webhook_signature: { type: 'invalid_request_error', status: 400, close: null, message: 'The webhook signature does not verify: wrong secret, altered body, or a timestamp more than 5 minutes off.' },
  invalid_webhook: { type: 'invalid_request_error', status: 400, close: null, message: 'The webhook body is not an event the relay understands.' },
  call_not_pending: { type: 'invalid_request_error', status: 409, close: null, message: 'The call was already accepted, rejected or referred.' },
  invalid_call_control: { type: 'invalid_request_error', status: 400, close: null, message: 'The call control request is not valid.' },
  route_not_found: { type: 'invalid_request_error', status: 404, close: null, message: 'No route has this id.' },
  request_too_large: { type: 'invalid_request_error', status: 413, close: null, message: 'The request body is too large.' },
  ledger_unavailable: { type: 'server_error', status: 503, close: null, message: 'The ledger cannot be reached.' },
} as const satisfies Record<string, ErrorEntry>;

/** Every code in the table. */
export type AnyErrorCode = keyof typeof ERRORS;

/** The codes a session can be refused or ended with: those with a close code. */
export type ErrorCode = { [K in AnyErrorCode]: (typeof ERRORS)[K]['close'] extends number ? K : never }[AnyErrorCode];

/** OpenAI's HTTP error envelope, `{"error":{"message","type","code","param"}}`, for any code in the table. */
export function errorBody(
  code: AnyErrorCode,
  message: string = ERRORS[code].message,
  param: string | null = null,
): { error: { message: string; type: OpenAIErrorType; code: AnyErrorCode; param: string | null } } {
  return { error: { message, type: ERRORS[code].type, code, param } };
}

/** An error that can refuse a handshake or end a session: its code has both a status and a close code. */
export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly type: OpenAIErrorType;
  readonly status: number;
  readonly closeCode: number;
  /** Sent as `Retry-After` when the error refuses a handshake. */
  readonly retryAfterSeconds: number | undefined;
  /** The parameter at fault, when the error is about the client's input. */
  readonly param: string | null;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; status?: number; retryAfterSeconds?: number; param?: string | null }) {
    const entry = ERRORS[code];
    super(message ?? entry.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.type = entry.type;
    this.status = options?.status ?? entry.status;
    this.closeCode = entry.close;
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.param = options?.param ?? null;
  }

  /** OpenAI's HTTP error body. */
  toBody(): ReturnType<typeof errorBody> {
    return errorBody(this.code, this.message, this.param);
  }

  /** OpenAI's Realtime `error` server event. */
  toEvent(eventId: string): string {
    return JSON.stringify({
      type: 'error',
      event_id: eventId,
      error: { type: this.type, code: this.code, message: this.message, param: this.param, event_id: null },
    });
  }
}

/** A refused HTTP request (not a session): any code of the table, and the parameter at fault. */
export class RequestError extends Error {
  readonly code: AnyErrorCode;
  readonly status: number;
  readonly param: string | null;

  constructor(code: AnyErrorCode, message: string = ERRORS[code].message, param: string | null = null) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.param = param;
  }

  toBody(): ReturnType<typeof errorBody> {
    return errorBody(this.code, this.message, this.param);
  }
}

export function asRelayError(error: unknown, fallback: ErrorCode = 'internal_error'): RelayError {
  if (error instanceof RelayError) return error;
  const message = error instanceof Error ? error.message : undefined;
  return new RelayError(fallback, message ? `${ERRORS[fallback].message} (${message})` : undefined, { cause: error });
}
