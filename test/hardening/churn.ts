/**
 * Leak-free churn: opens, relays and ends sessions by every end path (client
 * close, upstream close, error, operator cancel, quota, idle timeout), many
 * at a time, against the real relay (SQLite ledger, billing, limits) in this
 * thread, with the upstream simulator and the clients in a worker thread.
 * Afterwards it checks that everything came back to the baseline: handles,
 * sockets, timers, listeners, heap after GC, the session registry, the
 * concurrency slots, and the ledger (every session settled once, none open).
 * Prints the figures as one JSON line; exits 1 when a check fails.
 *
 *   node --expose-gc --import tsx test/hardening/churn.ts --sessions 10000
 *   npm run soak        (100,000 sessions; stops by itself after --max-seconds)
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { createGatekeeper } from '../../src/app/gatekeeper.js';
import { relayTimings } from '../../src/app/start.js';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { builtInPrices } from '../../src/billing/prices.js';
import { Billing } from '../../src/billing/service.js';
import { loadSettings } from '../../src/config/settings.js';
import { MemoryLimits } from '../../src/limits/index.js';
import { createRelayServer } from '../../src/server/relay-server.js';
import type { Upstream } from '../../src/server/upstream.js';
import type { FromOutside, Path, ToOutside } from './churn-outside.js';

const PATHS: Path[] = ['client_close', 'upstream_close', 'error', 'cancel', 'quota', 'idle'];
const END_REASON: Record<Path, string> = {
  client_close: 'client_closed',
  upstream_close: 'upstream_closed',
  error: 'error:invalid_frame',
  cancel: 'cancelled:operator',
  quota: 'cancelled:insufficient_quota',
  idle: 'cancelled:idle_timeout',
};
/**
 * Idle sessions go to a relay of their own with a short idle timeout; every
 * other path goes to one whose idle timeout no busy session can reach, even
 * on a machine starved for CPU: each session ends by its own path only.
 */
const IDLE_TIMEOUT_MS = 1_000;
const BUSY_IDLE_TIMEOUT_MS = 600_000;
/** One session in IDLE_EVERY waits for the idle timeout; the rest cycle through the other paths. */
const IDLE_EVERY = 25;

function pathOf(index: number): Path {
  if (index % IDLE_EVERY === IDLE_EVERY - 1) return 'idle';
  return PATHS[index % (PATHS.length - 1)]!;
}

export interface ChurnOptions {
  sessions: number;
  concurrency: number;
  maxSeconds: number;
  heapToleranceMiB: number;
  warmup: number;
}

export interface ChurnFigures {
  sessions: number;
  completed: number;
  failed: number;
  failures: string[];
  seconds: number;
  sessionsPerSecond: number;
  stoppedByTime: boolean;
  attempted: Record<string, number>;
  endReasons: Record<string, number>;
  heapBaselineMiB: number;
  heapAfterMiB: number;
  heapDeltaMiB: number;
  heapToleranceMiB: number;
  resourcesBaseline: Record<string, number>;
  resourcesAfter: Record<string, number>;
  listenersBaseline: number;
  listenersAfter: number;
  registryAfter: number;
  limitSlotsAfter: number;
  ledgerSessions: number;
  settlements: number;
  settledTwice: number;
  openLedgerSessions: number;
  charges: number;
  expectedCharges: number;
  simulatorSocketsAfter: number;
  problems: string[];
}

const gc = (globalThis as { gc?: () => void }).gc;

async function heapAfterGc(): Promise<number> {
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

function sameResources(a: Record<string, number>, b: Record<string, number>): boolean {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].every((t) => (a[t] ?? 0) === (b[t] ?? 0));
}

/** Polls `check` (sockets finish closing a tick or two after the registry lets go of them). */
async function settleDown(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** The sessions to run: each with its path and key (quota and cancel sessions get a key of their own). */
async function plan(ledger: Ledger, from: number, count: number, mainKey: { key: string; keyId: string }) {
  const sessions: Array<{ path: Path; key: string; keyId: string }> = [];
  for (let i = from; i < from + count; i++) {
    const path = pathOf(i);
    if (path === 'quota' || path === 'cancel') {
      // A quota key can pay for nothing: its first response leaves it overdrawn.
      const own = await ledger.createKey({ name: `churn-${i}`, balanceNano: path === 'quota' ? 1n : 1_000_000_000n });
      sessions.push({ path, key: own.key, keyId: own.record.id });
    } else sessions.push({ path, ...mainKey });
  }
  return sessions;
}

export async function churn(options: ChurnOptions): Promise<ChurnFigures> {
  // The ledger is real; its disk need not be: on tmpfs the run measures the relay, not the disk.
  const dataDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'relay-churn-'));
  const outside = new Worker(new URL('./churn-outside.mjs', import.meta.url));
  const inbox: FromOutside[] = [];
  const waiters: Array<() => void> = [];
  const receive = async <T extends FromOutside['type']>(type: T): Promise<Extract<FromOutside, { type: T }>> => {
    for (;;) {
      const index = inbox.findIndex((m) => m.type === type);
      if (index !== -1) return inbox.splice(index, 1)[0] as Extract<FromOutside, { type: T }>;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const send = (message: ToOutside) => outside.postMessage(message);

  const ledger = await openLedger({ sqlitePath: join(dataDir, 'ledger.db') });
  const billing = new Billing({ ledger, prices: builtInPrices, instanceId: 'churn', reserveNano: 0n, spoolPath: join(dataDir, 'unwritten.jsonl'), staleAfterMs: 0, heartbeatMs: 60_000 });
  await billing.recover();
  const limits = new MemoryLimits({ maxSessionsPerKey: 0, sessionsPerMinute: 0, handshakesPerMinutePerIp: 0 });

  outside.on('message', (message: FromOutside) => {
    if (message.type === 'cancel') {
      for (const live of relay.registry.list()) if (live.link.caller.keyId === message.keyId) relay.registry.cancel(live.link.sessionId, 'operator');
      return;
    }
    inbox.push(message);
    for (const wake of waiters.splice(0)) wake();
  });
  const { simulatorUrl } = await receive('ready');
  const upstream: Upstream = { name: 'sim', kind: 'openai', baseUrl: `${simulatorUrl.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim', models: [], deployments: {}, priority: 0 };
  const gatekeeper = createGatekeeper(billing, { upstreams: [upstream], aliases: {} }, limits);
  const makeRelay = (idleTimeoutMs: number) =>
    createRelayServer({
      host: '127.0.0.1',
      port: 0,
      timings: { ...relayTimings(loadSettings({})), idleTimeoutMs, drainTimeoutMs: 2_000, closeTimeoutMs: 2_000 },
      maxPayloadBytes: 1024 * 1024,
      allowedOrigins: [],
      allowInsecureSubprotocolKey: false,
      gatekeeper,
      upstreamsFor: () => [upstream],
    });
  const relay = makeRelay(BUSY_IDLE_TIMEOUT_MS);
  const idleRelay = makeRelay(IDLE_TIMEOUT_MS);
  await relay.listen();
  await idleRelay.listen();
  const urls = { busy: `${relay.url()}/v1/realtime?model=gpt-realtime-mini`, idle: `${idleRelay.url()}/v1/realtime?model=gpt-realtime-mini` };
  const main = await ledger.createKey({ name: 'churn', balanceNano: 1_000_000_000_000_000n });
  const mainKey = { key: main.key, keyId: main.record.id };
  const serverListeners = () => [relay, idleRelay].reduce((sum, r) => sum + r.server.eventNames().reduce((n, name) => n + r.server.listenerCount(name), 0), 0);
  const emptied = () => Promise.all([relay.registry.empty(), idleRelay.registry.empty()]);

  // Warm-up: pools, JIT and caches reach their working size before the baseline is taken.
  send({ type: 'run', urls, plan: await plan(ledger, 0, options.warmup, mainKey), concurrency: options.concurrency, deadline: Number.POSITIVE_INFINITY });
  const warm = await receive('done');
  await emptied();
  const resourcesBaseline = resources();
  await settleDown(() => sameResources(resources(), resourcesBaseline), 1_000);
  const heapBaseline = await heapAfterGc();
  const listenersBaseline = serverListeners();

  // The plan is handed over, not kept: 100,000 keys held here would read as a leak of the relay's.
  const sessions = await plan(ledger, options.warmup, options.sessions, mainKey);
  const began = Date.now();
  send({ type: 'run', urls, plan: sessions.splice(0), concurrency: options.concurrency, deadline: began + options.maxSeconds * 1000 });
  const done = await receive('done');
  const seconds = (Date.now() - began) / 1000;
  await emptied();
  await settleDown(() => sameResources(resources(), resourcesBaseline), 5_000);
  const resourcesAfter = resources();
  const heapAfter = await heapAfterGc();
  await billing.backlog.flush();

  const db = new Database(join(dataDir, 'ledger.db'), { readonly: true });
  const count = (sql: string) => Number((db.prepare(sql).get() as { n: bigint | number }).n);
  const endReasons: Record<string, number> = {};
  for (const row of db.prepare('SELECT end_reason AS reason, COUNT(*) AS n FROM settlements GROUP BY end_reason').all() as Array<{ reason: string; n: number }>) endReasons[row.reason] = Number(row.n);
  const figures: ChurnFigures = {
    sessions: options.sessions,
    completed: done.completed,
    failed: warm.failed + done.failed,
    failures: [...warm.failures, ...done.failures],
    seconds,
    sessionsPerSecond: Math.round(done.completed / seconds),
    stoppedByTime: done.stoppedByTime,
    attempted: done.attempted,
    endReasons,
    heapBaselineMiB: round(heapBaseline / 2 ** 20),
    heapAfterMiB: round(heapAfter / 2 ** 20),
    heapDeltaMiB: round((heapAfter - heapBaseline) / 2 ** 20),
    heapToleranceMiB: options.heapToleranceMiB,
    resourcesBaseline,
    resourcesAfter,
    listenersBaseline,
    listenersAfter: serverListeners(),
    registryAfter: relay.registry.size + idleRelay.registry.size,
    limitSlotsAfter: limits.stats().openSessions,
    ledgerSessions: count('SELECT COUNT(*) AS n FROM sessions'),
    settlements: count('SELECT COUNT(*) AS n FROM settlements'),
    settledTwice: count('SELECT COUNT(*) AS n FROM (SELECT session_id FROM settlements GROUP BY session_id HAVING COUNT(*) > 1)'),
    openLedgerSessions: count("SELECT COUNT(*) AS n FROM sessions WHERE status = 'open'"),
    charges: count('SELECT COUNT(*) AS n FROM charges'),
    expectedCharges: 0,
    simulatorSocketsAfter: done.simulatorSockets,
    problems: [],
  };
  db.close();

  // What the ledger must hold: every session run (warm-up included), by path.
  const run: Record<string, number> = {};
  for (const counts of [warm.attempted, done.attempted]) for (const [path, n] of Object.entries(counts)) run[path] = (run[path] ?? 0) + n;
  const total = Object.values(run).reduce((a, b) => a + b, 0);
  figures.expectedCharges = (run.client_close ?? 0) + (run.quota ?? 0);
  const problems = figures.problems;
  if (figures.failed > 0) problems.push(`${figures.failed} sessions did not end as their path should`);
  if (figures.heapDeltaMiB > options.heapToleranceMiB) problems.push(`the heap grew ${figures.heapDeltaMiB} MiB (tolerance ${options.heapToleranceMiB} MiB)`);
  if (!sameResources(resourcesAfter, resourcesBaseline)) problems.push('active resources differ from the baseline');
  if (figures.listenersAfter !== listenersBaseline) problems.push('server listeners differ from the baseline');
  if (figures.registryAfter !== 0) problems.push(`${figures.registryAfter} sessions left in the registry`);
  if (figures.limitSlotsAfter !== 0) problems.push(`${figures.limitSlotsAfter} concurrency slots still held`);
  if (figures.simulatorSocketsAfter !== 0) problems.push(`${figures.simulatorSocketsAfter} upstream sockets still open`);
  if (figures.ledgerSessions !== total || figures.settlements !== total) problems.push(`ledger: ${figures.ledgerSessions} sessions, ${figures.settlements} settlements, ${total} run`);
  if (figures.settledTwice !== 0) problems.push(`${figures.settledTwice} sessions settled twice`);
  if (figures.openLedgerSessions !== 0) problems.push(`${figures.openLedgerSessions} sessions still open in the ledger`);
  if (figures.charges !== figures.expectedCharges) problems.push(`${figures.charges} charges, expected ${figures.expectedCharges}`);
  for (const path of PATHS) {
    const seen = endReasons[END_REASON[path]] ?? 0;
    if (seen !== (run[path] ?? 0)) problems.push(`${seen} sessions ended ${END_REASON[path]}, expected ${run[path] ?? 0}`);
  }

  await relay.close();
  await idleRelay.close();
  await limits.close();
  await billing.close();
  send({ type: 'close' });
  await receive('closed');
  await outside.terminate();
  rmSync(dataDir, { recursive: true, force: true });
  return figures;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', default: '10000' },
      concurrency: { type: 'string', default: '50' },
      'max-seconds': { type: 'string', default: '600' },
      'heap-tolerance-mib': { type: 'string', default: '8' },
      warmup: { type: 'string', default: '500' },
    },
  });
  const figures = await churn({
    sessions: Number(values.sessions),
    concurrency: Number(values.concurrency),
    maxSeconds: Number(values['max-seconds']),
    heapToleranceMiB: Number(values['heap-tolerance-mib']),
    warmup: Number(values.warmup),
  });
  process.stdout.write(`${JSON.stringify(figures)}\n`);
  process.exitCode = figures.problems.length === 0 ? 0 : 1;
}
