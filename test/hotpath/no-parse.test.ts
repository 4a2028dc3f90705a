import { afterEach, describe, expect, it, vi } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { appendFrame, callerOf, RawClient, HOTPATH_KEY, typeOf } from './harness.js';

const FRAMES = 1_000;
const AUDIO_TYPES = new Set(['input_audio_buffer.append', 'response.output_audio.delta', 'response.audio.delta']);

let relay: LedgerTestRelay | undefined;
let client: RawClient | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  client?.close();
  await relay?.close();
  relay = undefined;
  client = undefined;
});

describe('audio frames on the hot path', () => {
  it('relays 1,000 audio frames each way without parsing one', async () => {
    relay = await startTestRelay({
      settings: { logLevel: 'trace' },
      simulator: {
        chunkIntervalMs: 0,
        audioChunks: FRAMES,
        // The simulator parses each frame right after this hook: the check below runs once it has.
        tap: { received: () => queueMicrotask(() => client?.notify()) },
      },
    });
    client = RawClient.connect(relay.url(), (await relay.createKey(HOTPATH_KEY)).key);
    await client.until(() => client!.count('session.created') === 1, 'session.created');

    const parses: Array<{ by: ReturnType<typeof callerOf>; type: string }> = [];
    const parse = JSON.parse;
    const previousLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 40;
    // Formatting a stack reads source maps with JSON.parse: those nested calls are the spy's own.
    let inSpy = false;
    vi.spyOn(JSON, 'parse').mockImplementation(function spiedParse(text: string, reviver?: Parameters<typeof JSON.parse>[1]) {
      if (!inSpy) {
        inSpy = true;
        try {
          parses.push({ by: callerOf(new Error().stack), type: typeOf(String(text)) });
        } finally {
          inSpy = false;
        }
      }
      return parse(text, reviver);
    });
    try {
      const appends = Array.from({ length: FRAMES }, (_, i) => appendFrame(i));
      await Promise.all([client.sendAll(['{"type":"response.create"}', ...appends]), client.until(() => client!.count('response.done') === 1, 'response.done')]);
      // The simulator has read every append once the relay forwarded them all.
      await client.until(() => parses.filter((p) => p.by === 'simulator' && p.type === 'input_audio_buffer.append').length === FRAMES, 'the simulator to read every append');
    } finally {
      vi.restoreAllMocks();
      Error.stackTraceLimit = previousLimit;
    }

    expect(client.count('response.output_audio.delta')).toBe(FRAMES);
    // The spy does see audio frames being parsed: the simulator parses each append it receives.
    expect(parses.filter((p) => p.by === 'simulator' && p.type === 'input_audio_buffer.append')).toHaveLength(FRAMES);
    const byRelay = parses.filter((p) => p.by === 'relay');
    expect(byRelay.filter((p) => AUDIO_TYPES.has(p.type))).toEqual([]);
    // What the relay does read: the response's start and its usage, a few frames per response, never per frame.
    expect(byRelay.map((p) => p.type).sort()).toEqual(['response.created', 'response.done']);
  });
});
