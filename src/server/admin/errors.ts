import { isLedgerError } from '../../billing/ledger/index.js';
import { InputError } from './operations.js';

/**
 * Every error the admin API answers with, in one table: the stable `code`,
 * OpenAI's error `type`, and the HTTP status. Bodies use OpenAI's envelope,
 * `{"error":{"message","type","code","param"}}`.
 */
export const ADMIN_ERRORS = {
  missing_admin_token: { status: 401, type: 'invalid_request_error', message: 'The admin API needs "Authorization: Bearer <ADMIN_TOKEN>".' },
  invalid_admin_token: { status: 401, type: 'invalid_request_error', message: 'The admin token is not valid.' },
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'The request body must be a JSON object.' },
  invalid_input: { status: 400, type: 'invalid_request_error', message: 'A parameter is not valid.' },
  invalid_amount: { status: 400, type: 'invalid_request_error', message: 'An amount is not valid.' },
  invalid_key_name: { status: 400, type: 'invalid_request_error', message: 'A key name has no control characters and no bidirectional overrides or isolates.' },
  unknown_parameter: { status: 400, type: 'invalid_request_error', message: 'The request has a parameter this endpoint does not take.' },
  invalid_key_ref: { status: 400, type: 'invalid_request_error', message: 'A key is named by its id or its name: 1 to 200 printable characters.' },
  invalid_session_id: { status: 400, type: 'invalid_request_error', message: 'A session id looks like "sess_" followed by 32 hex digits.' },
  key_not_found: { status: 404, type: 'invalid_request_error', message: 'No key has this id or name.' },
  session_not_found: { status: 404, type: 'invalid_request_error', message: 'No live session has this id (it may have ended).' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'No such admin endpoint.' },
  key_name_taken: { status: 409, type: 'invalid_request_error', message: 'Another key already has this name.' },
  session_closing: { status: 409, type: 'invalid_request_error', message: 'The session is already closing.' },
  request_too_large: { status: 413, type: 'invalid_request_error', message: 'The request body is too large.' },
  ledger_unavailable: { status: 503, type: 'server_error', message: 'The ledger cannot be reached.' },
  internal_error: { status: 500, type: 'server_error', message: 'The admin API failed unexpectedly.' },
} as const satisfies Record<string, { status: number; type: string; message: string }>;

export type AdminErrorCode = keyof typeof ADMIN_ERRORS;

export class AdminError extends Error {
  readonly code: AdminErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;

  constructor(code: AdminErrorCode, message?: string, param: string | null = null) {
    const entry = ADMIN_ERRORS[code];
    super(message ?? entry.message);
    this.name = 'AdminError';
    this.code = code;
    this.status = entry.status;
    this.type = entry.type;
    this.param = param;
  }

  toBody(): { error: { message: string; type: string; code: string; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
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
