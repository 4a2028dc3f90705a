/**
 * Server VAD starts a response when the speaker stops: no `response.create`
 * passes the relay, so there is nothing to refuse. Such a response places its
 * hold when it starts, and a key that cannot cover it ends the session: the
 * response is cancelled upstream and what it produced is billed. Without
 * that, every session of a key could run one unheld response at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestRelay } from '../helpers/relay.js';
import type { TestClient } from '../helpers/client.js';
import { usdToNano } from './invoice.js';

const SESSIONS = 30;
const BALANCE = usdToNano('0.011');
/** 100 ms of 24 kHz PCM16 silence: something for the turn to commit. */
const SPEECH = Buffer.alloc(4_800).toString('base64');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function responseStatus(client: TestClient): string | undefined {
  const done = client.events.find((event) => event.type === 'response.done');
  return (done?.response as { status?: string } | undefined)?.status;
}

function errorCode(client: TestClient): string | undefined {
  const error = client.events.find((event) => event.type === 'error');
  return (error?.error as { code?: string } | undefined)?.code;
}

describe('responses the upstream starts by itself', () => {
  it('runs one at a time for a key with 0.011 USD when the speakers of 30 sessions stop at once; the others are cancelled, billed for their tails, and told insufficient_quota', async () => {
    // Long responses, so that a cancel arrives while they are still running.
    const stack = await startTestRelay({ simulator: { chunkIntervalMs: 10, audioChunks: 400, audioChunkBytes: 480 } });
    cleanups.push(() => stack.close());
    const { key, record } = await stack.createKey({ balanceNano: BALANCE });
    const clients = Array.from({ length: SESSIONS }, () => stack.connect({ key }));
    await Promise.all(clients.map((client) => client.next('session.created', 10_000)));

    for (const client of clients) {
      client.send({ type: 'input_audio_buffer.append', audio: SPEECH });
      client.send({ type: 'simulator.end_of_speech' });
    }
    await Promise.all(clients.map((client) => client.closedWith(30_000)));
    await stack.idle();

    const statuses = clients.map(responseStatus);
    expect(statuses.filter((status) => status === 'completed')).toHaveLength(1);
    expect(statuses.filter((status) => status === 'cancelled')).toHaveLength(SESSIONS - 1);
    // The cancelled ones could not be covered; the one that ran took the balance below zero.
    expect(clients.map(errorCode)).toEqual(clients.map(() => 'insufficient_quota'));

    // Every response, finished or cancelled, is charged once, and the balance is what they cost.
    const book = await stack.view.book(record.id);
    expect(book.charges).toHaveLength(SESSIONS);
    expect(new Set(book.charges.map((charge) => `${charge.sessionId}:${charge.itemId}`)).size).toBe(SESSIONS);
    const total = book.charges.reduce((sum, charge) => sum + charge.costNano, 0n);
    expect(book.balanceNano).toBe(BALANCE - total);
    expect(book.settlements).toHaveLength(SESSIONS);
    expect((await stack.ledger.getKey(record.id))!.heldNano).toBe(0n);
  }, 90_000);
});
