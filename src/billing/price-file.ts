/**
 * The operator's price file: overrides and extensions merged over the
 * built-in table.
 *
 * Schema (every section optional; unknown keys are errors, so a typo never
 * silently leaves a default price in force):
 *
 *   {
 *     "models": {                                  // realtime families
 *       "<name>": {
 *         "text":  { "input": "4", "cached_input": "0.40", "output": "16" },
 *         "audio": { "input": "32", "cached_input": "0.40", "output": "64" },
 *         "image": { "input": "5", "cached_input": "0.50" },
 *         "snapshots_from": "2025-08-28"           // optional, see PriceTable.snapshotsFrom
 *       }
 *     },
 *     "transcription": {
 *       "<name>": { "text_input": "2.50", "audio_input": "6.00", "text_output": "10.00" },
 *       "<name>": { "per_second": "0.0001" }
 *     }
 *   }
 *
 * Units: token prices in USD per 1M tokens, `per_second` in USD per second of
 * audio. Each price is a decimal string, or a JSON number taken by its decimal
 * form (0.4 is "0.4"); it must come out as a whole number of nano-USD per token
 * (per second), so "0.0625" per 1M tokens is refused rather than rounded.
 *
 * Merging: a new realtime model needs `text` and `audio`; without `image`, image
 * tokens are billed at the text input rate. For a built-in model, each modality
 * given replaces that modality's three rates and the others are kept. A
 * transcription entry replaces the whole entry and needs the three token rates,
 * `per_second`, or both. A name may appear in one section only (a built-in
 * realtime name cannot become a transcription model).
 */

import { readFileSync } from 'node:fs';
import {
  builtInPrices,
  decimalString,
  imageAtTextInputRate,
  parsePerMillionTokens,
  parseUsd,
  PriceError,
} from './prices.js';
import type { ImageRates, ModalityRates, PriceTable, RealtimeRates, TranscriptionRates } from './prices.js';

export class PriceFileError extends Error {
  readonly code = 'invalid_price_file' as const;
  /** Where in the file the problem is, e.g. `$.models["gpt-realtime"].text.input`; `$` for the whole file. */
  readonly jsonPath: string;

  constructor(jsonPath: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PriceFileError';
    this.jsonPath = jsonPath;
  }
}

export function loadPriceFile(path: string, base: PriceTable = builtInPrices): PriceTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new PriceFileError('$', `Price file ${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  return parsePriceFile(text, base, path);
}

/** `source` names the file in messages. */
export function parsePriceFile(text: string, base: PriceTable = builtInPrices, source = 'price file'): PriceTable {
  const fail = (jsonPath: string, problem: string, cause?: unknown): never => {
    throw new PriceFileError(jsonPath, `Price file ${source}: ${jsonPath}: ${problem}`, { cause });
  };

  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    return fail('$', `not valid JSON (${(error as Error).message})`, error);
  }
  const root = objectAt(document, '$', fail);
  onlyKeys(root, ['models', 'transcription'], '$', fail);

  const realtime: Record<string, RealtimeRates> = { ...base.realtime };
  const transcription: Record<string, TranscriptionRates> = { ...base.transcription };
  const snapshotsFrom: Record<string, string> = { ...base.snapshotsFrom };

  const models = root.models === undefined ? {} : objectAt(root.models, '$.models', fail);
  for (const [name, entry] of Object.entries(models)) {
    const path = `$.models${nameKey(name)}`;
    checkName(name, path, fail);
    if (Object.hasOwn(base.transcription, name)) fail(path, `"${name}" is a transcription model; it cannot also be a realtime model`);
    const spec = objectAt(entry, path, fail);
    onlyKeys(spec, ['text', 'audio', 'image', 'snapshots_from'], path, fail);
    const current = Object.hasOwn(base.realtime, name) ? base.realtime[name] : undefined;
    const text = spec.text === undefined ? current?.text : modalityRates(spec.text, `${path}.text`, fail);
    const audio = spec.audio === undefined ? current?.audio : modalityRates(spec.audio, `${path}.audio`, fail);
    if (!text) return fail(`${path}.text`, 'a new model needs text prices');
    if (!audio) return fail(`${path}.audio`, 'a new model needs audio prices');
    const image =
      spec.image !== undefined
        ? imageRates(spec.image, `${path}.image`, fail)
        : (current?.image ?? imageAtTextInputRate(text));
    realtime[name] = { text, audio, image };
    if (spec.snapshots_from !== undefined) snapshotsFrom[name] = snapshotDate(spec.snapshots_from, `${path}.snapshots_from`, fail);
  }

  const transcriptionModels = root.transcription === undefined ? {} : objectAt(root.transcription, '$.transcription', fail);
  for (const [name, entry] of Object.entries(transcriptionModels)) {
    const path = `$.transcription${nameKey(name)}`;
    checkName(name, path, fail);
    if (Object.hasOwn(realtime, name)) fail(path, `"${name}" is a realtime model; it cannot also be a transcription model`);
    transcription[name] = transcriptionRates(entry, path, fail);
  }

  return freeze({ realtime, transcription, snapshotsFrom });
}

type Fail = (jsonPath: string, problem: string, cause?: unknown) => never;
type Fields = Record<string, unknown>;

function modalityRates(value: unknown, path: string, fail: Fail): ModalityRates {
  const spec = objectAt(value, path, fail);
  onlyKeys(spec, ['input', 'cached_input', 'output'], path, fail);
  return {
    input: perToken(spec, 'input', path, fail),
    cachedInput: perToken(spec, 'cached_input', path, fail),
    output: perToken(spec, 'output', path, fail),
  };
}

function imageRates(value: unknown, path: string, fail: Fail): ImageRates {
  const spec = objectAt(value, path, fail);
  onlyKeys(spec, ['input', 'cached_input'], path, fail);
  return { input: perToken(spec, 'input', path, fail), cachedInput: perToken(spec, 'cached_input', path, fail) };
}

function transcriptionRates(value: unknown, path: string, fail: Fail): TranscriptionRates {
  const spec = objectAt(value, path, fail);
  const tokenKeys = ['text_input', 'audio_input', 'text_output'] as const;
  onlyKeys(spec, [...tokenKeys, 'per_second'], path, fail);
  const given = tokenKeys.filter((key) => spec[key] !== undefined);
  if (given.length > 0 && given.length < tokenKeys.length) {
    const missing = tokenKeys.find((key) => spec[key] === undefined);
    fail(`${path}.${missing}`, 'token prices need text_input, audio_input and text_output together');
  }
  const perSecond = spec.per_second === undefined ? null : parseAmount(spec.per_second, `${path}.per_second`, parseUsd, fail);
  if (given.length === 0 && perSecond === null) fail(path, 'needs token prices (text_input, audio_input, text_output), per_second, or both');
  return {
    tokens:
      given.length === 0
        ? null
        : {
            textInput: perToken(spec, 'text_input', path, fail),
            audioInput: perToken(spec, 'audio_input', path, fail),
            textOutput: perToken(spec, 'text_output', path, fail),
          },
    perSecond,
  };
}

function perToken(spec: Fields, key: string, path: string, fail: Fail): bigint {
  if (spec[key] === undefined) fail(`${path}.${key}`, 'is required');
  return parseAmount(spec[key], `${path}.${key}`, parsePerMillionTokens, fail);
}

/** A decimal string, or a JSON number read by its decimal form; never a float computation. */
function parseAmount(value: unknown, path: string, parse: (text: string) => bigint, fail: Fail): bigint {
  const text = typeof value === 'string' ? value : typeof value === 'number' ? decimalString(value) : null;
  if (text === null) return fail(path, `must be a decimal string such as "0.40" (got ${describe(value)})`);
  try {
    return parse(text);
  } catch (error) {
    if (error instanceof PriceError) return fail(path, error.message, error);
    throw error;
  }
}

function snapshotDate(value: unknown, path: string, fail: Fail): string {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return fail(path, 'must be a date "YYYY-MM-DD"');
  return value;
}

/** Names a client may send as `?model=`; also keeps `__proto__` and friends out. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

function checkName(name: string, path: string, fail: Fail): void {
  if (!MODEL_NAME.test(name)) fail(path, 'a model name is letters, digits, ".", "_", ":" and "-", starting with a letter or digit');
}

function objectAt(value: unknown, path: string, fail: Fail): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(path, `must be an object (got ${describe(value)})`);
  return value as Fields;
}

function onlyKeys(spec: Fields, allowed: readonly string[], path: string, fail: Fail): void {
  for (const key of Object.keys(spec)) {
    if (!allowed.includes(key)) fail(`${path}.${key}`, `unknown key (expected one of: ${allowed.join(', ')})`);
  }
}

function nameKey(name: string): string {
  return `[${JSON.stringify(name)}]`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' ? 'an object' : String(value);
}

function freeze(table: PriceTable): PriceTable {
  for (const section of [table.realtime, table.transcription, table.snapshotsFrom]) Object.freeze(section);
  return Object.freeze(table);
}
