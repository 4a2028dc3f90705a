/**
 * Every error the relay can report, in one table. Each carries the OpenAI
 * error `type` and `code` a client sees, the HTTP status used when it is
 * reported before the WebSocket upgrade, and the close code used after it.
 */
export const ERRORS = {
  missing_api_key: { type: 'invalid_request_error', status: 401, close: 1008, message: 'No relay key was provided. Send "Authorization: Bearer <key>", or, from a browser, the subprotocol "openai-insecure-api-key.<key>".' },
  invalid_api_key: { type: 'invalid_request_error', status: 401, close: 1008, message: 'The relay key is not valid.' },
  key_disabled: { type: 'invalid_request_error', status: 401, close: 1008, message: 'The relay key has been disabled.' },
  insecure_key_transport: { type: 'invalid_request_error', status: 401, close: 1008, message: 'A key in a subprotocol is only accepted over TLS or from loopback.' },
  origin_not_allowed: { type: 'invalid_request_error', status: 403, close: 1008, message: 'This Origin is not allowed to connect.' },
  model_not_found: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The model does not exist or is not served by this relay.' },
  missing_model: { type: 'invalid_request_error', status: 400, close: 1008, message: 'The "model" query parameter is required.' },
  subprotocol_required: { type: 'invalid_request_error', status: 400, close: 1008, message: 'Browser clients must offer the "realtime" subprotocol.' },
  insufficient_quota: { type: 'insufficient_quota', status: 429, close: 1008, message: 'The relay key has no balance left for this request.' },
  session_spend_cap_exceeded: { type: 'insufficient_quota', status: 429, close: 1008, message: 'This session has reached its spend cap.' },
  rate_limit_exceeded: { type: 'rate_limit_error', status: 429, close: 1008, message: 'Too many sessions for this key or address; retry later.' },
  limits_unavailable: { type: 'server_error', status: 503, close: 1011, message: 'The shared rate limits could not be checked; retry later.' },
  server_shutting_down: { type: 'server_error', status: 503, close: 1001, message: 'The relay is shutting down; reconnect to another instance.' },
  upstream_unavailable: { type: 'server_error', status: 502, close: 1011, message: 'The upstream Realtime API could not be reached.' },
  upstream_timeout: { type: 'server_error', status: 504, close: 1011, message: 'The upstream Realtime API did not answer in time.' },
  upstream_auth_failed: { type: 'server_error', status: 502, close: 1011, message: 'The relay is not authorised by the upstream Realtime API.' },
  upstream_rate_limited: { type: 'rate_limit_error', status: 429, close: 1013, message: 'The upstream Realtime API is rate limiting this relay.' },
  upstream_rejected: { type: 'server_error', status: 502, close: 1011, message: 'The upstream Realtime API refused the session.' },
  upstream_error: { type: 'server_error', status: 502, close: 1011, message: 'The upstream connection failed.' },
  queue_overflow: { type: 'invalid_request_error', status: 400, close: 1008, message: 'Too many events were sent before the upstream answered.' },
  message_too_big: { type: 'invalid_request_error', status: 413, close: 1009, message: 'A frame exceeded the maximum payload size.' },
  invalid_frame: { type: 'invalid_request_error', status: 400, close: 1007, message: 'A frame could not be read.' },
  client_error: { type: 'invalid_request_error', status: 400, close: 1002, message: 'The client connection failed.' },
  idle_timeout: { type: 'invalid_request_error', status: 408, close: 1000, message: 'The session was closed after being idle too long.' },
  session_expired: { type: 'invalid_request_error', status: 408, close: 1001, message: 'The session reached its maximum duration.' },
  ping_timeout: { type: 'server_error', status: 408, close: 1011, message: 'A peer stopped answering pings.' },
  backpressure_stall: { type: 'server_error', status: 503, close: 1011, message: 'A peer stopped reading and the session stalled.' },
  session_cancelled: { type: 'invalid_request_error', status: 409, close: 1000, message: 'The session was cancelled by an operator.' },
  billing_unavailable: { type: 'server_error', status: 503, close: 1011, message: 'Usage could not be recorded; the session was closed so that nothing goes unbilled.' },
  internal_error: { type: 'server_error', status: 500, close: 1011, message: 'The relay failed unexpectedly.' },
} as const satisfies Record<string, { type: string; status: number; close: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly type: string;
  readonly status: number;
  readonly closeCode: number;
  /** Sent as `Retry-After` when the error refuses a handshake. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; status?: number; retryAfterSeconds?: number }) {
    const entry = ERRORS[code];
    super(message ?? entry.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.type = entry.type;
    this.status = options?.status ?? entry.status;
    this.closeCode = entry.close;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  /** OpenAI's HTTP error body. */
  toBody(): { error: { message: string; type: string; code: string; param: null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: null } };
  }

  /** OpenAI's Realtime `error` server event. */
  toEvent(eventId: string): string {
    return JSON.stringify({
      type: 'error',
      event_id: eventId,
      error: { type: this.type, code: this.code, message: this.message, param: null, event_id: null },
    });
  }
}

export function asRelayError(error: unknown, fallback: ErrorCode = 'internal_error'): RelayError {
  if (error instanceof RelayError) return error;
  const message = error instanceof Error ? error.message : undefined;
  return new RelayError(fallback, message ? `${ERRORS[fallback].message} (${message})` : undefined, { cause: error });
}
