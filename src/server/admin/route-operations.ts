import type { NewSipRoute, SipRoute } from '../../billing/ledger/index.js';
import { InputError, rejectUnknown } from './operations.js';

/**
 * Phone call routes as an operator sees them. `relay routes` and
 * `/admin/routes` read their input and print their output through this
 * module, so a route looks the same from the command line and over HTTP.
 */

export interface NewRouteFields {
  number?: unknown;
  /** `Name=Value`: the SIP header and its exact value. */
  header?: unknown;
  key?: unknown;
  model?: unknown;
  /** The session config, as a JSON object or its text. */
  session?: unknown;
  webhook_url?: unknown;
  webhook_secret?: unknown;
}

const KNOWN = new Set(['number', 'header', 'key', 'model', 'session', 'webhook_url', 'webhook_secret']);

function text(value: unknown, param: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw new InputError('invalid_input', param, 'must be a non-empty string');
  return value.trim();
}

export function parseNewRoute(fields: NewRouteFields): NewSipRoute {
  rejectUnknown(fields, KNOWN);
  const number = text(fields.number, 'number');
  const header = text(fields.header, 'header');
  if ((number === undefined) === (header === undefined)) throw new InputError('invalid_input', 'number', 'or header (Name=Value) is required, not both');
  let match: NewSipRoute['match'];
  if (number !== undefined) match = { kind: 'number', number };
  else {
    const at = header!.indexOf('=');
    if (at <= 0 || at === header!.length - 1) throw new InputError('invalid_input', 'header', 'must read Name=Value');
    match = { kind: 'header', name: header!.slice(0, at).trim(), value: header!.slice(at + 1).trim() };
  }
  const key = text(fields.key, 'key');
  if (key === undefined) throw new InputError('invalid_input', 'key', 'is required: the id or name of the key calls are billed to');
  let session: Record<string, unknown> = {};
  if (fields.session !== undefined) {
    let parsed: unknown = fields.session;
    if (typeof parsed === 'string') {
      try {
        parsed = JSON.parse(parsed);
      } catch {
        throw new InputError('invalid_input', 'session', 'must be a JSON object');
      }
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InputError('invalid_input', 'session', 'must be a JSON object');
    session = parsed as Record<string, unknown>;
  }
  const model = text(fields.model, 'model');
  if (model !== undefined) session = { ...session, model };
  if (typeof session.model !== 'string' || session.model === '') throw new InputError('invalid_input', 'model', 'is required (or "model" in session)');
  return { match, key, session, webhookUrl: text(fields.webhook_url, 'webhook_url') ?? null, webhookSecret: text(fields.webhook_secret, 'webhook_secret') ?? null };
}

export interface RouteView {
  id: string;
  number: string | null;
  header: { name: string; value: string } | null;
  key_id: string;
  session: Record<string, unknown>;
  webhook_url: string | null;
  /** The secret itself is never shown again. */
  webhook_secret_set: boolean;
  created_at: string;
}

export function routeView(route: SipRoute): RouteView {
  return {
    id: route.id,
    number: route.match.kind === 'number' ? route.match.number : null,
    header: route.match.kind === 'header' ? { name: route.match.name, value: route.match.value } : null,
    key_id: route.keyId,
    session: route.session,
    webhook_url: route.webhookUrl,
    webhook_secret_set: route.webhookSecret !== null,
    created_at: route.createdAt.toISOString(),
  };
}
