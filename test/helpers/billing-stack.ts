/**
 * The relay with its real billing, in process, against an upstream simulator
 * the test owns (so the test decides what the upstream reports and when it
 * fails). Keys, sessions, charges and settlements are read straight from the
 * ledger's database, the way an operator would check a bill.
 *
 * - `startBillingStack` builds the relay with `startRelay` from the app's own
 *   settings: SQLite in a temp folder, or a scratch PostgreSQL schema.
 * - `startBillingRig` builds the same parts by hand so that a test can put a
 *   wrapper (a ledger that fails on demand) between `Billing` and the ledger.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startRelay } from '../../src/app/start.js';
import type { KeyRecord, Ledger, NewKey } from '../../src/billing/ledger/index.js';
import type { Billing } from '../../src/billing/service.js';
import { loadSettings, type Settings } from '../../src/config/settings.js';
import type { RelayServer } from '../../src/server/relay-server.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';
import { TestClient } from './client.js';
import type { ScratchSchema } from './postgres.js';

export interface SessionRow {
  id: string;
  keyId: string;
  status: string;
  spendNano: bigint;
  instanceId: string;
  endReason: string | null;
}

export interface ChargeRow {
  sessionId: string;
  kind: string;
  itemId: string;
  model: string;
  costNano: bigint;
  usage: unknown;
}

export interface SettlementRow {
  sessionId: string;
  status: string;
  totalNano: bigint;
  chargeCount: number;
  endReason: string;
  summary: Record<string, unknown>;
}

/** One key's money, as the database holds it. */
export interface KeyBook {
  balanceNano: bigint;
  sessions: SessionRow[];
  charges: ChargeRow[];
  settlements: SettlementRow[];
}

/** Reads the ledger's tables over a connection of its own. */
export interface LedgerView {
  book(keyId: string): Promise<KeyBook>;
}

type Row = Record<string, unknown>;

function toBook(key: Row | undefined, sessions: Row[], charges: Row[], settlements: Row[]): KeyBook {
  if (!key) throw new Error('no such key');
  return {
    balanceNano: key.balance_nano as bigint,
    sessions: sessions.map((r) => ({
      id: r.id as string,
      keyId: r.key_id as string,
      status: r.status as string,
      spendNano: r.spend_nano as bigint,
      instanceId: r.instance_id as string,
      endReason: (r.end_reason as string | null) ?? null,
    })),
    charges: charges.map((r) => ({
      sessionId: r.session_id as string,
      kind: r.kind as string,
      itemId: r.item_id as string,
      model: r.model as string,
      costNano: r.cost_nano as bigint,
      usage: JSON.parse(r.usage_json as string) as unknown,
    })),
    settlements: settlements.map((r) => ({
      sessionId: r.session_id as string,
      status: r.status as string,
      totalNano: r.total_nano as bigint,
      chargeCount: Number(r.charge_count),
      endReason: r.end_reason as string,
      summary: JSON.parse(r.summary_json as string) as Record<string, unknown>,
    })),
  };
}

const BOOK_SQL = {
  key: 'SELECT balance_nano FROM keys WHERE id = $1',
  sessions: 'SELECT * FROM sessions WHERE key_id = $1 ORDER BY started_at, id',
  charges: 'SELECT * FROM charges WHERE key_id = $1 ORDER BY id',
  settlements: 'SELECT t.* FROM settlements t JOIN sessions s ON s.id = t.session_id WHERE s.key_id = $1 ORDER BY t.session_id',
};

/** A read-only view of an SQLite ledger file; each read opens and closes its own connection. */
export function sqliteView(path: string): LedgerView {
  return {
    async book(keyId) {
      const db = new Database(path, { readonly: true, fileMustExist: true });
      try {
        db.defaultSafeIntegers(true);
        const all = (sql: string) => db.prepare(sql.replace('$1', '?')).all(keyId) as Row[];
        return toBook(all(BOOK_SQL.key)[0], all(BOOK_SQL.sessions), all(BOOK_SQL.charges), all(BOOK_SQL.settlements));
      } finally {
        db.close();
      }
    },
  };
}

export function postgresView(schema: ScratchSchema): LedgerView {
  return {
    async book(keyId) {
      // One connection, one query at a time.
      const all = (sql: string) => schema.query<Row>(sql, [keyId]);
      const key = await all(BOOK_SQL.key);
      const sessions = await all(BOOK_SQL.sessions);
      const charges = await all(BOOK_SQL.charges);
      return toBook(key[0], sessions, charges, await all(BOOK_SQL.settlements));
    },
  };
}

export interface BillingStack {
  readonly sim: Simulator;
  readonly relay: RelayServer;
  readonly billing: Billing;
  /** The ledger itself, under any fault wrapper: what the database really holds. */
  readonly ledger: Ledger;
  readonly view: LedgerView;
  readonly dataDir: string;
  url(model?: string): string;
  /** A key with a unique name; the balance defaults to 10 USD. */
  createKey(input?: Partial<NewKey>): Promise<{ key: string; record: KeyRecord }>;
  connect(key: string, model?: string): TestClient;
  /** Resolves once every session has ended and its settlement is written (or handed to the backlog); rejects after `timeoutMs`. */
  idle(timeoutMs?: number): Promise<void>;
  /** Drops every client this stack connected that is still open, then waits until idle: one failed test leaves nothing behind. */
  disconnectAll(): Promise<void>;
  close(): Promise<void>;
}

export interface BillingStackOptions {
  /** Settings on top of the defaults (port 0, a temp data folder, the test's simulator as upstream). */
  settings?: Partial<Settings>;
  simulator?: SimulatorOptions;
  /** Keep the ledger in this PostgreSQL schema instead of SQLite. */
  postgres?: ScratchSchema;
  /** Put something between billing and the ledger (a FaultyLedger). */
  wrap?: (ledger: Ledger) => Ledger;
  /** Reuse the data folder (ledger and spool file) of an earlier stack; it is then left in place on close. */
  dataDir?: string;
}

const silent = pino({ level: 'silent' });
let keySeq = 0;

function keyMaker(ledger: Ledger) {
  return (input: Partial<NewKey> = {}) =>
    ledger.createKey({ balanceNano: 10_000_000_000n, ...input, name: input.name ?? `key_${process.pid}_${++keySeq}_${Date.now().toString(36)}` });
}

function simulatorBaseUrl(sim: Simulator): string {
  return `${sim.url.replace(/^ws/, 'http')}/v1`;
}

function stackParts(sim: Simulator, relay: RelayServer, clients: TestClient[]) {
  function idle(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const live = relay.registry.list().map((session) => `${session.link.sessionId} (${String(session.actor.getSnapshot().value)})`);
        reject(new Error(`sessions still live after ${timeoutMs} ms: ${live.join(', ')}`));
      }, timeoutMs);
    });
    return Promise.race([relay.registry.empty(), late]).finally(() => clearTimeout(timer));
  }
  return {
    url: (model = 'gpt-realtime') => `${relay.url()}/v1/realtime?model=${encodeURIComponent(model)}`,
    connect(key: string, model = 'gpt-realtime'): TestClient {
      const client = TestClient.connect(`${relay.url()}/v1/realtime?model=${encodeURIComponent(model)}`, { key });
      clients.push(client);
      return client;
    },
    idle,
    async disconnectAll(): Promise<void> {
      for (const client of clients.splice(0)) if (client.closed === null) client.socket.terminate();
      await idle();
    },
    sim,
  };
}

/** The relay as `relay start` builds it (startRelay), with the test's simulator as its OpenAI upstream. */
export async function startBillingStack(options: BillingStackOptions = {}): Promise<BillingStack & { recovered: BillingRig['recovered'] }> {
  const sim = await startSimulator({ chunkIntervalMs: 0, ...options.simulator });
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'relay-billing-'));
  const settings = loadSettings(
    {},
    {
      port: 0,
      host: '127.0.0.1',
      dataDir,
      openaiApiKey: 'sk-sim',
      openaiBaseUrl: simulatorBaseUrl(sim),
      demoBalanceUsd: '0',
      logLevel: 'silent',
      ...(options.postgres ? { databaseUrl: options.postgres.url } : {}),
      ...options.settings,
    },
  );
  // Keys are made and read on the real ledger, never through the wrapper.
  let real: Ledger | undefined;
  const running = await startRelay(settings, silent, {
    wrapLedger: (ledger) => {
      real = ledger;
      return options.wrap ? options.wrap(ledger) : ledger;
    },
  });
  const ledger = real!;
  const clients: TestClient[] = [];
  let closed = false;
  return {
    ...stackParts(sim, running.relay, clients),
    relay: running.relay,
    billing: running.billing,
    ledger,
    recovered: running.recovered,
    view: options.postgres ? postgresView(options.postgres) : sqliteView(join(dataDir, 'ledger.db')),
    dataDir,
    createKey: keyMaker(ledger),
    async close() {
      if (closed) return;
      closed = true;
      for (const client of clients) client.socket.terminate();
      await running.stop();
      await sim.close();
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type BillingRigOptions = Omit<BillingStackOptions, 'postgres'>;

export interface BillingRig extends BillingStack {
  /** What `billing.recover()` found when the rig started. */
  readonly recovered: Awaited<ReturnType<Billing['recover']>>;
}

/** The billing stack with a wrapped ledger, over a data folder that may outlive it. */
export function startBillingRig(options: BillingRigOptions = {}): Promise<BillingRig> {
  return startBillingStack(options);
}
