import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, sum, usage } from '../billing/invoice.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

const SECRET = `whsec_${Buffer.from('the operator secret, 32 bytes!!').toString('base64')}`;
const TURNS = [usage({ text: [150, 30], audio: [500, 100], out: [20, 320] }), usage({ text: [40, 0], out: [90, 0] })];

const postgresProblem = await probePostgres();
if (postgresProblem !== null && !POSTGRES_REQUIRED) console.warn(`Skipping the PostgreSQL phone call test: ${postgresProblem}.`);

describe.skipIf(postgresProblem !== null && !POSTGRES_REQUIRED)('a phone call on a PostgreSQL ledger', () => {
  let schema: ScratchSchema;
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    schema = await createScratchSchema();
    stack = await startTestRelay({ postgres: schema, simulator: { chunkIntervalMs: 0 }, settings: { openaiWebhookSecret: SECRET } });
    stack.sim.setCallWebhook({ url: `${stack.httpUrl}/v1/sip/webhook`, secret: SECRET });
  });
  afterAll(async () => {
    await stack?.close();
    await schema?.drop();
  });

  it('routes, accepts and bills a call to the nano-USD, records it as a sip session, and ignores its replayed webhook', async () => {
    const { record } = await stack.createKey();
    await stack.ledger.addRoute({ match: { kind: 'header', name: 'X-Tenant', value: 'pg' }, key: record.id, session: { model: 'gpt-realtime' } });
    const placed = await stack.sim.placeSipCall({ to: '+15550142424', sipHeaders: [{ name: 'X-Tenant', value: 'pg' }], turns: TURNS.map((u) => ({ usage: u })) });
    await expect.poll(() => stack.sim.sipCall(placed.callId)!.turnsDone).toBe(2);
    expect(await stack.sim.redeliverCall(placed.callId)).toMatchObject({ webhook: { status: 200 } });
    expect(stack.sim.hangUpCall(placed.callId)).toBe(true);
    await expect.poll(async () => (await stack.view.book(record.id)).settlements.length).toBe(1);
    await stack.idle();
    const expected = TURNS.map((u) => realtimeInvoice('gpt-realtime', u));
    const book = await stack.view.book(record.id);
    // Two charges written at once over the pool may commit in either order: compared as a set of costs.
    const ascending = (costs: bigint[]) => [...costs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(ascending(book.charges.map((c) => c.costNano))).toEqual(ascending(expected));
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: sum(expected), chargeCount: 2, endReason: 'upstream_closed' })]);
    expect(book.balanceNano).toBe(record.balanceNano - sum(expected));
    const rows = await schema.query<{ transport: string }>('SELECT transport FROM sessions WHERE key_id = $1', [record.id]);
    expect(rows.map((r) => r.transport)).toEqual(['sip']);
    const [{ count }] = await schema.query<{ count: bigint }>('SELECT count(*) AS count FROM sip_webhooks WHERE webhook_id = $1', [placed.webhookId]);
    expect(count).toBe(1n);
  });
});
