import type { InspectionEvent } from 'xstate';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startTestRelay, type LedgerTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { appendFrame, callerOf, RawClient, HOTPATH_KEY } from './harness.js';

const FRAMES = 1_000;

let stack: RecordingTestRelay | undefined;
let relay: LedgerTestRelay | undefined;
let client: RawClient | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  client?.close();
  await stack?.close();
  await relay?.close();
  stack = undefined;
  relay = undefined;
  client = undefined;
});

type TimerCall = 'setTimeout' | 'clearTimeout' | 'setInterval' | 'clearInterval' | 'refresh';

/** Counts the relay's own timer calls (arming, clearing, re-arming) while `stretch` runs. */
async function relayTimerCalls(stretch: () => Promise<void>): Promise<TimerCall[]> {
  const calls: TimerCall[] = [];
  let inSpy = false;
  const note = (call: TimerCall) => {
    if (inSpy) return;
    inSpy = true;
    try {
      if (callerOf(new Error().stack) === 'relay') calls.push(call);
    } finally {
      inSpy = false;
    }
  };
  const timeout = setTimeout(() => undefined, 0);
  const timeoutPrototype = Object.getPrototypeOf(timeout) as { refresh(): unknown };
  clearTimeout(timeout);
  for (const name of ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] as const) {
    const original = globalThis[name] as (...args: unknown[]) => unknown;
    vi.spyOn(globalThis, name).mockImplementation(((...args: unknown[]) => {
      note(name);
      return original(...args);
    }) as never);
  }
  const refresh = timeoutPrototype.refresh;
  vi.spyOn(timeoutPrototype, 'refresh').mockImplementation(function (this: unknown) {
    note('refresh');
    return refresh.call(this);
  });
  const previousLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  try {
    await stretch();
  } finally {
    vi.restoreAllMocks();
    Error.stackTraceLimit = previousLimit;
  }
  return calls;
}

/** One response of 1,000 audio deltas while the client appends 1,000 frames. */
async function audioStretch(c: RawClient): Promise<void> {
  const appends = Array.from({ length: FRAMES }, (_, i) => appendFrame(i));
  await Promise.all([c.sendAll(['{"type":"response.create"}', ...appends]), c.until(() => c.count('response.done') === 1, 'response.done')]);
  expect(c.count('response.output_audio.delta')).toBe(FRAMES);
}

describe('per-frame work on the hot path', () => {
  it('sends the session machine only the response events while 1,000 frames pass each way', async () => {
    const machineEvents: string[] = [];
    let counting = false;
    stack = await startTestRelay({
      billing: 'recording',
      simulator: { chunkIntervalMs: 0, audioChunks: FRAMES },
      server: {
        inspect: (event: InspectionEvent) => {
          if (counting && event.type === '@xstate.event') machineEvents.push(event.event.type);
        },
      },
    });
    client = RawClient.connect(stack.url(), TEST_KEY);
    await client.until(() => client!.count('session.created') === 1, 'session.created');
    counting = true;
    const timers = await relayTimerCalls(() => audioStretch(client!));
    counting = false;
    expect(machineEvents).toEqual(['RESPONSE_REQUESTED', 'RESPONSE_CREATED', 'RESPONSE_DONE']);
    expect(timers).toEqual([]);
  });

  it('writes no log line and arms no timer per frame with billing on', async () => {
    relay = await startTestRelay({ settings: { logLevel: 'trace' }, simulator: { chunkIntervalMs: 0, audioChunks: FRAMES } });
    client = RawClient.connect(relay.url(), (await relay.createKey(HOTPATH_KEY)).key);
    await client.until(() => client!.count('session.created') === 1, 'session.created');
    const linesBefore = relay.logs.length;
    const timers = await relayTimerCalls(() => audioStretch(client!));
    // Logged at trace level, so that a debug line per frame would show here too.
    expect(relay.logs.slice(linesBefore)).toEqual([]);
    expect(timers).toEqual([]);
  });
});
