import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { CallRefused, openWebRtcCall, postOffer, type WebRtcCall } from '../helpers/webrtc-client.js';

/** Asks over the data channel for one text response whose `response.done` reports exactly `u`. */
async function respond(call: WebRtcCall, u: unknown): Promise<{ id: string; usage: RealtimeUsage }> {
  const from = call.events.length;
  call.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
  const done = await call.waitFor('response.done', { from });
  const response = done.response as { id: string; usage: RealtimeUsage };
  expect(response.usage).toEqual(u);
  return response;
}

describe('WebRTC calls through the relay', () => {
  let stack: LedgerTestRelay;
  const calls: WebRtcCall[] = [];
  const callsUrl = (query = 'model=gpt-realtime') => `${stack.httpUrl}/v1/realtime/calls?${query}`;
  async function open(key: string, query?: string): Promise<WebRtcCall> {
    const call = await openWebRtcCall(callsUrl(query), { key });
    calls.push(call);
    return call;
  }

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 } });
  });
  afterEach(async () => {
    for (const call of calls.splice(0)) await call.close();
    await stack.idle();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('bills a response asked for on the data channel to the nano-USD, from the usage the upstream reported', async () => {
    const { key, record } = await stack.createKey();
    const call = await open(key);
    expect(call.location).toMatch(/^\/v1\/realtime\/calls\/rtc_[0-9a-f]{32}$/);
    const u = usage({ text: [120, 20], audio: [300, 100], out: [40, 200] });
    const response = await respond(call, u);
    const expected = realtimeInvoice('gpt-realtime', u);
    await expect.poll(async () => (await stack.view.book(record.id)).charges.map((c) => [c.itemId, c.costNano])).toEqual([[response.id, expected]]);
    const hangup = await fetch(`${stack.httpUrl}${call.location}/hangup`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect(hangup.status).toBe(200);
    await call.waitForClose();
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: expected, chargeCount: 1, endReason: 'client_closed' })]);
    expect(book.balanceNano).toBe(record.balanceNano - expected);
  });
});
