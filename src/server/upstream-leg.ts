import type WebSocket from 'ws';
import type { SessionBill } from '../billing/session-bill.js';
import { RelayError, asRelayError } from '../errors.js';
import type { SideClose } from '../machines/close-plan.js';
import type { Report, UpstreamLeg } from '../machines/legs.js';
import { closeSocket, relayEventId } from './close-socket.js';
import { dialWithFailover, type FailoverReport } from './failover.js';
import { FramePipe } from './pipe.js';
import type { FrameTranslator } from './translators.js';
import type { DialedUpstream, Upstream } from './upstream.js';
import { takeUpstreamEvent, type UpstreamEventsOptions } from './upstream-events.js';

export interface UpstreamLegOptions {
  model: string;
  intent: 'transcription' | undefined;
  upstreams: Upstream[];
  bill: SessionBill;
  translator?: FrameTranslator;
  connectTimeoutMs: number;
  highWaterBytes: number;
  stallTimeoutMs: number;
  closeTimeoutMs: number;
  dialReport: FailoverReport;
  /** The upstream answered: the session connects its frames to the client. */
  onConnected(socket: WebSocket, toClient: FramePipe): void;
  onPause(): void;
}

function ignoreReport(): void {}

/**
 * The dialled upstream WebSocket: its frames are piped to the client, and the
 * lifecycle events among them (a response's start and end, a transcription's
 * usage) become facts for the machine and charges on the bill (see
 * takeUpstreamEvent).
 */
export class WebSocketUpstreamLeg implements UpstreamLeg {
  dialed: DialedUpstream | null = null;
  toClient: FramePipe | null = null;
  /** The running reader's report; the pipe's stall and failed charges go through it. */
  private report: Report = ignoreReport;
  /**
   * For verdicts that arrive later (a charge being written): they go to the
   * reader running when they arrive (draining invokes its own), not to one
   * that has stopped and would drop them.
   */
  private readonly reportLater: Report = (event) => this.report(event);
  private readonly events: UpstreamEventsOptions;

  constructor(private readonly options: UpstreamLegOptions) {
    const { translator } = options;
    this.events = {
      bill: options.bill,
      servedModel: () => this.servedModel,
      report: this.reportLater,
      ...(translator ? { translate: (type: string, frame: Buffer) => translator.toClient(type, frame) } : {}),
    };
  }

  async dial(signal: AbortSignal): Promise<void> {
    const { upstreams, model, intent, connectTimeoutMs, dialReport } = this.options;
    const dialed = await dialWithFailover(upstreams, { model, intent }, connectTimeoutMs, signal, dialReport);
    this.dialed = dialed;
    dialed.socket.on('error', ignoreError);
    this.options.bill.opened({ upstream: dialed.upstream.name, servedModel: dialed.servedModel });
    this.toClient = new FramePipe({
      source: dialed.socket,
      highWaterBytes: this.options.highWaterBytes,
      stallTimeoutMs: this.options.stallTimeoutMs,
      maxWaitingFrames: Number.MAX_SAFE_INTEGER,
      maxWaitingBytes: Number.MAX_SAFE_INTEGER,
      onStall: () => this.report({ type: 'CANCEL', reason: 'backpressure_stall' }),
      onOverflow: () => undefined,
      onDeferredError: (error) => {
        const relayError = asRelayError(error, 'billing_unavailable');
        this.report({ type: 'ERROR', source: 'relay', error: { code: relayError.code, message: relayError.message, closeCode: relayError.closeCode } });
      },
      onPause: this.options.onPause,
    });
    this.options.onConnected(dialed.socket, this.toClient);
  }

  get servedModel(): string {
    return this.dialed?.servedModel ?? this.options.model;
  }

  read(report: Report): () => void {
    const leg = this;
    const dialed = this.dialed!;
    const socket = dialed.socket;
    this.report = report;
    const upstreamOnMessage = (data: WebSocket.RawData) => this.fromUpstream(data as Buffer);
    const upstreamOnClose = (code: number, reason: Buffer) => report({ type: 'TARGET_CLOSED', code, reason: reason.toString() });
    const upstreamOnError = (error: Error) =>
      report({ type: 'ERROR', source: 'upstream', error: errorInfo(new RelayError('upstream_error', `The upstream connection failed: ${error.message}`)) });
    const early = dialed.takeOver();
    for (const frame of early.frames) this.fromUpstream(frame);
    socket.on('message', upstreamOnMessage);
    socket.on('close', upstreamOnClose);
    socket.on('error', upstreamOnError);
    // A socket that closed before this reader attached still has to be reported.
    const { closed } = early;
    if (closed) queueMicrotask(() => upstreamOnClose(closed.code, closed.reason));
    else if (socket.readyState === 3) queueMicrotask(() => upstreamOnClose(1006, Buffer.alloc(0)));
    return function stopUpstreamRead() {
      if (leg.report === report) leg.report = ignoreReport;
      socket.off('message', upstreamOnMessage);
      socket.off('close', upstreamOnClose);
      socket.off('error', upstreamOnError);
    };
  }

  private fromUpstream(frame: Buffer): void {
    takeUpstreamEvent(frame, this.toClient!, this.events);
  }

  cancelResponse(): void {
    const socket = this.dialed?.socket;
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: 'response.cancel', event_id: relayEventId() }));
  }

  close(how: SideClose | null, closed: (code: number | null) => void): () => void {
    if (!this.dialed) {
      closed(null);
      return function closeNothing() {};
    }
    return closeSocket(this.dialed.socket, how, this.options.closeTimeoutMs, closed);
  }
}

/** A RelayError as the session machine's ERROR event carries it. */
export function errorInfo(error: RelayError) {
  return { code: error.code, message: error.message, closeCode: error.closeCode };
}

function ignoreError(): void {}
