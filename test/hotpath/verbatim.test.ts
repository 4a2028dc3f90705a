import { afterEach, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { AUDIO_B64, RawClient, HOTPATH_KEY, type Frame } from './harness.js';

let relay: LedgerTestRelay | undefined;
let client: RawClient | undefined;
afterEach(async () => {
  client?.close();
  await relay?.close();
  relay = undefined;
  client = undefined;
});

/** Valid JSON no serializer of ours writes: keys reversed (`type` last), spaces, newlines and tabs, an escaped slash. */
function oddly(event: Record<string, unknown>): string {
  const reversed = Object.fromEntries(Object.entries(event).reverse());
  // `\u0074` is "t": the value reads the same, the bytes do not.
  return JSON.stringify(reversed, null, '\t').replaceAll('":', '" :').replaceAll('realtime', 'real\\u0074ime');
}

const CLIENT_FRAMES = [
  ` {\n  "event_id" : "evt_odd_1" ,\n  "type" : "session.update" , "session" : { "type" : "realtime", "instructions" : "Speak \\"slowly\\" \\u00e9" }\n} `,
  `{"audio":"${AUDIO_B64}",   "type":"input_audio_buffer.append"}`,
  `{\t"type"\t:\t"input_audio_buffer.append",\t"audio":"${AUDIO_B64}","event_id":"evt_odd_2"}`,
  `{ "response" : { "metadata" : { "note" : "caf\u00e9 ☕" } } , "type" : "response.create" }`,
];

function texts(frames: Frame[]): string[] {
  return frames.map((f) => f.data.toString('utf8'));
}

describe('frames cross the relay verbatim', () => {
  it('forwards every frame with the bytes and the kind it was received with, both ways', async () => {
    const simulatorReceived: Frame[] = [];
    const simulatorSent: string[] = [];
    relay = await startTestRelay({
      settings: { logLevel: 'trace' },
      simulator: {
        chunkIntervalMs: 0,
        audioChunks: 3,
        tap: {
          received: (data, isBinary) => simulatorReceived.push({ data: Buffer.from(data), isBinary }),
          serialize: (event) => {
            const text = oddly(event);
            simulatorSent.push(text);
            return text;
          },
        },
      },
    });
    client = RawClient.connect(relay.url(), (await relay.createKey(HOTPATH_KEY)).key);
    await client.until(() => client!.frames.length >= 1, 'session.created');
    await client.sendAll(CLIENT_FRAMES);
    await client.until(() => client!.frames.some((f) => /"type" :\s*"response\.done"/.test(f.data.toString())), 'response.done');

    // Client → upstream: the same bytes, in order, as text.
    expect(simulatorReceived.map((f) => f.data.toString('utf8'))).toEqual(CLIENT_FRAMES);
    expect(Buffer.concat(simulatorReceived.map((f) => f.data)).equals(Buffer.from(CLIENT_FRAMES.join('')))).toBe(true);
    expect(simulatorReceived.every((f) => !f.isBinary)).toBe(true);
    // Upstream → client: what the simulator wrote, including the response.done the relay read to bill it.
    expect(texts(client.frames)).toEqual(simulatorSent);
    expect(client.frames.every((f) => !f.isBinary)).toBe(true);
    expect(simulatorSent.filter((text) => /"type" :\s*"response\.output_audio\.delta"/.test(text))).toHaveLength(3);
    expect(simulatorSent.some((text) => text.includes('real\\u0074ime'))).toBe(true);
    // The relay did read it: the response was charged.
    const usage = await relay.ledger.usage({ key: 'hotpath' });
    expect(usage).toHaveLength(1);
  });
});
