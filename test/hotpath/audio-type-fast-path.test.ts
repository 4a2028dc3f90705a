import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BULK_EVENT_TYPES, scanEventType } from '../../src/protocol/frame-type.js';

const scan = (text: string) => scanEventType(Buffer.from(text));
const AUDIO_TYPES = [...BULK_EVENT_TYPES];

describe('reading the type of an audio frame in place', () => {
  it('reads each audio type written first and unspaced, as the SDKs write it', () => {
    for (const type of AUDIO_TYPES) expect(scan(`{"type":"${type}","audio":"AAAA"}`)).toBe(type);
  });

  it('does not take a longer or unterminated type for an audio type', () => {
    expect(scan('{"type":"input_audio_buffer.appendix","audio":"AAAA"}')).toBe('input_audio_buffer.appendix');
    expect(scan('{"type":"response.audio.delta.extra"}')).toBe('response.audio.delta.extra');
    expect(scan('{"type":"input_audio_buffer.append')).toBeUndefined();
    expect(scan('{"type":"input_audio_buffer.app"}')).toBe('input_audio_buffer.app');
  });

  it('reads past the audio: a second type after it makes the frame unreadable', () => {
    for (const type of AUDIO_TYPES) {
      expect(scan(`{"type":"${type}","audio":"AAAA","event_id":"e1"}`)).toBe(type);
      expect(scan(`{"type":"${type}","audio":"AAAA","type":"response.create"}`)).toBeUndefined();
      expect(scan(`{"type":"${type}","audio":"AAAA","typ\\u0065":"response.create"}`)).toBeUndefined();
      expect(scan(`{"type":"${type}","audio":"AAAA"}{"type":"response.create"}`)).toBeUndefined();
    }
  });

  it('agrees with JSON.parse on audio frames however they are spaced or ordered', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...AUDIO_TYPES),
        fc.base64String({ maxLength: 64 }),
        fc.boolean(),
        fc.constantFrom('', ' ', '\n', '\t '),
        (type, audio, typeFirst, space) => {
          const typeEntry = `"type"${space}:${space}"${type}"`;
          const audioEntry = `"audio":${space}"${audio}"`;
          const text = `{${space}${typeFirst ? `${typeEntry},${audioEntry}` : `${audioEntry},${space}${typeEntry}`}${space}}`;
          expect(scan(text)).toBe((JSON.parse(text) as { type: string }).type);
        },
      ),
      { numRuns: 300 },
    );
  });
});
