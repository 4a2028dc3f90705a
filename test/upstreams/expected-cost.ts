/**
 * Bills computed the long way, from the published per-1M-token prices as
 * written in the protocol reference, independently of src/billing: a test
 * compares the ledger against these numbers, not against the code that wrote it.
 */

/** "0.60" USD per 1M tokens → 600 nano-USD per token (1 USD = 1e9 nano, 1M tokens = 1e6). */
export function nanoPerToken(usdPerMillion: string): bigint {
  const [whole, fraction = ''] = usdPerMillion.split('.');
  if (fraction.length > 3) throw new Error(`${usdPerMillion}: more precision than a nano-USD per token`);
  return BigInt(whole!) * 1000n + BigInt(fraction.padEnd(3, '0'));
}

interface ModalityPrice {
  input: string;
  cached: string;
  output: string;
}

/** USD per 1M tokens, from the reference's price table. */
export const PUBLISHED: Record<string, { text: ModalityPrice; audio: ModalityPrice; image: Omit<ModalityPrice, 'output'> }> = {
  'gpt-realtime': { text: { input: '4', cached: '0.40', output: '16' }, audio: { input: '32', cached: '0.40', output: '64' }, image: { input: '5', cached: '0.50' } },
  'gpt-realtime-mini': { text: { input: '0.60', cached: '0.06', output: '2.40' }, audio: { input: '10', cached: '0.30', output: '20' }, image: { input: '0.80', cached: '0.08' } },
};

export const PUBLISHED_TRANSCRIPTION = {
  'gpt-4o-transcribe': { textInput: '2.50', audioInput: '6.00', textOutput: '10.00' },
  'gpt-4o-mini-transcribe': { textInput: '1.25', audioInput: '3.00', textOutput: '5.00' },
} as const;

/** whisper-1: 0.006 USD per minute = 100,000 nano-USD per second. */
export const WHISPER_NANO_PER_SECOND = 6_000_000n / 60n;

export interface ResponseUsage {
  input_token_details: {
    text_tokens: number;
    audio_tokens: number;
    image_tokens: number;
    cached_tokens?: number;
    cached_tokens_details: { text_tokens: number; audio_tokens: number; image_tokens: number };
  };
  output_token_details: { text_tokens: number; audio_tokens: number };
}

/** Per modality: (input − cached) × in + cached × cached rate + output × out. */
export function expectedResponseCost(model: keyof typeof PUBLISHED, usage: ResponseUsage): bigint {
  const price = PUBLISHED[model]!;
  const input = usage.input_token_details;
  const cached = input.cached_tokens_details;
  const output = usage.output_token_details;
  const modality = (p: { input: string; cached: string }, tokens: number, cachedTokens: number, out: number, outRate: string) =>
    BigInt(tokens - cachedTokens) * nanoPerToken(p.input) + BigInt(cachedTokens) * nanoPerToken(p.cached) + BigInt(out) * nanoPerToken(outRate);
  return (
    modality(price.text, input.text_tokens, cached.text_tokens, output.text_tokens, price.text.output) +
    modality(price.audio, input.audio_tokens, cached.audio_tokens, output.audio_tokens, price.audio.output) +
    modality(price.image, input.image_tokens, cached.image_tokens, 0, '0')
  );
}

export function expectedTranscriptionTokenCost(model: keyof typeof PUBLISHED_TRANSCRIPTION, usage: { input_token_details: { text_tokens: number; audio_tokens: number }; output_tokens: number }): bigint {
  const price = PUBLISHED_TRANSCRIPTION[model];
  return (
    BigInt(usage.input_token_details.text_tokens) * nanoPerToken(price.textInput) +
    BigInt(usage.input_token_details.audio_tokens) * nanoPerToken(price.audioInput) +
    BigInt(usage.output_tokens) * nanoPerToken(price.textOutput)
  );
}
