/**
 * Many sessions of one key ask for a response at the same moment. Each
 * admitted response holds RELAY_RESPONSE_HOLD_USD (by default the reserve,
 * 0.01 USD) of the key's balance until it is charged, so a key with 0.011 USD
 * runs one response at a time, however many sessions it has and however many
 * relays share its ledger; the others are refused with `insufficient_quota`.
 * The key then overspends by at most that one response's cost beyond its hold.
 *
 * The two-relay case needs PostgreSQL: skipped, with the reason printed, when
 * none answers, unless REQUIRE_POSTGRES=1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator } from '../../src/simulator/index.js';
import { postgresView, startBillingStack, type KeyBook } from '../helpers/billing-stack.js';
import { TestClient, type ReceivedEvent } from '../helpers/client.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres } from '../helpers/postgres.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { realtimeInvoice, usage, usdToNano } from './invoice.js';

const postgresAbsent = await probePostgres();
if (postgresAbsent && !POSTGRES_REQUIRED) console.warn(`skipping the two-relay hold test: ${postgresAbsent}`);

const SESSIONS = 30;
const BALANCE = usdToNano('0.011');
/** The default hold: RELAY_RESPONSE_RESERVE_USD. */
const HOLD = usdToNano('0.01');
/** 0.02 USD: more than the hold, so the overspend bound is not trivially met. */
const PER_RESPONSE = usage({ text: [1000, 0], out: [1000, 0] });
const COST = realtimeInvoice('gpt-realtime', PER_RESPONSE);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Every session sends one `response.create` in the same tick; resolves with what each was answered first. */
async function askAllAtOnce(clients: TestClient[]): Promise<ReceivedEvent[]> {
  await Promise.all(clients.map((client) => client.next('session.created', 10_000)));
  const marks = clients.map((client) => client.events.length);
  for (const client of clients) {
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(PER_RESPONSE) } } });
  }
  return Promise.all(
    clients.map(async (client, i) => {
      const answer = () => client.events.slice(marks[i]).find((e) => e.type === 'response.created' || e.type === 'error');
      await client.until(() => answer() !== undefined, 'a response.created or an error', 15_000);
      return answer()!;
    }),
  );
}

function expectOneResponseAtATime(answers: ReceivedEvent[], clients: TestClient[]): void {
  const admitted = answers.filter((answer) => answer.type === 'response.created');
  const refused = answers.filter((answer) => answer.type === 'error').map((answer) => (answer.error as { code: string }).code);
  expect(admitted).toHaveLength(1);
  expect(refused).toEqual(Array.from({ length: clients.length - 1 }, () => 'insufficient_quota'));
}

/** All ask at once; exactly one runs, to its `response.done`, and its charge takes the balance below zero: that client is told and its session ends. */
async function runOneResponse(clients: TestClient[]): Promise<void> {
  const answers = await askAllAtOnce(clients);
  expectOneResponseAtATime(answers, clients);
  const runner = clients[answers.findIndex((answer) => answer.type === 'response.created')]!;
  await runner.next('response.done', 10_000);
  expect((await runner.closedWith(10_000)).code).toBe(1008);
}

function expectBoundedOverspend(book: KeyBook): void {
  expect(book.charges.map((charge) => charge.costNano)).toEqual([COST]);
  expect(book.balanceNano).toBe(BALANCE - COST);
  // The bound: one response in flight, overspending by its cost beyond its hold.
  expect(book.balanceNano).toBeGreaterThanOrEqual(-(COST - HOLD));
}

describe('holds on a key shared by many sessions', () => {
  it('runs one response at a time for a key with 0.011 USD and 30 sessions asking at once; the others get insufficient_quota', async () => {
    const stack = await startBillingStack({ simulator: { chunkIntervalMs: 5, textDeltas: 10 } });
    cleanups.push(() => stack.close());
    const { key, record } = await stack.createKey({ balanceNano: BALANCE });
    const clients = Array.from({ length: SESSIONS }, () => stack.connect(key));

    await runOneResponse(clients);

    for (const client of clients) client.close();
    await stack.idle();
    expectBoundedOverspend(await stack.view.book(record.id));
    // Every hold went back: the charge released one, the settlements the rest.
    expect((await stack.ledger.getKey(record.id))!.heldNano).toBe(0n);
  }, 60_000);

  it('refuses a new session with 429 insufficient_quota while responses in flight hold all of the balance', async () => {
    const stack = await startBillingStack({ settings: { responseHoldUsd: '0.011' } });
    cleanups.push(() => stack.close());
    const { key, record } = await stack.createKey({ balanceNano: BALANCE });
    const first = stack.connect(key);
    await first.next('session.created');
    // The response stays in flight, and its hold with it.
    first.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    first.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await first.next('response.created');
    expect(await stack.ledger.getKey(record.id)).toMatchObject({ balanceNano: BALANCE, heldNano: BALANCE });

    const second = stack.connect(key);
    await second.closedWith();
    expect(second.unexpected?.status).toBe(429);
    expect(JSON.parse(second.unexpected!.body).error.code).toBe('insufficient_quota');

    // The session ends: the cancelled response's charge (or, had none come, the settlement) gives the hold back.
    first.close();
    await stack.idle();
    expect(await stack.ledger.getKey(record.id)).toMatchObject({ heldNano: 0n });
    const third = stack.connect(key);
    await third.next('session.created');
  }, 30_000);

  describe.skipIf(postgresAbsent !== null && !POSTGRES_REQUIRED)('two relays on one PostgreSQL', () => {
    it('runs one response at a time for a key with 0.011 USD and 30 sessions across two relays asking at once', async () => {
      const schema = await createScratchSchema();
      cleanups.push(() => schema.drop());
      const sim = await startSimulator({ chunkIntervalMs: 5, textDeltas: 10 });
      cleanups.push(() => sim.close());
      const env = { OPENAI_API_KEY: 'x', OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`, DATABASE_URL: schema.url, RELAY_DEMO_BALANCE_USD: '0' };
      const relays: RelayProcess[] = [];
      const clients: TestClient[] = [];
      cleanups.push(async () => {
        for (const client of clients) client.socket.terminate();
        for (const relay of relays) await relay.kill();
      });
      // One at a time: both run the ledger's migrations.
      for (const prefix of ['relay-holds-a-', 'relay-holds-b-']) {
        const data = tempDataDir(prefix);
        cleanups.push(() => data.remove());
        relays.push(await spawnRelay({ dataDir: data.path, env }));
      }
      const ledger = await openLedger({ databaseUrl: schema.url });
      cleanups.push(() => ledger.close());
      const { key, record } = await ledger.createKey({ name: 'shared', balanceNano: BALANCE });
      for (let i = 0; i < SESSIONS; i++) clients.push(TestClient.connect(relays[i % 2]!.realtimeUrl(), { key }));

      await runOneResponse(clients);

      for (const client of clients) client.close();
      await Promise.all(clients.map((client) => client.closedWith(10_000)));
      // A graceful stop settles every session before the process exits.
      for (const relay of relays) relay.signal('SIGTERM');
      for (const relay of relays) expect(await relay.exited(15_000)).toMatchObject({ code: 0 });

      expectBoundedOverspend(await postgresView(schema).book(record.id));
      expect((await ledger.getKey(record.id))!.heldNano).toBe(0n);
      expect(await schema.query('SELECT 1 FROM holds')).toEqual([]);
    }, 90_000);
  });
});
