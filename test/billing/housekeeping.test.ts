/**
 * The ledger's upkeep, on both databases: top-ups that cannot pass the
 * maximum balance however many arrive at once, a dead-lettered charge that
 * reaches its session's recorded total once it is replayed, and expired
 * client secrets deleted without breaking the sessions that name them.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { replayDeadLetters } from '../../src/billing/backlog.js';
import { openLedger, type Ledger, type OpenLedgerOptions } from '../../src/billing/ledger/index.js';
import { builtInPrices, MAX_BALANCE_NANO, NANO_PER_USD } from '../../src/billing/prices.js';
import { Billing } from '../../src/billing/service.js';
import { appendJsonLines, spoolFiles } from '../../src/billing/spool-file.js';
import { topUpKey } from '../../src/server/admin/operations.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, TEST_DATABASE_URL } from '../helpers/postgres.js';

type Row = Record<string, unknown>;

interface Backend {
  options: OpenLedgerOptions;
  /** Every row of a table, read over a connection of its own. */
  rows(table: string): Promise<Row[]>;
  /** Moves a time column of the rows matching `where` `hours` into the past. */
  age(table: string, column: string, hours: number, where: string): Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-upkeep-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ledger.db');
  return {
    options: { sqlitePath: path },
    async rows(table) {
      const db = new Database(path, { readonly: true });
      db.defaultSafeIntegers(true);
      try {
        return db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all() as Row[];
      } finally {
        db.close();
      }
    },
    async age(table, column, hours, where) {
      const db = new Database(path);
      try {
        db.prepare(`UPDATE ${table} SET ${column} = ${column} - ? WHERE ${where}`).run(hours * HOUR_MS);
      } finally {
        db.close();
      }
    },
  };
}

async function postgresBackend(): Promise<Backend> {
  const schema = await createScratchSchema(TEST_DATABASE_URL);
  cleanups.push(() => schema.drop());
  return {
    options: { databaseUrl: schema.url },
    rows: (table) => schema.query(`SELECT * FROM ${table} ORDER BY ctid`),
    async age(table, column, hours, where) {
      await schema.query(`UPDATE ${table} SET ${column} = ${column} - $1 * interval '1 hour' WHERE ${where}`, [hours]);
    },
  };
}

async function connect(backend: Backend): Promise<Ledger> {
  const ledger = await openLedger(backend.options);
  cleanups.push(() => ledger.close());
  return ledger;
}

const HOUR_MS = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

function upkeepSuite(name: string, open: () => Promise<Backend>): void {
  describe(name, () => {
    it('lets concurrent top-ups near the maximum balance through only while they fit, and tells the others why', async () => {
      const backend = await open();
      // Two connections, as two admin requests (or a request and the CLI) would use.
      const [first, second] = [await connect(backend), await connect(backend)];
      const { record } = await first.createKey({ name: 'nearly-full', balanceNano: MAX_BALANCE_NANO - NANO_PER_USD });
      const amount = (NANO_PER_USD * 3n) / 10n;
      const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => topUpKey(i % 2 === 0 ? first : second, record.name, amount)));
      const applied = outcomes.filter((o) => o.status === 'fulfilled');
      const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      // 1 USD of room takes three top-ups of 0.3 USD; a fourth would pass the maximum.
      expect(applied).toHaveLength(3);
      expect((await first.getKey(record.id))!.balanceNano).toBe(MAX_BALANCE_NANO - NANO_PER_USD + 3n * amount);
      for (const { reason } of refused) {
        expect(reason).toMatchObject({ code: 'invalid_amount', param: 'amount' });
        expect((reason as Error).message).toMatch(/^amount would bring the balance to 1000000000\.2\d* USD, more than the maximum of 1000000000 USD \(the balance is 999999999\.9\d* USD\)$/);
      }
      // An unknown key is still an unknown key, not a balance over the maximum.
      await expect(topUpKey(first, 'nobody', amount)).rejects.toMatchObject({ code: 'key_not_found' });
    });

    it("adds a dead-lettered charge replayed after its session was recovered to that session's total, once", async () => {
      const backend = await open();
      const ledger = await connect(backend);
      const { record } = await ledger.createKey({ name: 'owed', balanceNano: 10_000n });
      const sessionId = `sess_owed_${name.length}`;
      await ledger.openSession({ id: sessionId, keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'restarted:1', startedAt: new Date() });
      const charge = (itemId: string, costNano: bigint) => ({ sessionId, keyId: record.id, kind: 'response' as const, itemId, model: 'gpt-realtime', costNano, usage: { total_tokens: 1 } });
      await ledger.recordCharge(charge('resp_written', 100n));

      // The process dies with one charge, and the settlement that waits for it, in the dead-letter file.
      const dir = mkdtempSync(join(tmpdir(), 'dead-letter-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const spoolPath = join(dir, 'unwritten.jsonl');
      const deadLetters = [
        { kind: 'charge', data: { ...charge('resp_refused', 250n), costNano: '250' }, attempts: 5, error: 'refused' },
        { kind: 'settlement', data: { sessionId, endedAt: new Date().toISOString(), endReason: 'client_closed', status: 'settled', summary: {} } },
      ];
      appendJsonLines(spoolFiles(spoolPath).deadLetter, deadLetters);

      // Its restart settles the session from the charges written: without the refused one.
      expect(await ledger.recoverOpenSessions({ instanceId: 'restarted:1', staleAfterMs: 30_000 })).toEqual([{ sessionId, totalNano: 100n, upstreamCall: null }]);

      const report = await replayDeadLetters(ledger, spoolPath);
      expect(report).toMatchObject({ written: 2, left: [], settledBefore: [sessionId] });
      const settled = async () => (await ledger.endedSessions({ limit: 10 })).sessions.find((s) => s.id === sessionId);
      expect(await settled()).toMatchObject({ status: 'recovered', totalNano: 350n, chargeCount: 2 });
      expect(await ledger.sessionSpend(sessionId)).toBe(350n);
      expect((await ledger.getKey(record.id))!.balanceNano).toBe(10_000n - 350n);

      // The operator replays a copy of the same file again: nothing is counted twice.
      appendJsonLines(spoolFiles(spoolPath).deadLetter, deadLetters);
      expect(await replayDeadLetters(ledger, spoolPath)).toMatchObject({ written: 2, left: [], settledBefore: [] });
      expect(await settled()).toMatchObject({ totalNano: 350n, chargeCount: 2 });
      expect((await ledger.getKey(record.id))!.balanceNano).toBe(10_000n - 350n);
      const [settlement] = (await backend.rows('settlements')).filter((r) => r.session_id === sessionId);
      const charges = (await backend.rows('charges')).filter((r) => r.session_id === sessionId);
      expect(settlement).toMatchObject({ total_nano: charges.reduce((sum, c) => sum + BigInt(c.cost_nano as bigint), 0n) });
    });

    it('deletes delivered usage events past the retention in bounded batches, and never one not delivered yet', async () => {
      const backend = await open();
      const ledger = await openLedger({ ...backend.options, usageEvents: true });
      cleanups.push(() => ledger.close());
      const { record } = await ledger.createKey({ name: 'outbox', balanceNano: 10_000n });
      await ledger.openSession({ id: 'sess_outbox', keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'here:1', startedAt: new Date() });
      for (let i = 0; i < 5; i += 1) {
        await ledger.recordCharge({ sessionId: 'sess_outbox', keyId: record.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano: 1n, usage: {} });
      }
      const claimed = await ledger.claimUsageEvents({ limit: 4, leaseMs: 60_000 });
      for (const event of claimed) await ledger.usageEventDelivered(event.id);
      const [oldest, older, old, recent] = claimed.map((e) => e.id);
      // Three delivered two days ago, one just now; the fifth, never delivered, was written a month ago.
      await backend.age('usage_events', 'delivered_at', 48, `event_id IN ('${oldest}', '${older}', '${old}')`);
      await backend.age('usage_events', 'created_at', 24 * 30, 'delivered_at IS NULL');

      // A retention of a day.
      const before = ago(24 * HOUR_MS);
      expect(await ledger.pruneUsageEvents({ before, limit: 2 })).toBe(2);
      expect(await ledger.pruneUsageEvents({ before, limit: 2 })).toBe(1);
      expect(await ledger.pruneUsageEvents({ before, limit: 2 })).toBe(0);
      const left = (await backend.rows('usage_events')).map((r) => r.event_id);
      expect(left).toHaveLength(2);
      expect(left).toContain(recent);
      expect(await ledger.usageEventBacklog()).toMatchObject({ pending: 1, delivered: 1 });
      // The charges themselves stay.
      expect(await ledger.sessionSpend('sess_outbox')).toBe(5n);
      expect((await backend.rows('charges')).length).toBe(5);
    });

    it('deletes client secrets a day past their expiry, in bounded batches, except those a session was opened with', async () => {
      const backend = await open();
      const ledger = await connect(backend);
      const { record } = await ledger.createKey({ name: 'secrets', balanceNano: 10_000n });
      const mint = async (expiresAt: Date) => (await ledger.createClientSecret({ keyId: record.id, expiresAt, session: { model: 'gpt-realtime' }, spendCapNano: null })).record.id;
      const longGone = [await mint(ago(72 * HOUR_MS)), await mint(ago(48 * HOUR_MS)), await mint(ago(30 * HOUR_MS))];
      const used = await mint(ago(48 * HOUR_MS));
      const recentlyExpired = await mint(ago(HOUR_MS));
      const valid = await mint(new Date(Date.now() + HOUR_MS));
      await ledger.openSession({ id: `sess_secret_${name.length}`, keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'here:1', startedAt: ago(49 * HOUR_MS), clientSecretId: used });
      await ledger.recordCharge({ sessionId: `sess_secret_${name.length}`, keyId: record.id, kind: 'response', itemId: 'resp_1', model: 'gpt-realtime', costNano: 42n, usage: {} });

      const before = ago(24 * HOUR_MS);
      expect(await ledger.pruneClientSecrets({ before, limit: 2 })).toBe(2);
      expect(await ledger.pruneClientSecrets({ before, limit: 2 })).toBe(1);
      expect(await ledger.pruneClientSecrets({ before, limit: 2 })).toBe(0);
      const left = (await backend.rows('client_secrets')).map((r) => r.id);
      expect(left.sort()).toEqual([used, recentlyExpired, valid].sort());
      expect(left).not.toContain(longGone[0]);
      // The session still names its secret, and the secret's spend is still told.
      expect(await ledger.clientSecretSpend(used)).toBe(42n);
    });
  });
}

upkeepSuite('SQLite ledger upkeep', sqliteBackend);

const postgresProblem = await probePostgres(TEST_DATABASE_URL);
if (postgresProblem === null) {
  upkeepSuite('PostgreSQL ledger upkeep', postgresBackend);
} else if (POSTGRES_REQUIRED) {
  describe('PostgreSQL ledger upkeep', () => {
    it('reaches the test server (REQUIRE_POSTGRES=1)', () => {
      throw new Error(postgresProblem);
    });
  });
} else {
  describe.skip(`PostgreSQL ledger upkeep (skipped: ${postgresProblem})`, () => {
    it('runs when a server answers', () => undefined);
  });
}

describe('the client secret clean-up', () => {
  it("runs on the relay's heartbeat: an expired, unused secret is gone after its grace period", async () => {
    const backend = await sqliteBackend();
    const ledger = await openLedger(backend.options);
    const { record } = await ledger.createKey({ name: 'timer', balanceNano: 10_000n });
    const mint = async (expiresAt: Date) => (await ledger.createClientSecret({ keyId: record.id, expiresAt, session: {}, spendCapNano: null })).record.id;
    const stale = await mint(ago(2 * HOUR_MS));
    const fresh = await mint(ago(1_000));
    const billing = new Billing({
      ledger,
      prices: builtInPrices,
      instanceId: 'here:1',
      reserveNano: 0n,
      spoolPath: null,
      staleAfterMs: 0,
      heartbeatMs: 20,
      clientSecretCleanup: { graceMs: HOUR_MS, everyMs: 20, batchSize: 10 },
    });
    cleanups.push(() => billing.close());
    await billing.recover();
    await expect.poll(async () => (await backend.rows('client_secrets')).map((r) => r.id), { timeout: 5_000, interval: 20 }).toEqual([fresh]);
    expect(stale).not.toBe(fresh);
  });
});
