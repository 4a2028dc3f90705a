import type { Hono } from 'hono';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BacklogHooks } from '../billing/backlog.js';
import type { MeterHooks } from '../billing/meter.js';
import { builtInPrices, resolveModel, usdFloat, type PriceTable } from '../billing/prices.js';
import { sessionMachine } from '../machines/session.js';
import type { LiveSession } from '../server/registry.js';
import type { RelayServer } from '../server/relay-server.js';
import type { LiveLink } from '../server/live-link.js';
import type { Transport } from '../server/ports.js';
import type { SessionObserver } from '../server/session-link.js';
import type { UpgradeEnv } from '../server/upgrade.js';

export interface RelayMetrics {
  /** This relay's own registry (not prom-client's global one), so tests can make many. */
  readonly registry: Registry;
  /** Session lifecycle facts: pass as the relay server's `observer`. */
  readonly observer: Required<Pick<SessionObserver, 'dialed' | 'dialFailed' | 'backpressure' | 'ended'>>;
  /** Billing facts: pass in `Billing`'s `hooks`. */
  readonly meterHooks: MeterHooks;
  /** Spool facts: pass as `Billing`'s `backlogHooks`. */
  readonly backlogHooks: BacklogHooks;
  /** Usage event deliveries: pass in the deliverer's hooks. */
  readonly usageEventHooks: { delivered(type: string): void; failed(type: string): void };
  /** Incoming phone calls, by how each was decided, and refused webhooks: pass in the phone calls' events. */
  readonly phoneCallHooks: { decided(outcome: string): void; webhook(verdict: string): void };
  /** Mounts GET /metrics and reads the live sessions from `relay` at each scrape. */
  mount(app: Hono<UpgradeEnv>, relay: Pick<RelayServer, 'registry'>): void;
  /** The exposition text, as /metrics serves it. */
  text(): Promise<string>;
}

export interface RelayMetricsOptions {
  /** prom-client's process and Node.js metrics. Default true. */
  defaultMetrics?: boolean;
  /** The relay's price table: spend is labelled by its families. Default the built-in prices. */
  prices?: PriceTable;
}

/** The names and help of what /metrics exports, for the README. */
export const METRIC_HELP = {
  relay_sessions_active: 'Live sessions by machine state (closed: its sockets are still closing) and transport (websocket, webrtc, sip).',
  relay_sessions_ended_total: 'Sessions ended, by end reason (client_closed, upstream_closed, error:<code>, cancelled:<reason>, dial_failed:<code>, connect_timeout) and transport (websocket, webrtc, sip).',
  relay_session_duration_seconds: 'Session duration, from the accepted upgrade until both sockets closed.',
  relay_upstream_dial_seconds: 'Time to dial an upstream until its first frame, by upstream.',
  relay_upstream_dial_failures_total: 'Failed upstream dials, by upstream and error code (each failover attempt counts).',
  relay_frames_total: 'Frames forwarded, by direction (client_to_upstream, upstream_to_client); live sessions included.',
  relay_bytes_total: 'Bytes forwarded, by direction; live sessions included.',
  relay_backpressure_pauses_total: 'Times a session paused reading one side because the other had too much unsent.',
  relay_billing_write_seconds: 'Time to write a charge to the ledger.',
  relay_billing_write_failures_total: 'Charges the ledger could not write (the session fails closed).',
  relay_spend_usd_total: 'Spend charged, by price family (dated snapshots count as their family), in USD (exported as a float; the ledger keeps integer nano-USD).',
  relay_usage_anomalies_total: 'Usage objects that broke the protocol invariants, by anomaly; billed by the conservative rule.',
  relay_spool_quarantined_lines_total: 'Unreadable lines of the spool of unwritten ledger writes (torn by a crash) moved to its quarantine file.',
  relay_ledger_dead_letters_total: 'Ledger writes moved to the dead-letter file after being refused repeatedly, by kind (charge, settlement).',
  relay_usage_events_delivered_total: 'Usage events the webhook receiver took (2xx), by type.',
  relay_usage_events_failed_total: 'Usage event deliveries that failed (error status, refused, timed out) and will be retried, by type.',
  relay_sip_calls_total: 'Incoming phone calls, by how each was decided (accepted, accept_failed, forwarded to its tenant, unrouted, refused, busy, tenant_rejected, tenant_referred, tenant_timeout, forward_failed).',
  relay_sip_webhooks_refused_total: 'SIP webhooks not acted on, by verdict (invalid_signature, invalid_event, replayed, not_configured).',
} as const;

const STATES = Object.keys(sessionMachine.root.states);
const DIRECTIONS = ['client_to_upstream', 'upstream_to_client'] as const;
const TRANSPORTS: readonly Transport[] = ['websocket', 'webrtc', 'sip'];

interface Traffic {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** The spend label of a charge whose model has no price (none should reach the ledger). */
const UNPRICED = 'unpriced';

/**
 * Prometheus metrics for the relay. Nothing here runs per frame: traffic is
 * read from each session's pipe counters at scrape time (live sessions) and
 * once when a session ends; live sessions are counted from the registry at
 * scrape time. Labels are bounded sets (states, reasons, models, upstreams,
 * codes), never a session or a key.
 */
export function createRelayMetrics(options: RelayMetricsOptions = {}): RelayMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  let live: () => LiveSession[] = () => [];

  new Gauge({
    name: 'relay_sessions_active',
    help: METRIC_HELP.relay_sessions_active,
    labelNames: ['state', 'transport'],
    registers,
    collect() {
      const counts = new Map(TRANSPORTS.map((transport) => [transport, new Map(STATES.map((state) => [state, 0]))]));
      for (const { actor, link } of live()) {
        const state = String(actor.getSnapshot().value);
        const byState = counts.get(link.transport)!;
        byState.set(state, (byState.get(state) ?? 0) + 1);
      }
      this.reset();
      for (const [transport, byState] of counts) for (const [state, count] of byState) this.set({ state, transport }, count);
    },
  });

  const ended = new Counter({ name: 'relay_sessions_ended_total', help: METRIC_HELP.relay_sessions_ended_total, labelNames: ['reason', 'transport'], registers });
  const duration = new Histogram({
    name: 'relay_session_duration_seconds',
    help: METRIC_HELP.relay_session_duration_seconds,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers,
  });
  const dialSeconds = new Histogram({
    name: 'relay_upstream_dial_seconds',
    help: METRIC_HELP.relay_upstream_dial_seconds,
    labelNames: ['upstream'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers,
  });
  const dialFailures = new Counter({ name: 'relay_upstream_dial_failures_total', help: METRIC_HELP.relay_upstream_dial_failures_total, labelNames: ['upstream', 'code'], registers });

  // Traffic of sessions that ended, plus, at scrape time, what live sessions have forwarded so far.
  // A session's counters only grow and it leaves the registry the moment its final counts are added here, so the totals never go down.
  const endedTraffic: Traffic = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  const traffic = (): Traffic => {
    const total = { ...endedTraffic };
    for (const { link } of live()) addTraffic(total, link.stats);
    return total;
  };
  new Counter({
    name: 'relay_frames_total',
    help: METRIC_HELP.relay_frames_total,
    labelNames: ['direction'],
    registers,
    collect() {
      const total = traffic();
      this.reset();
      this.inc({ direction: DIRECTIONS[0] }, total.framesIn);
      this.inc({ direction: DIRECTIONS[1] }, total.framesOut);
    },
  });
  new Counter({
    name: 'relay_bytes_total',
    help: METRIC_HELP.relay_bytes_total,
    labelNames: ['direction'],
    registers,
    collect() {
      const total = traffic();
      this.reset();
      this.inc({ direction: DIRECTIONS[0] }, total.bytesIn);
      this.inc({ direction: DIRECTIONS[1] }, total.bytesOut);
    },
  });
  const pauses = new Counter({ name: 'relay_backpressure_pauses_total', help: METRIC_HELP.relay_backpressure_pauses_total, registers });

  const writeSeconds = new Histogram({
    name: 'relay_billing_write_seconds',
    help: METRIC_HELP.relay_billing_write_seconds,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const writeFailures = new Counter({ name: 'relay_billing_write_failures_total', help: METRIC_HELP.relay_billing_write_failures_total, registers });
  // Spend is summed exactly in nano-USD and only turned into a float when exported:
  // Prometheus values are float64, and adding float dollars charge by charge would drift.
  const spendNano = new Map<string, bigint>();
  const prices = options.prices ?? builtInPrices;
  new Counter({
    name: 'relay_spend_usd_total',
    help: METRIC_HELP.relay_spend_usd_total,
    labelNames: ['model'],
    registers,
    collect() {
      this.reset();
      for (const [model, nano] of spendNano) this.inc({ model }, usdFloat(nano));
    },
  });
  const anomalies = new Counter({ name: 'relay_usage_anomalies_total', help: METRIC_HELP.relay_usage_anomalies_total, labelNames: ['anomaly'], registers });
  const quarantined = new Counter({ name: 'relay_spool_quarantined_lines_total', help: METRIC_HELP.relay_spool_quarantined_lines_total, registers });
  const deadLetters = new Counter({ name: 'relay_ledger_dead_letters_total', help: METRIC_HELP.relay_ledger_dead_letters_total, labelNames: ['kind'], registers });
  const eventsDelivered = new Counter({ name: 'relay_usage_events_delivered_total', help: METRIC_HELP.relay_usage_events_delivered_total, labelNames: ['type'], registers });
  const eventsFailed = new Counter({ name: 'relay_usage_events_failed_total', help: METRIC_HELP.relay_usage_events_failed_total, labelNames: ['type'], registers });

  const sipCalls = new Counter({ name: 'relay_sip_calls_total', help: METRIC_HELP.relay_sip_calls_total, labelNames: ['outcome'], registers });
  const sipWebhooksRefused = new Counter({ name: 'relay_sip_webhooks_refused_total', help: METRIC_HELP.relay_sip_webhooks_refused_total, labelNames: ['verdict'], registers });

  return {
    registry,
    observer: {
      dialed(_link, upstream, ms) {
        dialSeconds.observe({ upstream }, ms / 1000);
      },
      dialFailed(_link, upstream, error) {
        dialFailures.inc({ upstream, code: error.code });
      },
      backpressure() {
        pauses.inc();
      },
      ended(link: LiveLink, summary) {
        ended.inc({ reason: summary.endReason, transport: link.transport });
        duration.observe((Date.now() - summary.startedAt.getTime()) / 1000);
        // Both sockets are closed: these counts are final.
        addTraffic(endedTraffic, link.stats);
      },
    },
    meterHooks: {
      anomaly(_sessionId, found) {
        for (const anomaly of found) anomalies.inc({ anomaly });
      },
      charged(model, costNano, ms) {
        writeSeconds.observe(ms / 1000);
        // By priced family, not by name: every dated snapshot a client names would otherwise be a new series.
        const family = resolveModel(model, prices)?.family ?? UNPRICED;
        spendNano.set(family, (spendNano.get(family) ?? 0n) + costNano);
      },
      chargeFailed() {
        writeFailures.inc();
      },
    },
    backlogHooks: {
      quarantined(lines) {
        quarantined.inc(lines.length);
      },
      deadLettered(write) {
        deadLetters.inc({ kind: write.kind });
      },
    },
    usageEventHooks: {
      delivered: (type) => eventsDelivered.inc({ type }),
      failed: (type) => eventsFailed.inc({ type }),
    },
    phoneCallHooks: {
      decided: (outcome) => sipCalls.inc({ outcome }),
      webhook: (verdict) => {
        if (verdict !== 'ignored') sipWebhooksRefused.inc({ verdict });
      },
    },
    mount(app, relay) {
      live = () => relay.registry.list();
      app.get('/metrics', async (c) => c.body(await registry.metrics(), 200, { 'Content-Type': registry.contentType }));
    },
    text: () => registry.metrics(),
  };
}

function addTraffic(total: Traffic, stats: Traffic): void {
  total.framesIn += stats.framesIn;
  total.framesOut += stats.framesOut;
  total.bytesIn += stats.bytesIn;
  total.bytesOut += stats.bytesOut;
}
