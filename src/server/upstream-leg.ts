import type WebSocket from 'ws';
import type { SessionBill } from '../billing/session-bill.js';
import { RelayError, asRelayError } from '../errors.js';
import type { SideClose } from '../machines/close-plan.js';
import type { Report, UpstreamLeg } from '../machines/legs.js';
import { BULK_EVENT_TYPES, scanEventType } from '../protocol/frame-type.js';
import { parseObject, type JsonObject } from '../protocol/json.js';
import { closeSocket, relayEventId } from './close-socket.js';
import { dialWithFailover, type FailoverReport } from './failover.js';
import { FramePipe } from './pipe.js';
import type { FrameTranslator } from './translators.js';
import type { DialedUpstream, Upstream } from './upstream.js';

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

/** Only the few small lifecycle events are ever parsed; audio never is. */
function parseJson(frame: Buffer): JsonObject | undefined {
  return parseObject(frame.toString('utf8'));
}

/**
 * The dialled upstream WebSocket: its frames are piped to the client, and the
 * lifecycle events among them (a response's start and end, a transcription's
 * usage) become facts for the machine and charges on the bill.
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

  constructor(private readonly options: UpstreamLegOptions) {}

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
    const pipe = this.toClient!;
    const type = scanEventType(frame);
    if (type === undefined) {
      // What the relay cannot read still reaches the client, untouched.
      pipe.push(frame);
      return;
    }
    if (!BULK_EVENT_TYPES.has(type)) {
      const { bill } = this.options;
      switch (type) {
        case 'response.created': {
          const response = parseJson(frame)?.response as { id?: unknown } | undefined;
          this.report({ type: 'RESPONSE_CREATED', responseId: typeof response?.id === 'string' ? response.id : '' });
          bill.responseStarted(this.reportLater);
          break;
        }
        case 'session.created':
        case 'session.updated': {
          // The transcription model decides how transcription usage is priced.
          const session = parseJson(frame)?.session as { audio?: { input?: { transcription?: { model?: unknown } | null } } } | undefined;
          const configured = session?.audio?.input?.transcription?.model;
          bill.configured({ transcriptionModel: typeof configured === 'string' ? configured : null });
          break;
        }
        case 'response.done': {
          const response = (parseJson(frame)?.response ?? {}) as { id?: unknown; status?: unknown; usage?: unknown };
          pipe.pushDeferred(bill.chargeResponse(response, this.servedModel, this.reportLater, () => this.translate(type, frame)));
          return;
        }
        case 'conversation.item.input_audio_transcription.completed': {
          const event = parseJson(frame) ?? {};
          const transcription = { itemId: event.item_id, contentIndex: event.content_index, usage: event.usage };
          pipe.pushDeferred(bill.chargeTranscription(transcription, this.servedModel, this.reportLater, () => this.translate(type, frame)));
          return;
        }
      }
    }
    const outgoing = this.translate(type, frame);
    if (outgoing !== null) pipe.push(outgoing);
  }

  private translate(type: string, frame: Buffer): Buffer | string | null {
    return this.options.translator ? this.options.translator.toClient(type, frame) : frame;
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

function errorInfo(error: RelayError) {
  return { code: error.code, message: error.message, closeCode: error.closeCode };
}

function ignoreError(): void {}
