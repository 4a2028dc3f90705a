/**
 * The spool of unwritten ledger writes as a crash leaves it, replayed by the
 * relay started as an operator starts it (a child process on a real SQLite
 * file). The ledger is prepared as the dead process left it: a key, and a
 * session of an instance that is gone.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WriteBacklog } from '../../src/billing/backlog.js';
import { openLedger, type ChargeInput } from '../../src/billing/ledger/index.js';
import { sqliteView } from '../helpers/ledger.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { metricValue, scrape } from '../observability/prom-text.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const BALANCE = 10_000_000_000n;

/** A data folder whose ledger holds a key and `sessions` open sessions of a dead instance. */
async function leftByACrash(sessions: number): Promise<{ dataDir: string; keyId: string; sessionIds: string[] }> {
  const data = tempDataDir('relay-spool-');
  cleanups.push(() => data.remove());
  const ledger = await openLedger({ sqlitePath: join(data.path, 'ledger.db') });
  const { record } = await ledger.createKey({ name: 'spooled', balanceNano: BALANCE });
  const sessionIds: string[] = [];
  for (let i = 0; i < sessions; i++) {
    const id = `sess_left_${i}`;
    await ledger.openSession({ id, keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'gone-host:8080', startedAt: new Date(Date.now() - 60_000) });
    sessionIds.push(id);
  }
  await ledger.close();
  return { dataDir: data.path, keyId: record.id, sessionIds };
}

function chargeLine(charge: Omit<ChargeInput, 'costNano' | 'kind' | 'model' | 'usage'> & { costNano: bigint }): string {
  const data = { ...charge, kind: 'response', model: 'gpt-realtime', usage: { total_tokens: 10 }, costNano: charge.costNano.toString() };
  return `${JSON.stringify({ kind: 'charge', data })}\n`;
}

async function start(dataDir: string): Promise<RelayProcess> {
  const relay = await spawnRelay({ dataDir, env: { RELAY_DEMO_BALANCE_USD: '0' } });
  cleanups.push(() => relay.kill());
  return relay;
}

describe('a spool left by a crash', () => {
  it('starts despite a torn last line: the whole charges are written, the torn line is quarantined and reported', async () => {
    const { dataDir, keyId, sessionIds } = await leftByACrash(1);
    const sessionId = sessionIds[0]!;
    const torn = chargeLine({ sessionId, keyId, itemId: 'resp_torn', costNano: 999n }).slice(0, 60);
    writeFileSync(
      join(dataDir, 'unwritten.jsonl'),
      chargeLine({ sessionId, keyId, itemId: 'resp_1', costNano: 1_000n }) + chargeLine({ sessionId, keyId, itemId: 'resp_2', costNano: 2_000n }) + torn,
    );

    const relay = await start(dataDir);

    const replay = await relay.waitForLog((l) => l.msg?.startsWith('replayed the spool') === true, 'the replay line');
    expect(replay).toMatchObject({ writtenWrites: 2, pendingWrites: 0, quarantinedLines: 1, deadLetteredWrites: 0 });
    const quarantineLine = relay.logs.find((l) => l.msg?.includes('unreadable spool line'));
    expect(quarantineLine).toMatchObject({ lines: 1, file: join(dataDir, 'unwritten.quarantined.jsonl') });
    expect(metricValue(await scrape(relay.httpUrl), 'relay_spool_quarantined_lines_total')).toBe(1);

    const book = await sqliteView(join(dataDir, 'ledger.db')).book(keyId);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([
      ['resp_1', 1_000n],
      ['resp_2', 2_000n],
    ]);
    // Replayed before the session was recovered: its totals include them.
    expect(book.settlements).toEqual([expect.objectContaining({ sessionId, status: 'recovered', totalNano: 3_000n, chargeCount: 2 })]);
    expect(book.balanceNano).toBe(BALANCE - 3_000n);

    const quarantined = readFileSync(join(dataDir, 'unwritten.quarantined.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { line: string; from: string });
    expect(quarantined).toEqual([expect.objectContaining({ line: torn, from: 'unwritten.jsonl' })]);
    expect(existsSync(join(dataDir, 'unwritten.jsonl'))).toBe(false);
    expect(existsSync(join(dataDir, 'unwritten.jsonl.replaying'))).toBe(false);
  }, 30_000);

  it('finishes a replay a crash interrupted: the claimed file and a newer spool are both written', async () => {
    const { dataDir, keyId, sessionIds } = await leftByACrash(2);
    const [first, second] = sessionIds as [string, string];
    // A process crashed while replaying (its claim is still there), and the next one spooled before stopping.
    writeFileSync(join(dataDir, 'unwritten.jsonl.replaying'), chargeLine({ sessionId: first, keyId, itemId: 'resp_claimed', costNano: 4_000n }));
    writeFileSync(join(dataDir, 'unwritten.jsonl'), chargeLine({ sessionId: second, keyId, itemId: 'resp_spooled', costNano: 5_000n }));

    const relay = await start(dataDir);

    expect(await relay.waitForLog((l) => l.msg?.startsWith('replayed the spool') === true, 'the replay line')).toMatchObject({ writtenWrites: 2, pendingWrites: 0, quarantinedLines: 0 });
    const book = await sqliteView(join(dataDir, 'ledger.db')).book(keyId);
    expect(book.charges.map((c) => [c.sessionId, c.itemId, c.costNano])).toEqual([
      [first, 'resp_claimed', 4_000n],
      [second, 'resp_spooled', 5_000n],
    ]);
    expect(new Map(book.settlements.map((t) => [t.sessionId, t.totalNano]))).toEqual(new Map([
      [first, 4_000n],
      [second, 5_000n],
    ]));
    expect(book.balanceNano).toBe(BALANCE - 9_000n);
    expect(existsSync(join(dataDir, 'unwritten.jsonl'))).toBe(false);
    expect(existsSync(join(dataDir, 'unwritten.jsonl.replaying'))).toBe(false);

    // Stopped and started again, nothing is replayed twice.
    relay.signal('SIGTERM');
    expect(await relay.exited()).toMatchObject({ code: 0 });
    await start(dataDir);
    expect((await sqliteView(join(dataDir, 'ledger.db')).book(keyId)).balanceNano).toBe(BALANCE - 9_000n);
  }, 30_000);

  it('keeps the lines a later stop appends whole, after a torn one', async () => {
    const { dataDir, keyId, sessionIds } = await leftByACrash(1);
    const sessionId = sessionIds[0]!;
    const spoolPath = join(dataDir, 'unwritten.jsonl');
    // The crash tore the last line: no newline at its end.
    writeFileSync(spoolPath, chargeLine({ sessionId, keyId, itemId: 'resp_before', costNano: 10n }) + chargeLine({ sessionId, keyId, itemId: 'resp_torn', costNano: 20n }).slice(0, 40));
    const ledger = await openLedger({ sqlitePath: join(dataDir, 'ledger.db') });
    cleanups.push(() => ledger.close());

    // A process that never replayed it stops with a charge pending.
    const stopping = new WriteBacklog(ledger, spoolPath);
    stopping.add({ kind: 'charge', charge: { sessionId, keyId, kind: 'response', itemId: 'resp_after', model: 'gpt-realtime', costNano: 30n, usage: null } });
    stopping.close();

    const report = await new WriteBacklog(ledger, spoolPath).replaySpool();
    expect(report).toEqual({ written: 2, pending: 0, quarantined: 1, deadLettered: 0 });
    const book = await sqliteView(join(dataDir, 'ledger.db')).book(keyId);
    expect(book.charges.map((c) => c.itemId)).toEqual(['resp_before', 'resp_after']);
  });
});
