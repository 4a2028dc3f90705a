import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openLedger, type ChargeInput, type HoldInput, type KeyRecord, type Ledger, type OpenLedgerOptions } from '../../src/billing/ledger/index.js';
import { POSTGRES_MIGRATIONS } from '../../src/billing/ledger/migrations/postgres.js';
import { SQLITE_MIGRATIONS } from '../../src/billing/ledger/migrations/sqlite.js';
import {
  createScratchSchema,
  POSTGRES_REQUIRED,
  probePostgres,
  TEST_DATABASE_URL,
} from '../helpers/postgres.js';

type Row = Record<string, unknown>;

/** One database for one test, plus a way to look at it around the ledger. */
interface Backend {
  options: OpenLedgerOptions;
  /** Every row of a table, read over a separate connection. */
  rows(table: string): Promise<Row[]>;
  /** Moves an instance's last heartbeat `ms` into the past. */
  ageHeartbeat(instanceId: string, ms: number): Promise<void>;
  /** Deletes an instance's heartbeat row, as if it never sent one. */
  forgetInstance(instanceId: string): Promise<void>;
  /** Runs SQL on a separate connection. */
  exec(sql: string): Promise<void>;
  dispose(): Promise<void>;
}

const LEDGER_MODULE = pathToFileURL(resolve('src/billing/ledger/index.ts')).href;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function uniqueId(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** JSON.stringify that accepts bigints, to search a row for a string. */
function dump(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

async function expectLedgerError(promise: Promise<unknown>, code: string): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toMatchObject({ name: 'LedgerError', code });
  return error as Error;
}

function ledgerSuite(name: string, open: () => Promise<Backend>): void {
  describe(name, () => {
    let backend: Backend;
    let ledger: Ledger;
    const opened: Ledger[] = [];

    async function connect(options: OpenLedgerOptions = backend.options): Promise<Ledger> {
      const connection = await openLedger(options);
      opened.push(connection);
      return connection;
    }

    beforeEach(async () => {
      backend = await open();
      ledger = await connect();
    });

    afterEach(async () => {
      for (const connection of opened.splice(0)) await connection.close();
      await backend.dispose();
    });

    async function newKey(balanceNano = 1_000n): Promise<KeyRecord> {
      return (await ledger.createKey({ name: uniqueId('key'), balanceNano })).record;
    }

    async function newSession(key: KeyRecord, instanceId = 'relay-a', on: Ledger = ledger): Promise<string> {
      const id = uniqueId('sess');
      await on.openSession({ id, keyId: key.id, model: 'gpt-realtime', upstream: 'openai', instanceId, startedAt: new Date() });
      return id;
    }

    function charge(key: KeyRecord, sessionId: string, itemId: string, costNano: bigint, kind: ChargeInput['kind'] = 'response'): ChargeInput {
      return { sessionId, keyId: key.id, kind, itemId, model: 'gpt-realtime', costNano, usage: { total_tokens: 42, input_token_details: { cached_tokens: 8 } } };
    }

    async function balanceOf(key: KeyRecord): Promise<bigint> {
      return (await ledger.getKey(key.id))!.balanceNano;
    }

    it('brings a new database to the current schema once, and reopening applies nothing', async () => {
      const expected = (ledger.kind === 'sqlite' ? SQLITE_MIGRATIONS : POSTGRES_MIGRATIONS).map((m) => BigInt(m.version));
      const first = await backend.rows('schema_migrations');
      expect(first.map((row) => BigInt(row.version as number | bigint))).toEqual(expected);

      const key = await newKey(777n);
      await ledger.close();
      ledger = await connect();

      expect(await backend.rows('schema_migrations')).toEqual(first);
      expect((await ledger.getKey(key.id))?.balanceNano).toBe(777n);
    });

    it('migrates once when two processes open a new database at the same time', async () => {
      const fresh = await open();
      try {
        const both = await Promise.all([connect(fresh.options), connect(fresh.options)]);
        expect(both.map((l) => l.kind)).toEqual([ledger.kind, ledger.kind]);
        const versions = (ledger.kind === 'sqlite' ? SQLITE_MIGRATIONS : POSTGRES_MIGRATIONS).length;
        expect(await fresh.rows('schema_migrations')).toHaveLength(versions);
        for (const connection of both) await connection.close();
      } finally {
        await fresh.dispose();
      }
    });

    it('shows a new key once and stores only its SHA-256', async () => {
      const { key, record } = await ledger.createKey({ name: 'alice', balanceNano: 5_000_000_000n });
      expect(key).toMatch(/^rk_[A-Za-z0-9_-]{43}$/);
      expect(record).toMatchObject({
        name: 'alice',
        balanceNano: 5_000_000_000n,
        spendCapNano: null,
        maxSessions: null,
        priceMultiplierPpm: 1_000_000,
        disabled: false,
      });
      expect(record.createdAt).toBeInstanceOf(Date);
      expect(dump(record)).not.toContain(key);

      const rows = await backend.rows('keys');
      expect(rows).toHaveLength(1);
      expect(rows[0].key_hash).toBe(sha256Hex(key));
      expect(dump(rows)).not.toContain(key);
      expect(dump(rows)).not.toContain(key.slice(3));

      const other = await ledger.createKey({ name: 'bob', balanceNano: 0n });
      expect(other.key).not.toBe(key);
    });

    it('keeps the limits a key was created with', async () => {
      const { record } = await ledger.createKey({
        name: 'limited',
        balanceNano: 0n,
        spendCapNano: 250_000_000n,
        maxSessions: 3,
        priceMultiplierPpm: 1_200_000,
      });
      expect(await ledger.getKey('limited')).toEqual(record);
      expect(record).toMatchObject({ spendCapNano: 250_000_000n, maxSessions: 3, priceMultiplierPpm: 1_200_000 });
      await expectLedgerError(ledger.createKey({ name: 'limited', balanceNano: 0n }), 'key_name_taken');
      await expectLedgerError(ledger.createKey({ name: '  ', balanceNano: 0n }), 'invalid_input');
      await expectLedgerError(ledger.createKey({ name: 'neg', balanceNano: -1n }), 'invalid_amount');
      await expectLedgerError(ledger.createKey({ name: 'zero', balanceNano: 0n, maxSessions: 0 }), 'invalid_input');
    });

    it('keeps nano-USD exact beyond 2^53', async () => {
      const key = await newKey(9_007_199_254_740_993n);
      expect((await ledger.topUp(key.id, 2n)).balanceNano).toBe(9_007_199_254_740_995n);
      const sessionId = await newSession(key);
      const result = await ledger.recordCharge(charge(key, sessionId, 'resp_1', 1_000_000_000_000_001n));
      expect(result).toEqual({ applied: true, balanceNano: 8_007_199_254_740_994n, sessionSpendNano: 1_000_000_000_000_001n });
    });

    it('authenticates the right key, refuses a wrong one, and still finds a disabled one', async () => {
      const { key, record } = await ledger.createKey({ name: 'carol', balanceNano: 1n });
      expect((await ledger.authenticate(key))?.id).toBe(record.id);

      const wrongLastChar = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      expect(await ledger.authenticate(wrongLastChar)).toBeNull();
      expect(await ledger.authenticate('')).toBeNull();
      expect(await ledger.authenticate(sha256Hex(key))).toBeNull();

      await ledger.setDisabled('carol', true);
      expect(await ledger.authenticate(key)).toMatchObject({ id: record.id, disabled: true });
    });

    it('tops up and disables a key by id or by name', async () => {
      const key = await newKey(100n);
      expect((await ledger.topUp(key.name, 50n)).balanceNano).toBe(150n);
      expect((await ledger.topUp(key.id, 1_000_000_000n)).balanceNano).toBe(1_000_000_150n);
      expect(await balanceOf(key)).toBe(1_000_000_150n);

      expect((await ledger.setDisabled(key.id, true)).disabled).toBe(true);
      expect((await ledger.getKey(key.name))?.disabled).toBe(true);
      expect((await ledger.setDisabled(key.name, false)).disabled).toBe(false);
      expect((await ledger.listKeys()).map((k) => k.id)).toEqual([key.id]);
    });

    it('stores a client secret as its SHA-256 only, finds it with its key, and sums the spend of its sessions', async () => {
      const key = await newKey(10_000n);
      const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 600_000);
      const session = { type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' };
      const { secret, record } = await ledger.createClientSecret({ keyId: key.id, expiresAt, session, spendCapNano: 500n });
      expect(secret).toMatch(/^ek_[A-Za-z0-9_-]{43}$/);
      expect(record).toMatchObject({ keyId: key.id, expiresAt, session, spendCapNano: 500n });

      const rows = await backend.rows('client_secrets');
      expect(rows).toHaveLength(1);
      expect(rows[0].secret_hash).toBe(sha256Hex(secret));
      expect(dump(rows)).not.toContain(secret.slice(3));

      const opened = uniqueId('sess');
      await ledger.openSession({ id: opened, keyId: key.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'relay-a', startedAt: new Date(), clientSecretId: record.id });
      await ledger.recordCharge(charge(key, opened, 'resp_1', 120n));
      await ledger.recordCharge(charge(key, await newSession(key), 'resp_2', 999n));
      const grant = await ledger.authenticateClientSecret(secret);
      expect(grant).toMatchObject({ secret: { id: record.id, keyId: key.id, spendCapNano: 500n, session }, key: { id: key.id, balanceNano: 10_000n - 120n - 999n }, spentNano: 120n });
      expect(grant!.secret.expiresAt.getTime()).toBe(expiresAt.getTime());
      expect(await ledger.clientSecretSpend(record.id)).toBe(120n);
      expect(await ledger.clientSecretSpend('no-such-secret')).toBe(0n);
      const sessions = await backend.rows('sessions');
      expect(sessions.find((row) => row.id === opened)?.client_secret_id).toBe(record.id);

      expect(await ledger.authenticateClientSecret(`${secret}x`)).toBeNull();
      expect(await ledger.authenticateClientSecret(key.id)).toBeNull();
      await expectLedgerError(ledger.createClientSecret({ keyId: 'nobody', expiresAt, session, spendCapNano: null }), 'key_not_found');
      await expectLedgerError(ledger.createClientSecret({ keyId: key.id, expiresAt, session, spendCapNano: 0n }), 'invalid_amount');
    });

    it('refuses a top-up that is not positive, and unknown keys, with typed codes', async () => {
      const key = await newKey(100n);
      await expectLedgerError(ledger.topUp(key.id, 0n), 'invalid_amount');
      await expectLedgerError(ledger.topUp(key.id, -5n), 'invalid_amount');
      await expectLedgerError(ledger.topUp('nobody', 5n), 'key_not_found');
      await expectLedgerError(ledger.setDisabled('nobody', true), 'key_not_found');
      expect(await ledger.getKey('nobody')).toBeNull();
      expect(await balanceOf(key)).toBe(100n);
    });

    it('debits a charge once; the same item charged again is not counted twice', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);

      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 300n))).toEqual({
        applied: true,
        balanceNano: 700n,
        sessionSpendNano: 300n,
      });
      // A replayed response.done, even one reporting a different cost, changes nothing.
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 999n))).toEqual({
        applied: false,
        balanceNano: 700n,
        sessionSpendNano: 300n,
      });
      // The same id as a transcription item is a different charge.
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 50n, 'transcription'))).toEqual({
        applied: true,
        balanceNano: 650n,
        sessionSpendNano: 350n,
      });

      expect(await ledger.sessionSpend(sessionId)).toBe(350n);
      expect(await balanceOf(key)).toBe(650n);
      expect(await backend.rows('charges')).toHaveLength(2);
    });

    it('counts a charge that failed once when it is retried', async () => {
      const key = await newKey(1_000n);
      const other = await newKey(1_000n);
      const sessionId = await newSession(key);

      await expectLedgerError(ledger.recordCharge(charge(other, sessionId, 'resp_1', 300n)), 'charge_key_mismatch');
      await expectLedgerError(ledger.recordCharge(charge(key, sessionId, 'resp_1', -300n)), 'invalid_amount');
      await expectLedgerError(ledger.recordCharge(charge(key, 'no-such-session', 'resp_1', 300n)), 'session_not_found');
      expect(await backend.rows('charges')).toHaveLength(0);
      expect(await ledger.sessionSpend(sessionId)).toBe(0n);

      const retried = await ledger.recordCharge(charge(key, sessionId, 'resp_1', 300n));
      expect(retried).toEqual({ applied: true, balanceNano: 700n, sessionSpendNano: 300n });
      expect(await balanceOf(other)).toBe(1_000n);
    });

    it('records an overdraft instead of dropping the charge', async () => {
      const key = await newKey(100n);
      const sessionId = await newSession(key);
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 250n))).toMatchObject({ applied: true, balanceNano: -150n });
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_2', 10n))).toMatchObject({ applied: true, balanceNano: -160n });
      expect(await balanceOf(key)).toBe(-160n);
      expect((await backend.rows('charges')).map((row) => BigInt(row.cost_nano as bigint))).toEqual([250n, 10n]);
    });

    it('settles a session at the sum of its charges and never debits again', async () => {
      const key = await newKey(10_000n);
      const sessionId = await newSession(key);
      for (const [itemId, cost] of [['resp_1', 1_200n], ['resp_2', 34n], ['item_9', 5n]] as const) {
        await ledger.recordCharge(charge(key, sessionId, itemId, cost, itemId.startsWith('item') ? 'transcription' : 'response'));
      }
      const before = await balanceOf(key);
      expect(before).toBe(10_000n - 1_239n);

      const settled = await ledger.settleSession({
        sessionId,
        endedAt: new Date(),
        endReason: 'client_closed',
        status: 'settled',
        summary: { closeCode: 1000 },
      });
      expect(settled).toEqual({ applied: true, totalNano: 1_239n, chargeCount: 3 });
      expect(await balanceOf(key)).toBe(before);

      const [settlement] = await backend.rows('settlements');
      expect(settlement).toMatchObject({ session_id: sessionId, status: 'settled', end_reason: 'client_closed' });
      expect(BigInt(settlement.total_nano as bigint)).toBe(1_239n);
      expect(JSON.parse(settlement.summary_json as string)).toEqual({ closeCode: 1000 });
      const [session] = await backend.rows('sessions');
      expect(session).toMatchObject({ status: 'settled', end_reason: 'client_closed' });
      expect(session.ended_at).not.toBeNull();
    });

    it('treats settling twice as a no-op', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      await ledger.recordCharge(charge(key, sessionId, 'resp_1', 400n));
      const settlement = { sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled' as const, summary: null };

      expect(await ledger.settleSession(settlement)).toEqual({ applied: true, totalNano: 400n, chargeCount: 1 });
      expect(await ledger.settleSession({ ...settlement, endReason: 'again' })).toEqual({ applied: false, totalNano: 400n, chargeCount: 1 });
      expect(await balanceOf(key)).toBe(600n);
      expect(await backend.rows('settlements')).toHaveLength(1);
      expect((await backend.rows('sessions'))[0].end_reason).toBe('client_closed');
      await expectLedgerError(ledger.settleSession({ ...settlement, sessionId: 'no-such-session' }), 'session_not_found');
    });

    it('settles a session without charges at zero', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      const result = await ledger.settleSession({ sessionId, endedAt: new Date(), endReason: 'idle_timeout', status: 'settled', summary: {} });
      expect(result).toEqual({ applied: true, totalNano: 0n, chargeCount: 0 });
      expect(await balanceOf(key)).toBe(1_000n);
    });

    it("recovers a dead instance's sessions with their charges and leaves a live instance alone", async () => {
      const key = await newKey(10_000n);
      const stale = await newSession(key, 'relay-stale');
      const vanished = await newSession(key, 'relay-vanished');
      const restarted = await newSession(key, 'relay-me');
      const live = await newSession(key, 'relay-live');
      await ledger.recordCharge(charge(key, stale, 'resp_1', 100n));
      await ledger.recordCharge(charge(key, stale, 'resp_2', 20n));
      await ledger.recordCharge(charge(key, vanished, 'resp_1', 5n));
      await ledger.recordCharge(charge(key, restarted, 'resp_1', 7n));
      await ledger.recordCharge(charge(key, live, 'resp_1', 9n));
      // A call's session names where its call runs, for recovery to hang it up.
      await ledger.recordUpstreamCall(restarted, { upstream: 'openai', callId: 'rtc_upstream_1' });
      await ledger.heartbeat('relay-live');
      await backend.ageHeartbeat('relay-stale', 10 * 60_000);
      await backend.forgetInstance('relay-vanished');
      const before = await balanceOf(key);

      const recovered = await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000 });
      expect([...recovered].sort((a, b) => a.sessionId.localeCompare(b.sessionId))).toEqual(
        [
          { sessionId: stale, totalNano: 120n, upstreamCall: null },
          { sessionId: vanished, totalNano: 5n, upstreamCall: null },
          { sessionId: restarted, totalNano: 7n, upstreamCall: { upstream: 'openai', callId: 'rtc_upstream_1' } },
        ].sort((a, b) => a.sessionId.localeCompare(b.sessionId)),
      );
      expect(await balanceOf(key)).toBe(before);

      const settlements = await backend.rows('settlements');
      expect(settlements.map((row) => row.session_id).sort()).toEqual([stale, vanished, restarted].sort());
      expect(settlements.every((row) => row.status === 'recovered')).toBe(true);
      const sessions = new Map((await backend.rows('sessions')).map((row) => [row.id, row]));
      expect(sessions.get(live)).toMatchObject({ status: 'open', ended_at: null });
      expect(sessions.get(stale)).toMatchObject({ status: 'recovered', end_reason: 'instance_stale' });
      expect(sessions.get(restarted)).toMatchObject({ status: 'recovered', end_reason: 'instance_restarted', upstream: 'openai', upstream_call_id: 'rtc_upstream_1' });
      expect(await ledger.sessionSpend(live)).toBe(9n);

      expect(await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000 })).toEqual([]);
    });

    it("a live instance's sweep recovers stale instances' sessions and never its own, even with its heartbeat lapsed", async () => {
      const key = await newKey(10_000n);
      const stale = await newSession(key, 'relay-stale');
      const own = await newSession(key, 'relay-me');
      const live = await newSession(key, 'relay-live');
      await ledger.recordCharge(charge(key, stale, 'resp_1', 11n));
      await ledger.recordCharge(charge(key, own, 'resp_1', 3n));
      await ledger.heartbeat('relay-live');
      await backend.ageHeartbeat('relay-stale', 10 * 60_000);
      await backend.ageHeartbeat('relay-me', 10 * 60_000);

      const swept = await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000, ownSessions: 'keep' });
      expect(swept).toEqual([{ sessionId: stale, totalNano: 11n, upstreamCall: null }]);
      const sessions = new Map((await backend.rows('sessions')).map((row) => [row.id, row]));
      expect(sessions.get(stale)).toMatchObject({ status: 'recovered', end_reason: 'instance_stale' });
      expect(sessions.get(own)).toMatchObject({ status: 'open', ended_at: null });
      expect(sessions.get(live)).toMatchObject({ status: 'open', ended_at: null });
      expect(await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000, ownSessions: 'keep' })).toEqual([]);
    });

    it('settles each orphaned session once when two instances recover at the same time', async () => {
      const second = await connect();
      const key = await newKey(10_000n);
      const orphans: string[] = [];
      for (let i = 0; i < 6; i++) {
        const sessionId = await newSession(key, 'relay-dead');
        await ledger.recordCharge(charge(key, sessionId, 'resp_1', BigInt(i + 1)));
        orphans.push(sessionId);
      }
      await backend.forgetInstance('relay-dead');

      const [a, b] = await Promise.all([
        ledger.recoverOpenSessions({ instanceId: 'relay-a', staleAfterMs: 60_000 }),
        second.recoverOpenSessions({ instanceId: 'relay-b', staleAfterMs: 60_000 }),
      ]);
      expect([...a, ...b].map((r) => r.sessionId).sort()).toEqual([...orphans].sort());
      expect([...a, ...b].reduce((sum, r) => sum + r.totalNano, 0n)).toBe(21n);
      expect(await backend.rows('settlements')).toHaveLength(6);
      expect(await balanceOf(key)).toBe(10_000n - 21n);
    });

    it('ends with balance = initial − sum when many callers on two connections charge one key', async () => {
      const second = await connect();
      const key = await newKey(1_000_000n);
      const sessions = [await newSession(key), await newSession(key), await newSession(key, 'relay-b', second)];
      const charges = Array.from({ length: 120 }, (_, i) => charge(key, sessions[i % 3], `resp_${i}`, BigInt(1 + (i % 17))));
      const expectedSum = charges.reduce((sum, c) => sum + c.costNano, 0n);

      // Every item is sent twice, once on each connection: a retry racing the original.
      const results = await Promise.all(charges.flatMap((c) => [ledger.recordCharge(c), second.recordCharge(c)]));

      expect(results.filter((r) => r.applied)).toHaveLength(charges.length);
      expect(await balanceOf(key)).toBe(1_000_000n - expectedSum);
      const spends = await Promise.all(sessions.map((s) => ledger.sessionSpend(s)));
      expect(spends.reduce((a, b) => a + b, 0n)).toBe(expectedSum);
      expect(await backend.rows('charges')).toHaveLength(charges.length);
    });

    it('ends with balance = initial − sum when two processes charge one key', async () => {
      const key = await newKey(10_000_000n);
      const shared = await newSession(key);
      const own = [await newSession(key), await newSession(key)];
      const plan = (i: number) =>
        Array.from({ length: 150 }, (_, n) =>
          n % 3 === 0
            ? { sessionId: shared, itemId: `shared_${n}`, cost: String(1000 + n) }
            : { sessionId: own[i], itemId: `own_${n}`, cost: String(n) },
        );
      const expectedSum = [...plan(0), ...plan(1)]
        .filter((c, index, all) => all.findIndex((d) => d.sessionId === c.sessionId && d.itemId === c.itemId) === index)
        .reduce((sum, c) => sum + BigInt(c.cost), 0n);

      const applied = await runChargingProcesses(backend.options, key.id, [plan(0), plan(1)]);

      expect(applied.reduce((a, b) => a + b, 0)).toBe(50 + 100 + 100);
      expect(await balanceOf(key)).toBe(10_000_000n - expectedSum);
      expect(await backend.rows('charges')).toHaveLength(250);
    }, 30_000);

    it('lists usage with key names, filtered by key and by time', async () => {
      const alice = (await ledger.createKey({ name: 'alice', balanceNano: 1_000n })).record;
      const bob = (await ledger.createKey({ name: 'bob', balanceNano: 1_000n })).record;
      const aliceSession = await newSession(alice);
      const bobSession = await newSession(bob);
      await ledger.recordCharge(charge(alice, aliceSession, 'resp_1', 11n));
      await ledger.recordCharge(charge(bob, bobSession, 'item_1', 22n, 'transcription'));
      const firstBatchDone = Date.now();
      await vi.waitUntil(() => Date.now() > firstBatchDone, { interval: 1, timeout: 1_000 });
      await ledger.recordCharge(charge(alice, aliceSession, 'resp_2', 33n));

      const all = await ledger.usage({});
      expect(all.map((r) => [r.keyName, r.itemId, r.costNano])).toEqual([
        ['alice', 'resp_1', 11n],
        ['bob', 'item_1', 22n],
        ['alice', 'resp_2', 33n],
      ]);
      expect(all[1]).toMatchObject({
        sessionId: bobSession,
        kind: 'transcription',
        model: 'gpt-realtime',
        usage: { total_tokens: 42, input_token_details: { cached_tokens: 8 } },
      });
      expect(all[1].at).toBeInstanceOf(Date);

      expect((await ledger.usage({ key: 'alice' })).map((r) => r.itemId)).toEqual(['resp_1', 'resp_2']);
      expect((await ledger.usage({ key: bob.id })).map((r) => r.itemId)).toEqual(['item_1']);
      expect((await ledger.usage({ since: new Date(firstBatchDone + 1) })).map((r) => r.itemId)).toEqual(['resp_2']);
      expect(await ledger.usage({ key: 'bob', since: new Date(firstBatchDone + 1) })).toEqual([]);
      await expectLedgerError(ledger.usage({ key: 'nobody' }), 'key_not_found');
    });

    function hold(key: KeyRecord, sessionId: string, amountNano: bigint, reserveNano = 0n): HoldInput {
      return { sessionId, keyId: key.id, amountNano, reserveNano };
    }

    async function heldOf(key: KeyRecord): Promise<bigint> {
      return (await ledger.getKey(key.id))!.heldNano;
    }

    it('holds part of a balance, and refuses a hold the available balance or the reserve cannot cover', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      expect(key.heldNano).toBe(0n);

      expect(await ledger.placeHold(hold(key, sessionId, 600n))).toEqual({ placed: true, balanceNano: 1_000n, heldNano: 600n });
      // 400 available: a second hold of 600 is refused and changes nothing.
      expect(await ledger.placeHold(hold(key, sessionId, 600n))).toEqual({ placed: false, balanceNano: 1_000n, heldNano: 600n });
      expect(await ledger.placeHold(hold(key, sessionId, 400n))).toEqual({ placed: true, balanceNano: 1_000n, heldNano: 1_000n });
      // Nothing left available: not even a hold of 0.
      expect(await ledger.placeHold(hold(key, sessionId, 0n))).toMatchObject({ placed: false });
      expect(await balanceOf(key)).toBe(1_000n);
      expect(await heldOf(key)).toBe(1_000n);
      expect((await backend.rows('holds')).map((row) => BigInt(row.amount_nano as bigint))).toEqual([600n, 400n]);

      const rich = await newKey(1_000n);
      const richSession = await newSession(rich);
      expect(await ledger.placeHold(hold(rich, richSession, 1n, 1_001n))).toMatchObject({ placed: false });
      expect(await ledger.placeHold(hold(rich, richSession, 1n, 1_000n))).toMatchObject({ placed: true, heldNano: 1n });

      await expectLedgerError(ledger.placeHold(hold(key, sessionId, -1n)), 'invalid_amount');
      await expectLedgerError(ledger.placeHold(hold(rich, sessionId, 1n)), 'charge_key_mismatch');
      await expectLedgerError(ledger.placeHold(hold(key, 'no-such-session', 1n)), 'session_not_found');
    });

    it('releases one hold with a response charge, once: a replayed charge or a transcription releases nothing', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      await ledger.placeHold(hold(key, sessionId, 100n));
      await ledger.placeHold(hold(key, sessionId, 100n));
      expect(await heldOf(key)).toBe(200n);

      await ledger.recordCharge(charge(key, sessionId, 'item_1', 5n, 'transcription'));
      expect(await heldOf(key)).toBe(200n);
      // The real cost replaces the hold, whether above it or below it.
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 250n))).toEqual({ applied: true, balanceNano: 745n, sessionSpendNano: 255n });
      expect(await heldOf(key)).toBe(100n);
      expect(await ledger.recordCharge(charge(key, sessionId, 'resp_1', 250n))).toMatchObject({ applied: false });
      expect(await heldOf(key)).toBe(100n);
      await ledger.recordCharge(charge(key, sessionId, 'resp_2', 30n));
      expect(await heldOf(key)).toBe(0n);
      // A response nobody held for (started by the upstream itself) is charged all the same.
      await ledger.recordCharge(charge(key, sessionId, 'resp_3', 7n));
      expect(await heldOf(key)).toBe(0n);
      expect(await balanceOf(key)).toBe(1_000n - 5n - 250n - 30n - 7n);
      expect(await backend.rows('holds')).toEqual([]);
    });

    it('releases what a session still holds when it settles, and settling again releases nothing more', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      const other = await newSession(key);
      await ledger.placeHold(hold(key, sessionId, 100n));
      await ledger.placeHold(hold(key, sessionId, 100n));
      await ledger.placeHold(hold(key, other, 300n));
      await ledger.recordCharge(charge(key, sessionId, 'resp_1', 40n));

      const settlement = { sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled' as const, summary: null };
      expect(await ledger.settleSession(settlement)).toEqual({ applied: true, totalNano: 40n, chargeCount: 1 });
      expect(await heldOf(key)).toBe(300n);
      expect(await ledger.settleSession(settlement)).toMatchObject({ applied: false });
      expect(await heldOf(key)).toBe(300n);
      expect(await balanceOf(key)).toBe(960n);
      // A settled session holds nothing more, even for an admission that arrives late.
      expect(await ledger.placeHold(hold(key, sessionId, 1n))).toMatchObject({ placed: false, heldNano: 300n });
      expect((await backend.rows('holds')).map((row) => row.session_id)).toEqual([other]);
    });

    it("releases the holds of a dead instance's sessions when it recovers them", async () => {
      const key = await newKey(1_000n);
      const dead = await newSession(key, 'relay-dead');
      const live = await newSession(key, 'relay-live');
      await ledger.placeHold(hold(key, dead, 200n));
      await ledger.placeHold(hold(key, dead, 200n));
      await ledger.placeHold(hold(key, live, 100n));
      await ledger.heartbeat('relay-live');
      await backend.forgetInstance('relay-dead');

      const recovered = await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000 });
      expect(recovered).toEqual([{ sessionId: dead, totalNano: 0n, upstreamCall: null }]);
      expect(await heldOf(key)).toBe(100n);
      expect(await balanceOf(key)).toBe(1_000n);
      expect(await ledger.recoverOpenSessions({ instanceId: 'relay-me', staleAfterMs: 60_000 })).toEqual([]);
      expect(await heldOf(key)).toBe(100n);
    });

    it('never holds more than the balance when many connections hold one key at once', async () => {
      const others = [await connect(), await connect(), await connect()];
      const connections = [ledger, ...others];
      const key = await newKey(1_000n);
      const sessions = await Promise.all(connections.flatMap((on, i) => [newSession(key, `relay-${i}`, on), newSession(key, `relay-${i}`, on)]));
      // 48 holds of 100 asked at once, 12 on each connection (several pool clients each, on PostgreSQL): ten fit.
      const attempts = Array.from({ length: 48 }, (_, i) => connections[i % 4]!.placeHold(hold(key, sessions[i % sessions.length]!, 100n)));
      const results = await Promise.all(attempts);

      expect(results.filter((r) => r.placed)).toHaveLength(10);
      expect(await heldOf(key)).toBe(1_000n);
      expect(await backend.rows('holds')).toHaveLength(10);
      // Each charge frees its hold for the next response.
      const holder = (await backend.rows('holds'))[0]!.session_id as string;
      await ledger.recordCharge(charge(key, holder, 'resp_1', 150n));
      expect(await ledger.getKey(key.id)).toMatchObject({ balanceNano: 850n, heldNano: 900n });
      expect(await ledger.placeHold(hold(key, holder, 100n))).toMatchObject({ placed: false });
    });

    it('keeps held equal to the open holds when holds, charges and settlements of one key race on several connections', async () => {
      const second = await connect();
      const key = await newKey(10_000n);
      const sessions = await Promise.all(Array.from({ length: 8 }, (_, i) => newSession(key, 'relay-a', i % 2 === 0 ? ledger : second)));
      const work = sessions.flatMap((sessionId, i) => {
        const on = i % 2 === 0 ? ledger : second;
        const steps: Array<Promise<unknown>> = [];
        for (let n = 0; n < 6; n++) {
          steps.push(on.placeHold(hold(key, sessionId, 300n)));
          steps.push(on.recordCharge(charge(key, sessionId, `resp_${n}`, BigInt(10 + n))));
        }
        // Half the sessions end while their holds and charges are still arriving.
        if (i % 2 === 1) steps.push(on.settleSession({ sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: null }));
        return steps;
      });
      await Promise.all(work);

      const open = (await backend.rows('holds')).reduce((sum, row) => sum + BigInt(row.amount_nano as bigint), 0n);
      expect(await heldOf(key)).toBe(open);
      expect(await balanceOf(key)).toBe(10_000n - 8n * (10n + 11n + 12n + 13n + 14n + 15n));
      for (const sessionId of sessions) {
        await ledger.settleSession({ sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: null });
      }
      expect(await heldOf(key)).toBe(0n);
      expect(await backend.rows('holds')).toEqual([]);
    });

    it('upgrades a database made before holds in place, keeping its keys and balances', async () => {
      const old = await open();
      try {
        const migrations = ledger.kind === 'sqlite' ? SQLITE_MIGRATIONS : POSTGRES_MIGRATIONS;
        const now = ledger.kind === 'sqlite' ? String(Date.now()) : 'now()';
        await old.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at ${ledger.kind === 'sqlite' ? 'INTEGER NOT NULL' : 'TIMESTAMPTZ NOT NULL DEFAULT now()'});
          ${migrations[0]!.sql};
          INSERT INTO schema_migrations (version, applied_at) VALUES (1, ${now});
          INSERT INTO keys (id, name, key_hash, balance_nano, price_multiplier_ppm, created_at) VALUES ('k1', 'old', 'hash', 1234, 1000000, ${now});`);
        const upgraded = await connect(old.options);
        expect(await upgraded.getKey('old')).toMatchObject({ balanceNano: 1_234n, heldNano: 0n });
        expect((await old.rows('schema_migrations')).map((row) => Number(row.version))).toEqual(migrations.map((m) => m.version));
        const sessionId = uniqueId('sess');
        await upgraded.openSession({ id: sessionId, keyId: 'k1', model: 'gpt-realtime', upstream: 'openai', instanceId: 'relay-a', startedAt: new Date() });
        expect(await upgraded.placeHold({ sessionId, keyId: 'k1', amountNano: 1_000n, reserveNano: 0n })).toEqual({ placed: true, balanceNano: 1_234n, heldNano: 1_000n });
      } finally {
        await old.dispose();
      }
    });

    it('refuses a session for an unknown key, and reopening a session is harmless', async () => {
      const key = await newKey(1n);
      const session = { id: 'sess_1', keyId: key.id, model: 'gpt-realtime', upstream: 'azure', instanceId: 'relay-a', startedAt: new Date() };
      await ledger.openSession(session);
      await ledger.openSession(session);
      expect(await backend.rows('sessions')).toHaveLength(1);
      await expectLedgerError(ledger.openSession({ ...session, id: 'sess_2', keyId: 'nobody' }), 'key_not_found');
      await expectLedgerError(ledger.sessionSpend('sess_2'), 'session_not_found');
    });

    it('announces each new charge and settlement once in the outbox; replays announce nothing', async () => {
      const events = await connect({ ...backend.options, usageEvents: true });
      const key = await newKey(1_000n);
      const sessionId = await newSession(key, 'relay-a', events);

      await events.recordCharge(charge(key, sessionId, 'resp_1', 300n));
      await events.recordCharge(charge(key, sessionId, 'resp_1', 300n));
      await events.recordCharge(charge(key, sessionId, 'item_1', 20n, 'transcription'));
      const ended = new Date('2026-01-02T03:04:05.000Z');
      await events.settleSession({ sessionId, endedAt: ended, endReason: 'client_closed', status: 'settled', summary: {} });
      await events.settleSession({ sessionId, endedAt: ended, endReason: 'client_closed', status: 'settled', summary: {} });

      expect(await backend.rows('usage_events')).toHaveLength(3);
      const claimed = await events.claimUsageEvents({ limit: 10, leaseMs: 60_000 });
      expect(claimed).toMatchObject([
        { type: 'relay.usage.charged', keyId: key.id, keyName: key.name, sessionId, model: 'gpt-realtime', kind: 'response', itemId: 'resp_1', costNano: 300n, attempts: 1, usage: { total_tokens: 42 } },
        { type: 'relay.usage.charged', kind: 'transcription', itemId: 'item_1', costNano: 20n },
        { type: 'relay.session.settled', sessionId, status: 'settled', endReason: 'client_closed', totalNano: 320n, chargeCount: 2, endedAt: ended },
      ]);
      expect(new Set(claimed.map((event) => event.id)).size).toBe(3);
      for (const event of claimed) expect(event.time).toBeInstanceOf(Date);
    });

    it('writes no usage events when nobody delivers them', async () => {
      const key = await newKey(1_000n);
      const sessionId = await newSession(key);
      await ledger.recordCharge(charge(key, sessionId, 'resp_1', 300n));
      await ledger.settleSession({ sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: {} });
      expect(await backend.rows('usage_events')).toEqual([]);
      expect(await ledger.claimUsageEvents({ limit: 10, leaseMs: 1_000 })).toEqual([]);
    });

    it("announces a dead instance's recovered sessions too", async () => {
      const events = await connect({ ...backend.options, usageEvents: true });
      const key = await newKey(1_000n);
      const sessionId = await newSession(key, 'relay-dead', events);
      await events.recordCharge(charge(key, sessionId, 'resp_1', 100n));
      await backend.forgetInstance('relay-dead');
      await events.recoverOpenSessions({ instanceId: 'relay-b', staleAfterMs: 1_000 });
      const claimed = await events.claimUsageEvents({ limit: 10, leaseMs: 60_000 });
      expect(claimed.map((event) => event.type)).toEqual(['relay.usage.charged', 'relay.session.settled']);
      expect(claimed[1]).toMatchObject({ status: 'recovered', totalNano: 100n, chargeCount: 1 });
    });

    it('hands each event to one claimer when two connections claim at once', async () => {
      const first = await connect({ ...backend.options, usageEvents: true });
      const second = await connect({ ...backend.options, usageEvents: true });
      const key = await newKey(1_000_000n);
      const sessionId = await newSession(key, 'relay-a', first);
      for (let i = 0; i < 40; i += 1) await first.recordCharge(charge(key, sessionId, `resp_${i}`, 1n));

      const seen: string[] = [];
      for (let round = 0; round < 20; round += 1) {
        const batches = await Promise.all([first, second, first, second].map((on) => on.claimUsageEvents({ limit: 3, leaseMs: 60_000 })));
        for (const batch of batches) seen.push(...batch.map((event) => event.id));
      }
      expect(seen).toHaveLength(40);
      expect(new Set(seen).size).toBe(40);
      expect(await first.claimUsageEvents({ limit: 10, leaseMs: 60_000 })).toEqual([]);
    });

    it('offers an event again after a failure or a lapsed lease, and never once it is delivered', async () => {
      const events = await connect({ ...backend.options, usageEvents: true });
      const key = await newKey(1_000n);
      const sessionId = await newSession(key, 'relay-a', events);
      await events.recordCharge(charge(key, sessionId, 'resp_1', 10n));
      await events.recordCharge(charge(key, sessionId, 'resp_2', 10n));

      const [one, two] = await events.claimUsageEvents({ limit: 10, leaseMs: 60_000 });
      expect(await events.claimUsageEvents({ limit: 10, leaseMs: 60_000 })).toEqual([]);
      await events.usageEventFailed(one.id, 0, 'receiver answered 503');
      expect(await events.usageEventBacklog()).toMatchObject({ pending: 2, delivered: 0, failing: 1, lastError: 'receiver answered 503' });
      expect((await events.usageEventBacklog()).oldestPendingAt).toBeInstanceOf(Date);

      const again = await events.claimUsageEvents({ limit: 10, leaseMs: 0 });
      expect(again.map((event) => [event.id, event.attempts])).toEqual([[one.id, 2]]);
      // A lease of 0 lapses at once, as a claimer that died mid-send leaves it.
      expect((await events.claimUsageEvents({ limit: 10, leaseMs: 60_000 })).map((event) => event.id)).toEqual([one.id]);

      await events.usageEventDelivered(one.id);
      await events.usageEventDelivered(two.id);
      // A late failure report of a delivered event changes nothing.
      await events.usageEventFailed(two.id, 0, 'late');
      expect(await events.claimUsageEvents({ limit: 10, leaseMs: 0 })).toEqual([]);
      expect(await events.usageEventBacklog()).toEqual({ pending: 0, delivered: 2, failing: 0, oldestPendingAt: null, lastError: null });
    });

    it('answers ping while open and reports ledger_unavailable once closed', async () => {
      await expect(ledger.ping()).resolves.toBeUndefined();
      await ledger.close();
      await ledger.close();
      await expectLedgerError(ledger.ping(), 'ledger_unavailable');
      await expectLedgerError(ledger.listKeys(), 'ledger_unavailable');
    });
  });
}

/**
 * Charges from separate Node processes. Each opens the ledger, reports
 * "ready", and starts only when told to, so that both charge at the same time.
 */
async function runChargingProcesses(
  options: OpenLedgerOptions,
  keyId: string,
  plans: Array<Array<{ sessionId: string; itemId: string; cost: string }>>,
): Promise<number[]> {
  const script = `
    const { openLedger } = await import(process.env.LEDGER_MODULE);
    const ledger = await openLedger(JSON.parse(process.env.LEDGER_OPTIONS));
    const plan = JSON.parse(process.env.CHARGE_PLAN);
    process.stdout.write('ready\\n');
    await new Promise((resolve) => process.stdin.once('data', resolve));
    const results = await Promise.all(plan.map((c) => ledger.recordCharge({
      sessionId: c.sessionId, keyId: process.env.KEY_ID, kind: 'response', itemId: c.itemId,
      model: 'gpt-realtime', costNano: BigInt(c.cost), usage: {},
    })));
    await ledger.close();
    process.stdout.write('applied ' + results.filter((r) => r.applied).length + '\\n');
    process.exit(0);
  `;
  const children = plans.map((plan) =>
    spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: {
        ...process.env,
        LEDGER_MODULE,
        LEDGER_OPTIONS: JSON.stringify(options),
        CHARGE_PLAN: JSON.stringify(plan),
        KEY_ID: keyId,
      },
      stdio: ['pipe', 'pipe', 'inherit'],
      timeout: 25_000,
    }),
  );
  const outputs = children.map((child) => {
    let text = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    const ready = new Promise<void>((resolveReady, reject) => {
      child.stdout!.on('data', () => text.includes('ready\n') && resolveReady());
      child.once('exit', (code) => reject(new Error(`charging process exited early (${code})`)));
    });
    const done = new Promise<number>((resolveDone, reject) => {
      child.once('exit', (code) => {
        const match = /applied (\d+)/.exec(text);
        if (code === 0 && match) resolveDone(Number(match[1]));
        else reject(new Error(`charging process failed (exit ${code}): ${text}`));
      });
    });
    return { ready, done };
  });
  try {
    await Promise.all(outputs.map((o) => o.ready));
    for (const child of children) child.stdin!.end('go\n');
    return await Promise.all(outputs.map((o) => o.done));
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  const path = join(dir, 'ledger.db');
  function withDb<T>(work: (db: Database.Database) => T): T {
    const db = new Database(path);
    db.defaultSafeIntegers(true);
    try {
      return work(db);
    } finally {
      db.close();
    }
  }
  return Promise.resolve({
    options: { sqlitePath: path },
    rows: async (table) => withDb((db) => db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all() as Row[]),
    ageHeartbeat: async (instanceId, ms) => {
      withDb((db) => db.prepare('UPDATE instances SET heartbeat_at = heartbeat_at - ? WHERE id = ?').run(ms, instanceId));
    },
    forgetInstance: async (instanceId) => {
      withDb((db) => db.prepare('DELETE FROM instances WHERE id = ?').run(instanceId));
    },
    exec: async (sql) => {
      withDb((db) => db.exec(sql));
    },
    dispose: async () => rmSync(dir, { recursive: true, force: true }),
  });
}

async function postgresBackend(): Promise<Backend> {
  const schema = await createScratchSchema(TEST_DATABASE_URL);
  return {
    options: { databaseUrl: schema.url },
    rows: (table) => schema.query(`SELECT * FROM ${table} ORDER BY ${table === 'schema_migrations' ? 'version' : 'ctid'}`),
    ageHeartbeat: async (instanceId, ms) => {
      await schema.query(`UPDATE instances SET heartbeat_at = heartbeat_at - $1 * interval '1 millisecond' WHERE id = $2`, [ms, instanceId]);
    },
    forgetInstance: async (instanceId) => {
      await schema.query('DELETE FROM instances WHERE id = $1', [instanceId]);
    },
    exec: async (sql) => {
      await schema.query(sql);
    },
    dispose: () => schema.drop(),
  };
}

ledgerSuite('SQLite ledger', sqliteBackend);

const postgresProblem = await probePostgres(TEST_DATABASE_URL);
if (postgresProblem === null) {
  ledgerSuite('PostgreSQL ledger', postgresBackend);

  describe('PostgreSQL ledger types', () => {
    it("reads BIGINT money as bigint without changing pg's global int8 parser", async () => {
      const backend = await postgresBackend();
      const ledger = await openLedger(backend.options);
      try {
        const { record } = await ledger.createKey({ name: 'big', balanceNano: 9_007_199_254_740_993n });
        expect(record.balanceNano).toBe(9_007_199_254_740_993n);
        expect(pg.types.getTypeParser(20, 'text')('5')).toBe('5');
      } finally {
        await ledger.close();
        await backend.dispose();
      }
    });
  });
} else if (POSTGRES_REQUIRED) {
  describe('PostgreSQL ledger', () => {
    it('reaches the test server (REQUIRE_POSTGRES=1)', () => {
      throw new Error(postgresProblem);
    });
  });
} else {
  console.warn(`Skipping the PostgreSQL ledger suite: ${postgresProblem}. Set REQUIRE_POSTGRES=1 to fail instead.`);
  describe.skip(`PostgreSQL ledger (skipped: ${postgresProblem})`, () => {
    it('runs when a server answers', () => undefined);
  });
}

describe('SQLite ledger file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ledger-file-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates its directory on first use and runs in WAL mode', async () => {
    const path = join(dir, 'nested', 'data', 'ledger.db');
    const ledger = await openLedger({ sqlitePath: path });
    try {
      expect(ledger.kind).toBe('sqlite');
      expect(existsSync(path)).toBe(true);
      const db = new Database(path, { readonly: true });
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      db.close();
    } finally {
      await ledger.close();
    }
  });

  it('reports ledger_unavailable, naming the file, when it cannot be written', async () => {
    const blocker = join(dir, 'not-a-directory');
    writeFileSync(blocker, '');
    const path = join(blocker, 'ledger.db');
    const error = await expectLedgerError(openLedger({ sqlitePath: path }), 'ledger_unavailable');
    expect(error.message).toContain(path);
  });
});

describe('PostgreSQL ledger connection', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(servers.splice(0).map((server) => new Promise((done) => server.close(done))));
  });

  async function listen(onConnection: (socket: Socket) => void): Promise<number> {
    const server = createServer(onConnection);
    servers.push(server);
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    return (server.address() as { port: number }).port;
  }

  async function closedPort(): Promise<number> {
    const port = await listen(() => undefined);
    await new Promise((done) => servers.pop()!.close(done));
    return port;
  }

  it('reports ledger_unavailable, naming host and port but not the password, when nothing listens', async () => {
    const port = await closedPort();
    const error = await expectLedgerError(
      openLedger({ databaseUrl: `postgres://relay:sekrit-password@127.0.0.1:${port}/ledger` }),
      'ledger_unavailable',
    );
    expect(error.message).toContain(`127.0.0.1:${port}/ledger`);
    expect(error.message).not.toContain('sekrit-password');
  });

  it('gives up after the connect timeout when the server accepts but never answers', async () => {
    const port = await listen((socket) => sockets.push(socket));
    const started = Date.now();
    await expectLedgerError(
      openLedger({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/test`, connectTimeoutMs: 300 }),
      'ledger_unavailable',
    );
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
