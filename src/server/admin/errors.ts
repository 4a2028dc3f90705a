import { isLedgerError } from '../../billing/ledger/index.js';
import { ERRORS, errorBody, type AnyErrorCode } from '../../errors.js';
import { InputError } from './operations.js';

/**
 * The codes the admin API answers with. Their type, status and message come
 * from the relay's one table (src/errors.ts); bodies use OpenAI's envelope,
 * `{"error":{"message","type","code","param"}}`.
 */
export const ADMIN_ERROR_CODES = [
  'missing_admin_token',
  'invalid_admin_token',
  'client_secret_not_allowed',
  'invalid_json',
  'invalid_input',
  'invalid_amount',
  'invalid_key_name',
  'unknown_parameter',
  'invalid_key_ref',
  'invalid_session_id',
  'key_not_found',
  'session_not_found',
  'route_not_found',
  'not_found',
  'key_name_taken',
  'session_closing',
  'request_too_large',
  'ledger_unavailable',
  'internal_error',
] as const satisfies readonly AnyErrorCode[];

export type AdminErrorCode = (typeof ADMIN_ERROR_CODES)[number];

/** The admin API's rows of the one table. */
export const ADMIN_ERRORS = Object.fromEntries(ADMIN_ERROR_CODES.map((code) => [code, ERRORS[code]])) as Pick<typeof ERRORS, AdminErrorCode>;

/** The table's internal_error speaks of the relay; here the part that failed is the admin API. */
const ADMIN_FAILED = 'The admin API failed unexpectedly.';

export class AdminError extends Error {
  readonly code: AdminErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;

  constructor(code: AdminErrorCode, message?: string, param: string | null = null) {
    const entry = ERRORS[code];
    super(message ?? (code === 'internal_error' ? ADMIN_FAILED : entry.message));
    this.name = 'AdminError';
    this.code = code;
    this.status = entry.status;
    this.type = entry.type;
    this.param = param;
  }

  toBody(): ReturnType<typeof errorBody> {
    return errorBody(this.code, this.message, this.param);
  }
}

/** Whatever a handler threw, as the admin error the caller is told. */
export function toAdminError(error: unknown): AdminError {
  if (error instanceof AdminError) return error;
  if (error instanceof InputError) return new AdminError(error.code, error.message, error.param);
  if (isLedgerError(error)) {
    switch (error.code) {
      case 'key_not_found':
      case 'key_name_taken':
      case 'session_not_found':
      case 'invalid_amount':
      case 'invalid_input':
      case 'ledger_unavailable':
        return new AdminError(error.code, error.message);
      default:
        return new AdminError('internal_error');
    }
  }
  return new AdminError('internal_error');
}
