/*
 * PostgreSQL ledger writes: round trips per hot-path write, and the charges per
 * second one database sustains from several processes, each with its own pool.
 *
 *   npx tsx bench/ledger-writes.ts [--processes 4] [--connections 4] [--seconds 5] [--max-charges 40000]
 *
 * Loopback only (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test),
 * in a scratch schema dropped afterwards. Each worker charges its own key, so the
 * figure is the database's write rate rather than one key row's lock queue.
 */
import { fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openPostgresLedger } from '../src/billing/ledger/postgres.js';
import type { Ledger } from '../src/billing/ledger/types.js';

const { values } = parseArgs({
  options: {
    processes: { type: 'string', default: '4' },
    connections: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '5' },
    'max-charges': { type: 'string', default: '40000' },
    child: { type: 'string' },
  },
});

const BASE = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const INSTANCE = 'bench-ledger-writes';

if (values.child !== undefined) {
  await runChild(values.child);
} else {
  await runParent();
}

/** Counts every query any pg client of this process sends: one query, one round trip. */
function countRoundTrips(): { take(): number } {
  const original = pg.Client.prototype.query;
  let count = 0;
  pg.Client.prototype.query = function countedQuery(this: pg.Client, ...args: unknown[]) {
    count += 1;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  return {
    take() {
      const taken = count;
      count = 0;
      return taken;
    },
  };
}

async function openSessionFor(ledger: Ledger, keyId: string): Promise<string> {
  const id = randomUUID();
  await ledger.openSession({ id, keyId, model: 'gpt-realtime', upstream: 'bench', instanceId: INSTANCE, startedAt: new Date() });
  return id;
}

async function runParent(): Promise<void> {
  const name = `ledger_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: BASE, connectionTimeoutMillis: 2_000 });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${name}`);
  const url = new URL(BASE);
  url.searchParams.set('options', `-c search_path=${name}`);
  try {
    const ledger = await openPostgresLedger(url.href, { maxConnections: 1 });
    const { record } = await ledger.createKey({ name: 'round-trips', balanceNano: 1_000_000_000_000n });
    const trips = countRoundTrips();
    const sessionId = await openSessionFor(ledger, record.id);
    const open = trips.take();
    await ledger.placeHold({ sessionId, keyId: record.id, amountNano: 1_000n, reserveNano: 0n });
    const hold = trips.take();
    const charge = { sessionId, keyId: record.id, kind: 'response' as const, itemId: 'resp_1', model: 'gpt-realtime', costNano: 1_000n, usage: {} };
    await ledger.recordCharge(charge);
    const charged = trips.take();
    await ledger.recordCharge(charge);
    const replayed = trips.take();
    await ledger.settleSession({ sessionId, endedAt: new Date(), endReason: 'bench', status: 'settled', summary: {} });
    const settled = trips.take();
    await ledger.close();
    console.log('round trips per write (PostgreSQL):');
    console.log(`  open session ${open}, place hold ${hold}, charge ${charged}, charge replayed ${replayed}, settle ${settled}`);

    const processes = Number(values.processes);
    const perChild = Math.ceil(Number(values['max-charges']) / processes);
    const started = performance.now();
    const counts = await Promise.all(
      Array.from({ length: processes }, (_, index) =>
        new Promise<{ done: number; seconds: number }>((resolve, reject) => {
          const child = fork(fileURLToPath(import.meta.url), [
            '--child', url.href, '--connections', values.connections, '--seconds', values.seconds, '--max-charges', String(perChild),
          ], { execArgv: ['--import', 'tsx'], env: { ...process.env, BENCH_CHILD_INDEX: String(index) } });
          child.on('message', (message) => resolve(message as { done: number; seconds: number }));
          child.on('error', reject);
          child.on('exit', (code) => code === 0 || reject(new Error(`worker exited with ${code}`)));
        }),
      ),
    );
    const wall = (performance.now() - started) / 1000;
    const total = counts.reduce((sum, { done }) => sum + done, 0);
    // The workers charge over the same window, so their rates add up.
    const rate = counts.reduce((sum, { done, seconds }) => sum + done / seconds, 0);
    console.log(
      `charges/s: ${Math.round(rate)} (${total} charges, ${processes} processes × ${values.connections} connections, ${wall.toFixed(1)} s with start-up)`,
    );
  } finally {
    await admin.query(`DROP SCHEMA ${name} CASCADE`);
    await admin.end();
  }
}

/** Charges as fast as its connections allow, until its count or time runs out; reports its own rate. */
async function runChild(url: string): Promise<void> {
  const connections = Number(values.connections);
  const limit = Number(values['max-charges']);
  const ledger = await openPostgresLedger(url, { maxConnections: connections });
  const index = process.env.BENCH_CHILD_INDEX ?? '0';
  const workers = await Promise.all(
    Array.from({ length: connections }, async (_, worker) => {
      const { record } = await ledger.createKey({ name: `bench-${index}-${worker}`, balanceNano: 1_000_000_000_000_000n });
      return { keyId: record.id, sessionId: await openSessionFor(ledger, record.id) };
    }),
  );
  let done = 0;
  let item = 0;
  const started = performance.now();
  const deadline = started + Number(values.seconds) * 1000;
  await Promise.all(
    workers.map(async ({ keyId, sessionId }) => {
      while (done < limit && performance.now() < deadline) {
        item += 1;
        await ledger.recordCharge({ sessionId, keyId, kind: 'response', itemId: `resp_${item}`, model: 'gpt-realtime', costNano: 1_000n, usage: { total_tokens: 1 } });
        done += 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await ledger.close();
  process.stderr.write(`  worker ${index}: ${done} charges in ${seconds.toFixed(2)} s = ${Math.round(done / seconds)}/s\n`);
  process.send?.({ done, seconds });
  process.disconnect?.();
}
