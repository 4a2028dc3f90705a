import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPriceFile, parsePriceFile, PriceFileError } from '../../src/billing/price-file.js';
import { builtInPrices, decimalString, formatUsd, parseUsd, PriceError, resolveModel } from '../../src/billing/prices.js';
import { REALTIME_MODEL_FAMILIES } from '../helpers/models.js';

describe('model names resolve to their price family', () => {
  const table: Array<[string, string | null]> = [
    // Families by their own names, including those that are prefixes of others, and a snapshot of each.
    ...REALTIME_MODEL_FAMILIES,
    // More dated snapshots.
    ['gpt-realtime-mini-2025-12-15', 'gpt-realtime-mini'],
    ['gpt-realtime-2-2026-03-01', 'gpt-realtime-2'],
    ['gpt-realtime-2.1-2026-06-30', 'gpt-realtime-2.1'],
    ['gpt-4o-realtime-preview-2024-12-17', 'gpt-4o-realtime-preview'],
    ['gpt-4o-transcribe', 'gpt-4o-transcribe'],
    ['gpt-4o-mini-transcribe', 'gpt-4o-mini-transcribe'],
    ['gpt-4o-mini-transcribe-2025-03-20', 'gpt-4o-mini-transcribe'],
    ['whisper-1', 'whisper-1'],
    // The 2024-10-01 snapshot had higher prices than the family's: refused, not under-billed.
    ['gpt-4o-realtime-preview-2024-10-01', null],
    // Only a date may follow a family name.
    ['gpt-realtime-2025', null],
    ['gpt-realtime-3', null],
    ['gpt-realtime-mini-latest', null],
    ['gpt-realtime-2025-08-28-extra', null],
    ['gpt-realtime-2025-13-01', null],
    ['gpt-realtime-2025-02-30', null],
    ['gpt-realtime-20250828', null],
    ['gpt-realtime-', null],
    ['gpt-4o-transcribe-diarize', null],
    ['gpt-4o', null],
    ['GPT-REALTIME', null],
    ['', null],
    ['constructor', null],
    ['__proto__', null],
    ['toString-2025-01-01', null],
  ];

  it.each(table)('%s → %s', (name, family) => {
    expect(resolveModel(name)?.family ?? null).toBe(family);
  });

  it('never lets a shorter family claim a dated name of a longer one', () => {
    // gpt-realtime-2 is a prefix of the dated gpt-realtime name; the date rule keeps them apart.
    expect(resolveModel('gpt-realtime-2025-08-28')?.rates).toBe(builtInPrices.realtime['gpt-realtime']);
    expect(resolveModel('gpt-realtime-mini-2025-10-06')?.rates).toBe(builtInPrices.realtime['gpt-realtime-mini']);
  });

  it('tells realtime and transcription models apart', () => {
    expect(resolveModel('gpt-realtime-mini')?.kind).toBe('realtime');
    expect(resolveModel('gpt-4o-transcribe')?.kind).toBe('transcription');
    expect(resolveModel('whisper-1')).toEqual({ family: 'whisper-1', kind: 'transcription', rates: { tokens: null, perSecond: 100_000n } });
  });
});

describe('the built-in price table', () => {
  it('holds the published prices in nano-USD per token (USD per 1M × 1000)', () => {
    expect(builtInPrices.realtime['gpt-realtime']).toEqual({
      text: { input: 4_000n, cachedInput: 400n, output: 16_000n },
      audio: { input: 32_000n, cachedInput: 400n, output: 64_000n },
      image: { input: 5_000n, cachedInput: 500n },
    });
    expect(builtInPrices.realtime['gpt-realtime-2'].text.output).toBe(24_000n);
    expect(builtInPrices.realtime['gpt-realtime-2.1'].text.output).toBe(24_000n);
    expect(builtInPrices.realtime['gpt-realtime-mini'].text.cachedInput).toBe(60n); // 0.06 USD / 1M
    expect(builtInPrices.realtime['gpt-realtime-mini'].image).toEqual({ input: 800n, cachedInput: 80n });
    expect(builtInPrices.transcription['gpt-4o-mini-transcribe'].tokens).toEqual({ textInput: 1_250n, audioInput: 3_000n, textOutput: 5_000n });
  });

  it('bills image tokens at the text input rate for families without image prices, never zero', () => {
    expect(builtInPrices.realtime['gpt-4o-realtime-preview'].image).toEqual({ input: 5_000n, cachedInput: 5_000n });
    expect(builtInPrices.realtime['gpt-4o-mini-realtime-preview'].image).toEqual({ input: 600n, cachedInput: 600n });
  });

  it('cannot be changed at run time', () => {
    expect(() => {
      (builtInPrices.realtime['gpt-realtime'].text as { input: bigint }).input = 0n;
    }).toThrow(TypeError);
  });
});

describe('parseUsd and formatUsd', () => {
  it('reads decimal USD into nano-USD exactly', () => {
    expect(parseUsd('10.00')).toBe(10_000_000_000n);
    expect(parseUsd('0.06')).toBe(60_000_000n);
    expect(parseUsd('0.000000001')).toBe(1n);
    expect(parseUsd('007')).toBe(7_000_000_000n);
    expect(parseUsd('123456789012.123456789')).toBe(123_456_789_012_123_456_789n);
    expect(parseUsd('-2.5', { allowNegative: true })).toBe(-2_500_000_000n);
  });

  it.each(['', ' 1', '1 ', '1.', '.5', '1e3', '+1', '0x10', '1,5', 'abc', 'NaN', 'Infinity', '1.0000000001', '--1'])(
    'refuses %j',
    (text) => {
      expect(() => parseUsd(text)).toThrow(PriceError);
    },
  );

  it('refuses negative amounts unless they are allowed', () => {
    expect(() => parseUsd('-1')).toThrow(expect.objectContaining({ code: 'invalid_amount' }));
    expect(() => parseUsd('-0')).toThrow(PriceError);
  });

  it('writes six decimals, and more only when the amount needs them', () => {
    expect(formatUsd(10_000_000_000n)).toBe('10.000000');
    expect(formatUsd(0n)).toBe('0.000000');
    expect(formatUsd(36_395_000n)).toBe('0.036395');
    expect(formatUsd(60n)).toBe('0.00000006');
    expect(formatUsd(1n)).toBe('0.000000001');
    expect(formatUsd(-2_500_000_000n)).toBe('-2.500000');
  });

  it('round-trips every amount', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), (nano) => {
        expect(parseUsd(formatUsd(nano), { allowNegative: true })).toBe(nano);
      }),
    );
  });

  it('round-trips every decimal string of at most nine decimals', () => {
    const decimal = fc
      .tuple(fc.stringMatching(/^\d{1,15}$/), fc.stringMatching(/^\d{0,9}$/))
      .map(([whole, fraction]) => (fraction ? `${whole}.${fraction}` : whole));
    fc.assert(
      fc.property(decimal, (text) => {
        const nano = parseUsd(text);
        expect(parseUsd(formatUsd(nano))).toBe(nano);
        expect(nano).toBe(BigInt(text.split('.')[0]) * 1_000_000_000n + BigInt((text.split('.')[1] ?? '').padEnd(9, '0')));
      }),
    );
  });

  it('reads a JavaScript number by the decimal it prints as', () => {
    expect(decimalString(0.06)).toBe('0.06');
    expect(decimalString(1e-7)).toBe('0.0000001');
    expect(decimalString(1.25e-7)).toBe('0.000000125');
    expect(decimalString(1.5e21)).toBe('1500000000000000000000');
    expect(decimalString(-3e-7)).toBe('-0.0000003');
    expect(decimalString(Number.NaN)).toBeNull();
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (value) => {
        const text = decimalString(value);
        expect(text).toMatch(/^-?\d+(\.\d+)?$/);
        expect(Number(text)).toBe(value === 0 ? 0 : value); // -0 prints as "0"
      }),
    );
  });
});

describe('the price file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-prices-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let counter = 0;
  const writePriceFile = (content: unknown): string => {
    const path = join(dir, `prices-${counter++}.json`);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };

  it('overrides built-in prices and adds new models', () => {
    const table = loadPriceFile(
      writePriceFile({
        models: {
          'gpt-realtime': { text: { input: '5', cached_input: '0.5', output: '20' } },
          'my-model': {
            text: { input: '1.5', cached_input: 0.15, output: 6 },
            audio: { input: '12', cached_input: '0.3', output: '24' },
          },
          'my-vision-model': {
            text: { input: '1', cached_input: '0.1', output: '2' },
            audio: { input: '3', cached_input: '0.3', output: '4' },
            image: { input: '0.001', cached_input: '0' },
            snapshots_from: '2026-01-01',
          },
        },
        transcription: {
          'my-asr': { text_input: '1', audio_input: '2', text_output: '3' },
          'whisper-1': { per_second: '0.0002' },
          'both-ways': { text_input: '1', audio_input: '2', text_output: '3', per_second: 0.0001 },
        },
      }),
    );
    // The override replaces the text rates only.
    expect(table.realtime['gpt-realtime']).toEqual({
      text: { input: 5_000n, cachedInput: 500n, output: 20_000n },
      audio: { input: 32_000n, cachedInput: 400n, output: 64_000n },
      image: { input: 5_000n, cachedInput: 500n },
    });
    // JSON numbers are read by their decimal form: 0.15 USD / 1M = 150 nano-USD per token.
    expect(table.realtime['my-model']).toEqual({
      text: { input: 1_500n, cachedInput: 150n, output: 6_000n },
      audio: { input: 12_000n, cachedInput: 300n, output: 24_000n },
      image: { input: 1_500n, cachedInput: 1_500n },
    });
    expect(table.realtime['my-vision-model'].image).toEqual({ input: 1n, cachedInput: 0n });
    expect(table.transcription['my-asr']).toEqual({ tokens: { textInput: 1_000n, audioInput: 2_000n, textOutput: 3_000n }, perSecond: null });
    expect(table.transcription['whisper-1']).toEqual({ tokens: null, perSecond: 200_000n });
    expect(table.transcription['both-ways'].perSecond).toBe(100_000n);
    // Untouched entries and the snapshot rule survive; new models resolve like built-in ones.
    expect(table.realtime['gpt-realtime-mini']).toBe(builtInPrices.realtime['gpt-realtime-mini']);
    expect(resolveModel('gpt-4o-realtime-preview-2024-10-01', table)).toBeNull();
    expect(resolveModel('my-model-2026-02-02', table)?.family).toBe('my-model');
    expect(resolveModel('my-vision-model-2025-12-31', table)).toBeNull();
    expect(resolveModel('my-vision-model-2026-01-01', table)?.family).toBe('my-vision-model');
    // The built-in table is left as it was.
    expect(builtInPrices.realtime['gpt-realtime'].text.input).toBe(4_000n);
    expect(Object.hasOwn(builtInPrices.realtime, 'my-model')).toBe(false);
  });

  it('accepts an empty file object', () => {
    const table = loadPriceFile(writePriceFile({}));
    expect(table.realtime).toEqual(builtInPrices.realtime);
    expect(table.transcription).toEqual(builtInPrices.transcription);
  });

  const newModel = {
    text: { input: '4', cached_input: '0.4', output: '16' },
    audio: { input: '32', cached_input: '0.4', output: '64' },
  };

  const malformed: Array<[string, unknown, string]> = [
    ['text that is not JSON', '{"models": ', '$'],
    ['a top level that is not an object', '[1, 2]', '$'],
    ['an unknown top-level key', { model: {} }, '$.model'],
    ['models that is not an object', { models: [] }, '$.models'],
    ['a model that is not an object', { models: { m: 'cheap' } }, '$.models["m"]'],
    ['a new model without text prices', { models: { m: { audio: newModel.audio } } }, '$.models["m"].text'],
    ['a new model without audio prices', { models: { m: { text: newModel.text } } }, '$.models["m"].audio'],
    ['a misspelt rate key', { models: { m: { ...newModel, text: { input: '4', cachedInput: '0.4', output: '16' } } } }, '$.models["m"].text.cachedInput'],
    ['a missing rate', { models: { m: { ...newModel, audio: { input: '32', output: '64' } } } }, '$.models["m"].audio.cached_input'],
    ['an unknown modality', { models: { m: { ...newModel, video: {} } } }, '$.models["m"].video'],
    ['a rate that is garbage', { models: { m: { ...newModel, text: { ...newModel.text, input: 'four' } } } }, '$.models["m"].text.input'],
    ['a negative rate', { models: { 'gpt-realtime-2.1': { text: { ...newModel.text, output: '-16' } } } }, '$.models["gpt-realtime-2.1"].text.output'],
    ['a rate in exponent notation', { models: { m: { ...newModel, text: { ...newModel.text, input: '4e0' } } } }, '$.models["m"].text.input'],
    ['a rate of more than nine decimals', { models: { m: { ...newModel, text: { ...newModel.text, input: '0.0000000001' } } } }, '$.models["m"].text.input'],
    ['a rate finer than a nano-USD per token', { models: { m: { ...newModel, text: { ...newModel.text, input: '0.0625' } } } }, '$.models["m"].text.input'],
    ['a number finer than a nano-USD per token', { models: { m: { ...newModel, text: { ...newModel.text, input: 0.0625 } } } }, '$.models["m"].text.input'],
    ['a rate that is a boolean', { models: { m: { ...newModel, image: { input: true, cached_input: '0' } } } }, '$.models["m"].image.input'],
    ['a rate that is null', { models: { m: { ...newModel, text: { ...newModel.text, output: null } } } }, '$.models["m"].text.output'],
    ['a snapshot date that is not a date', { models: { m: { ...newModel, snapshots_from: 'soon' } } }, '$.models["m"].snapshots_from'],
    ['a model name with spaces', { models: { 'my model': newModel } }, '$.models["my model"]'],
    ['a model named __proto__', '{"models": {"__proto__": {}}}', '$.models["__proto__"]'],
    ['a transcription model given as realtime', { models: { 'whisper-1': newModel } }, '$.models["whisper-1"]'],
    ['a realtime model given as transcription', { transcription: { 'gpt-realtime': { per_second: '1' } } }, '$.transcription["gpt-realtime"]'],
    ['a name in both sections', { models: { m: newModel }, transcription: { m: { per_second: '1' } } }, '$.transcription["m"]'],
    ['a transcription model without prices', { transcription: { t: {} } }, '$.transcription["t"]'],
    ['a transcription model with only some token prices', { transcription: { t: { text_input: '1', text_output: '2' } } }, '$.transcription["t"].audio_input'],
    ['a per-second price of more than nine decimals', { transcription: { t: { per_second: '0.0000000001' } } }, '$.transcription["t"].per_second'],
    ['an unknown transcription key', { transcription: { t: { per_minute: '0.006' } } }, '$.transcription["t"].per_minute'],
  ];

  it.each(malformed)('refuses %s, naming where', (_what, content, jsonPath) => {
    const path = writePriceFile(content);
    let caught: unknown;
    try {
      loadPriceFile(path);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PriceFileError);
    const error = caught as PriceFileError;
    expect(error.code).toBe('invalid_price_file');
    expect(error.jsonPath).toBe(jsonPath);
    expect(error.message).toContain(path);
    expect(error.message).toContain(jsonPath);
  });

  it('refuses a file that cannot be read', () => {
    const missing = join(dir, 'missing.json');
    expect(() => loadPriceFile(missing)).toThrow(expect.objectContaining({ code: 'invalid_price_file', jsonPath: '$' }));
  });

  it('merges over a table given by the caller', () => {
    const base = parsePriceFile(JSON.stringify({ models: { base: newModel } }));
    const table = parsePriceFile(JSON.stringify({ models: { base: { text: { input: '8', cached_input: '0.8', output: '32' } } } }), base);
    expect(table.realtime.base.text.input).toBe(8_000n);
    expect(table.realtime.base.audio.input).toBe(32_000n);
  });
});
