import type WebSocket from 'ws';
import { SessionBill } from '../billing/session-bill.js';
import type { RelayError } from '../errors.js';
import { closePlan } from '../machines/close-plan.js';
import type { Report, SessionOutcome, SessionPorts } from '../machines/session.js';
import { WebSocketClientLeg } from './client-leg.js';
import { keepAlive } from './keep-alive.js';
import { endedSummary, type LiveLink } from './live-link.js';
import { observedMeter } from './observed-meter.js';
import type { Caller, ResponseDone, SessionMeter, SessionSummary } from './ports.js';
import type { FrameTranslator } from './translators.js';
import type { DialedUpstream, Upstream } from './upstream.js';
import { WebSocketUpstreamLeg } from './upstream-leg.js';

export interface LinkTimings {
  connectTimeoutMs: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  closeTimeoutMs: number;
  highWaterBytes: number;
  stallTimeoutMs: number;
  connectQueueFrames: number;
  connectQueueBytes: number;
}

/** Lifecycle facts for metrics, logs and traces. Never called per frame. */
export interface SessionObserver {
  dialed?(link: LiveLink, upstream: string, ms: number): void;
  /** One upstream failed before its first frame, `ms` after it was dialled; the next one serving the model is tried, unless `error` forbids it. */
  dialFailed?(link: LiveLink, upstream: string, error: RelayError, ms: number): void;
  backpressure?(link: LiveLink): void;
  /** The session has ended: both sockets closed, its settlement written or in the backlog. */
  ended?(link: LiveLink, summary: SessionSummary): void;
  /** A `response.create` was admitted: the client asked for a response. */
  responseRequested?(link: LiveLink): void;
  /** A response began upstream (`response.created`), asked for or started by the upstream itself. */
  responseStarted?(link: LiveLink): void;
  /** A `response.done` was charged (its cost), or its charge could not be written (the error). */
  responseDone?(link: LiveLink, response: ResponseDone, charge: { costNano: bigint } | { error: RelayError }): void;
  /** The settlement was written, or handed to the backlog, taking `ms`. */
  settled?(link: LiveLink, ms: number): void;
}

export interface LinkOptions {
  sessionId: string;
  client: WebSocket;
  /** The client's address, as the handshake limit counted it. */
  clientAddress: string;
  caller: Caller;
  model: string;
  intent: 'transcription' | undefined;
  upstreams: Upstream[];
  meter: SessionMeter;
  timings: LinkTimings;
  translator?: FrameTranslator;
  observer?: SessionObserver;
  /** Sent upstream before the client's frames: the `session.update` of a client secret's configuration. */
  firstFrame?: string;
}

/**
 * A WebSocket session's ports: the client leg and the upstream leg over real
 * sockets, the keep-alive between them, and the bill. The machine drives it;
 * the machine alone decides when it is over.
 */
export class SessionLink implements SessionPorts, LiveLink {
  /** How the client is connected (logs, metrics, traces, the ledger). */
  readonly transport = 'websocket' as const;
  readonly sessionId: string;
  readonly clientAddress: string;
  readonly caller: Caller;
  readonly model: string;
  readonly startedAt = new Date();
  readonly client: WebSocketClientLeg;
  readonly upstream: WebSocketUpstreamLeg;
  readonly bill: SessionBill;

  constructor(private readonly options: LinkOptions) {
    const { timings, observer, translator } = options;
    this.sessionId = options.sessionId;
    this.clientAddress = options.clientAddress;
    this.caller = options.caller;
    this.model = options.model;
    this.bill = new SessionBill(observedMeter(options.meter, this, observer));
    const onPause = () => observer?.backpressure?.(this);
    this.client = new WebSocketClientLeg({ socket: options.client, bill: this.bill, translator, ...timings, onPause, firstFrame: options.firstFrame });
    this.upstream = new WebSocketUpstreamLeg({
      model: options.model,
      intent: options.intent,
      upstreams: options.upstreams,
      bill: this.bill,
      translator,
      ...timings,
      dialReport: {
        dialed: (upstream, ms) => observer?.dialed?.(this, upstream, ms),
        dialFailed: (upstream, error, ms) => observer?.dialFailed?.(this, upstream, error, ms),
      },
      onConnected: (socket, toClient) => this.client.connect(socket, toClient),
      onPause,
    });
  }

  /** The upstream as dialled; null until the dial succeeds. */
  get dialed(): DialedUpstream | null {
    return this.upstream.dialed;
  }

  get stats() {
    const toUpstream = this.client.toUpstream.stats;
    const toClient = this.upstream.toClient?.stats;
    return {
      framesIn: toUpstream.frames,
      bytesIn: toUpstream.bytes,
      framesOut: toClient?.frames ?? 0,
      bytesOut: toClient?.bytes ?? 0,
      pauses: toUpstream.pauses + (toClient?.pauses ?? 0),
    };
  }

  get spendNano(): bigint {
    return this.bill.spendNano;
  }

  keepAlive(report: Report): () => void {
    const toUpstream = this.client.toUpstream;
    const toClient = this.upstream.toClient;
    return keepAlive({
      client: this.client.socket,
      upstream: this.upstream.dialed!.socket,
      pingIntervalMs: this.options.timings.pingIntervalMs,
      idleTimeoutMs: this.options.timings.idleTimeoutMs,
      lastClientFrameAt: () => this.client.lastClientFrameAt,
      backpressure: () => ({
        paused: toUpstream.isPaused || (toClient?.isPaused ?? false),
        pauses: toUpstream.stats.pauses + (toClient?.stats.pauses ?? 0),
      }),
      report,
    });
  }

  /** Resolves with the settlement as written (or handed to the backlog). */
  settle(outcome: SessionOutcome): Promise<SessionSummary> {
    const clientCloseCode = outcome.clientClosed?.code ?? outcome.closeCodes?.client ?? closePlan(outcome).client.code;
    return this.bill.settle(() => endedSummary(this, this.dialed, outcome, clientCloseCode));
  }
}
