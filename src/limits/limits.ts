import { RelayError } from '../errors.js';
import { retryAfterSeconds } from './bucket.js';

/**
 * Admission limits: upgrade attempts per client address, new sessions per
 * key per minute, and concurrent sessions per key. Each check throws a
 * RelayError `rate_limit_exceeded` (429 with Retry-After before the upgrade),
 * or `limits_unavailable` (503) when shared limits cannot be consulted.
 */
export interface Limits {
  /** One upgrade attempt from `ip`, counted before the key is looked at. */
  countHandshake(ip: string): Promise<void>;
  /** A new session of `keyId`: takes a per-minute token and a concurrency slot. Resolves to the slot's release. */
  acquire(request: { keyId: string; maxSessions: number | null }): Promise<() => void>;
}

export interface LimitRates {
  /** Concurrent sessions of a key that sets none itself; 0 = unlimited. */
  maxSessionsPerKey: number;
  /** New sessions per key per minute; 0 = unlimited. */
  sessionsPerMinute: number;
  /** Upgrade attempts per client address per minute; 0 = unlimited. */
  handshakesPerMinutePerIp: number;
}

/** A Limits that also owns connections or timers, released by `close()`. */
export interface OwnedLimits extends Limits {
  readonly kind: 'memory' | 'redis';
  close(): Promise<void>;
}

/** The key's own cap wins; otherwise the relay's default (0 = unlimited). */
export function sessionCap(maxSessions: number | null, rates: LimitRates): number {
  return maxSessions ?? rates.maxSessionsPerKey;
}

export function tooManyHandshakes(perMinute: number, retryAfterMs: number): RelayError {
  return new RelayError('rate_limit_exceeded', `Too many connection attempts from this address (at most ${perMinute} a minute); retry later.`, {
    retryAfterSeconds: retryAfterSeconds(retryAfterMs),
  });
}

export function tooManyNewSessions(perMinute: number, retryAfterMs: number): RelayError {
  return new RelayError('rate_limit_exceeded', `This key opened too many sessions (at most ${perMinute} a minute); retry later.`, {
    retryAfterSeconds: retryAfterSeconds(retryAfterMs),
  });
}

export function tooManyConcurrent(cap: number): RelayError {
  // No one knows when a session will end: ask for a short wait.
  return new RelayError('rate_limit_exceeded', `This key already has ${cap} open session${cap === 1 ? '' : 's'}, the most it may have at once; close one and retry.`, {
    retryAfterSeconds: 1,
  });
}
