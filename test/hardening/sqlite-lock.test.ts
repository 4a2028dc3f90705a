/**
 * Another process holds the write lock of the relay's SQLite file (a backup
 * tool, `sqlite3` in a shell, a second relay mid-transaction) while sessions
 * run. The relay waits for the lock on timers, never on its event loop: the
 * probes answer, other sessions' frames flow, and the charge is written once
 * the lock is released.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator } from '../../src/simulator/index.js';
import { realtimeInvoice, usage } from '../billing/invoice.js';
import { sqliteView } from '../helpers/ledger.js';
import { TestClient } from '../helpers/client.js';
import { spawnRelay, tempDataDir } from '../helpers/relay-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A separate `node` process that takes the database's write lock and holds it until told to commit. */
async function holdLock(path: string, mode: 'IMMEDIATE' | 'EXCLUSIVE'): Promise<{ release(): Promise<void> }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1], { timeout: 10000 });
    db.exec('BEGIN ${mode}');
    db.prepare("INSERT INTO instances (id, heartbeat_at) VALUES ('lock-holder', 0) ON CONFLICT (id) DO UPDATE SET heartbeat_at = 0").run();
    process.stdout.write('locked\\n');
    process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });`;
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['-e', script, path], { cwd: ROOT, stdio: 'pipe' });
  const exited = once(child, 'exit');
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the lock holder exited (${code}): ${err}`)));
  });
  return {
    async release() {
      child.stdin.write('commit\n');
      await exited;
    },
  };
}

async function healthzMs(httpUrl: string): Promise<number> {
  const began = performance.now();
  const response = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(20_000) });
  expect(response.status).toBe(200);
  return performance.now() - began;
}

describe('an SQLite ledger locked by another process', () => {
  for (const mode of ['IMMEDIATE', 'EXCLUSIVE'] as const) it(`keeps /healthz and live sessions answering while BEGIN ${mode} holds the lock, then bills the response once`, async () => {
    const sim = await startSimulator({ chunkIntervalMs: 0 });
    cleanups.push(() => sim.close());
    const data = tempDataDir('relay-locked-');
    cleanups.push(() => data.remove());
    const ledgerPath = join(data.path, 'ledger.db');
    const ledger = await openLedger({ sqlitePath: ledgerPath });
    const { key, record } = await ledger.createKey({ name: 'locked', balanceNano: 10_000_000_000n });
    await ledger.close();
    const relay = await spawnRelay({ dataDir: data.path, env: { OPENAI_API_KEY: 'x', OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`, RELAY_DEMO_BALANCE_USD: '0' } });
    cleanups.push(() => relay.kill());
    const [billed, other] = [TestClient.connect(relay.realtimeUrl(), { key }), TestClient.connect(relay.realtimeUrl(), { key })];
    cleanups.push(() => [billed, other].forEach((c) => c.socket.terminate()));
    await Promise.all([billed.next('session.created'), other.next('session.created')]);

    // The response is admitted (its hold written) before the lock is taken, and held upstream until then.
    const u = usage({ text: [120, 0], out: [30, 0] });
    billed.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    billed.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
    await billed.next('response.created');
    const lock = await holdLock(ledgerPath, mode);
    billed.send({ type: 'simulator.fault', fault: { kind: 'finish_response' } });
    // The upstream has finished the response: its charge is now waiting for the lock.
    await billed.next('response.output_item.done');
    await sleep(300);

    const latencies = [await healthzMs(relay.httpUrl), await healthzMs(relay.httpUrl), await healthzMs(relay.httpUrl)];
    expect(Math.max(...latencies)).toBeLessThan(1_000);
    const seen = other.events.length;
    other.send({ type: 'session.update', session: { type: 'realtime', instructions: 'still here' } });
    await other.next('session.updated', 5_000, seen);
    // A client that has seen a response end has paid for it: not before the charge is in.
    expect(billed.count('response.done')).toBe(0);

    await lock.release();
    const done = await billed.next('response.done', 10_000);
    const responseId = (done.response as { id: string }).id;
    billed.close();
    other.close();
    await Promise.all([billed.closedWith(), other.closedWith()]);
    relay.signal('SIGTERM');
    expect(await relay.exited()).toMatchObject({ code: 0 });

    const book = await sqliteView(ledgerPath).book(record.id);
    const cost = realtimeInvoice('gpt-realtime', u);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[responseId, cost]]);
    expect(book.settlements.find((t) => t.sessionId === book.charges[0]!.sessionId)).toMatchObject({ status: 'settled', totalNano: cost, chargeCount: 1 });
    expect(book.balanceNano).toBe(record.balanceNano - cost);
  }, 60_000);
});
