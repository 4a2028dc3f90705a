import { expect } from 'vitest';
import { RelayError } from '../../src/errors.js';

/** Limits with every check off, for a test to turn one on. */
export const NO_LIMITS = { maxSessionsPerKey: 0, sessionsPerMinute: 0, handshakesPerMinutePerIp: 0 };

/** The RelayError `promise` rejects with; fails the test if it resolves or rejects with anything else. */
export async function refusal(promise: Promise<unknown>): Promise<RelayError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RelayError);
  return error as RelayError;
}
