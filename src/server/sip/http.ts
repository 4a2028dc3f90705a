import type { Context } from 'hono';
import { ERRORS, errorBody, type AnyErrorCode, type RelayError } from '../../errors.js';

/** Answers in OpenAI's error envelope. */
export function refuse(c: Context, code: AnyErrorCode, message?: string): Response {
  return c.json(errorBody(code, message), ERRORS[code].status as 400);
}

export function refuseWith(c: Context, error: RelayError): Response {
  return c.json(error.toBody(), error.status as 400);
}

/** The body's JSON object (empty when there is no body); null when it is not one. */
export async function jsonBody(c: Context): Promise<Record<string, unknown> | null> {
  const text = await c.req.text();
  if (text.trim() === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Answered below.
  }
  return null;
}

