import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

interface SdkEvent {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

/** Every event the SDK emitted, and a way to wait for one. */
function record(rt: OpenAIRealtimeWS) {
  const events: SdkEvent[] = [];
  const waiters: Array<{ type: string; from: number; resolve: (e: SdkEvent) => void }> = [];
  rt.on('event', (event) => {
    events.push(event as SdkEvent);
    for (const waiter of [...waiters]) {
      if (event.type === waiter.type && events.length > waiter.from) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event as SdkEvent);
      }
    }
  });
  return {
    events,
    /** The next `type` after the events seen so far. */
    next(type: string, timeoutMs = 5_000): Promise<SdkEvent> {
      const from = events.length;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type}; saw ${events.map((e) => e.type).join(', ')}`)), timeoutMs);
        waiters.push({ type, from, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      });
    },
  };
}

describe('the openai SDK (OpenAIRealtimeWS) pointed at the relay', () => {
  it('configures a session, gets a text and an audio response in order, and is billed once per response', async () => {
    stack = await startTestRelay({ tls: true, simulator: { chunkIntervalMs: 1 } });
    // The SDK forces wss:// onto baseURL; only this client trusts the test certificate.
    const openai = new OpenAI({ apiKey: stack.key, baseURL: `${stack.httpUrl}/v1` });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: stack.certificate!.cert } }, openai);
    const errors: unknown[] = [];
    rt.on('error', (error) => errors.push(error));
    const seen = record(rt);

    const created = await seen.next('session.created');
    expect(created.session).toMatchObject({ type: 'realtime', model: 'gpt-realtime' });

    const updated = seen.next('session.updated');
    rt.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Answer in one word.', audio: { output: { voice: 'marin' } } } });
    expect((await updated).session).toMatchObject({ instructions: 'Answer in one word.', audio: { output: { voice: 'marin' } } });

    const textDone = seen.next('response.done');
    rt.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    const text = await textDone;

    const audioDone = seen.next('response.done');
    rt.send({ type: 'response.create' });
    const audio = await audioDone;

    const types = seen.events.map((e) => e.type);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(4);
    expect(types.filter((t) => t === 'response.output_audio.delta')).toHaveLength(5);
    // The upstream numbers its events: every one arrived, once, in the order it was sent.
    expect(seen.events.map((e) => e.event_id)).toEqual(seen.events.map((_, i) => `event_1_${i + 1}`));
    expect(errors).toEqual([]);

    const closed = new Promise((resolve) => rt.socket.once('close', resolve));
    rt.close();
    await closed;
    await stack.idle();

    const responseIds = [(text.response as { id: string }).id, (audio.response as { id: string }).id];
    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges.map((c) => c.itemId).sort()).toEqual([...responseIds].sort());
    expect(charges.every((c) => c.kind === 'response' && c.model === 'gpt-realtime' && c.costNano > 0n)).toBe(true);
    const total = charges.reduce((sum, c) => sum + c.costNano, 0n);
    const [settlement] = stack.settlements();
    expect(stack.settlements()).toHaveLength(1);
    expect(settlement).toMatchObject({ status: 'settled', chargeCount: 2, totalNano: total, endReason: 'client_closed' });
    expect((await stack.ledger.getKey('demo'))!.balanceNano).toBe(5_000_000_000n - total);
  });
});
