import type WebSocket from 'ws';
import type { SessionBill } from '../billing/session-bill.js';
import { RelayError, asRelayError } from '../errors.js';
import type { SideClose } from '../machines/close-plan.js';
import type { ClientLeg, Report } from '../machines/legs.js';
import { BULK_EVENT_TYPES, scanEventType } from '../protocol/frame-type.js';
import { closeSocket, relayEventId } from './close-socket.js';
import { FramePipe } from './pipe.js';
import type { FrameTranslator } from './translators.js';

export interface ClientLegOptions {
  socket: WebSocket;
  bill: SessionBill;
  translator?: FrameTranslator;
  highWaterBytes: number;
  stallTimeoutMs: number;
  connectQueueFrames: number;
  connectQueueBytes: number;
  closeTimeoutMs: number;
  onPause(): void;
  /** Sent to the upstream ahead of the client's first frame: a client secret's session configuration. */
  firstFrame?: string;
}

function ignoreReport(): void {}

function reportError(report: Report, source: 'client' | 'relay', error: RelayError): void {
  report({ type: 'ERROR', source, error: { code: error.code, message: error.message, closeCode: error.closeCode } });
}

/**
 * The client's WebSocket: its frames are checked, translated and piped to the
 * upstream (queued while the upstream is being dialled), and a
 * `response.create` goes out only once the bill admits it.
 */
export class WebSocketClientLeg implements ClientLeg {
  readonly toUpstream: FramePipe;
  /** The upstream's frames to this client; set once the upstream answers. */
  private toClient: FramePipe | null = null;
  private lastFrameAt = Date.now();
  /** The running reader's report; the pipe's stall, overflow and refused admissions go through it. */
  private report: Report = ignoreReport;
  /**
   * For verdicts that arrive later (a charge being written): they go to the
   * reader running when they arrive (draining invokes its own), not to one
   * that has stopped and would drop them.
   */
  private readonly reportLater: Report = (event) => this.report(event);

  constructor(private readonly options: ClientLegOptions) {
    this.toUpstream = new FramePipe({
      source: options.socket,
      highWaterBytes: options.highWaterBytes,
      stallTimeoutMs: options.stallTimeoutMs,
      maxWaitingFrames: options.connectQueueFrames,
      maxWaitingBytes: options.connectQueueBytes,
      onStall: () => this.report({ type: 'CANCEL', reason: 'backpressure_stall' }),
      onOverflow: () => reportError(this.report, 'client', new RelayError('queue_overflow')),
      onDeferredError: (error) => reportError(this.report, 'relay', asRelayError(error)),
      onPause: options.onPause,
    });
    if (options.firstFrame !== undefined) this.toUpstream.push(options.firstFrame);
    options.socket.on('error', ignoreError);
    // A gone client takes nothing more: the upstream is read on, so the response in flight reaches its charge.
    options.socket.once('close', () => this.toClient?.abandonSink());
  }

  get socket(): WebSocket {
    return this.options.socket;
  }

  /** When the client last sent a frame (keep-alive's idle check reads it). */
  get lastClientFrameAt(): number {
    return this.lastFrameAt;
  }

  /** The upstream answered: frames flow both ways. */
  connect(upstream: WebSocket, toClient: FramePipe): void {
    this.toClient = toClient;
    toClient.attachSink(this.options.socket);
    this.toUpstream.attachSink(upstream);
  }

  read(report: Report): () => void {
    const leg = this;
    const socket = this.options.socket;
    this.report = report;
    const clientOnMessage = (data: WebSocket.RawData, isBinary: boolean) => this.fromClient(data as Buffer, isBinary);
    const clientOnClose = (code: number, reason: Buffer) => report({ type: 'CLIENT_CLOSED', code, reason: reason.toString() });
    const clientOnError = (error: Error & { code?: string }) => {
      const relayError =
        error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? new RelayError('message_too_big')
          : error.code === 'WS_ERR_INVALID_UTF8'
            ? new RelayError('invalid_frame', 'A text frame was not valid UTF-8.')
            : new RelayError('client_error', `The client connection failed: ${error.message}`);
      reportError(report, 'client', relayError);
    };
    socket.on('message', clientOnMessage);
    socket.on('close', clientOnClose);
    socket.on('error', clientOnError);
    return function stopClientRead() {
      if (leg.report === report) leg.report = ignoreReport;
      socket.off('message', clientOnMessage);
      socket.off('close', clientOnClose);
      socket.off('error', clientOnError);
    };
  }

  private fromClient(frame: Buffer, isBinary: boolean): void {
    this.lastFrameAt = Date.now();
    if (this.toUpstream.isStopped) return;
    if (isBinary) {
      reportError(this.report, 'client', new RelayError('invalid_frame', 'Binary frames are not part of the Realtime protocol; send JSON text frames.'));
      return;
    }
    const type = scanEventType(frame);
    if (type === undefined) {
      reportError(this.report, 'client', new RelayError('invalid_frame', 'Each frame must be a JSON object with a string "type".'));
      return;
    }
    let outgoing: Buffer | string | null = frame;
    if (this.options.translator && !BULK_EVENT_TYPES.has(type)) {
      outgoing = this.options.translator.toUpstream(type, frame);
      if (outgoing === null) return;
    }
    if (type !== 'response.create') {
      this.toUpstream.push(outgoing);
      return;
    }
    const admitted = this.options.bill.admitResponse(outgoing, this.reportLater, this.refuse);
    if (admitted === null) return;
    if (typeof admitted === 'string' || Buffer.isBuffer(admitted)) this.toUpstream.push(admitted);
    else this.toUpstream.pushDeferred(admitted);
  }

  /** A refused event is answered with an `error` event; the session goes on. */
  private readonly refuse = (error: RelayError): void => {
    if (this.options.socket.readyState === 1) this.options.socket.send(error.toEvent(relayEventId()));
  };

  stopForwarding(): void {
    this.toUpstream.stop();
  }

  /** Frames the client is still owed leave before the close frame when the plan says so. */
  close(how: SideClose, closed: (code: number | null) => void): () => void {
    this.toUpstream.dispose();
    const toClient = this.toClient;
    const { socket, closeTimeoutMs } = this.options;
    if (!how.flushFirst || !toClient) {
      toClient?.dispose();
      return closeSocket(socket, how, closeTimeoutMs, closed);
    }
    let stopClosing: (() => void) | null = null;
    let disposed = false;
    void toClient.flushed().then(() => {
      if (disposed) return;
      toClient.dispose();
      stopClosing = closeSocket(socket, how, closeTimeoutMs, closed);
    });
    return function stopClientClose() {
      disposed = true;
      toClient.dispose();
      stopClosing?.();
    };
  }
}

function ignoreError(): void {}
