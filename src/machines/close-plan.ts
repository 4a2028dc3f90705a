import { ERRORS, type ErrorCode } from '../errors.js';
import { INTERNAL_ERROR, NORMAL_CLOSURE, isSendableCloseCode, mapCloseCode } from '../protocol/close-codes.js';
import { CANCEL_ERRORS, type ErrorInfo, type SessionOutcome } from './session.js';

export interface SideClose {
  code: number;
  reason: string;
  /** An `error` event sent before the close frame, so that even a browser can read why. */
  error?: ErrorInfo;
  /** Frames the client is still owed are delivered before the close. */
  flushFirst?: boolean;
}

export interface ClosePlan {
  client: SideClose;
  /** null: the upstream is already gone or was never reached. */
  upstream: SideClose | null;
}

function errorClose(error: ErrorInfo): SideClose {
  return { code: error.closeCode, reason: error.code, error };
}

function infoFor(code: ErrorCode): ErrorInfo {
  return { code, message: ERRORS[code].message, closeCode: ERRORS[code].close };
}

/** What each side is told when a session ends: the one table behind every close code the relay sends. */
export function closePlan(outcome: SessionOutcome): ClosePlan {
  const { cause } = outcome;
  const upstreamGone = outcome.targetClosed !== null || !outcome.upstreamOpened;
  const politeUpstream: SideClose | null = upstreamGone ? null : { code: NORMAL_CLOSURE, reason: 'session ended' };
  switch (cause.kind) {
    case 'client_closed':
      return { client: { code: mapCloseCode(cause.code), reason: '' }, upstream: politeUpstream };
    case 'target_closed':
      // A close frame's code and reason are the upstream's own words and pass through; a connection
      // lost without one (1006, 1015) has no words, so the client is told in an `error` event.
      if (cause.code !== 1005 && !isSendableCloseCode(cause.code)) return { client: { ...errorClose(infoFor('upstream_closed')), flushFirst: true }, upstream: null };
      return { client: { code: mapCloseCode(cause.code), reason: cause.reason, flushFirst: true }, upstream: null };
    case 'error':
      return {
        client: { ...errorClose(cause.error), flushFirst: cause.source === 'upstream' },
        upstream: upstreamGone ? null : cause.source === 'upstream' ? { code: INTERNAL_ERROR, reason: cause.error.code } : politeUpstream,
      };
    case 'cancelled':
      return { client: { ...errorClose(infoFor(CANCEL_ERRORS[cause.reason])), flushFirst: true }, upstream: politeUpstream };
    case 'dial_failed':
      return { client: errorClose(cause.error), upstream: null };
    case 'connect_timeout':
      return { client: errorClose(infoFor('upstream_timeout')), upstream: null };
  }
}

/** The settlement's end reason: stable, short, and specific enough to count by. */
export function endReason(outcome: SessionOutcome): string {
  const { cause } = outcome;
  switch (cause.kind) {
    case 'client_closed':
      return 'client_closed';
    case 'target_closed':
      return 'upstream_closed';
    case 'error':
      return `error:${cause.error.code}`;
    case 'cancelled':
      return `cancelled:${cause.reason}`;
    case 'dial_failed':
      return `dial_failed:${cause.error.code}`;
    case 'connect_timeout':
      return 'connect_timeout';
  }
}
