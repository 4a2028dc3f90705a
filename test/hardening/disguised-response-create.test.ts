/**
 * A key below the response reserve cannot get a response by spelling
 * `response.create` so that the relay reads another type than the upstream:
 * the relay reads the type as the upstream's parser does, or refuses the frame.
 * Real sockets, the real ledger, the simulator as the upstream (it parses each
 * frame with JSON.parse, so it would answer any response.create that reached it).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import type { TestClient } from '../helpers/client.js';

/** 20 ms of 24 kHz PCM16, base64. */
const AUDIO_B64 = Buffer.from(Array.from({ length: 960 }, (_, i) => (i * 13) & 0xff)).toString('base64');
/** Half of the default RELAY_RESPONSE_RESERVE_USD (0.01): enough to open a session, not to ask for a response. */
const BELOW_RESERVE_NANO = 5_000_000n;

let stack: LedgerTestRelay;
/** Every frame that reached the upstream, as text. */
const upstreamReceived: string[] = [];

beforeAll(async () => {
  stack = await startTestRelay({ simulator: { chunkIntervalMs: 0, textDeltas: 3, tap: { received: (frame) => upstreamReceived.push(frame.toString('utf8')) } } });
});
afterEach(async () => {
  await stack.disconnectAll();
});
afterAll(async () => {
  await stack.close();
});

async function openSessionBelowReserve(): Promise<{ client: TestClient; keyId: string }> {
  const { key, record } = await stack.createKey({ balanceNano: BELOW_RESERVE_NANO });
  const client = stack.connect({ key });
  await client.next('session.created');
  return { client, keyId: record.id };
}

/** Sends `frame` as a text frame and waits for the relay's answer: an error, a response, or a close. */
async function sendAttack(client: TestClient, frame: string): Promise<void> {
  const from = client.events.length;
  client.socket.send(frame);
  await client.until(
    () => client.closed !== null || client.events.slice(from).some((e) => e.type === 'error' || e.type === 'response.created' || e.type === 'response.done'),
    'the relay to answer the frame',
  );
}

function errorCodes(client: TestClient): string[] {
  return client.events.filter((e) => e.type === 'error').map((e) => (e.error as { code: string }).code);
}

/** Nothing was asked of the upstream, nothing produced, nothing charged: the balance is what it was. */
async function expectNoResponse(client: TestClient, keyId: string, frame: string): Promise<void> {
  expect(upstreamReceived).not.toContain(frame);
  expect(client.count('response.created')).toBe(0);
  expect(client.count('response.done')).toBe(0);
  await stack.disconnectAll();
  const book = await stack.view.book(keyId);
  expect(book.charges).toEqual([]);
  expect(book.balanceNano).toBe(BELOW_RESERVE_NANO);
}

describe('a key below the reserve asks for a response in disguise', () => {
  it('is refused insufficient_quota for a response.create spelled with an escape, and the session goes on', async () => {
    const { client, keyId } = await openSessionBelowReserve();
    const frame = '{"type":"response.cre\\u0061te","response":{"output_modalities":["text"]}}';
    await sendAttack(client, frame);
    expect(errorCodes(client)).toEqual(['insufficient_quota']);
    // Frames reach the upstream in order: once this one is answered, the refused one would have been too.
    client.send({ type: 'input_audio_buffer.clear' });
    await client.next('input_audio_buffer.cleared');
    expect(client.closed).toBeNull();
    await expectNoResponse(client, keyId, frame);
  });

  it.each([
    ['a second type key', '{"type":"session.update","type":"response.create"}'],
    ['a second type key after the audio payload', `{"type":"input_audio_buffer.append","audio":"${AUDIO_B64}","type":"response.create"}`],
    ['a second type key spelled with an escape', '{"type":"session.update","typ\\u0065":"response.create"}'],
    ['a second type key in another letter case', '{"type":"session.update","TYPE":"response.create"}'],
  ])('is refused invalid_frame for %s, and no response is made', async (_name, frame) => {
    const { client, keyId } = await openSessionBelowReserve();
    await sendAttack(client, frame);
    expect(errorCodes(client)).toEqual(['invalid_frame']);
    expect((await client.closedWith()).code).toBe(1007);
    await expectNoResponse(client, keyId, frame);
  });
});
