import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, OPENAI_ERROR_TYPES, RelayError, errorBody, type AnyErrorCode, type ErrorCode } from '../src/errors.js';
import { isSendableCloseCode } from '../src/protocol/close-codes.js';
import { ADMIN_ERROR_CODES, AdminError, toAdminError } from '../src/server/admin/errors.js';

const entries = Object.entries(ERRORS) as [AnyErrorCode, (typeof ERRORS)[AnyErrorCode]][];
const sessionCodes = entries.filter(([, e]) => e.close !== null).map(([code]) => code as ErrorCode);

describe('the error table', () => {
  it.each(entries)('gives %s an OpenAI type, a 4xx or 5xx status, a close code a peer may receive, and a message', (code, entry) => {
    expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
    expect(OPENAI_ERROR_TYPES).toContain(entry.type);
    expect(Number.isInteger(entry.status) && entry.status >= 400 && entry.status <= 599).toBe(true);
    if (entry.close !== null) {
      // Sent in a close frame: never 1005, 1006 or 1015, which only report what happened locally.
      expect(isSendableCloseCode(entry.close)).toBe(true);
      // The code is the close reason, which may carry at most 123 bytes.
      expect(Buffer.byteLength(code)).toBeLessThanOrEqual(123);
    }
    expect(entry.message).toMatch(/^[A-Z].*\.$/);
  });

  it('holds every code the admin API answers with, none of them closing a session but internal_error', () => {
    for (const code of ADMIN_ERROR_CODES) expect(ERRORS).toHaveProperty(code);
    const closing = ADMIN_ERROR_CODES.filter((code) => ERRORS[code].close !== null);
    expect(closing).toEqual(['internal_error']);
  });

  it("builds OpenAI's envelope from the table for every code", () => {
    for (const [code, entry] of entries) {
      expect(JSON.stringify(errorBody(code))).toBe(JSON.stringify({ error: { message: entry.message, type: entry.type, code, param: null } }));
    }
  });

  it.each(sessionCodes)('reports %s with the same type and code before the upgrade and after it', (code) => {
    const error = new RelayError(code);
    expect(error).toMatchObject({ status: ERRORS[code].status, closeCode: ERRORS[code].close });
    expect(error.toBody()).toEqual({ error: { message: ERRORS[code].message, type: ERRORS[code].type, code, param: null } });
    const event = JSON.parse(error.toEvent('event_1'));
    expect(event).toEqual({ type: 'error', event_id: 'event_1', error: { type: ERRORS[code].type, code, message: ERRORS[code].message, param: null, event_id: null } });
  });

  it('answers an admin failure as the admin API, with its status from the table', () => {
    expect(toAdminError(new Error('boom')).toBody()).toEqual({
      error: { message: 'The admin API failed unexpectedly.', type: 'server_error', code: 'internal_error', param: null },
    });
    expect(new AdminError('invalid_amount', 'amount must be more than 0', 'amount')).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'amount' });
  });

  it('is listed code by code, with status and close code, in the README', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('<!-- errors:start -->'), readme.indexOf('<!-- errors:end -->'));
    for (const [code, entry] of entries) {
      expect(section).toContain(`| \`${code}\` | \`${entry.type}\` | ${entry.status} | ${entry.close ?? '—'} |`);
    }
  });
});
