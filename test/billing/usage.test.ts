import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeResponseUsage, normalizeTranscriptionUsage, USAGE_ANOMALIES } from '../../src/billing/usage.js';
import type { NormalizedUsage } from '../../src/billing/usage.js';
import { EVERY_KIND_OF_TOKEN_USAGE, usageShaped } from '../helpers/usage.js';

const noUnattributed = { input: 0, output: 0, either: 0, cached: 0, notCached: 0 };

describe('response usage', () => {
  it('reads a consistent GA usage with uncached input apart from cached input', () => {
    expect(normalizeResponseUsage(EVERY_KIND_OF_TOKEN_USAGE)).toEqual({
      text: { input: 200, cachedInput: 100, output: 200 },
      audio: { input: 400, cachedInput: 200, output: 300 },
      image: { input: 50, cachedInput: 50 },
      unattributed: noUnattributed,
      anomalies: [],
    });
  });

  it('reads a beta usage without image or cached details', () => {
    const beta = {
      total_tokens: 130,
      input_tokens: 100,
      output_tokens: 30,
      input_token_details: { text_tokens: 40, audio_tokens: 60, cached_tokens: 0 },
      output_token_details: { text_tokens: 10, audio_tokens: 20 },
    };
    expect(normalizeResponseUsage(beta)).toEqual({
      text: { input: 40, cachedInput: 0, output: 10 },
      audio: { input: 60, cachedInput: 0, output: 20 },
      image: { input: 0, cachedInput: 0 },
      unattributed: noUnattributed,
      anomalies: [],
    });
  });

  it('leaves cached tokens without details for the price to place, flagged', () => {
    const usage = normalizeResponseUsage({
      input_tokens: 100,
      output_tokens: 0,
      input_token_details: { text_tokens: 20, audio_tokens: 80, cached_tokens: 50 },
    });
    expect(usage.text).toEqual({ input: 20, cachedInput: 0, output: 0 });
    expect(usage.audio).toEqual({ input: 80, cachedInput: 0, output: 0 });
    expect(usage.unattributed).toEqual({ ...noUnattributed, cached: 50 });
    expect(usage.anomalies).toEqual(['cached_details_missing']);
  });

  it('keeps totals without details as unattributed tokens, never as zero', () => {
    expect(normalizeResponseUsage({ total_tokens: 150, input_tokens: 100, output_tokens: 50 })).toMatchObject({
      unattributed: { ...noUnattributed, input: 100, output: 50 },
      anomalies: ['input_details_missing', 'output_details_missing'],
    });
    expect(normalizeResponseUsage({ total_tokens: 150 })).toMatchObject({
      unattributed: { ...noUnattributed, either: 150 },
      anomalies: ['total_mismatch'],
    });
  });

  it('bills cached tokens above a modality input as uncached', () => {
    const usage = normalizeResponseUsage({
      input_token_details: { text_tokens: 100, cached_tokens_details: { text_tokens: 150 } },
    });
    expect(usage.text).toEqual({ input: 0, cachedInput: 100, output: 0 });
    expect(usage.unattributed).toEqual({ ...noUnattributed, input: 50 });
    expect(usage.anomalies).toEqual(['cached_exceeds_input']);

    // Within input_tokens, the excess is one of its unexplained tokens, not an extra one.
    const within = normalizeResponseUsage({
      input_tokens: 500,
      input_token_details: { text_tokens: 100, cached_tokens_details: { text_tokens: 150 } },
    });
    expect(within.text).toEqual({ input: 0, cachedInput: 100, output: 0 });
    expect(within.unattributed).toEqual({ ...noUnattributed, input: 400 });
  });

  it('raises the input to a cached total that exceeds it, without discounting the excess', () => {
    const usage = normalizeResponseUsage({ input_tokens: 100, input_token_details: { cached_tokens: 150 } });
    expect(usage.unattributed).toEqual({ ...noUnattributed, input: 150, cached: 100 });
    expect(usage.anomalies).toEqual(['input_details_missing', 'cached_details_missing', 'cached_exceeds_input']);
  });

  it('withdraws cached claims that the cached total denies', () => {
    const usage = normalizeResponseUsage({
      input_tokens: 200,
      input_token_details: {
        text_tokens: 100,
        audio_tokens: 100,
        cached_tokens: 50,
        cached_tokens_details: { text_tokens: 100, audio_tokens: 100 },
      },
    });
    expect(usage.unattributed).toEqual({ ...noUnattributed, notCached: 150 });
    expect(usage.anomalies).toEqual(['cached_details_mismatch']);
  });

  it('believes cached details over a larger cached total', () => {
    const usage = normalizeResponseUsage({
      input_tokens: 100,
      input_token_details: { text_tokens: 100, cached_tokens: 80, cached_tokens_details: { text_tokens: 30 } },
    });
    expect(usage.text).toEqual({ input: 70, cachedInput: 30, output: 0 });
    expect(usage.unattributed).toEqual(noUnattributed);
    expect(usage.anomalies).toEqual(['cached_details_mismatch']);
  });

  it('bills the larger of a total and its details', () => {
    const larger = normalizeResponseUsage({
      input_tokens: 120,
      output_tokens: 70,
      total_tokens: 300,
      input_token_details: { text_tokens: 100 },
      output_token_details: { text_tokens: 10, audio_tokens: 50 },
    });
    expect(larger.text).toEqual({ input: 100, cachedInput: 0, output: 10 });
    expect(larger.unattributed).toEqual({ ...noUnattributed, input: 20, output: 10, either: 110 });
    expect(larger.anomalies).toEqual(['total_mismatch', 'input_details_mismatch', 'output_details_mismatch']);

    const smaller = normalizeResponseUsage({
      input_tokens: 10,
      output_tokens: 5,
      total_tokens: 1,
      input_token_details: { audio_tokens: 100 },
      output_token_details: { audio_tokens: 50 },
    });
    expect(smaller.audio).toEqual({ input: 100, cachedInput: 0, output: 50 });
    expect(smaller.unattributed).toEqual(noUnattributed);
    expect(smaller.anomalies).toEqual(['total_mismatch', 'input_details_mismatch', 'output_details_mismatch']);
  });

  it('counts reasoning tokens as text output, once', () => {
    const details = (output_tokens: number | undefined) =>
      normalizeResponseUsage({ output_tokens, output_token_details: { text_tokens: 100, audio_tokens: 10, reasoning_tokens: 40 } });
    // Included in text_tokens, as output_tokens shows.
    expect(details(110).text.output).toBe(100);
    expect(details(110).anomalies).toEqual([]);
    // Counted apart from text_tokens.
    expect(details(150).text.output).toBe(140);
    expect(details(150).anomalies).toEqual([]);
    // Partly overlapping readings are consistent too.
    expect(details(130).text.output).toBe(120);
    // Unknown: the dearer reading.
    expect(details(undefined).text.output).toBe(140);
    // A total below every reading: the details are billed.
    expect(details(50).text.output).toBe(140);
    expect(details(50).anomalies).toEqual(['output_details_mismatch']);
  });

  it.each([
    ['absent', undefined],
    ['null', null],
    ['a string', 'usage'],
    ['an array', [1, 2, 3]],
  ])('flags a usage that is %s and bills nothing', (_what, usage) => {
    const normalized = normalizeResponseUsage(usage);
    expect(normalized.anomalies).toEqual(['usage_missing']);
    expect(tokenCounts(normalized).every((count) => count === 0)).toBe(true);
  });

  it('reads broken fields as zero and flags them', () => {
    const usage = normalizeResponseUsage({
      total_tokens: '1500',
      input_tokens: -1,
      output_tokens: 2.5,
      input_token_details: {
        text_tokens: Number.NaN,
        audio_tokens: 2 ** 60,
        image_tokens: Number.POSITIVE_INFINITY,
        cached_tokens: {},
        cached_tokens_details: 'none',
      },
      output_token_details: [],
    });
    expect(tokenCounts(usage).every((count) => count === 0)).toBe(true);
    expect(usage.anomalies).toEqual(['invalid_field']);
  });

  it('ignores inherited properties', () => {
    const usage = Object.create({ input_tokens: 100 }) as object;
    expect(normalizeResponseUsage(usage).unattributed.input).toBe(0);
  });

  it('never throws and never yields a negative, fractional or NaN count', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), usageLike()), (raw) => {
        const usage = normalizeResponseUsage(raw);
        for (const count of tokenCounts(usage)) {
          expect(Number.isInteger(count) && count >= 0).toBe(true);
        }
        expect(usage.anomalies.every((code) => (USAGE_ANOMALIES as readonly string[]).includes(code))).toBe(true);
        expect(new Set(usage.anomalies).size).toBe(usage.anomalies.length);
      }),
    );
  });
});

describe('transcription usage', () => {
  it('reads token usage', () => {
    expect(
      normalizeTranscriptionUsage({
        type: 'tokens',
        input_tokens: 1000,
        output_tokens: 50,
        total_tokens: 1050,
        input_token_details: { text_tokens: 100, audio_tokens: 900 },
      }),
    ).toEqual({
      kind: 'tokens',
      text: { input: 100, output: 50 },
      audio: { input: 900 },
      unattributed: { input: 0, either: 0 },
      anomalies: [],
    });
  });

  it('keeps input and total tokens without details as unattributed', () => {
    expect(normalizeTranscriptionUsage({ type: 'tokens', input_tokens: 80, output_tokens: 5, total_tokens: 100 })).toEqual({
      kind: 'tokens',
      text: { input: 0, output: 5 },
      audio: { input: 0 },
      unattributed: { input: 80, either: 15 },
      anomalies: ['total_mismatch', 'input_details_missing'],
    });
  });

  it.each([
    [12.5, 12_500],
    [0.3, 300], // 0.3 × 1000 is 300.00000000000006 in floating point: read as a decimal, it is 300
    [2.0001, 2_001], // rounded up to the next millisecond
    [1e-7, 1],
    [0, 0],
    [59.999, 59_999],
  ])('reads a duration of %s s as %i ms', (seconds, milliseconds) => {
    expect(normalizeTranscriptionUsage({ type: 'duration', seconds })).toEqual({ kind: 'duration', milliseconds, anomalies: [] });
  });

  it.each([[-1], ['12'], [Number.NaN], [1e300]])('flags a duration of %s and bills none of it', (seconds) => {
    expect(normalizeTranscriptionUsage({ type: 'duration', seconds })).toEqual({
      kind: 'duration',
      milliseconds: 0,
      anomalies: ['invalid_field'],
    });
  });

  it('reads a usage of unknown type by its fields, flagged', () => {
    expect(normalizeTranscriptionUsage({ seconds: 3 })).toEqual({ kind: 'duration', milliseconds: 3000, anomalies: ['unknown_usage_type'] });
    expect(normalizeTranscriptionUsage({ type: 'bytes', input_tokens: 5, seconds: 3 })).toMatchObject({
      kind: 'tokens',
      unattributed: { input: 5, either: 0 },
    });
  });

  it('flags a missing usage', () => {
    expect(normalizeTranscriptionUsage(null)).toMatchObject({ kind: 'tokens', anomalies: ['usage_missing'] });
  });

  it('never throws on anything', () => {
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const usage = normalizeTranscriptionUsage(raw);
        const counts =
          usage.kind === 'duration'
            ? [usage.milliseconds]
            : [usage.text.input, usage.text.output, usage.audio.input, usage.unattributed.input, usage.unattributed.either];
        expect(counts.every((count) => Number.isSafeInteger(count) && count >= 0)).toBe(true);
      }),
    );
  });
});

function tokenCounts(usage: NormalizedUsage): number[] {
  return [
    ...Object.values(usage.text),
    ...Object.values(usage.audio),
    ...Object.values(usage.image),
    ...Object.values(usage.unattributed),
  ];
}

/** Objects shaped like a usage whose fields may hold anything. */
function usageLike(): fc.Arbitrary<unknown> {
  const field = fc.oneof(
    fc.nat(),
    fc.integer(),
    fc.double(),
    fc.string(),
    fc.constant(null),
    fc.constant(undefined),
    fc.constant(Number.MAX_SAFE_INTEGER),
    fc.object(),
  );
  return usageShaped(field);
}
