/**
 * Normalised usage × prices → nano-USD, in exact bigint arithmetic.
 *
 * Per modality: uncached input × input rate + cached input × cached rate +
 * output × output rate; summed, then multiplied by the key's multiplier in
 * parts per million and rounded up (ceil), so a resale margin is never
 * under-billed by rounding. Tokens the upstream did not attribute are priced
 * the dearest way the model allows (see usage.ts for the rules).
 */

import { PriceError } from './prices.js';
import type { RealtimePrice, RealtimeRates, TranscriptionPrice } from './prices.js';
import type { NormalizedTranscriptionUsage, NormalizedUsage } from './usage.js';

export const PPM = 1_000_000n;

/** Amounts in nano-USD. Parts are before the multiplier; `total` is after it. */
export interface CostBreakdown {
  text: bigint;
  audio: bigint;
  image: bigint;
  /** Tokens of no known modality, at the model's highest rates. */
  unattributed: bigint;
  subtotal: bigint;
  multiplierPpm: bigint;
  total: bigint;
}

export interface TranscriptionCostBreakdown {
  text: bigint;
  audio: bigint;
  unattributed: bigint;
  duration: bigint;
  subtotal: bigint;
  multiplierPpm: bigint;
  total: bigint;
  /**
   * True when the usage came in the other unit than the model is priced in, and
   * was converted at the protocol's estimate of one input audio token per 100 ms.
   */
  estimated: boolean;
}

export function priceUsage(usage: NormalizedUsage, price: RealtimePrice, multiplierPpm: number | bigint = 1_000_000): bigint {
  return costBreakdown(usage, price, multiplierPpm).total;
}

export function costBreakdown(
  usage: NormalizedUsage,
  price: RealtimePrice,
  multiplierPpm: number | bigint = 1_000_000,
): CostBreakdown {
  const multiplier = checkedMultiplier(multiplierPpm);
  const rates = price.rates;
  const pools = inputPools(usage, rates);
  placeUnattributedCached(pools, BigInt(usage.unattributed.cached));
  withdrawCachedDiscount(pools, BigInt(usage.unattributed.notCached));

  const [text, audio, image, unknown] = pools.map((pool) => pool.uncached * pool.rate + pool.cached * pool.cachedRate);
  const highestOutput = max(rates.text.output, rates.audio.output);
  const highestAny = max(highestOutput, pools[3].rate);
  const parts = {
    text: text + BigInt(usage.text.output) * rates.text.output,
    audio: audio + BigInt(usage.audio.output) * rates.audio.output,
    image,
    unattributed:
      unknown + BigInt(usage.unattributed.output) * highestOutput + BigInt(usage.unattributed.either) * highestAny,
  };
  const subtotal = parts.text + parts.audio + parts.image + parts.unattributed;
  return { ...parts, subtotal, multiplierPpm: multiplier, total: applyMultiplier(subtotal, multiplier) };
}

export function priceTranscription(
  usage: NormalizedTranscriptionUsage,
  price: TranscriptionPrice,
  multiplierPpm: number | bigint = 1_000_000,
): bigint {
  return transcriptionCostBreakdown(usage, price, multiplierPpm).total;
}

/** Input audio tokens per second: the protocol's estimate, used only to convert between units. */
const AUDIO_TOKENS_PER_SECOND = 10n;

export function transcriptionCostBreakdown(
  usage: NormalizedTranscriptionUsage,
  price: TranscriptionPrice,
  multiplierPpm: number | bigint = 1_000_000,
): TranscriptionCostBreakdown {
  const multiplier = checkedMultiplier(multiplierPpm);
  const { tokens, perSecond } = price.rates;
  const parts = { text: 0n, audio: 0n, unattributed: 0n, duration: 0n };
  let estimated = false;

  if (usage.kind === 'tokens' && tokens) {
    const highestInput = max(tokens.textInput, tokens.audioInput);
    parts.text = BigInt(usage.text.input) * tokens.textInput + BigInt(usage.text.output) * tokens.textOutput;
    parts.audio = BigInt(usage.audio.input) * tokens.audioInput;
    parts.unattributed =
      BigInt(usage.unattributed.input) * highestInput + BigInt(usage.unattributed.either) * max(highestInput, tokens.textOutput);
  } else if (usage.kind === 'duration' && perSecond !== null) {
    parts.duration = ceilDiv(BigInt(usage.milliseconds) * perSecond, 1000n);
  } else if (usage.kind === 'tokens' && perSecond !== null) {
    // A duration-priced model reporting tokens: every token that may be audio counts as 100 ms.
    estimated = true;
    const audioTokens = BigInt(usage.audio.input + usage.unattributed.input + usage.unattributed.either);
    parts.duration = ceilDiv(audioTokens * perSecond, AUDIO_TOKENS_PER_SECOND);
  } else if (usage.kind === 'duration' && tokens) {
    // A token-priced model reporting a duration: one audio token per started 100 ms.
    estimated = true;
    parts.audio = ceilDiv(BigInt(usage.milliseconds) * AUDIO_TOKENS_PER_SECOND, 1000n) * tokens.audioInput;
  } else {
    throw new PriceError('unpriced_usage', `Transcription model "${price.family}" has neither token nor duration prices.`);
  }

  const subtotal = parts.text + parts.audio + parts.unattributed + parts.duration;
  return { ...parts, subtotal, multiplierPpm: multiplier, total: applyMultiplier(subtotal, multiplier), estimated };
}

interface InputPool {
  uncached: bigint;
  cached: bigint;
  rate: bigint;
  cachedRate: bigint;
}

/** text, audio, image, then the input of no known modality at the highest rates. */
function inputPools(usage: NormalizedUsage, rates: RealtimeRates): [InputPool, InputPool, InputPool, InputPool] {
  const pool = (uncached: number, cached: number, rate: bigint, cachedRate: bigint): InputPool => ({
    uncached: BigInt(uncached),
    cached: BigInt(cached),
    rate,
    cachedRate,
  });
  return [
    pool(usage.text.input, usage.text.cachedInput, rates.text.input, rates.text.cachedInput),
    pool(usage.audio.input, usage.audio.cachedInput, rates.audio.input, rates.audio.cachedInput),
    pool(usage.image.input, usage.image.cachedInput, rates.image.input, rates.image.cachedInput),
    pool(
      usage.unattributed.input,
      0,
      max(rates.text.input, rates.audio.input, rates.image.input),
      // A cached token of unknown modality: the dearest cached rate it could have had.
      max(rates.text.cachedInput, rates.audio.cachedInput, rates.image.cachedInput),
    ),
  ];
}

const discount = (pool: InputPool): bigint => pool.rate - pool.cachedRate;

/**
 * Cached tokens of unknown modality go where the discount is smallest: of all
 * the ways to read them, the one that bills the most.
 */
function placeUnattributedCached(pools: InputPool[], tokens: bigint): void {
  let left = tokens;
  for (const pool of [...pools].sort((a, b) => compare(discount(a), discount(b)))) {
    const moved = min(left, pool.uncached);
    pool.uncached -= moved;
    pool.cached += moved;
    left -= moved;
  }
}

/** Cached claims the cached total denies lose their discount where it is largest. */
function withdrawCachedDiscount(pools: InputPool[], tokens: bigint): void {
  let left = tokens;
  for (const pool of [...pools].sort((a, b) => compare(discount(b), discount(a)))) {
    const moved = min(left, pool.cached);
    pool.cached -= moved;
    pool.uncached += moved;
    left -= moved;
  }
}

function checkedMultiplier(multiplierPpm: number | bigint): bigint {
  const valid =
    typeof multiplierPpm === 'bigint' ? multiplierPpm >= 0n : Number.isSafeInteger(multiplierPpm) && multiplierPpm >= 0;
  if (!valid) {
    throw new PriceError('invalid_multiplier', `A price multiplier must be a non-negative integer of parts per million (got ${String(multiplierPpm)}).`);
  }
  return BigInt(multiplierPpm);
}

/** ceil(amount × ppm / 1_000_000): rounding never lowers a marked-up bill. */
function applyMultiplier(amount: bigint, multiplierPpm: bigint): bigint {
  return ceilDiv(amount * multiplierPpm, PPM);
}

/** For non-negative operands. */
function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator;
}

function max(...values: bigint[]): bigint {
  return values.reduce((a, b) => (b > a ? b : a));
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
