/**
 * One ledger write the ledger keeps refusing, among others it takes: the
 * backlog on a real SQLite ledger, with a wrapper that refuses one charge,
 * then the operator's `relay spool replay` commands on the same folder.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WriteBacklog, type PendingWrite } from '../../src/billing/backlog.js';
import { LedgerError, openLedger, type ChargeInput, type Ledger, type SettlementInput } from '../../src/billing/ledger/index.js';
import { sqliteView } from '../helpers/ledger.js';
import { tempDataDir } from '../helpers/relay-process.js';
import { runRelay } from '../helpers/relay-process.js';

/** Where the relay keeps writes pending at a stop, in its data folder. */
const spoolPathIn = (dataDir: string) => join(dataDir, 'unwritten.jsonl');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The real ledger, except that it refuses every charge of one item, and everything while `down`. */
function refusing(inner: Ledger, poisonItemId: string): Ledger & { down: boolean; poisonTries: number } {
  const ledger = Object.create(inner) as Ledger & { down: boolean; poisonTries: number };
  ledger.down = false;
  ledger.poisonTries = 0;
  ledger.recordCharge = async (charge: ChargeInput) => {
    if (ledger.down) throw new LedgerError('ledger_unavailable', 'injected: the ledger is down');
    if (charge.itemId === poisonItemId) {
      ledger.poisonTries++;
      throw new LedgerError('ledger_unavailable', 'injected: this charge is never written');
    }
    return inner.recordCharge(charge);
  };
  ledger.settleSession = async (settlement: SettlementInput) => {
    if (ledger.down) throw new LedgerError('ledger_unavailable', 'injected: the ledger is down');
    return inner.settleSession(settlement);
  };
  return ledger;
}

const charge = (sessionId: string, keyId: string, itemId: string, costNano: bigint): PendingWrite => ({
  kind: 'charge',
  charge: { sessionId, keyId, kind: 'response', itemId, model: 'gpt-realtime', costNano, usage: { total_tokens: 1 } },
});
const settlement = (sessionId: string): PendingWrite => ({
  kind: 'settlement',
  settlement: { sessionId, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: { usage: [] } },
});

describe('a ledger write that is always refused', () => {
  it('does not hold back the others, ends in the dead-letter file with its settlement after N tries, and the CLI writes it once fixed', async () => {
    const data = tempDataDir('relay-poison-');
    cleanups.push(() => data.remove());
    const ledgerPath = join(data.path, 'ledger.db');
    const ledger = await openLedger({ sqlitePath: ledgerPath });
    cleanups.push(() => ledger.close());
    const { record } = await ledger.createKey({ name: 'poison', balanceNano: 1_000_000n });
    for (const id of ['sess_poison', 'sess_fine', 'sess_late']) {
      await ledger.openSession({ id, keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'here:1', startedAt: new Date() });
    }
    const view = sqliteView(ledgerPath);
    const faulty = refusing(ledger, 'resp_poison');
    const deadLettered: PendingWrite[] = [];
    const backlog = new WriteBacklog(faulty, spoolPathIn(data.path), {
      retryMs: 10,
      maxAttempts: 3,
      hooks: { deadLettered: (write) => deadLettered.push(write) },
      probe: () => ledger.heartbeat('here:1'),
    });

    // The poison charge is first in line; its session's settlement and another session's writes come after.
    backlog.add(charge('sess_poison', record.id, 'resp_poison', 100n));
    backlog.add(settlement('sess_poison'));
    backlog.add(charge('sess_fine', record.id, 'resp_fine', 200n));
    backlog.add(settlement('sess_fine'));

    await expect.poll(() => backlog.size, { timeout: 10_000, interval: 20 }).toBe(0);
    expect(faulty.poisonTries).toBe(3);
    const book = await view.book(record.id);
    expect(book.charges.map((c) => c.itemId)).toEqual(['resp_fine']);
    expect(book.settlements).toEqual([expect.objectContaining({ sessionId: 'sess_fine', totalNano: 200n, chargeCount: 1 })]);
    // Never settled without the charge it owes.
    expect(book.sessions.find((s) => s.id === 'sess_poison')).toMatchObject({ status: 'open' });
    expect(deadLettered.map((w) => w.kind)).toEqual(['charge', 'settlement']);
    const deadLetterPath = join(data.path, 'unwritten.dead-letter.jsonl');
    const dead = readFileSync(deadLetterPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; data: { itemId?: string }; attempts?: number; error: string });
    expect(dead).toEqual([
      expect.objectContaining({ kind: 'charge', data: expect.objectContaining({ itemId: 'resp_poison' }), attempts: 3, error: expect.stringContaining('never written') }),
      expect.objectContaining({ kind: 'settlement', data: expect.objectContaining({ sessionId: 'sess_poison' }) }),
    ]);

    // A graceful stop spools what is pending, not what was dead-lettered.
    faulty.down = true;
    backlog.add(charge('sess_late', record.id, 'resp_late', 300n));
    await backlog.flush();
    backlog.close();
    const spooled = readFileSync(spoolPathIn(data.path), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { data: { itemId: string } });
    expect(spooled.map((s) => s.data.itemId)).toEqual(['resp_late']);
    await ledger.close();

    // Fixed (here: the ledger without the fault), the operator replays both files.
    const replayDead = await runRelay(['spool', 'replay', '--dead-letter'], { RELAY_DATA_DIR: data.path });
    expect({ code: replayDead.code, stderr: replayDead.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(replayDead.stdout)).toMatchObject({ written: 2, left: [], settledBefore: [] });
    expect(existsSync(deadLetterPath)).toBe(false);
    const replaySpool = await runRelay(['spool', 'replay'], { RELAY_DATA_DIR: data.path });
    expect(replaySpool.code).toBe(0);
    expect(JSON.parse(replaySpool.stdout)).toMatchObject({ written: 1, pending: 0, quarantined: 0, deadLettered: 0 });
    expect(existsSync(spoolPathIn(data.path))).toBe(false);

    const after = await view.book(record.id);
    expect(after.charges.map((c) => [c.itemId, c.costNano])).toEqual([
      ['resp_fine', 200n],
      ['resp_poison', 100n],
      ['resp_late', 300n],
    ]);
    expect(after.settlements.find((t) => t.sessionId === 'sess_poison')).toMatchObject({ status: 'settled', totalNano: 100n, chargeCount: 1 });
    expect(after.balanceNano).toBe(1_000_000n - 600n);

    // Replaying again writes nothing twice.
    expect((await runRelay(['spool', 'replay', '--dead-letter'], { RELAY_DATA_DIR: data.path })).code).toBe(0);
    expect((await view.book(record.id)).balanceNano).toBe(1_000_000n - 600n);
  }, 60_000);
});
