/**
 * The billing defects of the relay this project replaces
 * (the prior art's defects 1–5), each as a session
 * through the real relay, the real ledger and the upstream simulator. Every
 * expected amount comes from the published price table (invoice.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { FaultyLedger, type ChargeFault } from './faulty-ledger.js';
import { realtimeInvoice, sum, usage, usdToNano } from './invoice.js';
import { respond } from './session-bill.js';

const noPostgres = await probePostgres();
if (noPostgres && !POSTGRES_REQUIRED) console.warn(`skipping the PostgreSQL ledger in the prior-art tests: ${noPostgres}`);
const LEDGERS = noPostgres && !POSTGRES_REQUIRED ? ['sqlite'] : ['sqlite', 'postgres'];

/** The default response reserve (RELAY_RESPONSE_RESERVE_USD). */
const RESERVE = usdToNano('0.01');

describe.each(LEDGERS)('through the relay (%s ledger)', (ledger) => {
  const schemas: ScratchSchema[] = [];
  const stacks: LedgerTestRelay[] = [];
  /** A relay of its own, on a ledger of its own. */
  async function openStack(): Promise<LedgerTestRelay> {
    const schema = ledger === 'postgres' ? await createScratchSchema() : undefined;
    if (schema) schemas.push(schema);
    const opened = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, postgres: schema });
    stacks.push(opened);
    return opened;
  }

  let stack: LedgerTestRelay;
  beforeAll(async () => {
    stack = await openStack();
  });
  afterEach(async () => {
    for (const opened of stacks) await opened.disconnectAll();
  });
  afterAll(async () => {
    for (const opened of stacks.splice(0)) await opened.close();
    for (const schema of schemas.splice(0)) await schema.drop();
  });

  describe('1 · double billing', () => {
    it('a session costs exactly the sum of its responses, once: the settlement never debits again', async () => {
      const { key, record } = await stack.createKey();
      const client = stack.connect({ key });
      await client.next('session.created');
      const usages = [usage({ text: [500, 100], out: [200, 0] }), usage({ text: [20, 0], audio: [300, 0], out: [10, 400] }), usage({ image: [100, 0], out: [5, 0] })];
      for (const u of usages) await respond(client, u);
      const charged = sum(usages.map((u) => realtimeInvoice('gpt-realtime', u)));

      // Before the settlement: each response.done has already been paid for, once.
      const during = await stack.view.book(record.id);
      expect(during.balanceNano).toBe(record.balanceNano - charged);
      expect(during.settlements).toEqual([]);

      client.close();
      await stack.idle();
      const after = await stack.view.book(record.id);
      expect(after.charges).toHaveLength(3);
      expect(after.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: charged, chargeCount: 3 })]);
      expect(after.balanceNano).toBe(record.balanceNano - charged);
    });
  });

  describe('2 · unrefunded pre-charge', () => {
    it('a session with no responses costs nothing and never holds money back', async () => {
      const { key, record } = await stack.createKey();
      const client = stack.connect({ key });
      await client.next('session.created');
      const during = await stack.view.book(record.id);
      expect(during.balanceNano).toBe(record.balanceNano);
      expect(during.sessions).toEqual([expect.objectContaining({ status: 'open', spendNano: 0n })]);

      client.close();
      await stack.idle();
      const after = await stack.view.book(record.id);
      expect(after.charges).toEqual([]);
      expect(after.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: 0n, chargeCount: 0 })]);
      expect(after.balanceNano).toBe(record.balanceNano);
    });
  });

  describe('3 · cached, image and detail-less usage', () => {
    async function billOne(u: unknown): Promise<bigint> {
      const { key, record } = await stack.createKey();
      const client = stack.connect({ key });
      await client.next('session.created');
      await respond(client, u);
      client.close();
      await stack.idle();
      const book = await stack.view.book(record.id);
      expect(book.charges).toHaveLength(1);
      expect(book.balanceNano).toBe(record.balanceNano - book.charges[0]!.costNano);
      return book.charges[0]!.costNano;
    }

    it('bills cached tokens at the cached rate of their modality', async () => {
      const cached = usage({ text: [1_000, 1_000], audio: [1_000, 1_000], image: [1_000, 1_000] });
      // 1000 × 0.40 + 1000 × 0.40 + 1000 × 0.50 per 1M, where full price would be 41 000 000.
      expect(realtimeInvoice('gpt-realtime', cached)).toBe(1_300_000n);
      expect(await billOne(cached)).toBe(1_300_000n);
    });

    it('bills image tokens, cached and uncached', async () => {
      const images = usage({ image: [1_000, 200] });
      expect(await billOne(images)).toBe(realtimeInvoice('gpt-realtime', images));
      expect(realtimeInvoice('gpt-realtime', images)).toBe(4_100_000n);
    });

    it('bills reasoning tokens as text output', async () => {
      const reasoning = { total_tokens: 400, input_tokens: 100, output_tokens: 300, input_token_details: { text_tokens: 100, audio_tokens: 0, image_tokens: 0, cached_tokens: 0 }, output_token_details: { text_tokens: 100, audio_tokens: 0, reasoning_tokens: 200 } };
      // 100 × 4 + 300 × 16 per 1M.
      expect(await billOne(reasoning)).toBe(realtimeInvoice('gpt-realtime', usage({ text: [100, 0], out: [300, 0] })));
    });

    it('bills a usage with totals but no per-modality details in full at the dearest rates, never as 1 unit or 0', async () => {
      const bare = { total_tokens: 1_500, input_tokens: 1_000, output_tokens: 500 };
      const cost = await billOne(bare);
      // The conservative rule: unexplained input at the highest input rate (audio, 32), unexplained output at the highest output rate (audio, 64).
      expect(cost).toBe(realtimeInvoice('gpt-realtime', usage({ audio: [1_000, 0], out: [0, 500] })));
      expect(cost).toBe(64_000_000n);
      // No reading of these totals costs more: all text would be 12 000 000.
      expect(cost).toBeGreaterThanOrEqual(realtimeInvoice('gpt-realtime', usage({ text: [1_000, 0], out: [500, 0] })));
    });
  });

  describe('5 · quota exhaustion mid-session', () => {
    it('a response that overdraws the key is recorded in full, delivered, then the session ends with insufficient_quota (1008)', async () => {
      const { key, record } = await stack.createKey({ balanceNano: RESERVE });
      const client = stack.connect({ key });
      await client.next('session.created');
      const u = usage({ text: [100, 0], out: [0, 500] });
      const cost = realtimeInvoice('gpt-realtime', u);
      expect(cost).toBeGreaterThan(RESERVE);
      await respond(client, u);
      const error = await client.next('error');
      expect(error.error).toMatchObject({ code: 'insufficient_quota', type: 'insufficient_quota' });
      expect(await client.closedWith()).toMatchObject({ code: 1008 });
      const types = client.events.map((e) => e.type);
      expect(types.indexOf('response.done')).toBeLessThan(types.indexOf('error'));
      await stack.idle();

      const book = await stack.view.book(record.id);
      expect(book.charges.map((c) => c.costNano)).toEqual([cost]);
      expect(book.balanceNano).toBe(RESERVE - cost);
      expect(book.balanceNano).toBeLessThan(0n);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: cost, endReason: 'cancelled:insufficient_quota' })]);
    });

    it('a response.create the balance cannot cover never reaches the upstream; the session stays open', async () => {
      // A simulator of its own: it numbers the responses it creates resp_1, resp_2, …
      const own = await openStack();
      const { key, record } = await own.createKey({ balanceNano: RESERVE - 1n });
      const client = own.connect({ key });
      await client.next('session.created');
      client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      const error = await client.next('error');
      expect(error.error).toMatchObject({ code: 'insufficient_quota' });
      expect(client.count('response.created')).toBe(0);

      await own.ledger.topUp(record.id, usdToNano('1'));
      const u = usage({ text: [10, 0], out: [10, 0] });
      const done = await respond(client, u);
      // The first response the upstream ever created: the refused one was never sent.
      expect(done.response.id).toBe('resp_1');
      expect(client.closed).toBeNull();
      client.close();
      await own.idle();
      const book = await own.view.book(record.id);
      expect(book.charges.map((c) => c.itemId)).toEqual(['resp_1']);
      expect(book.balanceNano).toBe(RESERVE - 1n + usdToNano('1') - realtimeInvoice('gpt-realtime', u));
    });

    it('a key with no balance is refused before the upgrade with HTTP 429 insufficient_quota', async () => {
      const { key, record } = await stack.createKey({ balanceNano: 0n });
      const client = stack.connect({ key });
      await client.closedWith();
      expect(client.unexpected?.status).toBe(429);
      expect(JSON.parse(client.unexpected!.body)).toMatchObject({ error: { code: 'insufficient_quota', type: 'insufficient_quota' } });
      expect((await stack.view.book(record.id)).sessions).toEqual([]);
    });
  });
});

describe('4 · a failed charge added twice', () => {
  let rig: LedgerTestRelay | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it.each<ChargeFault>(['before_write', 'after_write'])('a charge whose write failed (%s) is in the ledger exactly once', async (where) => {
    let faulty!: FaultyLedger;
    rig = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, wrapLedger: (ledger) => (faulty = new FaultyLedger(ledger)) });
    const { key, record } = await rig.createKey();
    const client = rig.connect({ key });
    await client.next('session.created');
    const u = usage({ text: [100, 0], out: [50, 70] });
    faulty.failNextCharge(where);
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
    const responseId = ((await client.next('response.created')).response as { id: string }).id;

    // Fails closed: the response is not handed over unpaid.
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'billing_unavailable' });
    expect(await client.closedWith()).toMatchObject({ code: 1011 });
    expect(client.count('response.done')).toBe(0);
    await rig.idle();

    const cost = realtimeInvoice('gpt-realtime', u);
    const book = await rig.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[responseId, cost]]);
    expect(faulty.appliedWrites(responseId)).toBe(1);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: cost, chargeCount: 1, endReason: 'error:billing_unavailable' })]);
    expect(book.sessions[0]!.spendNano).toBe(cost);
    expect(book.balanceNano).toBe(record.balanceNano - cost);
    expect(rig.billing.backlog.size).toBe(0);
  });
});
