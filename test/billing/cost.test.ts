import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costBreakdown, priceTranscription, priceUsage, transcriptionCostBreakdown } from '../../src/billing/cost.js';
import { PriceError, resolveModel } from '../../src/billing/prices.js';
import type { RealtimePrice, TranscriptionPrice } from '../../src/billing/prices.js';
import { normalizeResponseUsage, normalizeTranscriptionUsage } from '../../src/billing/usage.js';
import { EVERY_KIND_OF_TOKEN_USAGE, usageShaped } from '../helpers/usage.js';

/**
 * The price table of the protocol reference, written out again by hand
 * (USD per 1M tokens × 1000 = nano-USD per token): [input, cached, output].
 * Families without image prices bill images at the text input rate.
 */
const TABLE = {
  'gpt-realtime': { text: [4_000n, 400n, 16_000n], audio: [32_000n, 400n, 64_000n], image: [5_000n, 500n] },
  'gpt-realtime-2': { text: [4_000n, 400n, 24_000n], audio: [32_000n, 400n, 64_000n], image: [5_000n, 500n] },
  'gpt-realtime-2.1': { text: [4_000n, 400n, 24_000n], audio: [32_000n, 400n, 64_000n], image: [5_000n, 500n] },
  'gpt-realtime-mini': { text: [600n, 60n, 2_400n], audio: [10_000n, 300n, 20_000n], image: [800n, 80n] },
  'gpt-4o-realtime-preview': { text: [5_000n, 2_500n, 20_000n], audio: [40_000n, 2_500n, 80_000n], image: [5_000n, 5_000n] },
  'gpt-4o-mini-realtime-preview': { text: [600n, 300n, 2_400n], audio: [10_000n, 300n, 20_000n], image: [600n, 600n] },
} as const;
type Family = keyof typeof TABLE;
const FAMILIES = Object.keys(TABLE) as Family[];

function realtimePrice(model: string): RealtimePrice {
  const price = resolveModel(model);
  if (price?.kind !== 'realtime') throw new Error(`${model} is not a realtime model`);
  return price;
}

function transcriptionPrice(model: string): TranscriptionPrice {
  const price = resolveModel(model);
  if (price?.kind !== 'transcription') throw new Error(`${model} is not a transcription model`);
  return price;
}

const bill = (model: string, usage: unknown, multiplierPpm?: number) =>
  priceUsage(normalizeResponseUsage(usage), realtimePrice(model), multiplierPpm);

describe('a response with every kind of token, per family', () => {
  // Uncached / cached / output tokens: text 200 / 100 / 200, audio 400 / 200 / 300, image 50 / 50.
  const expected: Array<[Family, { text: bigint; audio: bigint; image: bigint; total: bigint }]> = [
    [
      'gpt-realtime',
      {
        text: 4_040_000n, // 200×4000 + 100×400 + 200×16000 = 800,000 + 40,000 + 3,200,000
        audio: 32_080_000n, // 400×32000 + 200×400 + 300×64000 = 12,800,000 + 80,000 + 19,200,000
        image: 275_000n, // 50×5000 + 50×500 = 250,000 + 25,000
        total: 36_395_000n, // 0.036395 USD
      },
    ],
    [
      'gpt-realtime-2',
      {
        text: 5_640_000n, // 200×4000 + 100×400 + 200×24000 = 800,000 + 40,000 + 4,800,000
        audio: 32_080_000n, // as gpt-realtime
        image: 275_000n, // as gpt-realtime
        total: 37_995_000n,
      },
    ],
    ['gpt-realtime-2.1', { text: 5_640_000n, audio: 32_080_000n, image: 275_000n, total: 37_995_000n }], // priced as gpt-realtime-2
    [
      'gpt-realtime-mini',
      {
        text: 606_000n, // 200×600 + 100×60 + 200×2400 = 120,000 + 6,000 + 480,000
        audio: 10_060_000n, // 400×10000 + 200×300 + 300×20000 = 4,000,000 + 60,000 + 6,000,000
        image: 44_000n, // 50×800 + 50×80 = 40,000 + 4,000
        total: 10_710_000n,
      },
    ],
    [
      'gpt-4o-realtime-preview',
      {
        text: 5_250_000n, // 200×5000 + 100×2500 + 200×20000 = 1,000,000 + 250,000 + 4,000,000
        audio: 40_500_000n, // 400×40000 + 200×2500 + 300×80000 = 16,000,000 + 500,000 + 24,000,000
        image: 500_000n, // no image prices: 100 × 5000 (text input rate, cached or not)
        total: 46_250_000n,
      },
    ],
    [
      'gpt-4o-mini-realtime-preview',
      {
        text: 630_000n, // 200×600 + 100×300 + 200×2400 = 120,000 + 30,000 + 480,000
        audio: 10_060_000n, // 400×10000 + 200×300 + 300×20000 = 4,000,000 + 60,000 + 6,000,000
        image: 60_000n, // no image prices: 100 × 600 (text input rate)
        total: 10_750_000n,
      },
    ],
  ];

  it.each(expected)('%s bills the hand-computed amount', (family, amounts) => {
    const breakdown = costBreakdown(normalizeResponseUsage(EVERY_KIND_OF_TOKEN_USAGE), realtimePrice(family));
    expect(breakdown).toEqual({
      ...amounts,
      unattributed: 0n,
      subtotal: amounts.total,
      multiplierPpm: 1_000_000n,
    });
  });

  it('bills a dated snapshot at its family price', () => {
    expect(bill('gpt-realtime-2025-08-28', EVERY_KIND_OF_TOKEN_USAGE)).toBe(36_395_000n);
    expect(bill('gpt-realtime-mini-2025-10-06', EVERY_KIND_OF_TOKEN_USAGE)).toBe(10_710_000n);
    expect(bill('gpt-4o-realtime-preview-2024-12-17', EVERY_KIND_OF_TOKEN_USAGE)).toBe(46_250_000n);
  });

  it('matches the price table written out independently', () => {
    for (const family of FAMILIES) {
      const { text, audio, image } = realtimePrice(family).rates;
      expect([[text.input, text.cachedInput, text.output], [audio.input, audio.cachedInput, audio.output], [image.input, image.cachedInput]]).toEqual([
        TABLE[family].text,
        TABLE[family].audio,
        TABLE[family].image,
      ]);
    }
  });
});

describe('transcription', () => {
  const tokens = {
    type: 'tokens',
    input_tokens: 1000,
    output_tokens: 50,
    total_tokens: 1050,
    input_token_details: { text_tokens: 100, audio_tokens: 900 },
  };

  it('bills gpt-4o-transcribe tokens', () => {
    // 100×2500 + 900×6000 + 50×10000 = 250,000 + 5,400,000 + 500,000
    expect(priceTranscription(normalizeTranscriptionUsage(tokens), transcriptionPrice('gpt-4o-transcribe'))).toBe(6_150_000n);
  });

  it('bills gpt-4o-mini-transcribe tokens', () => {
    // 100×1250 + 900×3000 + 50×5000 = 125,000 + 2,700,000 + 250,000
    expect(priceTranscription(normalizeTranscriptionUsage(tokens), transcriptionPrice('gpt-4o-mini-transcribe'))).toBe(3_075_000n);
  });

  it('bills whisper-1 by the millisecond, rounded up', () => {
    const whisper = transcriptionPrice('whisper-1');
    // 12.5 s × 100,000 nano-USD/s
    expect(priceTranscription(normalizeTranscriptionUsage({ type: 'duration', seconds: 12.5 }), whisper)).toBe(1_250_000n);
    // 0.0004 s starts the first millisecond: 1 ms × 100 nano-USD/ms
    expect(priceTranscription(normalizeTranscriptionUsage({ type: 'duration', seconds: 0.0004 }), whisper)).toBe(100n);
    // 60 s = 0.006 USD
    expect(priceTranscription(normalizeTranscriptionUsage({ type: 'duration', seconds: 60 }), whisper)).toBe(6_000_000n);
  });

  it('bills unattributed transcription tokens at the audio rate, and a total gap at the highest rate', () => {
    // 80 unattributed input × 6000 + 5 output × 10000 + 15 only in the total × 10000
    const usage = normalizeTranscriptionUsage({ type: 'tokens', input_tokens: 80, output_tokens: 5, total_tokens: 100 });
    expect(priceTranscription(usage, transcriptionPrice('gpt-4o-transcribe'))).toBe(480_000n + 50_000n + 150_000n);
  });

  it('converts between tokens and seconds when a model reports the other unit, and says so', () => {
    // 900 audio tokens ≈ 90 s at whisper-1's 100,000 nano-USD/s (text tokens are not billed by duration)
    const asTokens = transcriptionCostBreakdown(normalizeTranscriptionUsage(tokens), transcriptionPrice('whisper-1'));
    expect(asTokens).toMatchObject({ duration: 9_000_000n, estimated: true });
    // 2.01 s ≈ 21 audio tokens (one per started 100 ms) × 6000
    const asSeconds = transcriptionCostBreakdown(
      normalizeTranscriptionUsage({ type: 'duration', seconds: 2.01 }),
      transcriptionPrice('gpt-4o-transcribe'),
    );
    expect(asSeconds).toMatchObject({ audio: 126_000n, estimated: true });
  });

  it('refuses a transcription price with no rates at all', () => {
    const unpriced: TranscriptionPrice = { family: 'x', kind: 'transcription', rates: { tokens: null, perSecond: null } };
    expect(() => priceTranscription(normalizeTranscriptionUsage(tokens), unpriced)).toThrow(
      expect.objectContaining({ code: 'unpriced_usage' }),
    );
  });
});

describe('prior-art defect 3: cached, image and reasoning tokens, and usage without details', () => {
  it('bills cached tokens at the cached rate, not the full input rate', () => {
    const usage = {
      input_tokens: 1000,
      output_tokens: 0,
      total_tokens: 1000,
      input_token_details: {
        text_tokens: 400,
        audio_tokens: 600,
        cached_tokens: 1000,
        cached_tokens_details: { text_tokens: 400, audio_tokens: 600 },
      },
    };
    // 400×400 + 600×400, where full price would be 400×4000 + 600×32000 = 20,800,000
    expect(bill('gpt-realtime', usage)).toBe(400_000n);
  });

  it('gives the cached discount when the cached tokens have no per-modality details', () => {
    const usage = {
      input_tokens: 1000,
      output_tokens: 0,
      total_tokens: 1000,
      input_token_details: { text_tokens: 200, audio_tokens: 800, cached_tokens: 500 },
    };
    // Placed where the discount is smallest: all 200 text tokens, then 300 of the audio tokens.
    // text 200×400 = 80,000; audio 500×32000 + 300×400 = 16,000,000 + 120,000
    expect(bill('gpt-realtime', usage)).toBe(16_200_000n);
    // The dearest reading: never less than putting the cached tokens on audio only
    // (200×4000 + 300×32000 + 500×400 = 10,600,000).
    expect(bill('gpt-realtime', usage)).toBeGreaterThan(10_600_000n);
  });

  it('bills image tokens', () => {
    const usage = { input_tokens: 100, total_tokens: 100, output_tokens: 0, input_token_details: { image_tokens: 100 } };
    expect(bill('gpt-realtime', usage)).toBe(500_000n); // 100 × 5000
    expect(bill('gpt-realtime-mini', usage)).toBe(80_000n); // 100 × 800
    expect(bill('gpt-4o-realtime-preview', usage)).toBe(500_000n); // 100 × 5000, the text input rate
  });

  it('bills reasoning tokens as text output', () => {
    const usage = { output_tokens: 300, output_token_details: { text_tokens: 100, audio_tokens: 0, reasoning_tokens: 200 } };
    expect(bill('gpt-realtime-2', usage)).toBe(7_200_000n); // 300 × 24000
  });

  it('bills a usage with totals but no per-modality details in full, never as 1 unit or 0', () => {
    // 100 input × 32000 (audio, the dearest input) + 50 output × 64000 (audio, the dearest output)
    expect(bill('gpt-realtime', { total_tokens: 150, input_tokens: 100, output_tokens: 50 })).toBe(6_400_000n);
    // Only a total: 150 × 64000, the dearest rate of all
    expect(bill('gpt-realtime', { total_tokens: 150 })).toBe(9_600_000n);
    // Empty details objects change nothing
    expect(
      bill('gpt-realtime-mini', { total_tokens: 150, input_tokens: 100, output_tokens: 50, input_token_details: {}, output_token_details: {} }),
    ).toBe(2_000_000n); // 100×10000 + 50×20000
  });
});

describe('contradictory usage is billed the dearest consistent way', () => {
  it('bills cached tokens above the modality input as uncached, at the highest input rate', () => {
    const usage = { input_token_details: { text_tokens: 100, cached_tokens_details: { text_tokens: 150 } } };
    expect(bill('gpt-realtime', usage)).toBe(1_640_000n); // 100×400 + 50×32000
    // Never below either mend: all 150 text tokens cached (60,000), or 100 cached text
    // tokens and 50 text tokens at full price (240,000).
  });

  it('bills a total above input + output at the dearest rate', () => {
    expect(bill('gpt-realtime', { ...EVERY_KIND_OF_TOKEN_USAGE, total_tokens: 1510 })).toBe(36_395_000n + 640_000n); // + 10×64000
  });

  it('withdraws the largest discounts when the cached total is below its details', () => {
    const usage = {
      input_tokens: 200,
      input_token_details: {
        text_tokens: 100,
        audio_tokens: 100,
        cached_tokens: 50,
        cached_tokens_details: { text_tokens: 100, audio_tokens: 100 },
      },
    };
    // 150 cached claims denied: all 100 audio (discount 31,600 each), then 50 text.
    // audio 100×32000 = 3,200,000; text 50×4000 + 50×400 = 220,000
    expect(bill('gpt-realtime', usage)).toBe(3_420_000n);
  });

  it('bills nothing, flagged, for a missing or broken usage', () => {
    expect(bill('gpt-realtime', undefined)).toBe(0n);
    expect(bill('gpt-realtime', { input_tokens: -5, output_tokens: 'many', total_tokens: 1.5 })).toBe(0n);
  });
});

describe('the price multiplier', () => {
  it('scales the bill in parts per million', () => {
    expect(bill('gpt-realtime', EVERY_KIND_OF_TOKEN_USAGE, 1_500_000)).toBe(54_592_500n); // 36,395,000 × 1.5
    expect(bill('gpt-realtime', EVERY_KIND_OF_TOKEN_USAGE, 0)).toBe(0n);
  });

  it('rounds up, so a margin is never lost to rounding', () => {
    const oneToken = { input_tokens: 1, input_token_details: { text_tokens: 1 } };
    expect(bill('gpt-realtime-mini', oneToken, 1_000_001)).toBe(601n); // 600 × 1.000001 = 600.0006
    expect(bill('gpt-realtime-mini', oneToken, 999_999)).toBe(600n); // 599.9994
  });

  it.each([[-1], [1.5], [Number.NaN], [2 ** 60]])('refuses a multiplier of %s', (multiplier) => {
    expect(() => bill('gpt-realtime', EVERY_KIND_OF_TOKEN_USAGE, multiplier)).toThrow(PriceError);
  });

  it('is ceil(subtotal × ppm / 1,000,000) for every amount', () => {
    fc.assert(
      fc.property(consistentTruth(), fc.nat({ max: 10_000_000 }), (truth, ppm) => {
        const price = realtimePrice(truth.family);
        const usage = normalizeResponseUsage(render(truth));
        const base = priceUsage(usage, price);
        const scaled = priceUsage(usage, price, ppm);
        expect(scaled * 1_000_000n >= base * BigInt(ppm)).toBe(true);
        expect((scaled - 1n) * 1_000_000n < base * BigInt(ppm)).toBe(true);
      }),
    );
  });
});

// Properties. A "truth" is a consistent usage; `render` writes it as the upstream would.

interface Truth {
  family: Family;
  shape: 'ga' | 'beta';
  text: { input: number; cached: number; output: number; reasoning: number };
  audio: { input: number; cached: number; output: number };
  image: { input: number; cached: number };
}

function inputWithCached(max: number) {
  return fc.nat({ max }).chain((input) => fc.record({ input: fc.constant(input), cached: fc.nat({ max: input }) }));
}

function consistentTruth(): fc.Arbitrary<Truth> {
  return fc
    .record({
      family: fc.constantFrom(...FAMILIES),
      shape: fc.constantFrom('ga' as const, 'beta' as const),
      text: inputWithCached(50_000),
      audio: inputWithCached(50_000),
      image: inputWithCached(5_000),
      textOutput: fc.nat({ max: 10_000 }).chain((output) => fc.record({ output: fc.constant(output), reasoning: fc.nat({ max: output }) })),
      audioOutput: fc.nat({ max: 10_000 }),
    })
    .map(({ family, shape, text, audio, image, textOutput, audioOutput }) => ({
      family,
      shape,
      text: { ...text, ...textOutput },
      audio: { ...audio, output: audioOutput },
      // Beta usage has no image tokens.
      image: shape === 'beta' ? { input: 0, cached: 0 } : image,
    }));
}

type Raw = {
  total_tokens?: number;
  input_tokens?: number;
  output_tokens?: number;
  input_token_details?: {
    text_tokens?: number;
    audio_tokens?: number;
    image_tokens?: number;
    cached_tokens?: number;
    cached_tokens_details?: { text_tokens?: number; audio_tokens?: number; image_tokens?: number };
  };
  output_token_details?: { text_tokens?: number; audio_tokens?: number; reasoning_tokens?: number };
};

function render(truth: Truth): Raw {
  const input = truth.text.input + truth.audio.input + truth.image.input;
  const cached = truth.text.cached + truth.audio.cached + truth.image.cached;
  const output = truth.text.output + truth.audio.output;
  const beta = truth.shape === 'beta';
  return {
    total_tokens: input + output,
    input_tokens: input,
    output_tokens: output,
    input_token_details: {
      text_tokens: truth.text.input,
      audio_tokens: truth.audio.input,
      ...(beta ? {} : { image_tokens: truth.image.input }),
      cached_tokens: cached,
      // Old beta usage may leave out the cached details when nothing was cached.
      ...(beta && cached === 0
        ? {}
        : {
            cached_tokens_details: {
              text_tokens: truth.text.cached,
              audio_tokens: truth.audio.cached,
              ...(beta ? {} : { image_tokens: truth.image.cached }),
            },
          }),
    },
    output_token_details: {
      text_tokens: truth.text.output,
      audio_tokens: truth.audio.output,
      // Reasoning tokens are part of the text tokens here.
      ...(truth.text.reasoning > 0 ? { reasoning_tokens: truth.text.reasoning } : {}),
    },
  };
}

/** The per-modality hand formula: (input − cached) × in + cached × cached rate + output × out. */
function handCost(truth: Truth): bigint {
  const rates = TABLE[truth.family];
  const modality = (input: number, cached: number, output: number, [rate, cachedRate, outputRate]: readonly bigint[]) =>
    BigInt(input - cached) * rate + BigInt(cached) * cachedRate + BigInt(output) * (outputRate ?? 0n);
  return (
    modality(truth.text.input, truth.text.cached, truth.text.output, rates.text) +
    modality(truth.audio.input, truth.audio.cached, truth.audio.output, rates.audio) +
    modality(truth.image.input, truth.image.cached, 0, rates.image)
  );
}

type Corruption =
  | { kind: 'inflate'; field: InflatableField; by: number }
  | { kind: 'drop'; what: 'input_details' | 'modality_details' | 'cached_details' | 'output_details' };
type InflatableField =
  | 'total'
  | 'input'
  | 'output'
  | 'cached'
  | 'input.text'
  | 'input.audio'
  | 'input.image'
  | 'cached.text'
  | 'cached.audio'
  | 'cached.image'
  | 'output.text'
  | 'output.audio';

function corruption(): fc.Arbitrary<Corruption> {
  return fc.oneof(
    fc.record({
      kind: fc.constant('inflate' as const),
      field: fc.constantFrom<InflatableField>(
        'total',
        'input',
        'output',
        'cached',
        'input.text',
        'input.audio',
        'input.image',
        'cached.text',
        'cached.audio',
        'cached.image',
        'output.text',
        'output.audio',
      ),
      by: fc.integer({ min: 1, max: 5_000 }),
    }),
    fc.record({
      kind: fc.constant('drop' as const),
      what: fc.constantFrom('input_details' as const, 'modality_details' as const, 'cached_details' as const, 'output_details' as const),
    }),
  );
}

/**
 * Breaks a rendered usage the way a faulty upstream might: numbers too large,
 * details missing. The truth stays one consistent reading of what is left,
 * so the bill must not fall below it. Raising cached_tokens is the one change
 * that would make a cheaper reading believable, so it is only applied where
 * the cached details stay, unraised, to contradict it.
 */
function corrupt(raw: Raw, corruptions: Corruption[]): Raw {
  const usage = structuredClone(raw);
  const inflations = corruptions.filter((c) => c.kind === 'inflate');
  const drops = new Set(corruptions.flatMap((c) => (c.kind === 'drop' ? [c.what] : [])));
  const raisesCachedTotal = inflations.some((c) => c.field === 'cached');
  const details = (usage.input_token_details ??= {});
  for (const { field, by } of inflations) {
    const add = (value: number | undefined) => (value ?? 0) + by;
    if (field === 'total') usage.total_tokens = add(usage.total_tokens);
    if (field === 'input') usage.input_tokens = add(usage.input_tokens);
    if (field === 'output') usage.output_tokens = add(usage.output_tokens);
    if (field === 'cached' && details.cached_tokens_details) details.cached_tokens = add(details.cached_tokens);
    if (field.startsWith('input.')) {
      const key = `${field.slice('input.'.length)}_tokens` as 'text_tokens';
      details[key] = add(details[key]);
    }
    if (field.startsWith('cached.') && !raisesCachedTotal) {
      const key = `${field.slice('cached.'.length)}_tokens` as 'text_tokens';
      const cachedDetails = (details.cached_tokens_details ??= {});
      cachedDetails[key] = add(cachedDetails[key]);
    }
    if (field.startsWith('output.')) {
      const key = `${field.slice('output.'.length)}_tokens` as 'text_tokens';
      const outputDetails = (usage.output_token_details ??= {});
      outputDetails[key] = add(outputDetails[key]);
    }
  }
  if (drops.has('input_details')) delete usage.input_token_details;
  if (drops.has('modality_details')) {
    delete details.text_tokens;
    delete details.audio_tokens;
    delete details.image_tokens;
  }
  if (drops.has('cached_details') && !raisesCachedTotal) delete details.cached_tokens_details;
  if (drops.has('output_details')) delete usage.output_token_details;
  return usage;
}

/** The invariants of the protocol reference, checked independently of usage.ts. */
function isConsistent(raw: Raw): boolean {
  const n = (value: number | undefined) => value ?? 0;
  const input = raw.input_token_details ?? {};
  const cached = input.cached_tokens_details ?? {};
  const output = raw.output_token_details ?? {};
  const textOutputLow = Math.max(n(output.text_tokens), n(output.reasoning_tokens));
  const textOutputHigh = n(output.text_tokens) + n(output.reasoning_tokens);
  return (
    n(raw.total_tokens) === n(raw.input_tokens) + n(raw.output_tokens) &&
    n(raw.input_tokens) === n(input.text_tokens) + n(input.audio_tokens) + n(input.image_tokens) &&
    n(input.cached_tokens) === n(cached.text_tokens) + n(cached.audio_tokens) + n(cached.image_tokens) &&
    n(cached.text_tokens) <= n(input.text_tokens) &&
    n(cached.audio_tokens) <= n(input.audio_tokens) &&
    n(cached.image_tokens) <= n(input.image_tokens) &&
    n(raw.output_tokens) >= n(output.audio_tokens) + textOutputLow &&
    n(raw.output_tokens) <= n(output.audio_tokens) + textOutputHigh
  );
}

/**
 * The bill of a relay that ignores every anomaly: per modality, the reported
 * details only, cached capped at input, totals and cached_tokens unread.
 */
function naiveCost(raw: unknown, family: Family): bigint {
  const rates = TABLE[family];
  const count = (parent: unknown, key: string): number => {
    if (typeof parent !== 'object' || parent === null || Array.isArray(parent)) return 0;
    const value = (parent as Record<string, unknown>)[key];
    return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0;
  };
  const object = (parent: unknown, key: string): unknown =>
    typeof parent === 'object' && parent !== null ? (parent as Record<string, unknown>)[key] : undefined;
  const input = object(raw, 'input_token_details');
  const cached = object(input, 'cached_tokens_details');
  const output = object(raw, 'output_token_details');
  let total = 0n;
  for (const modality of ['text', 'audio', 'image'] as const) {
    const tokens = count(input, `${modality}_tokens`);
    const cachedTokens = Math.min(tokens, count(cached, `${modality}_tokens`));
    const [rate, cachedRate] = rates[modality];
    total += BigInt(tokens - cachedTokens) * rate + BigInt(cachedTokens) * cachedRate;
  }
  total += BigInt(count(output, 'text_tokens')) * rates.text[2] + BigInt(count(output, 'audio_tokens')) * rates.audio[2];
  return total;
}

function hasCachedTotalWithoutDetails(raw: unknown): boolean {
  const record = (value: unknown): Record<string, unknown> | undefined =>
    typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  const input = record(record(raw)?.input_token_details);
  const cachedTotal = input?.cached_tokens;
  const details = record(input?.cached_tokens_details);
  const anyDetail = ['text_tokens', 'audio_tokens', 'image_tokens'].some((key) => details?.[key] != null);
  return typeof cachedTotal === 'number' && Number.isSafeInteger(cachedTotal) && cachedTotal > 0 && !anyDetail;
}

describe('billing properties', () => {
  it('bills a consistent usage exactly by the per-modality formula, with no anomalies', () => {
    fc.assert(
      fc.property(consistentTruth(), (truth) => {
        const usage = normalizeResponseUsage(render(truth));
        expect(usage.anomalies).toEqual([]);
        expect(priceUsage(usage, realtimePrice(truth.family))).toBe(handCost(truth));
      }),
      { numRuns: 500 },
    );
  });

  it('never bills a corrupted usage below the consistent usage it came from, and flags what broke', () => {
    fc.assert(
      fc.property(consistentTruth(), fc.array(corruption(), { minLength: 1, maxLength: 4 }), (truth, corruptions) => {
        const raw = corrupt(render(truth), corruptions);
        const usage = normalizeResponseUsage(raw);
        const cost = priceUsage(usage, realtimePrice(truth.family));
        expect(cost).toBeGreaterThanOrEqual(handCost(truth));
        if (!hasCachedTotalWithoutDetails(raw)) expect(cost).toBeGreaterThanOrEqual(naiveCost(raw, truth.family));
        expect(usage.anomalies.length > 0).toBe(!isConsistent(raw));
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws or bills a negative amount on any usage, and never bills less than its details', () => {
    const field = fc.oneof(fc.nat({ max: 100_000 }), fc.integer(), fc.double(), fc.string(), fc.constant(null), fc.constant(undefined));
    const junk = usageShaped(field, fc.string());
    fc.assert(
      fc.property(fc.constantFrom(...FAMILIES), fc.oneof(junk, fc.anything()), (family, raw) => {
        const usage = normalizeResponseUsage(raw);
        const cost = priceUsage(usage, realtimePrice(family));
        expect(cost).toBeGreaterThanOrEqual(0n);
        // Without cached details, cached_tokens is (rightly) believed: that reading may undercut the details alone.
        if (!hasCachedTotalWithoutDetails(raw)) expect(cost).toBeGreaterThanOrEqual(naiveCost(raw, family));
      }),
      { numRuns: 2000 },
    );
  });

  it('prices every normalised usage as the sum of its parts', () => {
    fc.assert(
      fc.property(consistentTruth(), fc.array(corruption(), { maxLength: 4 }), (truth, corruptions) => {
        const breakdown = costBreakdown(normalizeResponseUsage(corrupt(render(truth), corruptions)), realtimePrice(truth.family));
        expect(breakdown.subtotal).toBe(breakdown.text + breakdown.audio + breakdown.image + breakdown.unattributed);
        expect(breakdown.total).toBe(breakdown.subtotal);
      }),
    );
  });
});
