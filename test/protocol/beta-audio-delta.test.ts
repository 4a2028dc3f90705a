import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { renameEventType, translateServerEvent } from '../../src/protocol/beta/index.js';

const GA = 'response.output_audio.delta';
const BETA = 'response.audio.delta';

afterEach(() => {
  vi.restoreAllMocks();
});

/** The bytes after the closing quote of the type value, which must survive byte for byte. */
function tailAfter(data: Buffer, typeValue: string): Buffer {
  const marker = Buffer.from(`"type":"${typeValue}"`);
  const at = data.indexOf(marker);
  if (at === -1) throw new Error('type not found');
  return data.subarray(at + marker.length);
}

function audioDelta(payload: string): Buffer {
  return Buffer.from(`{"type":"${GA}","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${payload}"}`);
}

describe('audio delta rename for beta clients', () => {
  it('renames a 1 MB delta without parsing it, payload bytes identical', () => {
    const payload = randomBytes(768 * 1024).toString('base64');
    const data = audioDelta(payload);
    const parse = vi.spyOn(JSON, 'parse');
    const out = translateServerEvent(data, GA);
    expect(parse).not.toHaveBeenCalled();
    expect(out).not.toBeNull();
    expect(out!.subarray(0, `{"type":"${BETA}"`.length).toString()).toBe(`{"type":"${BETA}"`);
    expect(tailAfter(out!, BETA).equals(tailAfter(data, GA))).toBe(true);
    expect(out!.length).toBe(data.length - (GA.length - BETA.length));
  });

  it('leaves the frame it was given untouched', () => {
    const data = audioDelta('AAAA');
    const copy = Buffer.from(data);
    translateServerEvent(data, GA);
    expect(data.equals(copy)).toBe(true);
  });

  it('parses, as a control, the events that need it', () => {
    const parse = vi.spyOn(JSON, 'parse');
    translateServerEvent(Buffer.from('{"type":"response.created","response":{"output_modalities":["audio"]}}'), 'response.created');
    expect(parse).toHaveBeenCalled();
  });

  it('renames a frame whose type is not the first key', () => {
    const data = Buffer.from(`{"event_id":"e","delta":"QUJD","type":"${GA}","item_id":"i"}`);
    const parse = vi.spyOn(JSON, 'parse');
    const out = translateServerEvent(data, GA);
    expect(parse).not.toHaveBeenCalled();
    expect(out!.toString()).toBe(`{"event_id":"e","delta":"QUJD","type":"${BETA}","item_id":"i"}`);
  });

  it('does not mistake a type nested in an earlier member for the event type', () => {
    const data = Buffer.from(`{"meta":{"type":"${GA}","list":[{"type":"${GA}"}]},"type":"${GA}","delta":"QUJD"}`);
    expect(renameEventType(data, GA, BETA)!.toString()).toBe(
      `{"meta":{"type":"${GA}","list":[{"type":"${GA}"}]},"type":"${BETA}","delta":"QUJD"}`,
    );
  });

  it('does not mistake "type" inside a string value for the event type', () => {
    const data = Buffer.from(`{"note":"\\"type\\":\\"${GA}\\"","type":"${GA}","delta":"QUJD"}`);
    const out = renameEventType(data, GA, BETA)!;
    expect(JSON.parse(out.toString())).toEqual({ note: `"type":"${GA}"`, type: BETA, delta: 'QUJD' });
  });

  it('tolerates whitespace around keys and values', () => {
    const data = Buffer.from(`{ "event_id" : "e" ,\n  "type" :  "${GA}" , "delta" : "QUJD" }`);
    expect(renameEventType(data, GA, BETA)!.toString()).toBe(`{ "event_id" : "e" ,\n  "type" :  "${BETA}" , "delta" : "QUJD" }`);
  });

  it.each([
    ['the top-level type is another event', `{"type":"response.output_text.delta","delta":"x"}`],
    ['only a nested object has the type', `{"item":{"type":"${GA}"},"delta":"x"}`],
    ['the type is spelled with escapes', `{"t\\u0079pe":"${GA}","delta":"x"}`],
    ['the type value is spelled with escapes', `{"type":"response.output_audio\\u002edelta","delta":"x"}`],
    ['the frame is an array', `[{"type":"${GA}"}]`],
    ['the frame is cut short', `{"delta":"xx`],
    ['the type is not a string', `{"type":7}`],
  ])('returns null when %s', (_name, text) => {
    expect(renameEventType(Buffer.from(text), GA, BETA)).toBeNull();
  });

  it('falls back to a full parse when the type cannot be located safely', () => {
    const data = Buffer.from(`{"t\\u0079pe":"${GA}","delta":"QUJD"}`);
    expect(JSON.parse(translateServerEvent(data, GA)!.toString())).toEqual({ type: BETA, delta: 'QUJD' });
  });

  it('keeps multi-byte UTF-8 before the type intact', () => {
    const data = Buffer.from(`{"note":"héllo ✓ 😀","type":"${GA}","delta":"QUJD"}`);
    expect(renameEventType(data, GA, BETA)!.toString()).toBe(`{"note":"héllo ✓ 😀","type":"${BETA}","delta":"QUJD"}`);
  });
});
