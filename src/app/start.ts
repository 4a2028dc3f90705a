import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { openLedger, type Ledger } from '../billing/ledger/index.js';
import { loadPriceFile } from '../billing/price-file.js';
import { builtInPrices, formatUsd, parseUsd } from '../billing/prices.js';
import { Billing } from '../billing/service.js';
import type { Settings } from '../config/settings.js';
import { loadUpstreamsFile, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import type { Logger } from '../observability/logger.js';
import { createRelayServer, type RelayServer } from '../server/relay-server.js';
import { betaTranslator } from '../server/translators.js';
import type { Upstream } from '../server/upstream.js';
import { startSimulator, type Simulator } from '../simulator/index.js';
import { createGatekeeper } from './gatekeeper.js';

export interface RunningRelay {
  relay: RelayServer;
  billing: Billing;
  simulator: Simulator | null;
  /** The demo key, when this start created it (shown once). */
  demoKey: string | null;
  /** Stop accepting, drain, settle, close everything. */
  stop(): Promise<{ drained: boolean }>;
}

const OPENAI_BASE_URL = 'https://api.openai.com/v1';

async function chooseUpstreams(settings: Settings): Promise<{ config: UpstreamConfig; simulator: Simulator | null; mode: string }> {
  if (settings.upstreamsFile) {
    const config = loadUpstreamsFile(settings.upstreamsFile);
    return { config, simulator: null, mode: `upstreams from ${settings.upstreamsFile}: ${config.upstreams.map((u) => `${u.name} (${u.kind} ${u.baseUrl})`).join(', ')}` };
  }
  if (settings.openaiApiKey) {
    const baseUrl = settings.openaiBaseUrl ?? OPENAI_BASE_URL;
    const upstream: Upstream = { name: 'openai', kind: 'openai', baseUrl, apiKey: settings.openaiApiKey, models: [], deployments: {}, priority: 0 };
    return { config: { upstreams: [upstream], aliases: {} }, simulator: null, mode: `upstream ${baseUrl.replace(/^http/, 'ws')}/realtime` };
  }
  const simulator = await startSimulator({ host: '127.0.0.1', port: 0 });
  const upstream: Upstream = { name: 'simulator', kind: 'openai', baseUrl: `${simulator.url.replace(/^ws/, 'http')}/v1`, apiKey: 'simulator', models: [], deployments: {}, priority: 0 };
  return { config: { upstreams: [upstream], aliases: {} }, simulator, mode: `the built-in upstream simulator at ${simulator.url} (no OPENAI_API_KEY is set)` };
}

async function ensureDemoKey(ledger: Ledger, balanceUsd: string): Promise<string | null> {
  const balanceNano = parseUsd(balanceUsd);
  if (balanceNano <= 0n) return null;
  if ((await ledger.listKeys()).length > 0) return null;
  const { key } = await ledger.createKey({ name: 'demo', balanceNano });
  return key;
}

/** Builds the relay from its settings and starts listening. */
export async function startRelay(settings: Settings, log: Logger): Promise<RunningRelay> {
  const { config, simulator, mode } = await chooseUpstreams(settings);
  log.info({ upstream: mode }, `realtime-relay relays to ${mode}`);
  const prices = settings.priceFile ? loadPriceFile(settings.priceFile, builtInPrices) : builtInPrices;
  if (!settings.databaseUrl) mkdirSync(settings.dataDir, { recursive: true });
  const ledger = await openLedger({ databaseUrl: settings.databaseUrl, sqlitePath: join(settings.dataDir, 'ledger.db') });
  const instanceId = `${hostname()}:${settings.port}`;
  const billing = new Billing({
    ledger,
    prices,
    instanceId,
    reserveNano: parseUsd(settings.responseReserveUsd),
    spoolPath: settings.databaseUrl ? null : join(settings.dataDir, 'unwritten.jsonl'),
    staleAfterMs: settings.databaseUrl ? 30_000 : 0,
    heartbeatMs: 10_000,
    hooks: {
      anomaly: (sessionId, anomalies, first) => {
        if (first) log.warn({ sessionId, anomalies }, 'usage broke the protocol invariants; billed by the conservative rule');
      },
      chargeFailed: (error) => log.error({ err: error }, 'a charge could not be written; the session fails closed'),
    },
  });
  const recovered = await billing.recover();
  if (recovered.sessions.length > 0 || recovered.replayed > 0) {
    log.warn({ sessions: recovered.sessions.length, replayedWrites: recovered.replayed }, 'settled sessions left open by an earlier process');
  }
  const demoKey = await ensureDemoKey(ledger, settings.demoBalanceUsd);
  const relay = createRelayServer({
    host: settings.host,
    port: settings.port,
    tls: settings.tlsCertFile && settings.tlsKeyFile ? { cert: readFileSync(settings.tlsCertFile), key: readFileSync(settings.tlsKeyFile) } : undefined,
    timings: {
      connectTimeoutMs: settings.connectTimeoutMs,
      drainTimeoutMs: settings.drainTimeoutMs,
      pingIntervalMs: settings.pingIntervalMs,
      idleTimeoutMs: settings.idleTimeoutMs,
      maxSessionMs: settings.maxSessionMs,
      closeTimeoutMs: settings.closeTimeoutMs,
      highWaterBytes: settings.highWaterBytes,
      stallTimeoutMs: settings.stallTimeoutMs,
      connectQueueFrames: settings.connectQueueFrames,
      connectQueueBytes: settings.connectQueueBytes,
      headerTimeoutMs: settings.headerTimeoutMs,
      shutdownTimeoutMs: settings.shutdownTimeoutMs,
    },
    maxPayloadBytes: settings.maxPayloadBytes,
    allowedOrigins: settings.allowedOrigins,
    allowInsecureSubprotocolKey: settings.allowInsecureSubprotocolKey,
    gatekeeper: createGatekeeper(billing, config, null),
    upstreamsFor: (model) => upstreamsServing(config, model),
    translatorFor: (handshake) => (handshake.beta ? betaTranslator : undefined),
    ready: async () => {
      await ledger.ping();
      return true;
    },
  });
  const address = await relay.listen();
  const url = `${relay.url()}/v1/realtime?model=gpt-realtime`;
  log.info({ url, ledger: ledger.kind }, `listening on ${relay.url()} (ledger: ${ledger.kind})`);
  if (demoKey) log.info({ balance: formatUsd(parseUsd(settings.demoBalanceUsd)) }, `demo key (shown once): ${demoKey}`);
  log.info(`connect: a Realtime client to ${url} with "Authorization: Bearer <relay key>" (browsers: subprotocols "realtime" and "openai-insecure-api-key.<relay key>")`);
  void address;
  return {
    relay,
    billing,
    simulator,
    demoKey,
    async stop() {
      const result = await relay.shutdown();
      await billing.close();
      await simulator?.close();
      return result;
    },
  };
}
