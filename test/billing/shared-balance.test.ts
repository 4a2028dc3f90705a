/**
 * Two relay processes on one PostgreSQL ledger, six concurrent sessions on
 * one key. The balance check before each response is a fresh read, and each
 * charge an atomic debit, so the key never spends more than its balance plus
 * the responses already in flight when it ran out: at most one per live
 * session (the upstream runs one response at a time per session).
 *
 * Skipped, with the reason printed, when no PostgreSQL answers, unless
 * REQUIRE_POSTGRES=1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator } from '../../src/simulator/index.js';
import { postgresView } from '../helpers/ledger.js';
import { TestClient } from '../helpers/client.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres } from '../helpers/postgres.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { realtimeInvoice, sum, usage, usdToNano } from './invoice.js';

const unavailable = await probePostgres();
if (unavailable && !POSTGRES_REQUIRED) console.warn(`skipping the multi-instance billing test: ${unavailable}`);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Asks for responses until the relay refuses one or ends the session; returns the refusals' codes. */
async function spendUntilRefused(client: TestClient, simUsage: unknown): Promise<string[]> {
  const refusals: string[] = [];
  await client.next('session.created');
  while (client.closed === null) {
    const after = client.events.length;
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(simUsage) } } });
    const answered = () => client.events.slice(after).find((e) => e.type === 'response.done' || e.type === 'error');
    await client.until(() => client.closed !== null || answered() !== undefined, 'a response.done, an error or a close', 10_000);
    const answer = answered();
    if (answer?.type === 'error') {
      refusals.push((answer.error as { code: string }).code);
      break;
    }
  }
  return refusals;
}

describe.skipIf(unavailable !== null && !POSTGRES_REQUIRED)('many instances, one balance', () => {
  it('never lets one key spend more than its balance plus one response per live session, across two relays', async () => {
    const schema = await createScratchSchema();
    cleanups.push(() => schema.drop());
    const sim = await startSimulator({ chunkIntervalMs: 2, textDeltas: 3 });
    cleanups.push(() => sim.close());
    const env = {
      OPENAI_API_KEY: 'x',
      OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`,
      DATABASE_URL: schema.url,
      RELAY_DEMO_BALANCE_USD: '0',
      // A reserve of one micro-dollar: the balance check alone decides, so the overdraft bound is what is tested.
      RELAY_RESPONSE_RESERVE_USD: '0.000001',
    };
    const relays: RelayProcess[] = [];
    const clients: TestClient[] = [];
    cleanups.push(async () => {
      for (const client of clients) client.socket.terminate();
      for (const relay of relays) await relay.kill();
    });
    const start = async () => {
      const data = tempDataDir('relay-shared-');
      cleanups.push(() => data.remove());
      const relay = await spawnRelay({ dataDir: data.path, env });
      relays.push(relay);
      return relay;
    };

    const perResponse = usage({ text: [100, 0], out: [0, 100] });
    const cost = realtimeInvoice('gpt-realtime', perResponse);
    const initial = 20n * cost + 12_345n;
    const first = await start();
    const ledger = await openLedger({ databaseUrl: schema.url });
    const { key, record } = await ledger.createKey({ name: 'shared', balanceNano: initial });
    await ledger.close();
    const connect = (relay: RelayProcess) => {
      const client = TestClient.connect(relay.realtimeUrl(), { key });
      clients.push(client);
      return client;
    };

    // Sessions on the first relay are live when the second one starts (and runs its recovery).
    const early = [connect(first), connect(first), connect(first)];
    await Promise.all(early.map((client) => client.next('session.created')));
    const second = await start();
    const late = [connect(second), connect(second), connect(second)];
    const sessions = [...early, ...late];
    const refusals = (await Promise.all(sessions.map((client) => spendUntilRefused(client, perResponse)))).flat();
    expect(new Set(refusals)).toEqual(new Set(refusals.length > 0 ? ['insufficient_quota'] : []));
    for (const client of sessions) client.close();
    await Promise.all(sessions.map((client) => client.closedWith()));
    // A graceful stop drains and settles every session before the process exits.
    for (const relay of relays) relay.signal('SIGTERM');
    for (const relay of relays) expect(await relay.exited(15_000)).toMatchObject({ code: 0 });

    const book = await postgresView(schema).book(record.id);
    const spent = sum(book.charges.map((charge) => charge.costNano));
    expect(book.charges.every((charge) => charge.costNano === cost)).toBe(true);
    expect(new Set(book.charges.map((charge) => `${charge.sessionId}/${charge.itemId}`)).size).toBe(book.charges.length);
    // Every debit landed: no update was lost between the two processes.
    expect(book.balanceNano).toBe(initial - spent);
    // The key ran out...
    expect(book.balanceNano).toBeLessThan(usdToNano('0.000001'));
    // ...and overspent by at most one response per session that was live when it did.
    expect(spent).toBeLessThanOrEqual(initial + BigInt(sessions.length) * cost);
    // Each session was settled once, by its own relay, with its charges: the second relay's start recovered nothing live.
    expect(book.sessions).toHaveLength(6);
    for (const session of book.sessions) {
      const charges = book.charges.filter((charge) => charge.sessionId === session.id);
      expect(book.settlements.find((t) => t.sessionId === session.id)).toMatchObject({ status: 'settled', chargeCount: charges.length, totalNano: sum(charges.map((c) => c.costNano)) });
    }
    expect(new Set(book.sessions.map((s) => s.instanceId)).size).toBe(2);
  }, 60_000);
});
