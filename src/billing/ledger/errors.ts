/** Every error the ledger reports, by stable code. */
export const LEDGER_ERROR_CODES = [
  /** No key has this id, name (or plaintext). */
  'key_not_found',
  /** Another key already has this name. */
  'key_name_taken',
  /** No session has this id. */
  'session_not_found',
  /** A charge names a different key than its session. */
  'charge_key_mismatch',
  /** A money amount is out of range: a top-up must be > 0, a cost >= 0. */
  'invalid_amount',
  /** A top-up would bring the balance above the maximum it was given. */
  'balance_over_maximum',
  /** Some other argument is out of range (an empty name, a zero session limit). */
  'invalid_input',
  /** The database cannot be reached or written; the message says which and where. */
  'ledger_unavailable',
] as const;

export type LedgerErrorCode = (typeof LEDGER_ERROR_CODES)[number];

export class LedgerError extends Error {
  readonly code: LedgerErrorCode;

  constructor(code: LedgerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LedgerError';
    this.code = code;
  }
}

export function isLedgerError(error: unknown, code?: LedgerErrorCode): error is LedgerError {
  return error instanceof LedgerError && (code === undefined || error.code === code);
}

export function keyNotFound(ref: string): never {
  throw new LedgerError('key_not_found', `No key has the id or name "${ref}".`);
}

export function sessionNotFound(sessionId: string): never {
  throw new LedgerError('session_not_found', `No session has the id "${sessionId}".`);
}

export function chargeKeyMismatch(sessionId: string, keyId: string): never {
  throw new LedgerError('charge_key_mismatch', `Session "${sessionId}" does not belong to key "${keyId}".`);
}

export function balanceOverMaximum(ref: string, maxBalanceNano: bigint): never {
  throw new LedgerError('balance_over_maximum', `A top-up of key "${ref}" would bring its balance above ${maxBalanceNano} nano-USD.`);
}
