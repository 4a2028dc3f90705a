/**
 * The relay under test, alone in its process: the bare pipe, or
 * realtime-relay as `relay start` builds it (startRelay with default
 * settings, SQLite or PostgreSQL ledger, billing on).
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { writeHeapSnapshot } from 'node:v8';
import { startRelay } from '../../src/app/start.js';
import type { ChargeInput, Ledger } from '../../src/billing/ledger/index.js';
import { loadSettings } from '../../src/config/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { startBarePipe } from '../bare-pipe.js';
import { childArgs, serve } from '../lib/ipc.js';

export type Variant = 'direct' | 'pipe' | 'relay' | 'relay-pg';

export interface RelayChildArgs {
  variant: Exclude<Variant, 'direct'>;
  /** ws://host:port of the simulator. */
  upstreamUrl: string;
  dataDir: string;
  databaseUrl?: string;
  /** Charges of the "slow" key wait this long before they are written (the isolation measurement). */
  slowChargeMs?: number;
}

export interface RelayReady {
  /** ws://host:port */
  url: string;
  /** The relay key clients present (none for the bare pipe). */
  key: string | null;
  slowKey: string | null;
}

export interface MemoryReport {
  heapUsed: number;
  heapTotal: number;
  rss: number;
  external: number;
  arrayBuffers: number;
}

export interface LedgerCounts {
  openSession: number;
  recordCharge: number;
  settleSession: number;
  heartbeat: number;
}

const args = childArgs<RelayChildArgs>();
mkdirSync(args.dataDir, { recursive: true });
const counts: LedgerCounts = { openSession: 0, recordCharge: 0, settleSession: 0, heartbeat: 0 };

/*
 * Full (mark-compact) collections since start: the pauses that stall every
 * session at once. The memory probe's own gc() calls count too, so steps read
 * this around their measuring window only.
 */
let fullGcs = 0;
new PerformanceObserver(function gcObserverOnEntries(list) {
  for (const entry of list.getEntries()) {
    if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++;
  }
}).observe({ entryTypes: ['gc'] });

function memory(collect: boolean): MemoryReport {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (collect && gc) {
    gc();
    gc();
  }
  const { heapUsed, heapTotal, rss, external, arrayBuffers } = process.memoryUsage();
  return { heapUsed, heapTotal, rss, external, arrayBuffers };
}

/** Counts the ledger's writes; the bench-only slow key makes its charges wait before they are written. */
function instrument(ledger: Ledger, slowKeyId: string | null, slowMs: number): void {
  const openSession = ledger.openSession.bind(ledger);
  const recordCharge = ledger.recordCharge.bind(ledger);
  const settleSession = ledger.settleSession.bind(ledger);
  const heartbeat = ledger.heartbeat.bind(ledger);
  ledger.openSession = (session) => {
    counts.openSession++;
    return openSession(session);
  };
  ledger.recordCharge = async (charge: ChargeInput) => {
    counts.recordCharge++;
    if (slowKeyId !== null && charge.keyId === slowKeyId) await delay(slowMs);
    return recordCharge(charge);
  };
  ledger.settleSession = (settlement) => {
    counts.settleSession++;
    return settleSession(settlement);
  };
  ledger.heartbeat = (instanceId) => {
    counts.heartbeat++;
    return heartbeat(instanceId);
  };
}

async function start(): Promise<{ ready: RelayReady; sessions(): number; stop(): Promise<void> }> {
  if (args.variant === 'pipe') {
    const pipe = await startBarePipe({ upstreamUrl: args.upstreamUrl, upstreamKey: 'sk-bench' });
    return { ready: { url: pipe.url, key: null, slowKey: null }, sessions: () => 0, stop: () => pipe.close() };
  }
  const settings = loadSettings(
    {},
    {
      host: '127.0.0.1',
      port: 0,
      openaiApiKey: 'sk-bench',
      openaiBaseUrl: `${args.upstreamUrl.replace(/^ws/, 'http')}/v1`,
      dataDir: args.dataDir,
      demoBalanceUsd: '0',
      ...(args.databaseUrl ? { databaseUrl: args.databaseUrl } : {}),
    },
  );
  const log = createLogger(settings.logLevel, createWriteStream(join(args.dataDir, 'relay.log')));
  const running = await startRelay(settings, log);
  const ledger = running.billing.ledger;
  const balanceNano = 10n ** 18n; // a billion dollars: no bench run spends it
  const { key } = await ledger.createKey({ name: 'bench', balanceNano });
  const slow = args.slowChargeMs ? await ledger.createKey({ name: 'bench-slow', balanceNano }) : null;
  instrument(ledger, slow?.record.id ?? null, args.slowChargeMs ?? 0);
  return {
    ready: { url: running.relay.url(), key, slowKey: slow?.key ?? null },
    sessions: () => running.relay.registry.active().length,
    stop: async () => {
      await running.stop();
    },
  };
}

const relay = await start();

serve(
  {
    memory: (collect: boolean) => memory(collect),
    ledger: (): LedgerCounts => ({ ...counts }),
    sessions: () => relay.sessions(),
    fullGcs: () => fullGcs,
    stop: () => relay.stop(),
    /** Writes a heap snapshot into `dir` and returns its path. */
    heapSnapshot: (dir: string) => writeHeapSnapshot(join(dir, `${args.variant}-${Date.now()}.heapsnapshot`)),
  },
  relay.ready,
);
