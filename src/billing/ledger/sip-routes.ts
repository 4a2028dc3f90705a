import { LedgerError } from './errors.js';
import { fromJsonText, toJsonText } from './json.js';
import type { NewSipRoute, RouteMatch, SipRoute } from './types.js';

/** SIP header names are tokens; values and numbers are bounded so that a route stays a lookup, not a pattern. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
const MAX_VALUE_LENGTH = 256;

function invalid(message: string): never {
  throw new LedgerError('invalid_input', message);
}

export interface RouteColumns {
  matchKind: 'number' | 'header';
  headerName: string;
  matchValue: string;
  sessionJson: string;
  webhookUrl: string | null;
  webhookSecret: string | null;
}

/** Checks a new route and gives its columns. A header name is matched case-insensitively, so it is stored lower-case. */
export function routeColumns(route: NewSipRoute): RouteColumns {
  const { match } = route;
  let headerName = '';
  let matchValue: string;
  if (match.kind === 'number') {
    matchValue = match.number.trim();
    if (matchValue === '' || matchValue.length > MAX_VALUE_LENGTH) invalid(`A called number has 1 to ${MAX_VALUE_LENGTH} characters.`);
  } else if (match.kind === 'header') {
    if (!HEADER_NAME.test(match.name)) invalid('A SIP header name is a token of 1 to 64 characters.');
    headerName = match.name.toLowerCase();
    matchValue = match.value;
    if (matchValue === '' || matchValue.length > MAX_VALUE_LENGTH) invalid(`A SIP header value has 1 to ${MAX_VALUE_LENGTH} characters.`);
  } else {
    invalid('A route matches a called number or a SIP header.');
  }
  if (typeof route.session !== 'object' || route.session === null || Array.isArray(route.session)) invalid('A route\'s session config is a JSON object.');
  if (typeof route.session.model !== 'string' || route.session.model === '') invalid('A route\'s session config names its "model".');
  const webhookUrl = route.webhookUrl ?? null;
  const webhookSecret = route.webhookSecret ?? null;
  if (webhookUrl !== null) {
    let url: URL;
    try {
      url = new URL(webhookUrl);
    } catch {
      invalid(`The webhook URL "${webhookUrl}" is not a URL.`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') invalid('A tenant webhook URL is http(s).');
    if (webhookSecret === null || !/^whsec_[A-Za-z0-9+/=]{16,}$/.test(webhookSecret)) invalid('A tenant webhook needs its secret: whsec_ and base64.');
  } else if (webhookSecret !== null) {
    invalid('A webhook secret without a webhook URL is never used.');
  }
  return { matchKind: match.kind, headerName, matchValue, sessionJson: toJsonText(route.session), webhookUrl, webhookSecret };
}

export function routeTaken(match: RouteMatch): never {
  invalid(match.kind === 'number' ? `A route for the number "${match.number}" exists already.` : `A route for the header ${match.name}: ${match.value} exists already.`);
}

export interface RouteRow {
  id: string;
  match_kind: 'number' | 'header';
  header_name: string;
  match_value: string;
  key_id: string;
  session_json: string;
  webhook_url: string | null;
  webhook_secret: string | null;
  created_at: Date | bigint;
}

export function toSipRoute(row: RouteRow): SipRoute {
  const match: RouteMatch = row.match_kind === 'number' ? { kind: 'number', number: row.match_value } : { kind: 'header', name: row.header_name, value: row.match_value };
  return {
    id: row.id,
    match,
    keyId: row.key_id,
    session: fromJsonText(row.session_json) as Record<string, unknown>,
    webhookUrl: row.webhook_url,
    webhookSecret: row.webhook_secret,
    createdAt: row.created_at instanceof Date ? row.created_at : new Date(Number(row.created_at)),
  };
}
