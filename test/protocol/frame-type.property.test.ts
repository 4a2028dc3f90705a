/**
 * The relay reads a frame's type without parsing it; the upstream parses it.
 * These properties check, on generated frames, that the two readings never
 * differ: for every frame JSON.parse accepts, the scan reads JSON.parse's
 * `type` or refuses the frame, and it refuses exactly the frames parsers can
 * read differently (a second `type` key, however spelled, or a key that is
 * `type` but for letter case or a U+0000).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BULK_EVENT_TYPES, scanEventType } from '../../src/protocol/frame-type.js';

const scan = (text: string) => scanEventType(Buffer.from(text, 'utf8'));

/** 100 ms of 24 kHz PCM16 as base64; audio-like values are slices of it. */
const AUDIO = Buffer.from(Array.from({ length: 4_800 }, (_, i) => (i * 37) & 0xff)).toString('base64');

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '/': '\\/', '\n': '\\n', '\t': '\\t', '\r': '\\r', '\b': '\\b', '\f': '\\f' };

/**
 * `text` as a JSON string literal, each character written as itself (escaped
 * where JSON requires it) or, as `modes` says, as `\uXXXX` in either case or
 * as its short escape.
 */
function spell(text: string, modes: number[]): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    const mode = modes.length === 0 ? 0 : modes[i % modes.length]!;
    if (mode === 1) out += `\\u${hex}`;
    else if (mode === 2) out += `\\u${hex.toUpperCase()}`;
    else if (mode === 3 && SHORT_ESCAPES[c]) out += SHORT_ESCAPES[c];
    else out += JSON.stringify(c).slice(1, -1);
  }
  return `${out}"`;
}

/** Mostly plain, sometimes every character escaped, sometimes a mix. */
const modes = fc.oneof(
  { weight: 3, arbitrary: fc.constant<number[]>([]) },
  { weight: 1, arbitrary: fc.constant<number[]>([1]) },
  { weight: 2, arbitrary: fc.array(fc.nat(3), { minLength: 1, maxLength: 8 }) },
);
const spelled = (text: fc.Arbitrary<string>) => fc.tuple(text, modes).map(([t, m]) => ({ text: t, literal: spell(t, m) }));

const space = fc.constantFrom('', '', '', ' ', '\n', '\t', '\r\n  ');

const KEY_NAMES = ['type', 'type', 'Type', 'TYPE', 'tyPe', 'type\u0000', 'type\u0000x', 'types', 'typ', ' type', 'event_id', 'audio', 'response', 'item', 'session', 'delta'];
const keyName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...KEY_NAMES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
);

const TYPE_NAMES = ['response.create', 'session.update', 'input_audio_buffer.append', 'response.output_audio.delta', 'response.audio.delta', 'response.cre', 'response.create\u0000', 'response.create\u0000x', ''];
const typeName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...TYPE_NAMES) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) });

/** Strings holding what a scan could mistake for structure. */
const tricky = fc.constantFrom('{', '}', '[', ']', '"', '\\', '\\"', '{"type":"response.create"}', '","type":"response.create', '}}]]{{[[', 'a\\', '');

const json = fc.jsonValue({ maxDepth: 3 });
/** A value, written as JSON text: strings (audio-like, tricky, spelled with escapes), numbers, literals, nested values holding `type` keys. */
const valueText = fc.oneof(
  { weight: 3, arbitrary: spelled(typeName).map((s) => s.literal) },
  { weight: 2, arbitrary: fc.nat(AUDIO.length).map((n) => `"${AUDIO.slice(0, n)}"`) },
  { weight: 2, arbitrary: fc.tuple(json, fc.constantFrom<undefined | number | string>(undefined, 1, '\t')).map(([v, indent]) => JSON.stringify(v, null, indent)) },
  { weight: 1, arbitrary: spelled(tricky).map((s) => s.literal) },
  { weight: 1, arbitrary: fc.record({ type: typeName, note: tricky, list: fc.array(fc.record({ type: typeName, text: tricky }), { maxLength: 2 }) }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom('0', '-1.5e-3', '12E+2', 'true', 'false', 'null', '[]', '{}') },
);

interface Entry {
  key: string;
  text: string;
}
const entry = fc.tuple(spelled(keyName), space, space, valueText).map(([key, before, after, value]): Entry => ({ key: key.text, text: `${key.literal}${before}:${after}${value}` }));

interface Frame {
  keys: string[];
  text: string;
}
const joinEntries = (entries: Entry[], gaps: string[]): Frame => ({
  keys: entries.map((e) => e.key),
  text: `${gaps[0]}{${gaps[1]}${entries.map((e) => e.text).join(`${gaps[2]},${gaps[3]}`)}${gaps[4]}}${gaps[5]}`,
});
const gaps = fc.array(space, { minLength: 6, maxLength: 6 });

/** Any top-level object: keys from a small pool (so duplicates and case variants are common), any spelling. */
const anyObject = fc.tuple(fc.array(entry, { maxLength: 6 }), gaps).map(([entries, g]) => joinEntries(entries, g));

/** Audio frames as the SDKs write them, with whatever else a client appends after the audio. */
const audioFrame = fc
  .tuple(fc.constantFrom(...BULK_EVENT_TYPES), fc.nat(AUDIO.length), fc.array(entry, { maxLength: 3 }), gaps)
  .map(([type, n, rest, g]) => joinEntries([{ key: 'type', text: `"type":"${type}"` }, { key: 'audio', text: `"audio":"${AUDIO.slice(0, n)}"` }, ...rest], ['', '', '', '', ...g.slice(4)]));

const frame = fc.oneof({ weight: 3, arbitrary: anyObject }, { weight: 1, arbitrary: audioFrame });

/** Whether a key, up to any U+0000, reads as `type` in some letter case. */
function readsAsType(key: string): boolean {
  return key.split('\u0000')[0]!.toLowerCase() === 'type';
}

function parse(text: string): { type?: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { type?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

describe('the type the relay reads is the type the upstream reads', () => {
  it('never reads a type other than the one JSON.parse reads', () => {
    fc.assert(
      fc.property(frame, ({ text }) => {
        const parsed = parse(text);
        if (parsed === undefined) return;
        const read = scan(text);
        if (read !== undefined) expect(read).toBe(parsed.type);
      }),
      { numRuns: 3_000 },
    );
  });

  it('refuses exactly the frames whose type parsers could read differently', () => {
    fc.assert(
      fc.property(frame, ({ keys, text }) => {
        const parsed = parse(text);
        if (parsed === undefined) return;
        const typeKeys = keys.filter(readsAsType);
        const unambiguous = typeKeys.length === 1 && typeKeys[0] === 'type' && typeof parsed.type === 'string' && !parsed.type.includes('\u0000');
        expect(scan(text)).toBe(unambiguous ? parsed.type : undefined);
      }),
      { numRuns: 3_000 },
    );
  });

  it('reads every frame as the SDKs write it, whatever its keys and their order', () => {
    const plainKey = fc.string({ unit: 'binary', maxLength: 12 }).filter((k) => JSON.stringify(k) === `"${k}"` && !readsAsType(k));
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(...TYPE_NAMES.filter((t) => !t.includes('\u0000'))), fc.string({ unit: 'binary', maxLength: 30 }).filter((t) => !t.includes('\u0000'))),
        fc.dictionary(plainKey, fc.oneof(json, fc.nat(AUDIO.length).map((n) => AUDIO.slice(0, n))), { maxKeys: 6 }),
        fc.nat(6),
        (type, rest, position) => {
          const entries = Object.entries(rest);
          entries.splice(Math.min(position, entries.length), 0, ['type', type]);
          const text = JSON.stringify(Object.fromEntries(entries));
          expect(scan(text)).toBe(type);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('never reads a frame cut short', () => {
    fc.assert(
      fc.property(frame, fc.nat(), ({ text }, cut) => {
        const end = text.lastIndexOf('}');
        if (end <= 0) return;
        const prefix = text.slice(0, cut % end);
        expect(scan(prefix)).toBeUndefined();
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('frames written to slip a response.create past the balance check', () => {
  it.each([
    ['the type spelled with an escape', '{"type":"response.cre\\u0061te"}', 'response.create'],
    ['the type spelled with an escaped slash', '{"type":"response.create\\/"}', 'response.create/'],
    ['the type key spelled with an escape', '{"typ\\u0065":"response.create"}', 'response.create'],
  ])('reads %s as JSON.parse does', (_name, text, type) => {
    expect(scan(text)).toBe(type);
    expect((JSON.parse(text) as { type: string }).type).toBe(type);
  });

  it.each([
    ['a second type key', '{"type":"session.update","type":"response.create"}'],
    ['a second type key after the audio', `{"type":"input_audio_buffer.append","audio":"${AUDIO}","type":"response.create"}`],
    ['a second type key after an unspaced audio frame with an event id', `{"type":"input_audio_buffer.append","event_id":"e1","audio":"AAAA","type":"response.create"}`],
    ['a second type key spelled with an escape', '{"type":"session.update","typ\\u0065":"response.create"}'],
    ['a second type key in another letter case', '{"type":"session.update","Type":"response.create"}'],
    ['a type key in another letter case only', '{"TYPE":"response.create"}'],
    ['a second type key ending in U+0000', '{"type":"session.update","type\\u0000":"response.create"}'],
    ['a type ending in U+0000', '{"type":"response.create\\u0000"}'],
    ['a second object after the first', '{"type":"session.update"}{"type":"response.create"}'],
    ['trailing text after the object', '{"type":"session.update"} ,"type":"response.create"'],
    ['a raw control character in the type', '{"type":"response.create\n"}'],
  ])('refuses %s', (_name, text) => {
    expect(scan(text)).toBeUndefined();
  });
});
