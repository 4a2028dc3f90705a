import { randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import { RelayError, asRelayError } from '../errors.js';
import { closePlan, endReason, type SideClose } from '../machines/close-plan.js';
import type { ErrorInfo, SessionEvent, SessionOutcome, SessionPorts } from '../machines/session.js';
import { truncateCloseReason } from '../protocol/close-codes.js';
import { BULK_EVENT_TYPES, scanEventType } from '../protocol/frame-type.js';
import { parseObject, type JsonObject } from '../protocol/json.js';
import { FramePipe } from './pipe.js';
import type { Caller, ChargeVerdict, SessionMeter, SessionSummary, UsageRecord } from './ports.js';
import { dialWithFailover } from './failover.js';
import { keepAlive } from './keep-alive.js';
import type { DialedUpstream, Upstream } from './upstream.js';

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

/** Rewrites frames for clients that speak another dialect (beta). Return null to drop a frame. */
export interface FrameTranslator {
  toUpstream(type: string, frame: Buffer): Buffer | string | null;
  toClient(type: string, frame: Buffer): Buffer | string | null;
}

/** Lifecycle facts for metrics and logs. Never called per frame. */
export interface LinkObserver {
  dialed?(link: SessionLink, upstream: string, ms: number): void;
  /** One upstream failed before its first frame; the next one serving the model is tried, unless `error` forbids it. */
  dialFailed?(link: SessionLink, upstream: string, error: RelayError): void;
  backpressure?(link: SessionLink): void;
  released?(link: SessionLink, summary: SessionSummary): void;
}

export interface LinkOptions {
  sessionId: string;
  client: WebSocket;
  caller: Caller;
  model: string;
  intent: 'transcription' | undefined;
  upstreams: Upstream[];
  meter: SessionMeter;
  timings: LinkTimings;
  translator?: FrameTranslator;
  observer?: LinkObserver;
  /** Called once both sockets are closed and every timer is cleared. */
  onReleased(link: SessionLink): void;
}

type Report = (event: SessionEvent) => void;

let eventCounter = 0;
function relayEventId(): string {
  eventCounter = (eventCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `event_relay_${eventCounter.toString(36)}`;
}

function errorInfo(error: RelayError): ErrorInfo {
  return { code: error.code, message: error.message, closeCode: error.closeCode };
}

/** Only the few small lifecycle events are ever parsed; audio never is. */
function parseJson(frame: Buffer): JsonObject | undefined {
  return parseObject(frame.toString('utf8'));
}

/**
 * The session's hold on the world: both sockets, both directions of frames,
 * the keep-alive and close timers, and the meter. The session machine drives
 * it through SessionPorts; everything it owns is released in `release()`.
 */
export class SessionLink implements SessionPorts {
  readonly sessionId: string;
  readonly caller: Caller;
  readonly model: string;
  readonly startedAt = new Date();
  upstream: DialedUpstream | null = null;

  private readonly client: WebSocket;
  private readonly options: LinkOptions;
  private readonly toUpstream: FramePipe;
  private toClient: FramePipe | null = null;
  private readonly usage: UsageRecord[] = [];
  private readonly pendingCharges = new Set<Promise<unknown>>();
  private lastClientFrameAt = Date.now();
  private clientCloseCode: number | null = null;
  private upstreamCloseCode: number | null = null;
  private report: Report = () => undefined;
  private released = false;
  private settled = false;
  private readonly closeTimers = new Set<NodeJS.Timeout>();
  private openSockets = 1;

  constructor(options: LinkOptions) {
    this.options = options;
    this.sessionId = options.sessionId;
    this.caller = options.caller;
    this.model = options.model;
    this.client = options.client;
    const { timings } = options;
    this.toUpstream = new FramePipe({
      source: this.client,
      highWaterBytes: timings.highWaterBytes,
      stallTimeoutMs: timings.stallTimeoutMs,
      maxWaitingFrames: timings.connectQueueFrames,
      maxWaitingBytes: timings.connectQueueBytes,
      onStall: () => this.report({ type: 'CANCEL', reason: 'backpressure_stall' }),
      onOverflow: () => this.reportError('client', new RelayError('queue_overflow')),
      onDeferredError: (error) => this.reportError('relay', asRelayError(error)),
      onPause: () => this.options.observer?.backpressure?.(this),
    });
    // The link owns the client socket from here on: its close ends the link.
    this.client.on('close', this.clientOnFinalClose);
    this.client.on('error', ignoreError);
  }

  get stats() {
    return {
      framesIn: this.toUpstream.stats.frames,
      bytesIn: this.toUpstream.stats.bytes,
      framesOut: this.toClient?.stats.frames ?? 0,
      bytesOut: this.toClient?.stats.bytes ?? 0,
      pauses: this.toUpstream.stats.pauses + (this.toClient?.stats.pauses ?? 0),
    };
  }

  get spendNano(): bigint {
    return this.options.meter.spendNano();
  }

  // ---- connecting ---------------------------------------------------------

  async dialUpstream(signal: AbortSignal): Promise<void> {
    const { upstreams, timings, intent, observer } = this.options;
    const dialed = await dialWithFailover(upstreams, { model: this.model, intent }, timings.connectTimeoutMs, signal, {
      dialed: (upstream, ms) => observer?.dialed?.(this, upstream, ms),
      dialFailed: (upstream, error) => observer?.dialFailed?.(this, upstream, error),
    });
    this.adoptUpstream(dialed);
  }

  private adoptUpstream(dialed: DialedUpstream): void {
    this.upstream = dialed;
    this.openSockets++;
    dialed.socket.on('error', ignoreError);
    dialed.socket.on('close', this.upstreamOnFinalClose);
    this.options.meter.opened({ upstream: dialed.upstream.name, servedModel: dialed.servedModel });
    this.toClient = new FramePipe({
      source: dialed.socket,
      highWaterBytes: this.options.timings.highWaterBytes,
      stallTimeoutMs: this.options.timings.stallTimeoutMs,
      maxWaitingFrames: Number.MAX_SAFE_INTEGER,
      maxWaitingBytes: Number.MAX_SAFE_INTEGER,
      onStall: () => this.report({ type: 'CANCEL', reason: 'backpressure_stall' }),
      onOverflow: () => undefined,
      onDeferredError: (error) => this.reportError('relay', asRelayError(error, 'billing_unavailable')),
      onPause: () => this.options.observer?.backpressure?.(this),
    });
    this.toClient.attachSink(this.client);
    this.toUpstream.attachSink(dialed.socket);
  }

  // ---- client → upstream --------------------------------------------------

  readClient(report: Report): () => void {
    this.report = report;
    const client = this.client;
    const clientOnMessage = (data: WebSocket.RawData, isBinary: boolean) => this.fromClient(data as Buffer, isBinary);
    const clientOnClose = (code: number, reason: Buffer) => {
      this.clientCloseCode = code;
      report({ type: 'CLIENT_CLOSED', code, reason: reason.toString() });
    };
    const clientOnError = (error: Error & { code?: string }) => {
      const relayError =
        error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? new RelayError('message_too_big')
          : error.code === 'WS_ERR_INVALID_UTF8'
            ? new RelayError('invalid_frame', 'A text frame was not valid UTF-8.')
            : new RelayError('client_error', `The client connection failed: ${error.message}`);
      this.reportError('client', relayError);
    };
    client.on('message', clientOnMessage);
    client.on('close', clientOnClose);
    client.on('error', clientOnError);
    return function stopClientRead() {
      client.off('message', clientOnMessage);
      client.off('close', clientOnClose);
      client.off('error', clientOnError);
    };
  }

  private fromClient(frame: Buffer, isBinary: boolean): void {
    this.lastClientFrameAt = Date.now();
    if (this.toUpstream.isStopped) return;
    if (isBinary) {
      this.reportError('client', new RelayError('invalid_frame', 'Binary frames are not part of the Realtime protocol; send JSON text frames.'));
      return;
    }
    const type = scanEventType(frame);
    if (type === undefined) {
      this.reportError('client', new RelayError('invalid_frame', 'Each frame must be a JSON object with a string "type".'));
      return;
    }
    let outgoing: Buffer | string | null = frame;
    if (this.options.translator && !BULK_EVENT_TYPES.has(type)) {
      outgoing = this.options.translator.toUpstream(type, frame);
      if (outgoing === null) return;
    }
    if (type === 'response.create') {
      this.forwardResponseCreate(outgoing);
      return;
    }
    this.toUpstream.push(outgoing);
  }

  /** A response costs money: the balance is checked before it is asked for. */
  private forwardResponseCreate(frame: Buffer | string): void {
    let admitted: void | Promise<void>;
    try {
      admitted = this.options.meter.admitResponse();
    } catch (error) {
      this.refuseClientEvent(asRelayError(error));
      return;
    }
    if (admitted === undefined) {
      this.report({ type: 'RESPONSE_REQUESTED' });
      this.toUpstream.push(frame);
      return;
    }
    this.toUpstream.pushDeferred(
      admitted.then(
        () => {
          this.report({ type: 'RESPONSE_REQUESTED' });
          return frame;
        },
        (error: unknown) => {
          const relayError = asRelayError(error);
          if (relayError.code === 'insufficient_quota' || relayError.code === 'session_spend_cap_exceeded') {
            this.refuseClientEvent(relayError);
            return null;
          }
          throw relayError;
        },
      ),
    );
  }

  private refuseClientEvent(error: RelayError): void {
    if (this.client.readyState === 1) this.client.send(error.toEvent(relayEventId()));
  }

  stopClientForwarding(): void {
    this.toUpstream.stop();
  }

  // ---- upstream → client --------------------------------------------------

  readUpstream(report: Report): () => void {
    const dialed = this.upstream!;
    const socket = dialed.socket;
    const upstreamOnMessage = (data: WebSocket.RawData) => this.fromUpstream(data as Buffer);
    const upstreamOnClose = (code: number, reason: Buffer) => {
      this.upstreamCloseCode = code;
      report({ type: 'TARGET_CLOSED', code, reason: reason.toString() });
    };
    const upstreamOnError = (error: Error) =>
      this.reportError('upstream', new RelayError('upstream_error', `The upstream connection failed: ${error.message}`));
    for (const early of dialed.takeOver()) this.fromUpstream(early);
    socket.on('message', upstreamOnMessage);
    socket.on('close', upstreamOnClose);
    socket.on('error', upstreamOnError);
    // A socket that closed before this reader attached still has to be reported.
    if (socket.readyState === 3) queueMicrotask(() => upstreamOnClose(this.upstreamCloseCode ?? 1006, Buffer.alloc(0)));
    return function stopUpstreamRead() {
      socket.off('message', upstreamOnMessage);
      socket.off('close', upstreamOnClose);
      socket.off('error', upstreamOnError);
    };
  }

  private fromUpstream(frame: Buffer): void {
    const pipe = this.toClient!;
    const type = scanEventType(frame);
    if (type === undefined) {
      // What the relay cannot read still reaches the client, untouched.
      pipe.push(frame);
      return;
    }
    if (!BULK_EVENT_TYPES.has(type)) {
      switch (type) {
        case 'response.created':
          this.onResponseCreated(frame);
          break;
        case 'session.created':
        case 'session.updated':
          this.onSessionObject(frame);
          break;
        case 'response.done':
          pipe.pushDeferred(this.chargeResponse(frame));
          return;
        case 'conversation.item.input_audio_transcription.completed':
          pipe.pushDeferred(this.chargeTranscription(frame));
          return;
      }
    }
    const outgoing = this.translateForClient(type, frame);
    if (outgoing !== null) pipe.push(outgoing);
  }

  private onResponseCreated(frame: Buffer): void {
    const event = parseJson(frame);
    const response = event?.response as { id?: unknown } | undefined;
    const responseId = typeof response?.id === 'string' ? response.id : '';
    this.report({ type: 'RESPONSE_CREATED', responseId });
    let started: void | Promise<void>;
    try {
      started = this.options.meter.responseStarted();
    } catch (error) {
      this.refuseStartedResponse(error);
      return;
    }
    if (started !== undefined) started.catch((error: unknown) => this.refuseStartedResponse(error));
  }

  /** A response the key cannot cover is cancelled with the session: its tail is still read and billed. */
  private refuseStartedResponse(error: unknown): void {
    const relayError = asRelayError(error);
    if (relayError.code === 'insufficient_quota') this.report({ type: 'CANCEL', reason: 'insufficient_quota' });
    else if (relayError.code === 'session_spend_cap_exceeded') this.report({ type: 'CANCEL', reason: 'spend_cap' });
    else this.reportError('relay', relayError);
  }

  /** The transcription model decides how transcription usage is priced. */
  private onSessionObject(frame: Buffer): void {
    const session = parseJson(frame)?.session as { audio?: { input?: { transcription?: { model?: unknown } | null } }; model?: unknown; type?: unknown } | undefined;
    const configured = session?.audio?.input?.transcription?.model;
    this.options.meter.configured({ transcriptionModel: typeof configured === 'string' ? configured : null });
  }

  private translateForClient(type: string, frame: Buffer): Buffer | string | null {
    return this.options.translator ? this.options.translator.toClient(type, frame) : frame;
  }

  /**
   * The charge for a response is written before its `response.done` reaches
   * the client: a client that has seen the response's end has been billed for
   * it, and a relay that cannot write the charge fails closed instead of
   * giving the response away.
   */
  private chargeResponse(frame: Buffer): Promise<Buffer | string | null> {
    const event = parseJson(frame);
    const response = (event?.response ?? {}) as { id?: unknown; status?: unknown; usage?: unknown };
    const id = typeof response.id === 'string' && response.id ? response.id : `unidentified_${randomUUID()}`;
    const record: UsageRecord = { kind: 'response', id, model: this.servedModel(), usage: response.usage ?? null, costNano: null };
    this.usage.push(record);
    const charged = this.track(
      this.options.meter.chargeResponse({ id, status: typeof response.status === 'string' ? response.status : 'unknown', usage: response.usage }),
    );
    return charged.then((verdict) => {
      this.report({ type: 'RESPONSE_DONE', responseId: id });
      this.applyVerdict(verdict, record);
      return this.translateForClient('response.done', frame);
    }, failBilling);
  }

  private chargeTranscription(frame: Buffer): Promise<Buffer | string | null> {
    const event = parseJson(frame) ?? {};
    const itemId = typeof event.item_id === 'string' ? event.item_id : `unidentified_${randomUUID()}`;
    const contentIndex = typeof event.content_index === 'number' ? event.content_index : 0;
    const record: UsageRecord = { kind: 'transcription', id: `${itemId}:${contentIndex}`, model: this.servedModel(), usage: event.usage ?? null, costNano: null };
    this.usage.push(record);
    const charged = this.track(this.options.meter.chargeTranscription({ itemId, contentIndex, usage: event.usage, model: null }));
    return charged.then((verdict) => {
      this.applyVerdict(verdict, record);
      return this.translateForClient('conversation.item.input_audio_transcription.completed', frame);
    }, failBilling);
  }

  private applyVerdict(verdict: ChargeVerdict, record: UsageRecord): void {
    record.costNano = verdict.costNano;
    if (verdict.stop === 'insufficient_quota') this.report({ type: 'CANCEL', reason: 'insufficient_quota' });
    else if (verdict.stop === 'spend_cap') this.report({ type: 'CANCEL', reason: 'spend_cap' });
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.pendingCharges.add(promise);
    const untrack = () => this.pendingCharges.delete(promise);
    promise.then(untrack, untrack);
    return promise;
  }

  private servedModel(): string {
    return this.upstream?.servedModel ?? this.model;
  }

  cancelResponse(): void {
    const socket = this.upstream?.socket;
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: 'response.cancel', event_id: relayEventId() }));
  }

  // ---- keep-alive ---------------------------------------------------------

  keepAlive(report: Report): () => void {
    return keepAlive({
      client: this.client,
      upstream: this.upstream!.socket,
      pingIntervalMs: this.options.timings.pingIntervalMs,
      idleTimeoutMs: this.options.timings.idleTimeoutMs,
      lastClientFrameAt: () => this.lastClientFrameAt,
      backpressure: () => ({
        paused: this.toUpstream.isPaused || (this.toClient?.isPaused ?? false),
        pauses: this.toUpstream.stats.pauses + (this.toClient?.stats.pauses ?? 0),
      }),
      report,
    });
  }

  // ---- the end ------------------------------------------------------------

  release(outcome: SessionOutcome): void {
    if (this.released) return;
    this.released = true;
    // The machine has ended: whatever the sockets and pipes still report has no one to hear it.
    this.report = () => undefined;
    this.toUpstream.dispose();
    const plan = closePlan(outcome);
    const upstreamSocket = this.upstream?.socket;
    if (plan.upstream && upstreamSocket) this.closeSocket(upstreamSocket, plan.upstream);
    else if (upstreamSocket) this.closeSocket(upstreamSocket, null);
    const toClient = this.toClient;
    if (plan.client.flushFirst && toClient) {
      void toClient.flushed().then(() => {
        toClient.dispose();
        this.closeSocket(this.client, plan.client);
      });
    } else {
      toClient?.dispose();
      this.closeSocket(this.client, plan.client);
    }
  }

  /** Close frame first; a peer that does not finish the handshake in time is terminated. */
  private closeSocket(socket: WebSocket, how: SideClose | null): void {
    if (socket.readyState === 3) return;
    if (socket.readyState === 1 && how) {
      if (how.error) socket.send(new RelayError(how.error.code, how.error.message).toEvent(relayEventId()));
      socket.close(how.code, truncateCloseReason(how.reason));
    } else if (socket.readyState !== 2) {
      socket.terminate();
      return;
    }
    const timer = setTimeout(() => {
      this.closeTimers.delete(timer);
      socket.terminate();
    }, this.options.timings.closeTimeoutMs);
    this.closeTimers.add(timer);
  }

  settle(outcome: SessionOutcome): void {
    if (this.settled) throw new Error(`session ${this.sessionId} settled twice`);
    this.settled = true;
    const summary = (): SessionSummary => ({
      sessionId: this.sessionId,
      caller: this.caller,
      model: this.model,
      servedModel: this.upstream?.servedModel ?? null,
      upstream: this.upstream?.upstream.name ?? null,
      startedAt: this.startedAt,
      endedAt: new Date(),
      endReason: endReason(outcome),
      drain: outcome.drain,
      clientCloseCode: outcome.clientClosed?.code ?? this.clientCloseCode ?? closePlan(outcome).client.code,
      upstreamCloseCode: outcome.targetClosed?.code ?? this.upstreamCloseCode ?? closePlan(outcome).upstream?.code ?? null,
      ...this.stats,
      usage: this.usage,
    });
    // Charges still being written belong in the settlement's totals. The
    // session is not finished (released, counted as drained) until its
    // settlement is written or handed to the backlog: a shutdown that closes
    // the ledger right after the last session must not cut it off.
    void Promise.allSettled([...this.pendingCharges]).then(() => {
      const final = summary();
      return this.options.meter
        .settle(final)
        .catch(() => undefined)
        .finally(() => {
          this.finalSummary = final;
          this.maybeFinished();
        });
    });
  }

  private finalSummary: SessionSummary | null = null;

  private readonly clientOnFinalClose = (code: number): void => {
    if (this.clientCloseCode === null) this.clientCloseCode = code;
    // A gone client takes nothing more: the upstream is read on, so the response in flight reaches its charge.
    this.toClient?.abandonSink();
    this.socketClosed();
  };

  private readonly upstreamOnFinalClose = (code: number): void => {
    if (this.upstreamCloseCode === null) this.upstreamCloseCode = code;
    this.socketClosed();
  };

  private socketClosed(): void {
    this.openSockets--;
    this.maybeFinished();
  }

  private finished = false;

  private maybeFinished(): void {
    if (this.finished || this.openSockets > 0 || !this.released || this.finalSummary === null) return;
    this.finished = true;
    for (const timer of this.closeTimers) clearTimeout(timer);
    this.closeTimers.clear();
    this.toClient?.dispose();
    this.toUpstream.dispose();
    this.client.off('close', this.clientOnFinalClose);
    this.upstream?.socket.off('close', this.upstreamOnFinalClose);
    this.options.observer?.released?.(this, this.finalSummary);
    this.options.onReleased(this);
  }

  private reportError(source: 'client' | 'upstream' | 'relay', error: RelayError): void {
    this.report({ type: 'ERROR', source, error: errorInfo(error) });
  }
}

function failBilling(error: unknown): never {
  throw asRelayError(error, 'billing_unavailable');
}

function ignoreError(): void {}
