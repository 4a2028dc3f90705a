import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { openWebRtcCall } from '../helpers/webrtc-client.js';

const postgresProblem = await probePostgres();
if (postgresProblem !== null && !POSTGRES_REQUIRED) console.warn(`Skipping the PostgreSQL WebRTC call test: ${postgresProblem}.`);

describe.skipIf(postgresProblem !== null && !POSTGRES_REQUIRED)('a WebRTC call on a PostgreSQL ledger', () => {
  let schema: ScratchSchema;
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    schema = await createScratchSchema();
    stack = await startTestRelay({ postgres: schema, simulator: { chunkIntervalMs: 0 } });
  });
  afterAll(async () => {
    await stack?.close();
    await schema?.drop();
  });

  it('bills each response to the nano-USD and records the session as a webrtc one', async () => {
    const { key, record } = await stack.createKey();
    const call = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
    const charged: Array<[string, bigint]> = [];
    try {
      for (const u of [usage({ text: [200, 50], audio: [400, 0], out: [60, 300] }), usage({ image: [100, 10], out: [7, 0] })]) {
        const from = call.events.length;
        call.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
        const done = await call.waitFor('response.done', { from });
        const response = done.response as { id: string; usage: RealtimeUsage };
        expect(response.usage).toEqual(u);
        charged.push([response.id, realtimeInvoice('gpt-realtime', u)]);
      }
      const hangup = await fetch(`${stack.httpUrl}${call.location}/hangup`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
      expect(hangup.status).toBe(200);
      // The relay hung the call up at the upstream.
      await expect.poll(() => stack.sim.activeCalls).toBe(0);
    } finally {
      await call.close();
    }
    await stack.idle();
    const total = charged.reduce((sum, [, cost]) => sum + cost, 0n);
    const book = await stack.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual(charged);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: total, chargeCount: 2, endReason: 'client_closed' })]);
    expect(book.balanceNano).toBe(record.balanceNano - total);
    const [row] = await schema.query<{ transport: string }>('SELECT transport FROM sessions WHERE key_id = $1', [record.id]);
    expect(row!.transport).toBe('webrtc');
    const history = await stack.ledger.endedSessions({ key: record.id, limit: 10 });
    expect(history.sessions.map((s) => s.transport)).toEqual(['webrtc']);
  });
});
