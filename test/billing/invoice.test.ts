/**
 * A session through the real relay and the upstream simulator leaves the
 * ledger holding exactly what the provider's invoice says: every charge, the
 * settlement total and the key's balance are compared with a computation
 * from the published price table (test/billing/invoice.ts), never with the
 * relay's own pricing code.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { REALTIME_PRICES, realtimeInvoice, sum, transcriptionInvoice, usage, type RealtimeUsage } from './invoice.js';
import { respond, transcribe, useTranscriptionModel } from './session-bill.js';
import { REALTIME_MODEL_FAMILIES } from '../helpers/models.js';

const noPostgres = await probePostgres();
if (noPostgres && !POSTGRES_REQUIRED) console.warn(`skipping the PostgreSQL ledger in the invoice tests: ${noPostgres}`);
const LEDGERS = noPostgres && !POSTGRES_REQUIRED ? ['sqlite'] : ['sqlite', 'postgres'];

/** Cached tokens with per-modality details, audio both ways, images where the family prices them, and nothing at all. */
function usagesFor(family: string): RealtimeUsage[] {
  const images = REALTIME_PRICES[family]!.image !== null;
  return [
    usage({ text: [1_200, 1_024], out: [350, 0] }),
    usage({ text: [41, 0], audio: [2_003, 512], out: [67, 1_801] }),
    usage({ text: [300, 128], audio: [500, 256], image: images ? [765, 64] : [0, 0], out: [101, 203] }),
    usage({ text: [7, 7], audio: [9, 9], image: images ? [3, 3] : [0, 0], out: [1, 1] }),
    usage({}),
  ];
}

describe.each(LEDGERS)('a session is billed exactly the provider invoice (%s ledger)', (ledger) => {
  let stack: LedgerTestRelay;
  let schema: ScratchSchema | undefined;
  beforeAll(async () => {
    schema = ledger === 'postgres' ? await createScratchSchema() : undefined;
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, postgres: schema });
  });
  afterEach(async () => {
    await stack?.disconnectAll();
  });
  afterAll(async () => {
    await stack?.close();
    await schema?.drop();
  });

  it.each(REALTIME_MODEL_FAMILIES)('%s: charges, settlement and balance match the published %s prices', async (model, family) => {
    const { key, record } = await stack.createKey();
    const client = stack.connect({ key, model: model });
    await client.next('session.created');
    const usages = usagesFor(family);
    const ids: string[] = [];
    for (const u of usages) ids.push((await respond(client, u)).response.id);
    client.close();
    await stack.idle();

    const expected = usages.map((u) => realtimeInvoice(family, u));
    const total = sum(expected);
    expect(total).toBeGreaterThan(0n);
    const book = await stack.view.book(record.id);
    expect(book.sessions).toHaveLength(1);
    const session = book.sessions[0]!;
    expect(book.charges.map((c) => [c.kind, c.itemId, c.costNano])).toEqual(ids.map((id, i) => ['response', id, expected[i]]));
    expect(book.settlements).toEqual([expect.objectContaining({ sessionId: session.id, status: 'settled', totalNano: total, chargeCount: usages.length })]);
    expect(session).toMatchObject({ status: 'settled', spendNano: total });
    expect(book.balanceNano).toBe(record.balanceNano - total);
    // The settlement's own record of the session shows the same amounts, response by response.
    expect((book.settlements[0]!.summary.usage as Array<{ id: string; costNano: string }>).map((r) => [r.id, r.costNano])).toEqual(ids.map((id, i) => [id, String(expected[i])]));
  });

  it('bills input transcription by tokens (gpt-4o-transcribe, gpt-4o-mini-transcribe) and by seconds (whisper-1)', async () => {
    const { key, record } = await stack.createKey();
    const client = stack.connect({ key, model: 'gpt-realtime' });
    await client.next('session.created');
    const expected = new Map<string, bigint>();
    // 2.5 s, 0.7 s and 4.1 s of 24 kHz PCM16.
    for (const [model, bytes] of [['gpt-4o-transcribe', 120_000], ['gpt-4o-mini-transcribe', 33_600], ['whisper-1', 196_800]] as const) {
      await useTranscriptionModel(client, model);
      const { itemId, usage: reported } = await transcribe(client, bytes);
      expect(reported.type).toBe(model === 'whisper-1' ? 'duration' : 'tokens');
      expected.set(itemId, transcriptionInvoice(model, reported));
    }
    const answer = usage({ text: [20, 0], audio: [57, 0], out: [11, 40] });
    const done = await respond(client, answer);
    expected.set(done.response.id, realtimeInvoice('gpt-realtime', answer));
    client.close();
    await stack.idle();

    const book = await stack.view.book(record.id);
    expect(new Map(book.charges.map((c) => [c.itemId, c.costNano]))).toEqual(expected);
    expect(book.charges.map((c) => c.kind)).toEqual(['transcription', 'transcription', 'transcription', 'response']);
    const total = sum(expected.values());
    // 25 audio tokens × 6.00 + 3 text out × 10.00; 7 × 3.00 + 3 × 5.00; 5 s × 0.0001.
    expect([...expected.values()].slice(0, 3)).toEqual([180_000n, 36_000n, 500_000n]);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: total, chargeCount: 4 })]);
    expect(book.balanceNano).toBe(record.balanceNano - total);
  });
});
