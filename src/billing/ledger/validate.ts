import { LedgerError } from './errors.js';
import type { NewClientSecret, NewKey } from './types.js';

export const DEFAULT_PRICE_MULTIPLIER_PPM = 1_000_000;

/** The largest value a signed 64-bit column holds. */
const INT64_MAX = 2n ** 63n - 1n;

export interface ValidNewKey {
  name: string;
  balanceNano: bigint;
  spendCapNano: bigint | null;
  maxSessions: number | null;
  priceMultiplierPpm: number;
}

export function validateNewKey(input: NewKey): ValidNewKey {
  const name = input.name.trim();
  if (name === '') throw new LedgerError('invalid_input', 'A key needs a non-empty name.');
  assertNano(input.balanceNano, 'balanceNano', { allowZero: true });
  const spendCapNano = input.spendCapNano ?? null;
  if (spendCapNano !== null) assertNano(spendCapNano, 'spendCapNano', { allowZero: false });
  const maxSessions = input.maxSessions ?? null;
  if (maxSessions !== null) assertPositiveInt32(maxSessions, 'maxSessions');
  const priceMultiplierPpm = input.priceMultiplierPpm ?? DEFAULT_PRICE_MULTIPLIER_PPM;
  assertPositiveInt32(priceMultiplierPpm, 'priceMultiplierPpm');
  return { name, balanceNano: input.balanceNano, spendCapNano, maxSessions, priceMultiplierPpm };
}

export function assertNewClientSecret(input: NewClientSecret): void {
  if (!(input.expiresAt instanceof Date) || Number.isNaN(input.expiresAt.getTime())) throw new LedgerError('invalid_input', 'A client secret needs an expiry date.');
  if (typeof input.session !== 'object' || input.session === null || Array.isArray(input.session)) throw new LedgerError('invalid_input', 'A client secret carries a session object.');
  if (input.spendCapNano !== null) assertNano(input.spendCapNano, 'A client secret spend cap', { allowZero: false });
}

export function assertTopUp(amountNano: bigint): void {
  assertNano(amountNano, 'A top-up', { allowZero: false });
}

export function assertCost(costNano: bigint): void {
  assertNano(costNano, 'A charge', { allowZero: true });
}

export function assertHold(amountNano: bigint, reserveNano: bigint): void {
  assertNano(amountNano, 'A hold', { allowZero: true });
  assertNano(reserveNano, 'A reserve', { allowZero: true });
}

function assertNano(value: bigint, what: string, { allowZero }: { allowZero: boolean }): void {
  if (typeof value !== 'bigint') throw new LedgerError('invalid_amount', `${what} must be a bigint of nano-USD.`);
  const min = allowZero ? 0n : 1n;
  if (value < min || value > INT64_MAX) {
    throw new LedgerError('invalid_amount', `${what} must be ${allowZero ? '>= 0' : '> 0'} nano-USD (got ${value}).`);
  }
}

function assertPositiveInt32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new LedgerError('invalid_input', `${what} must be a positive integer (got ${value}).`);
  }
}
