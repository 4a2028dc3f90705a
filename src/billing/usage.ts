/**
 * Usage objects from upstream frames, read into one internal shape.
 *
 * The upstream is untrusted input: these functions never throw and never
 * produce NaN. A field that is not a non-negative safe integer is read as 0
 * and flagged `invalid_field`; a missing field is unknown, which is not the
 * same as 0 (see the rules below).
 *
 * Conservative rule. When the numbers contradict each other, the bill is
 * never lower than any reading that keeps the reported numbers and mends each
 * contradiction by moving one side of it to meet the other:
 * - cached tokens of a modality above its input tokens: the cached tokens up
 *   to the input count get the cached rate, the excess is billed as uncached
 *   input at full price, of no known modality (it may be among input_tokens'
 *   unexplained tokens, which are billed at the highest input rate);
 * - input_tokens above the sum of the modality details (or no details at
 *   all): the unexplained tokens are billed at the model's highest uncached
 *   input rate (audio, for every built-in family);
 * - output_tokens above text + audio output: the unexplained tokens are billed
 *   at the model's highest output rate;
 * - total_tokens above input + output: the difference is billed at the
 *   model's highest rate of all (an output rate, for every built-in family);
 * - a total below its parts: the parts are billed;
 * - cached_tokens with no cached_tokens_details: the cached tokens are
 *   placed on the modalities where the discount is smallest;
 * - cached_tokens below the sum of cached_tokens_details: the difference is
 *   billed at full price where that withdraws the largest discount;
 *   cached_tokens above that sum (details present): the details are believed,
 *   the extra discount is not given;
 * - reasoning tokens are text output: counted within text_tokens when
 *   output_tokens says so, on top of them otherwise.
 * So a usage with totals but no details is billed in full, never as 0 or 1.
 *
 * Placing tokens "where the discount is smallest" needs the model's prices,
 * so the normaliser leaves those tokens in `unattributed` and cost.ts
 * resolves them; the normaliser itself does not depend on a price.
 */

import { decimalString } from './prices.js';

export const USAGE_ANOMALIES = [
  /** The usage object is absent or not an object: nothing is billed. */
  'usage_missing',
  /** A field is negative, fractional, unsafe, not a number, or an object of the wrong type: read as 0. */
  'invalid_field',
  /** total_tokens ≠ input + output. */
  'total_mismatch',
  /** input_tokens > 0 with no per-modality details. */
  'input_details_missing',
  /** input_tokens ≠ text + audio + image. */
  'input_details_mismatch',
  /** cached_tokens > 0 with no cached_tokens_details. */
  'cached_details_missing',
  /** cached_tokens ≠ the sum of cached_tokens_details. */
  'cached_details_mismatch',
  /** Cached tokens exceed the input tokens they are part of. */
  'cached_exceeds_input',
  /** output_tokens > 0 with no per-modality details. */
  'output_details_missing',
  /** output_tokens ≠ text + audio. */
  'output_details_mismatch',
  /** A transcription usage whose `type` is neither "tokens" nor "duration". */
  'unknown_usage_type',
] as const;

export type UsageAnomaly = (typeof USAGE_ANOMALIES)[number];

/** Token counts of one modality; `input` is uncached input only. */
export interface ModalityTokens {
  input: number;
  cachedInput: number;
  output: number;
}

export interface ImageTokens {
  input: number;
  cachedInput: number;
}

/** Tokens the upstream counted without saying what they were; cost.ts prices them the dearest way. */
export interface UnattributedTokens {
  /** Uncached input tokens of no known modality: the highest input rate. */
  input: number;
  /** Output tokens of no known modality: the highest output rate. */
  output: number;
  /** Tokens only total_tokens accounts for, input or output unknown: the highest rate of all. */
  either: number;
  /**
   * Cached tokens reported only by cached_tokens. They are already counted
   * among the uncached inputs above (a modality's `input` or `unattributed.input`);
   * cost.ts moves them to the cached rate where that lowers the bill least.
   */
  cached: number;
  /**
   * Cached tokens the details claim beyond cached_tokens. They are already
   * counted among the `cachedInput` counts above; cost.ts bills them at full
   * price where that raises the bill most.
   */
  notCached: number;
}

export interface NormalizedUsage {
  text: ModalityTokens;
  audio: ModalityTokens;
  image: ImageTokens;
  unattributed: UnattributedTokens;
  /** Broken invariants, each code once, in the order of USAGE_ANOMALIES. */
  anomalies: UsageAnomaly[];
}

export type NormalizedTranscriptionUsage =
  | {
      kind: 'tokens';
      text: { input: number; output: number };
      audio: { input: number };
      /** `input`: input of no known modality (highest input rate); `either`: only in total_tokens (highest rate). */
      unattributed: { input: number; either: number };
      anomalies: UsageAnomaly[];
    }
  | {
      kind: 'duration';
      /** Audio duration rounded up to the next millisecond. */
      milliseconds: number;
      anomalies: UsageAnomaly[];
    };

type Flags = Set<UsageAnomaly>;
type Fields = Record<string, unknown>;

/** Reads `response.done.response.usage` (GA or beta shape). */
export function normalizeResponseUsage(usage: unknown): NormalizedUsage {
  const flags: Flags = new Set();
  if (!isFields(usage)) {
    flags.add('usage_missing');
    return emptyUsage(flags);
  }
  const inputDetails = readObject(usage, 'input_token_details', flags);
  const cachedDetails = readObject(inputDetails, 'cached_tokens_details', flags);
  const outputDetails = readObject(usage, 'output_token_details', flags);
  const total = readCount(usage, 'total_tokens', flags);
  const inputTotal = readCount(usage, 'input_tokens', flags);
  const outputTotal = readCount(usage, 'output_tokens', flags);
  const cachedTotal = readCount(inputDetails, 'cached_tokens', flags);

  // Input, per modality: of a modality's input tokens, the cached ones (never
  // more than the input) get the cached rate.
  const modalities = ['text', 'audio', 'image'] as const;
  const input = { text: { uncached: 0, cached: 0 }, audio: { uncached: 0, cached: 0 }, image: { uncached: 0, cached: 0 } };
  let reportedInputSum = 0;
  let reportedCachedSum = 0;
  let attributedCached = 0;
  let excessCached = 0;
  let inputDetailsPresent = false;
  let cachedDetailsPresent = false;
  for (const modality of modalities) {
    const reported = readCount(inputDetails, `${modality}_tokens`, flags);
    const reportedCached = readCount(cachedDetails, `${modality}_tokens`, flags);
    inputDetailsPresent ||= reported !== undefined;
    cachedDetailsPresent ||= reportedCached !== undefined;
    const tokens = reported ?? 0;
    const cached = reportedCached ?? 0;
    const discounted = Math.min(tokens, cached);
    if (cached > tokens) {
      flags.add('cached_exceeds_input');
      // The input figure or the cached one is wrong. If the excess tokens exist,
      // they may be any of input_tokens' unexplained tokens: they are billed
      // as uncached input of no known modality, never at the cached rate.
      excessCached += cached - tokens;
    }
    input[modality] = { uncached: tokens - discounted, cached: discounted };
    reportedInputSum += tokens;
    reportedCachedSum += cached;
    attributedCached += discounted;
  }

  if (inputTotal !== undefined) {
    if (!inputDetailsPresent) {
      if (inputTotal > 0) flags.add('input_details_missing');
    } else if (inputTotal !== reportedInputSum) {
      flags.add('input_details_mismatch');
    }
  }
  // The input the upstream reported, before cached tokens are weighed against it.
  const reportedInput = Math.max(inputTotal ?? 0, reportedInputSum);
  // Cached tokens beyond every input count still happened: they raise the input.
  const inputCount = Math.max(reportedInput, reportedInputSum + excessCached, cachedTotal ?? 0);

  let cachedUnattributed = 0;
  let notCached = 0;
  if (cachedTotal !== undefined) {
    if (cachedTotal > reportedInput) flags.add('cached_exceeds_input');
    // Only cached tokens within the reported input earn the discount.
    const discountable = Math.min(cachedTotal, reportedInput);
    if (!cachedDetailsPresent) {
      if (cachedTotal > 0) flags.add('cached_details_missing');
      cachedUnattributed = discountable;
    } else {
      if (cachedTotal !== reportedCachedSum) flags.add('cached_details_mismatch');
      notCached = Math.max(0, attributedCached - discountable);
    }
  }

  const output = readOutput(outputDetails, outputTotal, flags);
  const outputCount = output.text + output.audio + output.unattributed;

  let either = 0;
  if (total !== undefined) {
    if (total !== inputCount + outputCount) flags.add('total_mismatch');
    either = Math.max(0, total - inputCount - outputCount);
  }

  return {
    text: { input: input.text.uncached, cachedInput: input.text.cached, output: output.text },
    audio: { input: input.audio.uncached, cachedInput: input.audio.cached, output: output.audio },
    image: { input: input.image.uncached, cachedInput: input.image.cached },
    unattributed: {
      input: inputCount - reportedInputSum,
      output: output.unattributed,
      either,
      cached: cachedUnattributed,
      notCached,
    },
    anomalies: ordered(flags),
  };
}

/**
 * Output per modality. Reasoning tokens, when reported, are text output; they
 * may or may not be included in text_tokens, so output_tokens decides when it
 * can, and otherwise they are counted on top (the dearer reading).
 */
function readOutput(
  details: Fields | undefined,
  outputTotal: number | undefined,
  flags: Flags,
): { text: number; audio: number; unattributed: number } {
  const text = readCount(details, 'text_tokens', flags);
  const audio = readCount(details, 'audio_tokens', flags);
  const reasoning = readCount(details, 'reasoning_tokens', flags);
  const audioTokens = audio ?? 0;
  const textIfIncluded = Math.max(text ?? 0, reasoning ?? 0);
  const textIfSeparate = (text ?? 0) + (reasoning ?? 0);
  if (outputTotal === undefined) return { text: textIfSeparate, audio: audioTokens, unattributed: 0 };

  const detailsPresent = text !== undefined || audio !== undefined || reasoning !== undefined;
  const textByTotal = outputTotal - audioTokens;
  if (!detailsPresent) {
    if (outputTotal > 0) flags.add('output_details_missing');
  } else if (textByTotal < textIfIncluded || textByTotal > textIfSeparate) {
    flags.add('output_details_mismatch');
  }
  if (textByTotal > textIfSeparate) {
    return { text: textIfSeparate, audio: audioTokens, unattributed: textByTotal - textIfSeparate };
  }
  if (textByTotal >= textIfIncluded) return { text: textByTotal, audio: audioTokens, unattributed: 0 };
  return { text: textIfSeparate, audio: audioTokens, unattributed: 0 };
}

/**
 * Reads `conversation.item.input_audio_transcription.completed.usage`.
 * Duration is rounded up to the next millisecond (whisper-1's price per second
 * is a whole number of nano-USD per millisecond); cost.ts rounds the amount up.
 */
export function normalizeTranscriptionUsage(usage: unknown): NormalizedTranscriptionUsage {
  const flags: Flags = new Set();
  if (!isFields(usage)) {
    flags.add('usage_missing');
    return tokenTranscription(0, 0, 0, 0, 0, flags);
  }
  const type = own(usage, 'type');
  const isDuration = type === 'duration' || (type !== 'tokens' && own(usage, 'seconds') != null && !hasTokenFields(usage));
  if (type !== 'tokens' && type !== 'duration') flags.add('unknown_usage_type');
  if (isDuration) return { kind: 'duration', milliseconds: readMilliseconds(usage, flags), anomalies: ordered(flags) };

  const details = readObject(usage, 'input_token_details', flags);
  const total = readCount(usage, 'total_tokens', flags);
  const inputTotal = readCount(usage, 'input_tokens', flags);
  const outputTotal = readCount(usage, 'output_tokens', flags);
  const text = readCount(details, 'text_tokens', flags);
  const audio = readCount(details, 'audio_tokens', flags);
  const attributed = (text ?? 0) + (audio ?? 0);
  if (inputTotal !== undefined) {
    if (text === undefined && audio === undefined) {
      if (inputTotal > 0) flags.add('input_details_missing');
    } else if (inputTotal !== attributed) {
      flags.add('input_details_mismatch');
    }
  }
  const inputCount = Math.max(inputTotal ?? 0, attributed);
  const output = outputTotal ?? 0;
  let either = 0;
  if (total !== undefined) {
    if (total !== inputCount + output) flags.add('total_mismatch');
    either = Math.max(0, total - inputCount - output);
  }
  return tokenTranscription(text ?? 0, audio ?? 0, inputCount - attributed, output, either, flags);
}

function hasTokenFields(usage: Fields): boolean {
  return ['input_tokens', 'output_tokens', 'total_tokens', 'input_token_details'].some((key) => own(usage, key) != null);
}

function tokenTranscription(
  text: number,
  audio: number,
  unattributedInput: number,
  output: number,
  either: number,
  flags: Flags,
): NormalizedTranscriptionUsage {
  return {
    kind: 'tokens',
    text: { input: text, output },
    audio: { input: audio },
    unattributed: { input: unattributedInput, either },
    anomalies: ordered(flags),
  };
}

/**
 * Seconds → whole milliseconds, rounded up. Read from the number's decimal
 * form ("0.3" is 300 ms, where 0.3 × 1000 in floating point is 300.00000000000006).
 */
function readMilliseconds(usage: Fields, flags: Flags): number {
  const seconds = own(usage, 'seconds');
  if (seconds == null) return 0;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
    flags.add('invalid_field');
    return 0;
  }
  const [whole, fraction = ''] = (decimalString(seconds) ?? '0').split('.');
  const roundUp = /[1-9]/.test(fraction.slice(3)) ? 1n : 0n;
  const milliseconds = BigInt(whole) * 1000n + BigInt(fraction.slice(0, 3).padEnd(3, '0')) + roundUp;
  if (milliseconds > BigInt(Number.MAX_SAFE_INTEGER)) {
    flags.add('invalid_field');
    return 0;
  }
  return Number(milliseconds);
}

function emptyUsage(flags: Flags): NormalizedUsage {
  return {
    text: { input: 0, cachedInput: 0, output: 0 },
    audio: { input: 0, cachedInput: 0, output: 0 },
    image: { input: 0, cachedInput: 0 },
    unattributed: { input: 0, output: 0, either: 0, cached: 0, notCached: 0 },
    anomalies: ordered(flags),
  };
}

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Own properties only, so an inherited property is never read as usage. */
function own(fields: Fields, key: string): unknown {
  return Object.hasOwn(fields, key) ? fields[key] : undefined;
}

function readObject(parent: Fields | undefined, key: string, flags: Flags): Fields | undefined {
  if (!parent) return undefined;
  const value = own(parent, key);
  if (value == null) return undefined;
  if (isFields(value)) return value;
  flags.add('invalid_field');
  return undefined;
}

/** A token count: undefined when absent (or null), 0 and flagged when unusable. */
function readCount(parent: Fields | undefined, key: string, flags: Flags): number | undefined {
  if (!parent) return undefined;
  const value = own(parent, key);
  if (value == null) return undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value + 0; // -0 → 0
  flags.add('invalid_field');
  return 0;
}

function ordered(flags: Flags): UsageAnomaly[] {
  return USAGE_ANOMALIES.filter((code) => flags.has(code));
}
