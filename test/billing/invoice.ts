/**
 * The provider's invoice, computed the way a customer would check it: the
 * published price table (USD per 1M tokens, copied literally from the
 * protocol reference) and bigint arithmetic. Nothing here imports the
 * relay's billing code, so a test comparing the two can fail.
 */

type TokenPrices = readonly [input: string, cached: string, output: string];

export interface FamilyPrices {
  text: TokenPrices;
  audio: TokenPrices;
  /** Input and cached input; null where the table publishes no image price. */
  image: readonly [input: string, cached: string] | null;
}

/** USD per 1M tokens, as published. */
export const REALTIME_PRICES: Readonly<Record<string, FamilyPrices>> = {
  'gpt-realtime': { text: ['4', '0.40', '16'], audio: ['32', '0.40', '64'], image: ['5', '0.50'] },
  'gpt-realtime-2': { text: ['4', '0.40', '24'], audio: ['32', '0.40', '64'], image: ['5', '0.50'] },
  'gpt-realtime-2.1': { text: ['4', '0.40', '24'], audio: ['32', '0.40', '64'], image: ['5', '0.50'] },
  'gpt-realtime-mini': { text: ['0.60', '0.06', '2.40'], audio: ['10', '0.30', '20'], image: ['0.80', '0.08'] },
  'gpt-4o-realtime-preview': { text: ['5', '2.50', '20'], audio: ['40', '2.50', '80'], image: null },
  'gpt-4o-mini-realtime-preview': { text: ['0.60', '0.30', '2.40'], audio: ['10', '0.30', '20'], image: null },
};

/** USD per 1M tokens: text in, audio in, text out. */
export const TRANSCRIPTION_PRICES: Readonly<Record<string, { textIn: string; audioIn: string; textOut: string }>> = {
  'gpt-4o-transcribe': { textIn: '2.50', audioIn: '6.00', textOut: '10.00' },
  'gpt-4o-mini-transcribe': { textIn: '1.25', audioIn: '3.00', textOut: '5.00' },
};

/** whisper-1 bills by duration. */
export const WHISPER_USD_PER_MINUTE = '0.006';

const NANO_PER_USD = 1_000_000_000n;
const MILLION = 1_000_000n;

/** "0.40" → 400_000_000n nano-USD. Plain decimals only. */
export function usdToNano(text: string): bigint {
  const match = /^(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!match) throw new Error(`not a USD amount: ${text}`);
  return BigInt(match[1]!) * NANO_PER_USD + BigInt((match[2] ?? '').padEnd(9, '0'));
}

/** The shape of `response.done.response.usage`. */
export interface RealtimeUsage {
  total_tokens: number;
  input_tokens: number;
  output_tokens: number;
  input_token_details: {
    text_tokens: number;
    audio_tokens: number;
    image_tokens: number;
    cached_tokens: number;
    cached_tokens_details: { text_tokens: number; audio_tokens: number; image_tokens: number };
  };
  output_token_details: { text_tokens: number; audio_tokens: number };
}

export interface UsageSpec {
  /** [input tokens, of which cached]. */
  text?: [number, number];
  audio?: [number, number];
  image?: [number, number];
  /** [text out, audio out]. */
  out?: [number, number];
}

/** A usage whose totals agree with its details, as the provider reports it. */
export function usage(spec: UsageSpec): RealtimeUsage {
  const [textIn, textCached] = spec.text ?? [0, 0];
  const [audioIn, audioCached] = spec.audio ?? [0, 0];
  const [imageIn, imageCached] = spec.image ?? [0, 0];
  const [textOut, audioOut] = spec.out ?? [0, 0];
  const input = textIn + audioIn + imageIn;
  const output = textOut + audioOut;
  return {
    total_tokens: input + output,
    input_tokens: input,
    output_tokens: output,
    input_token_details: {
      text_tokens: textIn,
      audio_tokens: audioIn,
      image_tokens: imageIn,
      cached_tokens: textCached + audioCached + imageCached,
      cached_tokens_details: { text_tokens: textCached, audio_tokens: audioCached, image_tokens: imageCached },
    },
    output_token_details: { text_tokens: textOut, audio_tokens: audioOut },
  };
}

/** A price applied to a multiplier of parts per million, rounded up to the next nano-USD. */
export function withMultiplier(nano: bigint, multiplierPpm: bigint): bigint {
  return (nano * multiplierPpm + MILLION - 1n) / MILLION;
}

/** Exact division of a sum of (tokens × nano-USD per 1M tokens) by 1M. */
function perMillion(sum: bigint): bigint {
  if (sum % MILLION !== 0n) throw new Error(`a published price gave a fraction of a nano-USD: ${sum} / 1e6`);
  return sum / MILLION;
}

/** (input − cached) × in + cached × cached_rate + output × out, per modality; then the multiplier. */
export function realtimeInvoice(family: string, u: RealtimeUsage, multiplierPpm = MILLION): bigint {
  const prices = REALTIME_PRICES[family];
  if (!prices) throw new Error(`no published price for ${family}`);
  const d = u.input_token_details;
  const c = d.cached_tokens_details;
  const o = u.output_token_details;
  const consistent =
    u.total_tokens === u.input_tokens + u.output_tokens &&
    u.input_tokens === d.text_tokens + d.audio_tokens + d.image_tokens &&
    d.cached_tokens === c.text_tokens + c.audio_tokens + c.image_tokens &&
    c.text_tokens <= d.text_tokens &&
    c.audio_tokens <= d.audio_tokens &&
    c.image_tokens <= d.image_tokens &&
    u.output_tokens === o.text_tokens + o.audio_tokens;
  if (!consistent) throw new Error('the invoice is computed for consistent usages only');
  if (d.image_tokens > 0 && prices.image === null) throw new Error(`${family} publishes no image price`);
  const t = (tokens: number, price: string) => BigInt(tokens) * usdToNano(price);
  let sum =
    t(d.text_tokens - c.text_tokens, prices.text[0]) +
    t(c.text_tokens, prices.text[1]) +
    t(o.text_tokens, prices.text[2]) +
    t(d.audio_tokens - c.audio_tokens, prices.audio[0]) +
    t(c.audio_tokens, prices.audio[1]) +
    t(o.audio_tokens, prices.audio[2]);
  if (prices.image) sum += t(d.image_tokens - c.image_tokens, prices.image[0]) + t(c.image_tokens, prices.image[1]);
  return withMultiplier(perMillion(sum), multiplierPpm);
}

/** `conversation.item.input_audio_transcription.completed.usage`. */
export type TranscriptionUsage =
  | { type: 'tokens'; input_tokens: number; output_tokens: number; total_tokens: number; input_token_details: { text_tokens: number; audio_tokens: number } }
  | { type: 'duration'; seconds: number };

export function transcriptionInvoice(model: string, u: TranscriptionUsage, multiplierPpm = MILLION): bigint {
  if (u.type === 'duration') {
    if (model !== 'whisper-1') throw new Error(`${model} is not billed by duration`);
    if (!Number.isInteger(u.seconds)) throw new Error('whole seconds only');
    const perMinute = usdToNano(WHISPER_USD_PER_MINUTE);
    const nano = BigInt(u.seconds) * perMinute;
    if (nano % 60n !== 0n) throw new Error('a fraction of a nano-USD');
    return withMultiplier(nano / 60n, multiplierPpm);
  }
  const prices = TRANSCRIPTION_PRICES[model];
  if (!prices) throw new Error(`no published token price for ${model}`);
  const d = u.input_token_details;
  if (u.input_tokens !== d.text_tokens + d.audio_tokens || u.total_tokens !== u.input_tokens + u.output_tokens) {
    throw new Error('the invoice is computed for consistent usages only');
  }
  const sum =
    BigInt(d.text_tokens) * usdToNano(prices.textIn) + BigInt(d.audio_tokens) * usdToNano(prices.audioIn) + BigInt(u.output_tokens) * usdToNano(prices.textOut);
  return withMultiplier(perMillion(sum), multiplierPpm);
}

export function sum(values: Iterable<bigint>): bigint {
  let total = 0n;
  for (const value of values) total += value;
  return total;
}
