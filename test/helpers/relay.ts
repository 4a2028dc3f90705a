/**
 * The relay in this process, listening on 127.0.0.1 and a free port, for
 * tests on real sockets. One helper, two billings:
 * - `billing: 'ledger'` (the default): the relay as `relay start` builds it
 *   (`startRelay`): real gatekeeper and billing on a SQLite ledger in a temp
 *   folder, or on PostgreSQL (`postgres`, or `settings.databaseUrl`), admin
 *   and metrics routes, every log line kept in `logs`.
 * - `billing: 'recording'`: the relay server alone (`createRelayServer`) with
 *   RecordingBilling as gatekeeper and meter: every charge and settlement in
 *   memory, no ledger, admin or logs. For the session lifecycle on its own.
 *
 * The upstream, in order of precedence: `upstreams` (a file written into the
 * data folder, each key in an environment variable of its own; ledger only),
 * `upstreamSimulator` (one the test started and closes), `builtInSimulator`
 * (the relay's own, ledger only), or a simulator this helper starts with
 * `simulator` options and closes.
 *
 * Both billings take the same `settings`, on top of TEST_SETTINGS.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { relayTimings, startRelay, type RunningRelay } from '../../src/app/start.js';
import type { KeyRecord, Ledger, NewKey } from '../../src/billing/ledger/index.js';
import type { Billing } from '../../src/billing/service.js';
import { loadSettings, type Settings } from '../../src/config/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createRelayServer, type RelayServer, type RelayServerOptions } from '../../src/server/relay-server.js';
import type { Upstream } from '../../src/server/upstream.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';
import { TestClient } from './client.js';
import { allSessions, allSettlements, createTestKey, postgresView, sqliteLedgerFile, sqliteView, type LedgerView, type SessionRow, type SettlementRow } from './ledger.js';
import { logTextSink, parseLogLine, type LogLine } from './log-lines.js';
import type { ScratchSchema } from './postgres.js';
import { RecordingBilling, TEST_KEY } from './recording-billing.js';
import { createTestCertificate, type TestCertificate } from './tls.js';
import { within } from './wait.js';

/**
 * What every test relay starts with, whatever its billing: short close and
 * shutdown deadlines and a short connect and drain timeout so that a test
 * of a fault does not wait out the production defaults, and a demo key.
 */
export const TEST_SETTINGS: Partial<Settings> = {
  host: '127.0.0.1',
  port: 0,
  connectTimeoutMs: 2_000,
  drainTimeoutMs: 2_000,
  closeTimeoutMs: 1_000,
  shutdownTimeoutMs: 5_000,
  demoBalanceUsd: '5',
  logLevel: 'debug',
};

export interface UpstreamsFile {
  upstreams: Array<{
    name: string;
    kind?: 'openai' | 'azure' | 'azure-preview';
    baseUrl: string;
    /** Put in an environment variable for the relay to read; never in the file. */
    apiKey: string;
    models?: string[];
    deployments?: Record<string, string>;
    apiVersion?: string;
    priority?: number;
  }>;
  aliases?: Record<string, string>;
}

export interface TestRelayOptions {
  billing?: 'ledger' | 'recording';
  /** Timeouts, limits, log level…, on top of TEST_SETTINGS. */
  settings?: Partial<Settings>;
  /** Options of the simulator this helper starts as the upstream. */
  simulator?: SimulatorOptions;
  /** A simulator the test started (and closes), as the upstream. */
  upstreamSimulator?: Simulator;
  /** Ledger only: the relay's own simulator, as `relay start` dials it when no OPENAI_API_KEY is set (upstream name `simulator`). */
  builtInSimulator?: boolean;
  /** Ledger only: the upstreams the relay dials, written to an upstreams file. */
  upstreams?: UpstreamsFile;
  /** Ledger only: serve https:// and wss:// with a throwaway certificate. */
  tls?: boolean;
  /** Ledger only: keep the ledger in this PostgreSQL schema instead of SQLite. */
  postgres?: ScratchSchema;
  /** Ledger only: put something between billing and the ledger (a FaultyLedger). */
  wrapLedger?: (ledger: Ledger) => Ledger;
  /** Ledger only: reuse the data folder (ledger and spool) of an earlier relay; it is then left in place on close. */
  dataDir?: string;
  /** Recording only: server options to replace (a gatekeeper of the test's own, an inspector). */
  server?: Partial<RelayServerOptions>;
}

export interface ConnectOptions {
  /** Default: the relay's `key`; `undefined` sends no key. */
  key?: string;
  model?: string;
  protocols?: string[];
  headers?: Record<string, string>;
}

export interface TestRelay {
  readonly relay: RelayServer;
  /** The upstream simulator; throws for a relay dialling an upstreams file. */
  readonly sim: Simulator;
  /** ws://127.0.0.1:<port>, or wss:// with TLS. */
  readonly wsUrl: string;
  /** http://127.0.0.1:<port>, or https:// with TLS. */
  readonly httpUrl: string;
  /** A key the relay admits: the demo key (created when the ledger has no key yet), or TEST_KEY with recording billing. */
  readonly key: string;
  /** The Realtime endpoint for `model`. */
  url(model?: string): string;
  /** The Realtime endpoint with any query; `model=gpt-realtime` by default. */
  realtimeUrl(query?: string | Record<string, string>): string;
  /** A client on the Realtime endpoint, dropped by close() if still open. */
  connect(options?: ConnectOptions): TestClient;
  /** Resolves once every session has ended and been settled (or handed to the backlog); rejects after `timeoutMs`. */
  idle(timeoutMs?: number): Promise<void>;
  /** Drops every client connect() opened that is still open, then waits until idle. */
  disconnectAll(): Promise<void>;
  close(): Promise<void>;
}

export interface RecordingTestRelay extends TestRelay {
  readonly billing: RecordingBilling;
}

export interface LedgerTestRelay extends TestRelay {
  readonly running: RunningRelay;
  readonly billing: Billing;
  /** The ledger itself, under any wrapper: what the database really holds. */
  readonly ledger: Ledger;
  /** What billing recovery found at start. */
  readonly recovered: RunningRelay['recovered'];
  readonly view: LedgerView;
  readonly dataDir: string;
  readonly certificate: TestCertificate | null;
  /** Every log line the relay wrote so far, parsed. */
  readonly logs: LogLine[];
  /** A key with a unique name; the balance defaults to 10 USD. */
  createKey(input?: Partial<NewKey>): Promise<{ key: string; record: KeyRecord }>;
  /** Settlement rows, oldest first (SQLite ledger only). */
  settlements(): SettlementRow[];
  /** Session rows, oldest first (SQLite ledger only). */
  sessions(): SessionRow[];
}

export function simulatorUpstream(sim: Simulator, name = 'sim', extra: Partial<Upstream> = {}): Upstream {
  return { name, kind: 'openai', baseUrl: simulatorBaseUrl(sim), apiKey: 'sk-sim', models: [], deployments: {}, priority: 0, ...extra };
}

function simulatorBaseUrl(sim: Simulator): string {
  return `${sim.url.replace(/^ws/, 'http')}/v1`;
}

export function startTestRelay(options: TestRelayOptions & { billing: 'recording' }): Promise<RecordingTestRelay>;
export function startTestRelay(options?: TestRelayOptions & { billing?: 'ledger' }): Promise<LedgerTestRelay>;
export async function startTestRelay(options: TestRelayOptions = {}): Promise<RecordingTestRelay | LedgerTestRelay> {
  const cleanups: Array<() => unknown> = [];
  const cleanup = async () => {
    for (const step of cleanups.splice(0).reverse()) await step();
  };
  try {
    return options.billing === 'recording' ? await startRecording(options, cleanups, cleanup) : await startLedger(options, cleanups, cleanup);
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function simulatorFor(options: TestRelayOptions, cleanups: Array<() => unknown>): Promise<Simulator> {
  if (options.upstreamSimulator) return options.upstreamSimulator;
  const sim = await startSimulator(options.simulator ?? {});
  cleanups.push(() => sim.close());
  return sim;
}

/** What both billings share once the relay listens. */
function common(relay: RelayServer, sim: Simulator | null, key: string | null, close: () => Promise<void>): TestRelay {
  const wsUrl = relay.url();
  const realtimeUrl = (query: string | Record<string, string> = { model: 'gpt-realtime' }) => `${wsUrl}/v1/realtime?${typeof query === 'string' ? query : new URLSearchParams(query).toString()}`;
  const clients: TestClient[] = [];
  const idle = (timeoutMs = 10_000) =>
    within(relay.registry.empty(), timeoutMs, () => {
      const live = relay.registry.list().map((session) => `${session.link.sessionId} (${String(session.actor.getSnapshot().value)})`);
      return `sessions still live after ${timeoutMs} ms: ${live.join(', ')}`;
    });
  let closed = false;
  return {
    relay,
    get sim(): Simulator {
      if (!sim) throw new Error('this relay dials an upstreams file, not a simulator');
      return sim;
    },
    wsUrl,
    httpUrl: wsUrl.replace(/^ws/, 'http'),
    get key(): string {
      if (key === null) throw new Error('the relay created no demo key: its ledger already had keys (use createKey)');
      return key;
    },
    url: (model = 'gpt-realtime') => realtimeUrl({ model }),
    realtimeUrl,
    connect(connectOptions = {}) {
      const client = TestClient.connect(realtimeUrl({ model: connectOptions.model ?? 'gpt-realtime' }), {
        key: 'key' in connectOptions ? connectOptions.key : this.key,
        protocols: connectOptions.protocols,
        headers: connectOptions.headers,
      });
      clients.push(client);
      return client;
    },
    idle,
    async disconnectAll() {
      for (const client of clients.splice(0)) if (client.closed === null) client.socket.terminate();
      await idle();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const client of clients) client.socket.terminate();
      await close();
    },
  };
}

async function startRecording(options: TestRelayOptions, cleanups: Array<() => unknown>, cleanup: () => Promise<void>): Promise<RecordingTestRelay> {
  for (const ledgerOnly of ['builtInSimulator', 'upstreams', 'tls', 'postgres', 'wrapLedger', 'dataDir'] as const) {
    if (options[ledgerOnly] !== undefined) throw new Error(`${ledgerOnly} needs billing: 'ledger'`);
  }
  const settings = loadSettings({}, { ...TEST_SETTINGS, ...options.settings });
  const sim = await simulatorFor(options, cleanups);
  const billing = new RecordingBilling();
  const relay = createRelayServer({
    host: settings.host,
    port: settings.port,
    timings: relayTimings(settings),
    maxPayloadBytes: settings.maxPayloadBytes,
    allowedOrigins: [],
    allowInsecureSubprotocolKey: false,
    gatekeeper: billing,
    upstreamsFor: () => [simulatorUpstream(sim)],
    ...options.server,
  });
  await relay.listen();
  cleanups.push(() => relay.close());
  // Object.assign, not a spread: a spread would read the `sim` getter.
  return Object.assign(common(relay, sim, TEST_KEY, cleanup), { billing });
}

let envCounter = 0;

async function startLedger(options: TestRelayOptions, cleanups: Array<() => unknown>, cleanup: () => Promise<void>): Promise<LedgerTestRelay> {
  if (options.server) throw new Error("server options need billing: 'recording'");
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'relay-test-'));
  if (options.dataDir === undefined) cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const overrides: Partial<Settings> = { ...TEST_SETTINGS, dataDir, ...(options.postgres ? { databaseUrl: options.postgres.url } : {}), ...options.settings };
  let sim: Simulator | null = null;
  if (options.upstreams) {
    const file = join(dataDir, 'upstreams.json');
    const upstreams = options.upstreams.upstreams.map(({ apiKey, ...entry }) => {
      // Each relay gets names of its own: test files in one worker must not see each other's keys.
      const apiKeyEnv = `RELAY_TEST_UPSTREAM_KEY_${process.pid}_${++envCounter}`;
      process.env[apiKeyEnv] = apiKey;
      cleanups.push(() => delete process.env[apiKeyEnv]);
      return { ...entry, apiKeyEnv };
    });
    writeFileSync(file, JSON.stringify({ upstreams, aliases: options.upstreams.aliases ?? {} }, null, 2));
    overrides.upstreamsFile = file;
  } else if (!options.builtInSimulator) {
    sim = await simulatorFor(options, cleanups);
    overrides.openaiApiKey = 'sk-sim';
    overrides.openaiBaseUrl = simulatorBaseUrl(sim);
  }
  let certificate: TestCertificate | null = null;
  if (options.tls) {
    const made = createTestCertificate();
    certificate = made;
    cleanups.push(() => made.remove());
    overrides.tlsCertFile = made.certFile;
    overrides.tlsKeyFile = made.keyFile;
  }
  const settings = loadSettings({}, overrides);
  // Kept as text and parsed when a test reads them: a JSON.parse inside the
  // logger's write would count as the relay's own (see test/hotpath).
  const logText: string[] = [];
  const parsed: LogLine[] = [];
  // Keys are made and read on the real ledger, never through the wrapper.
  let real: Ledger | undefined;
  const running = await startRelay(settings, createLogger(settings.logLevel, logTextSink(logText)), {
    wrapLedger: (ledger) => {
      real = ledger;
      return options.wrapLedger ? options.wrapLedger(ledger) : ledger;
    },
  });
  cleanups.push(() => running.stop());
  const ledger = real!;
  const ledgerFile = sqliteLedgerFile(dataDir);
  const sqliteOnly = () => {
    if (settings.databaseUrl) throw new Error('settlements() and sessions() read the SQLite ledger; this relay uses PostgreSQL');
    return ledgerFile;
  };
  const relay = Object.assign(common(running.relay, sim ?? running.simulator, running.demoKey, cleanup), {
    running,
    billing: running.billing,
    ledger,
    recovered: running.recovered,
    view: options.postgres ? postgresView(options.postgres) : sqliteView(ledgerFile),
    dataDir,
    certificate,
    createKey: (input?: Partial<NewKey>) => createTestKey(ledger, input),
    settlements: () => allSettlements(sqliteOnly()),
    sessions: () => allSessions(sqliteOnly()),
  });
  return Object.defineProperty(relay, 'logs', {
    get() {
      for (const line of logText.slice(parsed.length)) parsed.push(parseLogLine(line));
      return parsed;
    },
  }) as LedgerTestRelay;
}
