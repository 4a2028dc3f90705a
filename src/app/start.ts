import { randomUUID } from 'node:crypto';
import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { openLedger, type Ledger } from '../billing/ledger/index.js';
import { loadPriceFile } from '../billing/price-file.js';
import { builtInPrices, formatUsd, parseUsd } from '../billing/prices.js';
import { Billing } from '../billing/service.js';
import { spoolPathIn } from '../billing/spool-file.js';
import { ConfigError, type Settings } from '../config/settings.js';
import { loadUpstreamsFile, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import { combineMeterHooks, combineObservers } from '../observability/fan-out.js';
import { createSessionInspector } from '../observability/inspector.js';
import { warnAtMostEveryHalfMinute, type Logger } from '../observability/logger.js';
import { createRelayMetrics, type RelayMetrics } from '../observability/metrics.js';
import { createSessionLog } from '../observability/session-log.js';
import { startTracing, traceSettings } from '../observability/trace-settings.js';
import { adminApp } from '../server/admin/index.js';
import { TrustedProxies, parseNetwork } from '../server/client-address.js';
import { createRelayServer, type RelayServer, type RelayServerOptions } from '../server/relay-server.js';
import type { SessionObserver } from '../server/session-link.js';
import { betaTranslator } from '../server/translators.js';
import { hangUpOrphanedCalls, type OrphanedCall } from '../server/orphaned-calls.js';
import { takesCalls } from '../server/upstream-call.js';
import type { Upstream } from '../server/upstream.js';
import { startUsageDelivery, type UsageDelivery } from '../events/deliverer.js';
import { createLimits } from '../limits/index.js';
import { startSimulator, type Simulator } from '../simulator/index.js';
import { createClientSecretMinter } from './client-secrets.js';
import { createGatekeeper } from './gatekeeper.js';

export interface RunningRelay {
  relay: RelayServer;
  billing: Billing;
  /** What start-up recovery settled and replayed. */
  recovered: Awaited<ReturnType<Billing['recover']>>;
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

/**
 * Failed dials are logged. An upstream that refuses the relay's credentials
 * (401/403) is an operator error: it is skipped for the next upstream, and
 * logged as an error so that it does not go unnoticed behind the failover.
 */
function dialLog(log: Logger): SessionObserver {
  return {
    dialFailed(link, upstream, error) {
      const fields = { sessionId: link.sessionId, upstream, code: error.code, detail: error.message };
      if (error.code === 'upstream_auth_failed') log.error(fields, `upstream "${upstream}" refused the relay's credentials; check its API key (skipped)`);
      else log.warn(fields, `upstream "${upstream}" failed before its first frame (${error.code})`);
    },
  };
}

/**
 * Recovery settled these sessions: a call among them may still run at its
 * upstream, unmetered, for as long as its caller stays on. Hung up in the
 * background (start-up does not wait on an upstream), each outcome logged.
 */
function hangUpOrphans(sessions: OrphanedCall[], upstreams: Upstream[], timeoutMs: number, log: Logger): void {
  if (!sessions.some((session) => session.upstreamCall)) return;
  void hangUpOrphanedCalls(sessions, upstreams, timeoutMs).then((hangups) => {
    for (const hangup of hangups) {
      const fields = { sessionId: hangup.sessionId, upstream: hangup.upstream, upstreamCallId: hangup.callId };
      if ('failed' in hangup) log.warn({ ...fields, reason: hangup.failed }, `could not hang up the call of a recovered session at upstream "${hangup.upstream}": ${hangup.failed}`);
      else if (hangup.status >= 200 && hangup.status < 300) log.info({ ...fields, status: hangup.status }, 'hung up the call of a recovered session at its upstream');
      else if (hangup.status === 404) log.info({ ...fields, status: hangup.status }, 'the call of a recovered session had already ended at its upstream');
      else log.warn({ ...fields, status: hangup.status }, `upstream "${hangup.upstream}" refused to hang up the call of a recovered session (${hangup.status})`);
    }
  });
}

/** The one line that shows a demo key to whoever started the relay, written straight to the terminal. */
export function demoKeyNotice(key: string): string {
  return `demo key (shown once, not logged): ${key}\n`;
}

async function ensureDemoKey(ledger: Ledger, balanceUsd: string): Promise<string | null> {
  const balanceNano = parseUsd(balanceUsd);
  if (balanceNano <= 0n) return null;
  if ((await ledger.listKeys()).length > 0) return null;
  const { key } = await ledger.createKey({ name: 'demo', balanceNano });
  return key;
}

/**
 * The SQLite ledger's folder must exist and be writable before anything
 * starts: a clear configuration error (exit 2) instead of a failure deep in
 * the ledger on every restart.
 */
function prepareDataDir(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true });
    accessSync(dataDir, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError('RELAY_DATA_DIR', `the folder ${dataDir} cannot be created or written (${code}); point RELAY_DATA_DIR at a writable folder, or set DATABASE_URL`);
  }
}

/**
 * Where ledger writes still pending at shutdown are kept for the next start.
 * With PostgreSQL too: a charge the database missed while it was down must
 * not be lost because the process stopped before it came back.
 */
function spoolPathFor(settings: Settings, log: Logger): string | null {
  if (!settings.databaseUrl) return spoolPathIn(settings.dataDir);
  try {
    prepareDataDir(settings.dataDir);
    return spoolPathIn(settings.dataDir);
  } catch (error) {
    log.warn({ dataDir: settings.dataDir, reason: (error as Error).message }, 'no spool for unwritten ledger writes: they are retried in memory only');
    return null;
  }
}

/**
 * This process's name in the ledger. A fixed port names the same instance
 * across restarts, so a restarted relay settles what it left open at once.
 * With port 0 every process is a new instance: two of them sharing one name
 * on one database would each settle the other's live sessions at start.
 */
function instanceIdFor(port: number): string {
  return port === 0 ? `${hostname()}:0:${process.pid}:${randomUUID().slice(0, 8)}` : `${hostname()}:${port}`;
}

/** Builds the relay from its settings and starts listening. */
/**
 * Recovery settles whatever this instance left open; a second relay started
 * by mistake on a port in use would settle the first one's live sessions
 * before failing to listen. So the port is tried first.
 */
function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new ConfigError('PORT', `${host}:${port} is already in use (is another relay running?)`) : error),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/** The usage event deliverer, when a receiver is configured; its failures are logged at most every half minute. */
function startUsageDeliveryFor(settings: Settings, ledger: Ledger, counters: { delivered(type: string): void; failed(type: string): void }, log: Logger): UsageDelivery | null {
  if (!settings.usageWebhookUrl || !settings.usageWebhookSecret) return null;
  const warnSometimes = warnAtMostEveryHalfMinute(log);
  // The origin only: a receiver's path or query may carry a token of its own.
  const origin = new URL(settings.usageWebhookUrl).origin;
  log.info({ receiver: origin }, `sending usage events to ${origin}`);
  return startUsageDelivery({
    ledger,
    url: settings.usageWebhookUrl,
    secret: settings.usageWebhookSecret,
    pollMs: settings.usageWebhookPollMs,
    retryMs: settings.usageWebhookRetryMs,
    maxRetryMs: settings.usageWebhookMaxRetryMs,
    timeoutMs: settings.usageWebhookTimeoutMs,
    retention: { keepMs: settings.usageEventsRetentionHours * 3_600_000 },
    hooks: {
      delivered: (event) => counters.delivered(event.type),
      failed(event, reason, retryInMs) {
        counters.failed(event.type);
        warnSometimes({ eventId: event.id, attempts: event.attempts, retryInMs, reason }, `usage event delivery failed (${reason}); retrying, nothing is lost`);
      },
      claimFailed: (error) => warnSometimes({ err: error }, 'the usage event outbox could not be read; retrying'),
      pruned: (count) => log.debug({ deleted: count }, `deleted ${count} delivered usage event(s) past their retention`),
      pruneFailed: (error) => warnSometimes({ err: error }, 'delivered usage events could not be deleted; trying again later'),
    },
  });
}

/** The upstream the SIP trunk belongs to: the one named by RELAY_SIP_UPSTREAM, or the first that takes calls. */
function sipUpstream(settings: Settings, config: UpstreamConfig): Upstream | null {
  if (settings.sipUpstream) {
    const named = config.upstreams.find((upstream) => upstream.name === settings.sipUpstream);
    if (!named) throw new ConfigError('RELAY_SIP_UPSTREAM', `no upstream is named "${settings.sipUpstream}"`);
    if (!takesCalls(named)) throw new ConfigError('RELAY_SIP_UPSTREAM', `upstream "${named.name}" does not take calls (an OpenAI upstream does)`);
    return named;
  }
  return [...config.upstreams].sort((a, b) => a.priority - b.priority).find(takesCalls) ?? null;
}

/** Incoming phone calls: the webhook's secret, the ledger's routes and webhook ids, and a log line for every call decided. */
function phoneOptions(settings: Settings, config: UpstreamConfig, ledger: Ledger, log: Logger, counters: RelayMetrics['phoneCallHooks']): RelayServerOptions['phone'] {
  const upstream = sipUpstream(settings, config);
  if (settings.openaiWebhookSecret && !upstream) log.warn('OPENAI_WEBHOOK_SECRET is set but no upstream takes calls: incoming phone calls are refused');
  return {
    webhookSecret: settings.openaiWebhookSecret,
    upstream,
    statuses: { unrouted: settings.sipUnroutedStatus, refused: settings.sipRefusedStatus, busy: settings.sipBusyStatus },
    tenantTimeoutMs: settings.sipTenantTimeoutMs,
    directory: {
      routes: () => ledger.listRoutes(),
      firstDelivery: (webhookId) => ledger.recordWebhook(webhookId, new Date()),
    },
    events: {
      decided(call) {
        counters.decided(call.outcome);
        const fields = { event: 'sip.call', ...call };
        if (call.outcome === 'accepted' || call.outcome === 'forwarded' || call.outcome === 'tenant_rejected' || call.outcome === 'tenant_referred') log.info(fields, `phone call ${call.upstreamCallId}: ${call.outcome}${call.keyName ? ` for key "${call.keyName}"` : ''}`);
        else log.warn(fields, `phone call ${call.upstreamCallId}: ${call.outcome}${call.sipStatus ? ` (SIP ${call.sipStatus})` : ''}${call.reason ? `: ${call.reason}` : ''}`);
      },
      webhook(verdict) {
        counters.webhook(verdict);
        if (verdict !== 'ignored') log.warn({ event: 'sip.webhook', verdict }, `SIP webhook ${verdict.replaceAll('_', ' ')}`);
      },
      controlFailed(upstreamCallId, action, error) {
        log.warn({ event: 'sip.control', upstreamCallId, action, code: error.code, detail: error.message }, `phone call ${upstreamCallId}: ${action} failed upstream (${error.code})`);
      },
    },
  };
}

export interface StartOptions {
  /** Puts something between billing and the ledger (tests use it to make the ledger fail). */
  wrapLedger?: (ledger: Ledger) => Ledger;
}

/** The session timings, from the settings. */
export function relayTimings(settings: Settings): RelayServerOptions['timings'] {
  return {
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
  };
}

export async function startRelay(settings: Settings, log: Logger, options: StartOptions = {}): Promise<RunningRelay> {
  if (!settings.databaseUrl) prepareDataDir(settings.dataDir);
  // Read first: a wrong OTEL_* variable is a configuration error, like any setting's.
  const traces = traceSettings(process.env);
  await assertPortFree(settings.host, settings.port);
  const { config, simulator, mode } = await chooseUpstreams(settings);
  log.info({ upstream: mode }, `realtime-relay relays to ${mode}`);
  const prices = settings.priceFile ? loadPriceFile(settings.priceFile, builtInPrices) : builtInPrices;
  // Without a receiver the outbox stays empty: no event is written, and no deliverer runs.
  const ledger = await openLedger({ databaseUrl: settings.databaseUrl, sqlitePath: join(settings.dataDir, 'ledger.db'), usageEvents: Boolean(settings.usageWebhookUrl) });
  const instanceId = instanceIdFor(settings.port);
  const metrics = createRelayMetrics({ prices });
  const sessionLog = createSessionLog(log);
  const billing = new Billing({
    ledger: options.wrapLedger ? options.wrapLedger(ledger) : ledger,
    prices,
    instanceId,
    reserveNano: parseUsd(settings.responseReserveUsd),
    holdNano: parseUsd(settings.responseHoldUsd ?? settings.responseReserveUsd),
    spoolPath: spoolPathFor(settings, log),
    staleAfterMs: settings.databaseUrl ? 30_000 : 0,
    heartbeatMs: 10_000,
    // Only a shared PostgreSQL ledger has other instances to sweep (on SQLite every other instance counts as stale).
    recoverySweepMs: settings.databaseUrl ? settings.recoverySweepMs : 0,
    onSwept(sessions) {
      log.warn({ sessions: sessions.length, sessionIds: sessions.map((s) => s.sessionId) }, 'settled open sessions of an instance whose heartbeat stopped');
      hangUpOrphans(sessions, config.upstreams, settings.closeTimeoutMs, log);
    },
    hooks: combineMeterHooks(sessionLog.meterHooks, metrics.meterHooks),
    backlogHooks: {
      quarantined(lines, file) {
        metrics.backlogHooks.quarantined(lines, file);
        log.error({ file, lines: lines.length }, `moved ${lines.length} unreadable spool line(s) (a write torn by a crash) to ${file}`);
      },
      deadLettered(write, reason, file) {
        metrics.backlogHooks.deadLettered(write, reason, file);
        const item = write.kind === 'charge' ? { sessionId: write.charge.sessionId, itemId: write.charge.itemId } : { sessionId: write.settlement.sessionId };
        log.error({ kind: write.kind, ...item, reason, file }, `the ledger keeps refusing a ${write.kind}: moved to ${file}; fix the cause, then run \`relay spool replay --dead-letter\``);
      },
    },
  });
  const recovered = await billing.recover();
  const { spool } = recovered;
  if (spool.written + spool.pending + spool.quarantined + spool.deadLettered > 0) {
    log.warn(
      { writtenWrites: spool.written, pendingWrites: spool.pending, quarantinedLines: spool.quarantined, deadLetteredWrites: spool.deadLettered },
      `replayed the spool of unwritten ledger writes: ${spool.written} written, ${spool.pending} still pending, ${spool.quarantined} quarantined, ${spool.deadLettered} dead-lettered`,
    );
  }
  if (recovered.sessions.length > 0) {
    log.warn({ sessions: recovered.sessions.length, replayedWrites: recovered.replayed }, 'settled sessions left open by an earlier process');
    hangUpOrphans(recovered.sessions, config.upstreams, settings.closeTimeoutMs, log);
  }
  if (recovered.settledOwing.length > 0) {
    log.error(
      { sessionIds: recovered.settledOwing },
      'recovery settled sessions with a charge the ledger refused (pending or dead-lettered): their settlements leave it out until `relay spool replay --dead-letter` writes it, which adds it to their totals',
    );
  }
  const demoKey = await ensureDemoKey(ledger, settings.demoBalanceUsd);
  // The client retries every few seconds while Redis is down: one line per half minute is enough.
  const warnRedisDown = warnAtMostEveryHalfMinute(log);
  const { limits, connected } = await createLimits(settings, (error) => {
    warnRedisDown({ err: error }, 'Redis is unreachable: new sessions are refused with 503 limits_unavailable until it answers');
  });
  if (limits.kind === 'redis') log.info({ connected, leaseTtlMs: settings.leaseTtlMs }, 'limits are shared through Redis');
  // Inspection costs nothing unless asked for: without it no inspector exists.
  const inspector = settings.inspect ? createSessionInspector({ url: settings.inspectUrl, log }) : null;
  if (inspector) log.info({ inspectUrl: settings.inspectUrl }, `sending session actors to the Stately inspector at ${settings.inspectUrl}`);
  // Without an OTLP endpoint this is null and OpenTelemetry is never loaded.
  const tracing = await startTracing(traces, { instanceId }, log);
  const trustedProxies = new TrustedProxies(settings.trustedProxies.map((entry) => parseNetwork(entry)!));
  if (trustedProxies.size > 0) {
    log.info(
      { trustedProxies: settings.trustedProxies, forwardedHeader: settings.forwardedHeader, proxyProtocol: settings.proxyProtocol },
      `client addresses are taken from ${settings.proxyProtocol ? `the PROXY protocol header and ${settings.forwardedHeader}` : settings.forwardedHeader} on connections from trusted proxies`,
    );
  }
  // A misconfigured balancer fails every connection: one line per half minute says so.
  const warnProxyRefused = warnAtMostEveryHalfMinute(log);
  const relay = createRelayServer({
    host: settings.host,
    port: settings.port,
    tls: settings.tlsCertFile && settings.tlsKeyFile ? { cert: readFileSync(settings.tlsCertFile), key: readFileSync(settings.tlsKeyFile) } : undefined,
    timings: relayTimings(settings),
    maxPayloadBytes: settings.maxPayloadBytes,
    allowedOrigins: settings.allowedOrigins,
    allowInsecureSubprotocolKey: settings.allowInsecureSubprotocolKey,
    clientAddresses: { trustedProxies, forwardedHeader: settings.forwardedHeader, proxyProtocol: settings.proxyProtocol },
    proxyProtocolRefused: (peer, reason) =>
      warnProxyRefused({ peer, reason }, 'refused a connection from a trusted proxy without a valid PROXY protocol header (is PROXY protocol on at the balancer?)'),
    gatekeeper: createGatekeeper(billing, config, limits),
    clientSecrets: createClientSecretMinter(billing, config),
    upstreamsFor: (model) => upstreamsServing(config, model),
    translatorFor: (handshake) => (handshake.beta ? betaTranslator : undefined),
    observer: combineObservers(dialLog(log), sessionLog.observer, metrics.observer, ...(tracing ? [tracing.observer] : [])),
    sessionStarted: tracing
      ? (link) => {
          sessionLog.sessionStarted(link);
          tracing.sessionStarted(link);
        }
      : sessionLog.sessionStarted,
    inspect: inspector?.inspect,
    routes: (app, server) => {
      metrics.mount(app, server);
      if (settings.adminToken) app.route('/admin', adminApp({ token: settings.adminToken, ledger, registry: server.registry }));
    },
    phone: phoneOptions(settings, config, ledger, log, metrics.phoneCallHooks),
    ready: async () => {
      await ledger.ping();
      return true;
    },
  });
  await relay.listen().catch(async (error: unknown) => {
    await inspector?.stop();
    await tracing?.shutdown();
    throw error;
  });
  // Offline, the built-in simulator announces the phone calls it places to this relay's own webhook.
  if (simulator && settings.openaiWebhookSecret) {
    simulator.setCallWebhook({ url: `${relay.url().replace(/^ws/, 'http')}/v1/sip/webhook`, secret: settings.openaiWebhookSecret });
    log.info(`phone calls: POST ${simulator.url.replace(/^ws/, 'http')}/sim/sip/calls places a call at the built-in simulator, announced to /v1/sip/webhook`);
  }
  const usageDelivery = startUsageDeliveryFor(settings, ledger, metrics.usageEventHooks, log);
  const url = `${relay.url()}/v1/realtime?model=gpt-realtime`;
  log.info({ url, ledger: ledger.kind }, `listening on ${relay.url()} (ledger: ${ledger.kind})`);
  // The key itself goes to the terminal only (see demoKeyNotice): logs are kept and shipped, and no line carries a key.
  if (demoKey) log.info({ balance: formatUsd(parseUsd(settings.demoBalanceUsd)) }, 'demo key created: shown once on the terminal, not in the log');
  if (settings.adminToken) log.info(`admin: live sessions page at ${relay.url().replace(/^ws/, 'http')}/admin/ui (API under /admin, bearer ADMIN_TOKEN)`);
  log.info(`connect: a Realtime client to ${url} with "Authorization: Bearer <relay key>" (browsers: subprotocols "realtime" and "openai-insecure-api-key.<relay key>")`);
  return {
    relay,
    billing,
    recovered,
    simulator,
    demoKey,
    async stop() {
      const result = await relay.shutdown();
      await usageDelivery?.stop();
      await inspector?.stop();
      // Every session has ended (or been left at the deadline): their spans go out now.
      await tracing?.shutdown();
      await limits.close();
      await billing.close();
      await simulator?.close();
      return result;
    },
  };
}
