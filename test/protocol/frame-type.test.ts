import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { scanEventType } from '../../src/protocol/frame-type.js';

const scan = (text: string) => scanEventType(Buffer.from(text));

describe('reading an event type from the head of a frame', () => {
  it('reads the type when it is the first key', () => {
    expect(scan('{"type":"input_audio_buffer.append","audio":"AAAA"}')).toBe('input_audio_buffer.append');
  });

  it('reads the type when other keys come first, whatever their values hold', () => {
    expect(scan('{"event_id":"e1","type":"response.create"}')).toBe('response.create');
    expect(scan('{"audio":"AA\\"type\\":\\"x\\"","type":"input_audio_buffer.append"}')).toBe('input_audio_buffer.append');
    expect(scan('{"session":{"type":"realtime","nested":[1,{"type":"no"}]},"type":"session.update"}')).toBe('session.update');
    expect(scan('{"n": 12.5e3, "ok": true, "none": null, "type" : "x.y"}')).toBe('x.y');
  });

  it('does not take a nested type for the top-level one', () => {
    expect(scan('{"item":{"type":"message"}}')).toBeUndefined();
  });

  it('handles whitespace and escaped backslashes before a closing quote', () => {
    expect(scan(' \n{ "a" : "x\\\\" , "type":"t"}')).toBe('t');
  });

  it('refuses what is not an object with a string type', () => {
    for (const bad of ['', 'null', '[]', '"type"', '{"type":1}', '{"type":null}', '{type:"x"}', '{"type":"unterminated', '{"a":"b"', 'not json', '{"a" "b"}']) {
      expect(scan(bad), bad).toBeUndefined();
    }
  });

  it('scans a 4 MiB audio frame with the type last', () => {
    const big = `{"audio":"${'A'.repeat(4 * 1024 * 1024)}","type":"input_audio_buffer.append"}`;
    expect(scan(big)).toBe('input_audio_buffer.append');
  });

  it('agrees with JSON.parse on generated objects, escapes included', () => {
    // Keys that are `type` but for letter case or a U+0000, and types holding U+0000, are refused: see frame-type.property.test.ts.
    const otherKey = fc.string().filter((k) => k.split('\u0000')[0]!.toLowerCase() !== 'type');
    const typeValue = fc.string().filter((t) => !t.includes('\u0000'));
    fc.assert(
      fc.property(fc.dictionary(otherKey, fc.jsonValue()), typeValue, fc.nat(5), (rest, type, position) => {
        const entries = Object.entries(rest);
        entries.splice(Math.min(position, entries.length), 0, ['type', type]);
        const text = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
        expect(scan(text)).toBe((JSON.parse(text) as { type: string }).type);
      }),
      { numRuns: 500 },
    );
  });
});
