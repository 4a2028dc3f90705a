/**
 * Billing on the paths besides the happy one: a per-session spend cap, a
 * resale multiplier, a client that leaves mid-response, and a ledger that
 * stops answering. Real relay, real ledger, the upstream simulator.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import type { TestClient } from '../helpers/client.js';
import { FaultyLedger } from './faulty-ledger.js';
import { realtimeInvoice, sum, transcriptionInvoice, usage, usdToNano, withMultiplier } from './invoice.js';
import { respond, transcribe, useTranscriptionModel } from './session-bill.js';

describe('spend cap and multiplier', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 } });
  });
  afterEach(async () => {
    await stack?.disconnectAll();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('ends a session whose charges reach its spend cap with session_spend_cap_exceeded (1008), after delivering the response', async () => {
    const cap = usdToNano('0.02');
    const { key, record } = await stack.createKey({ spendCapNano: cap });
    const client = stack.connect({ key });
    await client.next('session.created');
    const u = usage({ out: [0, 200] }); // 200 × 64 per 1M = 0.0128 USD
    const cost = realtimeInvoice('gpt-realtime', u);
    await respond(client, u);
    expect(client.count('error')).toBe(0);
    await respond(client, u);
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'session_spend_cap_exceeded', type: 'insufficient_quota' });
    expect(await client.closedWith()).toMatchObject({ code: 1008 });
    const types = client.events.map((e) => e.type);
    expect(types.lastIndexOf('response.done')).toBeLessThan(types.indexOf('error'));
    await stack.idle();

    const book = await stack.view.book(record.id);
    // The response that crossed the cap is billed in full, as the upstream billed it.
    expect(book.charges.map((c) => c.costNano)).toEqual([cost, cost]);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 2n * cost, endReason: 'cancelled:spend_cap' })]);
    expect(book.balanceNano).toBe(record.balanceNano - 2n * cost);

    // The cap is per session: the key itself still works.
    const next = stack.connect({ key });
    await next.next('session.created');
    next.close();
    await stack.idle();
  });

  it('bills a resale multiplier exactly, rounding each charge up to the next nano-USD', async () => {
    const multiplierPpm = 1_250_001n;
    const { key, record } = await stack.createKey({ priceMultiplierPpm: Number(multiplierPpm) });
    const client = stack.connect({ key });
    await client.next('session.created');
    const seven = usage({ text: [7, 0] }); // 28 000 nano-USD × 1.250001 = 35 000.028
    const two = usage({ text: [1, 0], out: [1, 0] }); // 20 000 × 1.250001 = 25 000.02
    const ids = [(await respond(client, seven)).response.id, (await respond(client, two)).response.id];
    await useTranscriptionModel(client, 'whisper-1');
    const transcription = await transcribe(client, 48_000); // 1 s: 100 000 × 1.250001 = 125 000.1
    client.close();
    await stack.idle();

    const expected = [
      withMultiplier(realtimeInvoice('gpt-realtime', seven), multiplierPpm),
      withMultiplier(realtimeInvoice('gpt-realtime', two), multiplierPpm),
      transcriptionInvoice('whisper-1', transcription.usage, multiplierPpm),
    ];
    expect(expected).toEqual([35_001n, 25_001n, 125_001n]);
    const book = await stack.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([
      [ids[0], expected[0]],
      [ids[1], expected[1]],
      [transcription.itemId, expected[2]],
    ]);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: sum(expected) })]);
    expect(book.balanceNano).toBe(record.balanceNano - sum(expected));
  });
});

describe('tail billing', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    // Slow enough that the client leaves while the response is still streaming.
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 20, textDeltas: 500 } });
  });
  afterEach(async () => {
    await stack?.disconnectAll();
  });
  afterAll(async () => {
    await stack?.close();
  });

  const leave: Record<string, (client: TestClient) => void> = {
    'closes cleanly': (client) => client.close(),
    'drops the connection': (client) => client.socket.terminate(),
  };

  it.each(Object.keys(leave))('bills the cancelled tail once when the client %s mid-response', async (how) => {
    const { key, record } = await stack.createKey();
    const client = stack.connect({ key });
    await client.next('session.created');
    const tail = usage({ text: [120, 64], audio: [30, 0], out: [37, 0] });
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(tail) } } });
    const responseId = ((await client.next('response.created')).response as { id: string }).id;
    await client.next('response.output_text.delta');
    leave[how]!(client);
    await stack.idle();

    const cost = realtimeInvoice('gpt-realtime', tail);
    const book = await stack.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[responseId, cost]]);
    expect((book.charges[0]!.usage as { output_tokens: number }).output_tokens).toBe(37);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: cost, chargeCount: 1, endReason: 'client_closed' })]);
    expect(book.settlements[0]!.summary).toMatchObject({ drain: 'response_done' });
    expect(book.balanceNano).toBe(record.balanceNano - cost);
  });
});

describe('fail closed', () => {
  let rig: LedgerTestRelay | undefined;
  const folders: string[] = [];
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
  });

  /** A session whose response.done arrives while the ledger is down. */
  async function responseWhileLedgerDown(target: LedgerTestRelay, faulty: FaultyLedger) {
    const { key, record } = await target.createKey();
    const client = target.connect({ key });
    await client.next('session.created');
    const u = usage({ text: [250, 50], out: [80, 120] });
    faulty.down = true;
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
    const responseId = ((await client.next('response.created')).response as { id: string }).id;
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'billing_unavailable', type: 'server_error' });
    expect(await client.closedWith()).toMatchObject({ code: 1011 });
    // The response is not handed over while it cannot be billed.
    expect(client.count('response.done')).toBe(0);
    await target.idle();
    return { record, responseId, cost: realtimeInvoice('gpt-realtime', u) };
  }

  it('closes with billing_unavailable (1011) when a charge cannot be written, and the backlog writes it once when the ledger is back', async () => {
    let faulty!: FaultyLedger;
    rig = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, wrapLedger: (ledger) => (faulty = new FaultyLedger(ledger)) });
    const { record, responseId, cost } = await responseWhileLedgerDown(rig, faulty);

    // Nothing written yet, nothing lost: the charge and the settlement wait in the backlog.
    expect(rig.billing.backlog.size).toBe(2);
    const down = await rig.view.book(record.id);
    expect(down.charges).toEqual([]);
    expect(down.sessions).toEqual([expect.objectContaining({ status: 'open' })]);
    expect(down.balanceNano).toBe(record.balanceNano);

    faulty.down = false;
    await rig.billing.backlog.flush();
    await rig.billing.backlog.flush();
    expect(rig.billing.backlog.size).toBe(0);
    const up = await rig.view.book(record.id);
    expect(up.charges.map((c) => [c.itemId, c.costNano])).toEqual([[responseId, cost]]);
    expect(faulty.appliedWrites(responseId)).toBe(1);
    expect(up.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: cost, chargeCount: 1, endReason: 'error:billing_unavailable' })]);
    expect(up.balanceNano).toBe(record.balanceNano - cost);
  });

  it('keeps an unwritten charge across a restart and writes it once on the next start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'relay-spool-'));
    folders.push(dataDir);
    let faulty!: FaultyLedger;
    const first = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, dataDir, wrapLedger: (ledger) => (faulty = new FaultyLedger(ledger)) });
    rig = first;
    const { record, responseId, cost } = await responseWhileLedgerDown(first, faulty);
    // Stopping while the ledger is still down spools the pending writes.
    await first.close();

    rig = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, dataDir });
    expect(rig.recovered.replayed).toBe(2);
    const book = await rig.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[responseId, cost]]);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: cost, chargeCount: 1 })]);
    expect(book.balanceNano).toBe(record.balanceNano - cost);
  });
});
