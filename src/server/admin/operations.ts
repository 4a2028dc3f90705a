import { isLedgerError, type EndedSession, type EndedSessionsQuery, type KeyRecord, type Ledger, type NewKey, type SpendBucket, type SpendQuery, type UsageQuery, type UsageRow } from '../../billing/ledger/index.js';
import { formatUsd, MAX_BALANCE_NANO, MAX_BALANCE_USD, parseUsd } from '../../billing/prices.js';
import type { AnyErrorCode } from '../../errors.js';

/**
 * Key and usage operations as an operator sees them. `relay keys|usage` and
 * the admin API both read their input and print their output through this
 * module, so a key looks the same from the command line and over HTTP.
 */

/** Codes from the one table (src/errors.ts): the admin API answers them with its status, the CLI exits 2. */
export type InputErrorCode = Extract<AnyErrorCode, 'invalid_amount' | 'invalid_input' | 'invalid_key_name' | 'unknown_parameter'>;

/** Bad operator input. `param` names the field (snake_case); the CLI shows it as `--flag`. */
export class InputError extends Error {
  constructor(
    readonly code: InputErrorCode,
    readonly param: string,
    readonly problem: string,
  ) {
    super(`${param} ${problem}`);
    this.name = 'InputError';
  }
}

export interface KeyView {
  id: string;
  name: string;
  /** USD, exact: "10.000000". */
  balance: string;
  /** USD the key's responses in flight hold; available = balance − held. */
  held: string;
  spend_cap: string | null;
  max_sessions: number | null;
  /** Price multiplier as a decimal string: "1", "1.25". */
  multiplier: string;
  disabled: boolean;
  created_at: string;
}

export function keyView(key: KeyRecord): KeyView {
  return {
    id: key.id,
    name: key.name,
    balance: formatUsd(key.balanceNano),
    held: formatUsd(key.heldNano),
    spend_cap: key.spendCapNano === null ? null : formatUsd(key.spendCapNano),
    max_sessions: key.maxSessions,
    multiplier: formatPpm(key.priceMultiplierPpm),
    disabled: key.disabled,
    created_at: key.createdAt.toISOString(),
  };
}

const PPM = 1_000_000;

/** 1_250_000 → "1.25", without passing through a float. */
export function formatPpm(ppm: number): string {
  const whole = Math.trunc(ppm / PPM);
  const fraction = String(ppm % PPM).padStart(6, '0').replace(/0+$/, '');
  return fraction === '' ? String(whole) : `${whole}.${fraction}`;
}

/** A USD amount given as a decimal string ("10", "0.05"); numbers are refused so no float ever holds money. */
export function parseAmount(value: unknown, param: string, { positive }: { positive: boolean }): bigint {
  if (typeof value !== 'string') throw new InputError('invalid_amount', param, 'must be a decimal string of USD such as "10" or "0.05"');
  let nano: bigint;
  try {
    nano = parseUsd(value.trim());
  } catch {
    throw new InputError('invalid_amount', param, `must be a non-negative decimal amount of USD with at most 9 decimals (got "${value}")`);
  }
  if (positive && nano <= 0n) throw new InputError('invalid_amount', param, 'must be more than 0');
  if (nano > MAX_BALANCE_NANO) throw new InputError('invalid_amount', param, `must be at most ${MAX_BALANCE_USD} USD, the largest balance a key can hold`);
  return nano;
}

function parseMultiplier(value: unknown): number {
  const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  if (typeof text !== 'string' || !/^\d+(\.\d{1,6})?$/.test(text.trim())) {
    throw new InputError('invalid_input', 'multiplier', 'must be a positive decimal with at most 6 decimals, such as "1" or "1.25"');
  }
  const [whole, fraction = ''] = text.trim().split('.');
  const ppm = Number(whole) * PPM + Number(fraction.padEnd(6, '0'));
  if (!Number.isSafeInteger(ppm) || ppm < 1 || ppm > 2 ** 31 - 1) throw new InputError('invalid_input', 'multiplier', 'must be more than 0 and at most 2147');
  return ppm;
}

function parseMaxSessions(value: unknown): number {
  const number = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > 2 ** 31 - 1) {
    throw new InputError('invalid_input', 'max_sessions', 'must be a whole number of at least 1');
  }
  return number;
}

/**
 * A key name is shown in logs, the admin page, the CLI and CSV exports: a
 * control character can break a line or a CSV row, and a bidirectional
 * override can make it read as another name.
 */
const UNSHOWABLE_IN_NAME = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/u;

export interface NewKeyFields {
  name?: unknown;
  balance?: unknown;
  spend_cap?: unknown;
  max_sessions?: unknown;
  multiplier?: unknown;
}

const NEW_KEY_FIELDS = new Set(['name', 'balance', 'spend_cap', 'max_sessions', 'multiplier']);

/** Validates a key to create; absent optional fields (undefined or null) take the ledger's defaults. */
export function parseNewKey(fields: NewKeyFields): NewKey {
  rejectUnknown(fields, NEW_KEY_FIELDS);
  if (typeof fields.name !== 'string' || fields.name.trim() === '') throw new InputError('invalid_input', 'name', 'is required: a non-empty string');
  if (fields.name.trim().length > 200) throw new InputError('invalid_input', 'name', 'must be at most 200 characters');
  if (UNSHOWABLE_IN_NAME.test(fields.name)) {
    throw new InputError('invalid_key_name', 'name', 'must not contain control characters (tabs and line breaks included) or bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069)');
  }
  if (fields.balance === undefined || fields.balance === null) throw new InputError('invalid_amount', 'balance', 'is required: a decimal string of USD such as "10"');
  return {
    name: fields.name.trim(),
    balanceNano: parseAmount(fields.balance, 'balance', { positive: false }),
    spendCapNano: present(fields.spend_cap) ? parseAmount(fields.spend_cap, 'spend_cap', { positive: true }) : null,
    maxSessions: present(fields.max_sessions) ? parseMaxSessions(fields.max_sessions) : null,
    priceMultiplierPpm: present(fields.multiplier) ? parseMultiplier(fields.multiplier) : PPM,
  };
}

/** The amount of a top-up: more than 0. */
export function parseTopUp(fields: { amount?: unknown }): bigint {
  rejectUnknown(fields, new Set(['amount']));
  if (fields.amount === undefined || fields.amount === null) throw new InputError('invalid_amount', 'amount', 'is required: a decimal string of USD such as "10"');
  return parseAmount(fields.amount, 'amount', { positive: true });
}

/**
 * Adds `amountNano` to a key's balance unless the balance would pass the
 * maximum. The ledger checks and adds in one statement, so top-ups at once
 * can never pass it together.
 */
export async function topUpKey(ledger: Ledger, ref: string, amountNano: bigint): Promise<KeyRecord> {
  try {
    return await ledger.topUp(ref, amountNano, MAX_BALANCE_NANO);
  } catch (error) {
    if (!isLedgerError(error, 'balance_over_maximum')) throw error;
    // Read after the refusal, only to say what the balance is.
    const balanceNano = (await ledger.getKey(ref))?.balanceNano ?? 0n;
    throw new InputError(
      'invalid_amount',
      'amount',
      `would bring the balance to ${formatUsd(balanceNano + amountNano)} USD, more than the maximum of ${MAX_BALANCE_USD} USD (the balance is ${formatUsd(balanceNano)} USD)`,
    );
  }
}

export type UsageFormat = 'json' | 'csv';

export interface UsageRequest {
  query: UsageQuery;
  format: UsageFormat;
}

/** `key` (id or name), `since` (an ISO date), `format` (json or csv; default json). */
export function parseUsageRequest(fields: { key?: string | undefined; since?: string | undefined; format?: string | undefined }): UsageRequest {
  const query: UsageQuery = {};
  if (fields.key !== undefined && fields.key !== '') query.key = fields.key;
  if (fields.since !== undefined && fields.since !== '') query.since = parseSince(fields.since);
  const format = fields.format === undefined || fields.format === '' ? 'json' : fields.format;
  if (format !== 'json' && format !== 'csv') throw new InputError('invalid_input', 'format', 'is csv or json');
  return { query, format };
}

/** Only ISO dates: Date.parse would also accept "3" or "March" and guess. */
function parseSince(text: string): Date {
  const since = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(since.getTime())) throw new InputError('invalid_input', 'since', 'must be a date such as 2026-11-01 or 2026-11-01T12:00:00Z');
  return since;
}

/** A key filter as given in a query: an id or a name, printable, at most 200 characters. */
function parseKeyFilter(key: string | undefined): string | undefined {
  if (key === undefined || key === '') return undefined;
  if (key.length > 200 || /[\u0000-\u001f\u007f]/.test(key)) throw new InputError('invalid_input', 'key', 'must be a key id or name of at most 200 printable characters');
  return key;
}

export const ENDED_PAGE_DEFAULT = 20;
export const ENDED_PAGE_MAX = 100;
const SESSION_ID = /^sess_[0-9a-f]{32}$/;

/** `key` (id or name), `limit` (1 to 100; default 20), `before` (the last session id of the previous page). */
export function parseEndedRequest(fields: Record<string, string | undefined>): EndedSessionsQuery {
  rejectUnknown(fields, new Set(['key', 'limit', 'before']));
  const query: EndedSessionsQuery = { limit: ENDED_PAGE_DEFAULT };
  const key = parseKeyFilter(fields.key);
  if (key !== undefined) query.key = key;
  if (fields.limit !== undefined && fields.limit !== '') {
    const limit = /^\d{1,4}$/.test(fields.limit) ? Number(fields.limit) : Number.NaN;
    if (!(limit >= 1 && limit <= ENDED_PAGE_MAX)) throw new InputError('invalid_input', 'limit', `must be a whole number from 1 to ${ENDED_PAGE_MAX}`);
    query.limit = limit;
  }
  if (fields.before !== undefined && fields.before !== '') {
    if (!SESSION_ID.test(fields.before)) throw new InputError('invalid_input', 'before', 'must be a session id (sess_ and 32 hex digits), the last of the previous page');
    query.before = fields.before;
  }
  return query;
}

export interface EndedSessionView {
  id: string;
  key: { id: string; name: string };
  model: string;
  upstream: string;
  /** websocket, webrtc or sip (a call metered over the upstream's sideband). */
  transport: EndedSession['transport'];
  /** settled, or recovered (settled by recovery after its instance stopped). */
  status: EndedSession['status'];
  end_reason: string;
  started_at: string;
  ended_at: string;
  duration_ms: number;
  /** What the settlement recorded, in nano-USD (1 USD = 1e9) as a decimal integer string. */
  cost_nano: string;
  charge_count: number;
}

export function endedSessionView(s: EndedSession): EndedSessionView {
  return {
    id: s.id,
    key: { id: s.keyId, name: s.keyName },
    model: s.model,
    upstream: s.upstream,
    transport: s.transport,
    status: s.status,
    end_reason: s.endReason,
    started_at: s.startedAt.toISOString(),
    ended_at: s.endedAt.toISOString(),
    duration_ms: Math.max(0, s.endedAt.getTime() - s.startedAt.getTime()),
    cost_nano: s.totalNano.toString(),
    charge_count: s.chargeCount,
  };
}

export const SPEND_BUCKETS = { hour: 3_600_000, day: 86_400_000 } as const;
export type SpendBucketName = keyof typeof SPEND_BUCKETS;
/** Enough for two months of hours or years of days, and a bound on the answer's size. */
export const SPEND_MAX_BUCKETS = 1_500;
const SPEND_DEFAULT_BUCKETS: Record<SpendBucketName, number> = { hour: 24, day: 30 };

export interface SpendRequest {
  query: SpendQuery;
  bucket: SpendBucketName;
}

/** `key` (id or name), `bucket` (hour or day; default day), `since` (an ISO date; default the last 24 hours or 30 days). */
export function parseSpendRequest(fields: Record<string, string | undefined>, now: Date = new Date()): SpendRequest {
  rejectUnknown(fields, new Set(['key', 'bucket', 'since']));
  const bucket = fields.bucket === undefined || fields.bucket === '' ? 'day' : fields.bucket;
  if (bucket !== 'hour' && bucket !== 'day') throw new InputError('invalid_input', 'bucket', 'is hour or day');
  const bucketMs = SPEND_BUCKETS[bucket];
  // The default window starts on a bucket boundary, so its first bucket is whole.
  const defaultSince = new Date(Math.floor(now.getTime() / bucketMs) * bucketMs - (SPEND_DEFAULT_BUCKETS[bucket] - 1) * bucketMs);
  const since = fields.since === undefined || fields.since === '' ? defaultSince : parseSince(fields.since);
  if ((now.getTime() - since.getTime()) / bucketMs > SPEND_MAX_BUCKETS) {
    throw new InputError('invalid_input', 'since', `is too far back for ${bucket} buckets: at most ${SPEND_MAX_BUCKETS} buckets per key`);
  }
  const query: SpendQuery = { bucketMs, since };
  const key = parseKeyFilter(fields.key);
  if (key !== undefined) query.key = key;
  return { query, bucket };
}

export interface SpendView {
  key: { id: string; name: string };
  /** The bucket's first instant (UTC). */
  start: string;
  /** nano-USD as a decimal integer string. */
  total_nano: string;
  charge_count: number;
}

export function spendView(b: SpendBucket): SpendView {
  return { key: { id: b.keyId, name: b.keyName }, start: b.bucketStart.toISOString(), total_nano: b.totalNano.toString(), charge_count: b.chargeCount };
}

export interface UsageView {
  at: string;
  key_name: string;
  session_id: string;
  kind: UsageRow['kind'];
  item_id: string;
  model: string;
  cost: string;
  cost_nano: string;
  usage: unknown;
}

export function usageJson(rows: UsageRow[]): UsageView[] {
  return rows.map((r) => ({
    at: r.at.toISOString(),
    key_name: r.keyName,
    session_id: r.sessionId,
    kind: r.kind,
    item_id: r.itemId,
    model: r.model,
    cost: formatUsd(r.costNano),
    cost_nano: r.costNano.toString(),
    usage: r.usage,
  }));
}

/**
 * Where a spreadsheet may start a cell inside a field: at its start, and, for
 * a reader that splits on ";" or tabs or ignores quotes, right after any
 * separator or line break in it. A cell starting (after any quotes) with
 * = + - @ tab or CR would be run as a formula.
 */
const FORMULA_AT_CELL_START = /(?<=^|[,;\t\r\n])(?="*[=+\-@\t\r])/g;

/** RFC 4180, with every cell a spreadsheet could open neutralised by a leading "'". */
function csvField(value: string): string {
  const safe = value.replace(FORMULA_AT_CELL_START, "'");
  // Quoted when it holds a quote, a line break or any separator a spreadsheet may split on.
  return /[",;\t\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

export function usageCsv(rows: UsageRow[]): string {
  const lines = ['at,key,session_id,kind,item_id,model,cost_usd'];
  for (const r of rows) lines.push([r.at.toISOString(), r.keyName, r.sessionId, r.kind, r.itemId, r.model, formatUsd(r.costNano)].map(csvField).join(','));
  return `${lines.join('\n')}\n`;
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

export function rejectUnknown(fields: object, known: Set<string>): void {
  for (const name of Object.keys(fields)) {
    if (!known.has(name)) throw new InputError('unknown_parameter', name, `is not a known parameter (expected: ${[...known].join(', ')})`);
  }
}
