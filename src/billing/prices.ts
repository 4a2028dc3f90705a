/**
 * Prices, in nano-USD (1 USD = 1_000_000_000 nano-USD), and the rule that
 * maps a model name to its price family.
 *
 * A price of X USD per 1M tokens is X × 1000 nano-USD per token: exact for
 * every published price, so token rates are integers and no float ever
 * touches money.
 */

export const NANO_PER_USD = 1_000_000_000n;

/**
 * The largest balance a key can hold: 1,000,000,000 USD. Ledgers keep
 * balances in signed 64-bit integers (at most about 9.2 × 10^18 nano-USD);
 * with the balance and any one amount each at most 10^18 nano-USD, no sum the
 * ledger computes can leave that range.
 */
export const MAX_BALANCE_USD = 1_000_000_000n;
export const MAX_BALANCE_NANO = MAX_BALANCE_USD * NANO_PER_USD;

/** Nano-USD per token of one modality. `input` is the uncached rate. */
export interface ModalityRates {
  readonly input: bigint;
  readonly cachedInput: bigint;
  readonly output: bigint;
}

/** Images are input only. */
export interface ImageRates {
  readonly input: bigint;
  readonly cachedInput: bigint;
}

export interface RealtimeRates {
  readonly text: ModalityRates;
  readonly audio: ModalityRates;
  readonly image: ImageRates;
}

export interface TranscriptionTokenRates {
  readonly textInput: bigint;
  readonly audioInput: bigint;
  readonly textOutput: bigint;
}

/** A transcription model bills tokens, seconds of audio, or (operator-defined) both. */
export interface TranscriptionRates {
  readonly tokens: TranscriptionTokenRates | null;
  /** Nano-USD per second of audio. */
  readonly perSecond: bigint | null;
}

/**
 * Family name → rates. Operators extend or override it with a price file
 * (see price-file.ts). A name appears in one section only.
 */
export interface PriceTable {
  readonly realtime: Readonly<Record<string, RealtimeRates>>;
  readonly transcription: Readonly<Record<string, TranscriptionRates>>;
  /**
   * Family → earliest snapshot date (YYYY-MM-DD) its price applies to. A dated
   * name older than that is unknown: older snapshots were priced differently
   * and must not be billed at the newer family's (lower) price.
   */
  readonly snapshotsFrom: Readonly<Record<string, string>>;
}

export type RealtimePrice = { readonly family: string; readonly kind: 'realtime'; readonly rates: RealtimeRates };
export type TranscriptionPrice = {
  readonly family: string;
  readonly kind: 'transcription';
  readonly rates: TranscriptionRates;
};
export type ResolvedPrice = RealtimePrice | TranscriptionPrice;

export type PriceErrorCode = 'invalid_amount' | 'invalid_multiplier' | 'unpriced_usage';

/** A money string, multiplier or rate that cannot be used; `code` is stable. */
export class PriceError extends Error {
  readonly code: PriceErrorCode;

  constructor(code: PriceErrorCode, message: string) {
    super(message);
    this.name = 'PriceError';
    this.code = code;
  }
}

// Built-in prices, from the published table (USD per 1M tokens → nano-USD per token: × 1000).

const GPT_REALTIME: RealtimeRates = {
  text: { input: 4_000n, cachedInput: 400n, output: 16_000n }, // 4 / 0.40 / 16
  audio: { input: 32_000n, cachedInput: 400n, output: 64_000n }, // 32 / 0.40 / 64
  image: { input: 5_000n, cachedInput: 500n }, // 5 / 0.50
};

const GPT_REALTIME_2: RealtimeRates = {
  text: { input: 4_000n, cachedInput: 400n, output: 24_000n }, // 4 / 0.40 / 24
  audio: { input: 32_000n, cachedInput: 400n, output: 64_000n }, // 32 / 0.40 / 64
  image: { input: 5_000n, cachedInput: 500n }, // 5 / 0.50
};

const GPT_REALTIME_MINI: RealtimeRates = {
  text: { input: 600n, cachedInput: 60n, output: 2_400n }, // 0.60 / 0.06 / 2.40
  audio: { input: 10_000n, cachedInput: 300n, output: 20_000n }, // 10 / 0.30 / 20
  image: { input: 800n, cachedInput: 80n }, // 0.80 / 0.08
};

/**
 * A family without published image prices should never see image tokens; if
 * it does, they are billed at the text input rate, cached or not: never zero,
 * and no discount that was never published.
 */
export function imageAtTextInputRate(text: ModalityRates): ImageRates {
  return { input: text.input, cachedInput: text.input };
}

const GPT_4O_REALTIME_TEXT: ModalityRates = { input: 5_000n, cachedInput: 2_500n, output: 20_000n }; // 5 / 2.50 / 20
const GPT_4O_REALTIME_PREVIEW: RealtimeRates = {
  text: GPT_4O_REALTIME_TEXT,
  audio: { input: 40_000n, cachedInput: 2_500n, output: 80_000n }, // 40 / 2.50 / 80
  image: imageAtTextInputRate(GPT_4O_REALTIME_TEXT),
};

const GPT_4O_MINI_REALTIME_TEXT: ModalityRates = { input: 600n, cachedInput: 300n, output: 2_400n }; // 0.60 / 0.30 / 2.40
const GPT_4O_MINI_REALTIME_PREVIEW: RealtimeRates = {
  text: GPT_4O_MINI_REALTIME_TEXT,
  audio: { input: 10_000n, cachedInput: 300n, output: 20_000n }, // 10 / 0.30 / 20
  image: imageAtTextInputRate(GPT_4O_MINI_REALTIME_TEXT),
};

export const builtInPrices: PriceTable = deepFreeze({
  realtime: {
    'gpt-realtime': GPT_REALTIME,
    'gpt-realtime-2': GPT_REALTIME_2,
    'gpt-realtime-2.1': GPT_REALTIME_2,
    'gpt-realtime-mini': GPT_REALTIME_MINI,
    'gpt-4o-realtime-preview': GPT_4O_REALTIME_PREVIEW,
    'gpt-4o-mini-realtime-preview': GPT_4O_MINI_REALTIME_PREVIEW,
  },
  transcription: {
    'gpt-4o-transcribe': { tokens: { textInput: 2_500n, audioInput: 6_000n, textOutput: 10_000n }, perSecond: null }, // 2.50 / 6.00 / 10.00
    'gpt-4o-mini-transcribe': { tokens: { textInput: 1_250n, audioInput: 3_000n, textOutput: 5_000n }, perSecond: null }, // 1.25 / 3.00 / 5.00
    'whisper-1': { tokens: null, perSecond: 100_000n }, // 0.0001 USD per second (0.006 per minute)
  },
  snapshotsFrom: {
    // The 2024-10-01 snapshot cost more (the table's prices apply from 2024-12-17 on).
    'gpt-4o-realtime-preview': '2024-12-17',
  },
});

/**
 * Model name → price family. The rule, which keeps every family apart:
 *
 * 1. A name that is itself a family is that family (`gpt-realtime-2`,
 *    `gpt-realtime-2.1`, `gpt-realtime-mini`).
 * 2. Otherwise, a name of the form `F-YYYY-MM-DD` (a snapshot date) is family F,
 *    provided F exists and the date is not older than `snapshotsFrom[F]`.
 * 3. Anything else is unknown (null), and the session is refused.
 *
 * Only a date may follow a family name, so a shorter family never swallows a
 * longer one: `gpt-realtime-2025-08-28` is `gpt-realtime` (`2025-08-28` is a
 * date) and never `gpt-realtime-2` (`025-08-28` is not), `gpt-realtime-mini-…`
 * is never `gpt-realtime` (`mini-…` is not a date). Stripping the one trailing
 * date leaves exactly one candidate, which is therefore the longest family
 * the name can belong to.
 */
export function resolveModel(name: string, table: PriceTable = builtInPrices): ResolvedPrice | null {
  const exact = lookup(name, table);
  if (exact) return exact;
  const dated = SNAPSHOT_SUFFIX.exec(name);
  if (!dated || !isCalendarDate(dated[2])) return null;
  const family = dated[1];
  const from = own(table.snapshotsFrom, family);
  if (from !== undefined && dated[2] < from) return null;
  return lookup(family, table);
}

const SNAPSHOT_SUFFIX = /^(.+)-(\d{4}-\d{2}-\d{2})$/;

function isCalendarDate(date: string): boolean {
  const [year, month, day] = date.split('-').map(Number);
  const parsed = new Date(Date.UTC(year, month - 1, day));
  return parsed.getUTCFullYear() === year && parsed.getUTCMonth() === month - 1 && parsed.getUTCDate() === day;
}

function lookup(family: string, table: PriceTable): ResolvedPrice | null {
  const realtime = own(table.realtime, family);
  if (realtime) return { family, kind: 'realtime', rates: realtime };
  const transcription = own(table.transcription, family);
  if (transcription) return { family, kind: 'transcription', rates: transcription };
  return null;
}

/** Own properties only: `constructor` or `__proto__` is never a model. */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

// Decimal money strings. Parsed digit by digit: a float never holds an amount.

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;
const NANO_DIGITS = 9;

/**
 * "10.00" → 10_000_000_000n nano-USD. Accepts plain decimals with at most 9
 * fractional digits (a nano-USD); rejects exponents, blanks, signs other than
 * a leading '-' (only with `allowNegative`) and everything else.
 */
export function parseUsd(text: string, options: { allowNegative?: boolean } = {}): bigint {
  const match = typeof text === 'string' ? DECIMAL.exec(text) : null;
  if (!match) throw new PriceError('invalid_amount', `"${String(text)}" is not a decimal amount of USD.`);
  const [, sign, whole, fraction = ''] = match;
  if (fraction.length > NANO_DIGITS) {
    throw new PriceError('invalid_amount', `"${text}" has more than ${NANO_DIGITS} decimals (finer than a nano-USD).`);
  }
  if (sign && !options.allowNegative) throw new PriceError('invalid_amount', `"${text}" is negative.`);
  const nano = BigInt(whole) * NANO_PER_USD + BigInt(fraction.padEnd(NANO_DIGITS, '0'));
  return sign ? -nano : nano;
}

/** 10_000_000_000n → "10.000000": six decimals, more only when the amount needs them. */
export function formatUsd(nano: bigint): string {
  const sign = nano < 0n ? '-' : '';
  const magnitude = nano < 0n ? -nano : nano;
  const whole = magnitude / NANO_PER_USD;
  const fraction = (magnitude % NANO_PER_USD).toString().padStart(NANO_DIGITS, '0');
  return `${sign}${whole}.${trimFraction(fraction)}`;
}

/**
 * Nano-USD as a float, for exporting only (metrics, trace attributes): whole
 * dollars and the fraction apart, so totals up to 2^53 USD keep their nano
 * digits as far as a float can. Never for arithmetic on money.
 */
export function usdFloat(nano: bigint): number {
  return Number(nano / NANO_PER_USD) + Number(nano % NANO_PER_USD) / 1e9;
}

/** Drops trailing zeros beyond the sixth decimal. */
function trimFraction(fraction: string): string {
  let end = fraction.length;
  while (end > 6 && fraction[end - 1] === '0') end -= 1;
  return fraction.slice(0, end);
}

/** "X USD per 1M tokens" → nano-USD per token; rejects a price finer than 1 nano-USD per token. */
export function parsePerMillionTokens(text: string): bigint {
  const nano = parseUsd(text);
  if (nano % 1_000_000n !== 0n) {
    throw new PriceError('invalid_amount', `"${text}" USD per 1M tokens is not a whole number of nano-USD per token.`);
  }
  return nano / 1_000_000n;
}

/**
 * The exact decimal a JavaScript number prints as (its shortest round-trip
 * form), without exponent: 0.06 → "0.06", 1e-7 → "0.0000001". Null for
 * NaN and ±Infinity.
 */
export function decimalString(value: number): string | null {
  if (!Number.isFinite(value)) return null;
  const printed = String(value);
  const exponential = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(printed);
  if (!exponential) return printed;
  const [, sign, lead, rest = '', exponentText] = exponential;
  const digits = lead + rest;
  const point = 1 + Number(exponentText);
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
