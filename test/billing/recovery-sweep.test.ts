import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openLedger, type KeyRecord, type Ledger } from '../../src/billing/ledger/index.js';
import { builtInPrices } from '../../src/billing/prices.js';
import { Billing } from '../../src/billing/service.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The recovery sweep on a shared PostgreSQL ledger: a live instance settles
 * the sessions a dead instance left open, once, without waiting for the dead
 * one's restart, and never touches its own.
 */

const postgresProblem = await probePostgres();
const AVAILABLE = postgresProblem === null || POSTGRES_REQUIRED;
if (!AVAILABLE) console.warn(`Skipping the recovery sweep tests: ${postgresProblem}.`);

let schema: ScratchSchema | undefined;
let stack: LedgerTestRelay | undefined;
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await stack?.close();
  await schema?.drop();
  stack = undefined;
  schema = undefined;
});

function sessionId(): string {
  return `sess_${randomBytes(16).toString('hex')}`;
}

async function ledgerOn(scratch: ScratchSchema): Promise<Ledger> {
  const ledger = await openLedger({ databaseUrl: scratch.url });
  closers.push(() => ledger.close());
  return ledger;
}

/** An open session of `instanceId` with one charge written, as a process leaves it when it dies. */
async function openWithCharge(ledger: Ledger, key: KeyRecord, instanceId: string, costNano: bigint): Promise<string> {
  const id = sessionId();
  await ledger.openSession({ id, keyId: key.id, model: 'gpt-realtime', upstream: 'simulator', instanceId, startedAt: new Date() });
  await ledger.recordCharge({ sessionId: id, keyId: key.id, kind: 'response', itemId: 'resp_1', model: 'gpt-realtime', costNano, usage: {} });
  return id;
}

async function stopHeartbeat(scratch: ScratchSchema, instanceId: string): Promise<void> {
  await scratch.query(`UPDATE instances SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, [instanceId]);
}

function billingFor(ledger: Ledger, instanceId: string): Billing {
  return new Billing({ ledger, prices: builtInPrices, instanceId, reserveNano: 0n, spoolPath: null, staleAfterMs: 30_000, heartbeatMs: 60_000 });
}

describe.runIf(AVAILABLE)('the recovery sweep on PostgreSQL', () => {
  it("settles a dead instance's open sessions while the relay runs, once, and leaves the relay's own live session open", async () => {
    schema = await createScratchSchema();
    stack = await startTestRelay({ postgres: schema, settings: { recoverySweepMs: 100, logLevel: 'warn' } });
    const outside = await ledgerOn(schema);
    const key = (await outside.createKey({ name: `sweep ${randomBytes(3).toString('hex')}`, balanceNano: 5_000_000_000n })).record;
    const orphan = await openWithCharge(outside, key, 'relay-dead', 1_234_567n);
    await stopHeartbeat(schema, 'relay-dead');

    // The relay's own session, with its heartbeat made to look stale too: still never swept.
    const client = stack.connect();
    await client.next('session.created');
    const [own] = await schema.query<{ id: string; instance_id: string }>(`SELECT id, instance_id FROM sessions WHERE status = 'open' AND instance_id <> 'relay-dead'`);
    await stopHeartbeat(schema, own!.instance_id);

    await vi.waitFor(async () => {
      const [row] = await schema!.query<{ status: string }>('SELECT status FROM sessions WHERE id = $1', [orphan]);
      expect(row!.status).toBe('recovered');
    }, { timeout: 5_000, interval: 50 });
    // Several more sweeps pass over it.
    await new Promise((resolve) => setTimeout(resolve, 400));

    const settlements = await schema.query<{ session_id: string; status: string; total_nano: bigint; charge_count: number; end_reason: string; summary_json: string }>('SELECT * FROM settlements');
    expect(settlements).toHaveLength(1);
    expect(settlements[0]).toMatchObject({ session_id: orphan, status: 'recovered', total_nano: 1_234_567n, charge_count: 1, end_reason: 'instance_stale' });
    expect(JSON.parse(settlements[0]!.summary_json)).toMatchObject({ instanceId: 'relay-dead', recoveredBy: own!.instance_id });
    const [balance] = await schema.query<{ balance_nano: bigint; held_nano: bigint }>('SELECT balance_nano, held_nano FROM keys WHERE id = $1', [key.id]);
    expect(balance).toEqual({ balance_nano: 5_000_000_000n - 1_234_567n, held_nano: 0n });

    const [ownRow] = await schema.query<{ status: string }>('SELECT status FROM sessions WHERE id = $1', [own!.id]);
    expect(ownRow!.status).toBe('open');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    expect(stack.logs.some((line) => line.msg === 'settled open sessions of an instance whose heartbeat stopped')).toBe(true);
  });

  it('settles each stale session once when three instances sweep at the same moment', async () => {
    schema = await createScratchSchema();
    const seed = await ledgerOn(schema);
    const key = (await seed.createKey({ name: `race ${randomBytes(3).toString('hex')}`, balanceNano: 5_000_000_000n })).record;
    const orphans: string[] = [];
    for (let i = 0; i < 24; i++) orphans.push(await openWithCharge(seed, key, i % 2 === 0 ? 'relay-dead-1' : 'relay-dead-2', 1_000n + BigInt(i)));
    // Each sweeper has a live session of its own, its heartbeat fresh.
    const ownA = await openWithCharge(seed, key, 'relay-a', 5n);
    const ownB = await openWithCharge(seed, key, 'relay-b', 7n);
    const ownC = await openWithCharge(seed, key, 'relay-c', 11n);
    for (const instance of ['relay-dead-1', 'relay-dead-2']) await stopHeartbeat(schema, instance);

    const [before] = await schema.query<{ balance_nano: bigint }>('SELECT balance_nano FROM keys WHERE id = $1', [key.id]);

    // Three processes: three pools, three billings.
    const a = billingFor(await openLedger({ databaseUrl: schema.url }), 'relay-a');
    const b = billingFor(await openLedger({ databaseUrl: schema.url }), 'relay-b');
    const c = billingFor(await openLedger({ databaseUrl: schema.url }), 'relay-c');
    closers.push(() => a.close(), () => b.close(), () => c.close());
    const [byA, byB, byC] = await Promise.all([a.sweep(), b.sweep(), c.sweep()]);
    const again = await Promise.all([a.sweep(), b.sweep(), c.sweep()]);

    const ids = [...byA, ...byB, ...byC].map((s) => s.sessionId);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual([...orphans].sort());
    expect(again.flat()).toEqual([]);

    const settlements = await schema.query<{ session_id: string; total_nano: bigint }>('SELECT session_id, total_nano FROM settlements ORDER BY session_id');
    expect(settlements.map((s) => s.session_id)).toEqual([...orphans].sort());
    const reported = new Map([...byA, ...byB, ...byC].map((s) => [s.sessionId, s.totalNano]));
    for (const s of settlements) expect(reported.get(s.session_id)).toBe(s.total_nano);
    const open = await schema.query<{ id: string }>(`SELECT id FROM sessions WHERE status = 'open' ORDER BY id`);
    expect(open.map((s) => s.id)).toEqual([ownA, ownB, ownC].sort());
    // Settling debits nothing: the charges already did, once.
    const [after] = await schema.query<{ balance_nano: bigint; held_nano: bigint }>('SELECT balance_nano, held_nano FROM keys WHERE id = $1', [key.id]);
    expect(after).toEqual({ balance_nano: before!.balance_nano, held_nano: 0n });

    // A sweeper whose own heartbeat lapsed (a long pause) still keeps its own sessions.
    await stopHeartbeat(schema, 'relay-a');
    expect(await a.sweep()).toEqual([]);
    const [stillOpen] = await schema.query<{ status: string }>('SELECT status FROM sessions WHERE id = $1', [ownA]);
    expect(stillOpen!.status).toBe('open');
  });
});
