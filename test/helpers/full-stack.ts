import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { startRelay, type RunningRelay } from '../../src/app/start.js';
import type { Ledger } from '../../src/billing/ledger/index.js';
import { loadSettings, type Settings } from '../../src/config/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';
import { createTestCertificate, type TestCertificate } from './tls.js';

/**
 * The whole relay as `relay start` builds it (real billing on a SQLite ledger
 * in a temp folder, real gatekeeper, real upstream dialling), listening on
 * 127.0.0.1:0. Where the upstream is, in order of precedence:
 * - `upstreams`: an upstreams file is written and each key put in an
 *   environment variable of its own (removed again by close());
 * - `simulator`: a simulator the test started (OPENAI_API_KEY=sk-sim and
 *   OPENAI_BASE_URL pointing at it); the test closes it;
 * - `simulatorOptions`: a simulator this helper starts and closes;
 * - none of them: the relay's own built-in simulator.
 */
export interface FullStackOptions {
  upstreams?: UpstreamsFile;
  simulator?: Simulator;
  simulatorOptions?: SimulatorOptions;
  /** Serve https:// and wss:// with a throwaway certificate. */
  tls?: boolean;
  /** Balance of the demo key. Default 5. */
  demoBalanceUsd?: string;
  /** Any other setting (timeouts, limits...). */
  settings?: Partial<Settings>;
  /** Default 'debug': every line is kept in `logs`. */
  logLevel?: Settings['logLevel'];
}

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

export interface LogLine {
  level: number;
  msg?: string;
  [field: string]: unknown;
}

export interface SettlementRow {
  sessionId: string;
  status: string;
  totalNano: bigint;
  chargeCount: number;
  endReason: string;
  summary: Record<string, unknown>;
}

export interface SessionRow {
  id: string;
  model: string;
  status: string;
  spendNano: bigint;
}

export interface FullStack {
  running: RunningRelay;
  /** ws://127.0.0.1:<port>, or wss:// with TLS. */
  url: string;
  /** http://127.0.0.1:<port>, or https:// with TLS. */
  httpUrl: string;
  /** The Realtime endpoint; `query` defaults to `model=gpt-realtime`. */
  realtimeUrl(query?: string | Record<string, string>): string;
  /** The demo key the relay created on its first start. */
  key: string;
  ledger: Ledger;
  /** The upstream simulator (the test's, this helper's, or the relay's built-in one); null with `upstreams`. */
  sim: Simulator | null;
  certificate: TestCertificate | null;
  /** Every log line the relay wrote, parsed. */
  logs: LogLine[];
  dataDir: string;
  /** Resolves when every session has ended and been settled in the ledger. */
  settled(): Promise<void>;
  /** Settlement rows, oldest first (SQLite ledger only). */
  settlements(): SettlementRow[];
  /** Session rows, oldest first (SQLite ledger only). */
  sessions(): SessionRow[];
  close(): Promise<void>;
}

/** A pino destination that keeps each JSON line. */
function logSink(lines: LogLine[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          lines.push({ level: 0, msg: line });
        }
      }
      done();
    },
  });
}

let envCounter = 0;

export async function startFullStack(options: FullStackOptions = {}): Promise<FullStack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'relay-full-'));
  const logs: LogLine[] = [];
  const envNames: string[] = [];
  let certificate: TestCertificate | null = null;
  let ownSim: Simulator | null = null;
  let running: RunningRelay | null = null;
  const cleanup = async () => {
    await ownSim?.close();
    certificate?.remove();
    for (const name of envNames) delete process.env[name];
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const overrides: Partial<Settings> = {
      host: '127.0.0.1',
      port: 0,
      dataDir,
      demoBalanceUsd: options.demoBalanceUsd ?? '5',
      logLevel: options.logLevel ?? 'debug',
      shutdownTimeoutMs: 5_000,
      closeTimeoutMs: 1_000,
      ...options.settings,
    };
    let sim: Simulator | null = null;
    if (options.upstreams) {
      const file = join(dataDir, 'upstreams.json');
      const upstreams = options.upstreams.upstreams.map(({ apiKey, ...entry }) => {
        // Each relay gets names of its own: test files in one worker must not see each other's keys.
        const apiKeyEnv = `RELAY_TEST_UPSTREAM_KEY_${process.pid}_${++envCounter}`;
        process.env[apiKeyEnv] = apiKey;
        envNames.push(apiKeyEnv);
        return { ...entry, apiKeyEnv };
      });
      writeFileSync(file, JSON.stringify({ upstreams, aliases: options.upstreams.aliases ?? {} }, null, 2));
      overrides.upstreamsFile = file;
    } else {
      sim = options.simulator ?? (options.simulatorOptions ? (ownSim = await startSimulator(options.simulatorOptions)) : null);
      if (sim) {
        overrides.openaiApiKey = 'sk-sim';
        overrides.openaiBaseUrl = `${sim.url.replace(/^ws/, 'http')}/v1`;
      }
    }
    if (options.tls) {
      certificate = createTestCertificate();
      overrides.tlsCertFile = certificate.certFile;
      overrides.tlsKeyFile = certificate.keyFile;
    }
    const settings = loadSettings({}, overrides);
    running = await startRelay(settings, createLogger(settings.logLevel, logSink(logs)));
    if (!running.demoKey) throw new Error('the relay created no demo key');
    const relay = running.relay;
    const url = relay.url();
    const httpUrl = url.replace(/^ws/, 'http');
    const started = running;
    // The Ledger port has no read of settlements: read them from the SQLite file (read-only, beside the relay's own connection).
    let sqlite: Database.Database | null = null;
    const db = (): Database.Database => {
      if (settings.databaseUrl) throw new Error('settlements() and sessions() read the SQLite ledger; this stack uses PostgreSQL');
      if (!sqlite) {
        sqlite = new Database(join(dataDir, 'ledger.db'), { readonly: true, fileMustExist: true });
        sqlite.defaultSafeIntegers(true);
      }
      return sqlite;
    };
    let closed = false;
    return {
      running,
      url,
      httpUrl,
      realtimeUrl(query: string | Record<string, string> = { model: 'gpt-realtime' }) {
        return `${url}/v1/realtime?${typeof query === 'string' ? query : new URLSearchParams(query).toString()}`;
      },
      key: running.demoKey,
      ledger: running.billing.ledger,
      sim: sim ?? running.simulator,
      certificate,
      logs,
      dataDir,
      settled: () => relay.registry.empty(),
      settlements() {
        const rows = db().prepare('SELECT session_id, status, total_nano, charge_count, end_reason, summary_json FROM settlements ORDER BY settled_at, session_id').all() as Array<{
          session_id: string;
          status: string;
          total_nano: bigint;
          charge_count: bigint;
          end_reason: string;
          summary_json: string;
        }>;
        return rows.map((r) => ({
          sessionId: r.session_id,
          status: r.status,
          totalNano: r.total_nano,
          chargeCount: Number(r.charge_count),
          endReason: r.end_reason,
          summary: JSON.parse(r.summary_json) as Record<string, unknown>,
        }));
      },
      sessions() {
        const rows = db().prepare('SELECT id, model, status, spend_nano FROM sessions ORDER BY started_at, id').all() as Array<{ id: string; model: string; status: string; spend_nano: bigint }>;
        return rows.map((r) => ({ id: r.id, model: r.model, status: r.status, spendNano: r.spend_nano }));
      },
      async close() {
        if (closed) return;
        closed = true;
        sqlite?.close();
        await started.stop();
        await cleanup();
      },
    };
  } catch (error) {
    await running?.stop().catch(() => undefined);
    await cleanup();
    throw error;
  }
}
