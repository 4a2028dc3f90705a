import type { Context } from 'hono';
import { AdminError } from './errors.js';

/** The request body as a JSON object; an empty body reads as `{}`. */
export async function jsonObject(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AdminError('invalid_json', 'The request body is not valid JSON.');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AdminError('invalid_json');
  return value as Record<string, unknown>;
}

/** A key's id or name from the path: printable, 1 to 200 characters. */
export function keyRef(c: Context): string {
  const ref = c.req.param('ref') ?? '';
  if (ref.length === 0 || ref.length > 200 || /[\u0000-\u001f\u007f]/.test(ref)) throw new AdminError('invalid_key_ref', undefined, 'ref');
  return ref;
}

const SESSION_ID = /^sess_[0-9a-f]{32}$/;

export function sessionId(c: Context): string {
  const id = c.req.param('id') ?? '';
  if (!SESSION_ID.test(id)) throw new AdminError('invalid_session_id', undefined, 'id');
  return id;
}

const ROUTE_ID = /^route_[0-9a-f]{32}$/;

/** A phone call route's id from the path; anything else names no route. */
export function routeId(c: Context): string {
  const id = c.req.param('id') ?? '';
  if (!ROUTE_ID.test(id)) throw new AdminError('route_not_found', undefined, 'id');
  return id;
}
