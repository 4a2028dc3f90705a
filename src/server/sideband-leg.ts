import WebSocket from 'ws';
import type { SessionBill } from '../billing/session-bill.js';
import { RelayError, asRelayError } from '../errors.js';
import type { SideClose } from '../machines/close-plan.js';
import type { Report, UpstreamLeg } from '../machines/legs.js';
import { closeSocket, relayEventId } from './close-socket.js';
import type { FailoverReport } from './failover.js';
import type { Deferred, Outgoing } from './pipe.js';
import type { UpstreamCall } from './upstream-call.js';
import { takeUpstreamEvent, type EventSink, type UpstreamEventsOptions } from './upstream-events.js';
import { errorInfo } from './upstream-leg.js';
import { statusError, type Upstream } from './upstream.js';

export interface SidebandLegOptions {
  call: UpstreamCall;
  /** The upstreams that serve the model and take calls, in the order they are tried. */
  upstreams: Upstream[];
  bill: SessionBill;
  closeTimeoutMs: number;
  dialReport: FailoverReport;
}

function ignoreReport(): void {}
function ignoreError(): void {}

/**
 * A WebRTC call's upstream side: the call is placed (the caller's offer
 * forwarded), then the relay joins its session over the sideband WebSocket.
 * Nothing is forwarded (the media and the `oai-events` channel run between
 * the caller and the upstream); the sideband's server events are read for
 * the same facts and charges as a WebSocket session's upstream frames.
 */
export class SidebandUpstreamLeg implements UpstreamLeg {
  socket: WebSocket | null = null;
  /** Server events read from the sideband (none is forwarded). */
  readonly stats = { frames: 0, bytes: 0 };
  /** When the sideband last carried an event: a call's sign of life. */
  lastEventAt = Date.now();
  private report: Report = ignoreReport;
  private readonly reportLater: Report = (event) => this.report(event);
  private readonly events: UpstreamEventsOptions;
  private readonly sink: EventSink;
  private early: Buffer[] | null = [];
  private earlyClose: { code: number; reason: Buffer } | null = null;

  constructor(private readonly options: SidebandLegOptions) {
    const call = options.call;
    this.events = { bill: options.bill, servedModel: () => call.servedModel, report: this.reportLater };
    this.sink = {
      push: countOnly,
      // The charge is what matters; a charge that cannot be written fails the session closed.
      pushDeferred: (charged: Deferred) => {
        charged.catch((error: unknown) => this.reportLater({ type: 'ERROR', source: 'relay', error: errorInfo(asRelayError(error, 'billing_unavailable')) }));
      },
    };
  }

  /** Why the dial failed, as the caller's HTTP answer tells it (with the upstream's own status). */
  dialError: RelayError | null = null;

  /** Places the call, then opens its sideband; resolves once the sideband is open. */
  async dial(signal: AbortSignal): Promise<void> {
    const { call } = this.options;
    try {
      await call.place(this.options.upstreams, signal, this.options.dialReport);
      this.options.bill.opened({ upstream: call.upstream!.name, servedModel: call.servedModel });
      // Written while the sideband opens: a call the relay could not hang up after a crash is not metered.
      const recorded = this.options.bill.callAnswered({ upstream: call.upstream!.name, callId: call.upstreamCallId! });
      recorded.catch(ignoreError);
      const socket = await this.openSideband(signal);
      try {
        await recorded;
      } catch (error) {
        socket.terminate();
        throw error;
      }
      this.socket = socket;
    } catch (error) {
      this.dialError = asRelayError(error, 'upstream_error');
      throw this.dialError;
    }
  }

  private openSideband(signal: AbortSignal): Promise<WebSocket> {
    const { url, headers } = this.options.call.sidebandRequest();
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024, followRedirects: false });
      // Events that arrive before the machine's reader takes over are kept for it.
      const collect = (data: WebSocket.RawData) => this.early?.push(data as Buffer);
      const collectClose = (code: number, reason: Buffer) => {
        this.earlyClose = { code, reason };
      };
      const sidebandOnOpen = () => {
        cleanup();
        socket.on('error', ignoreError);
        socket.once('close', collectClose);
        this.stopCollecting = () => {
          socket.off('message', collect);
          socket.off('close', collectClose);
        };
        resolve(socket);
      };
      const fail = (error: RelayError) => {
        cleanup();
        socket.off('message', collect);
        socket.on('error', ignoreError);
        socket.terminate();
        reject(error);
      };
      const sidebandOnUnexpectedResponse = (_req: unknown, response: import('node:http').IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('end', () => fail(statusError(response.statusCode ?? 502, Buffer.concat(chunks).toString('utf8').slice(0, 16 * 1024))));
        response.once('error', () => fail(statusError(response.statusCode ?? 502, '')));
      };
      const sidebandOnError = (error: Error) => fail(new RelayError('upstream_unavailable', `The call's sideband could not be opened: ${error.message}`, { cause: error }));
      const sidebandOnClose = (code: number) => fail(new RelayError('upstream_rejected', `The call's sideband closed before it opened (${code}).`));
      const onAbort = () => fail(new RelayError('upstream_timeout'));
      const cleanup = () => {
        socket.off('open', sidebandOnOpen);
        socket.off('unexpected-response', sidebandOnUnexpectedResponse);
        socket.off('error', sidebandOnError);
        socket.off('close', sidebandOnClose);
        signal.removeEventListener('abort', onAbort);
      };
      socket.on('message', collect);
      socket.on('open', sidebandOnOpen);
      socket.on('unexpected-response', sidebandOnUnexpectedResponse);
      socket.on('error', sidebandOnError);
      socket.on('close', sidebandOnClose);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private stopCollecting: () => void = () => undefined;

  read(report: Report): () => void {
    const leg = this;
    const socket = this.socket!;
    this.report = report;
    const sidebandOnMessage = (data: WebSocket.RawData) => this.fromSideband(data as Buffer);
    const sidebandOnClose = (code: number, reason: Buffer) => report({ type: 'TARGET_CLOSED', code, reason: reason.toString() });
    const sidebandOnError = (error: Error) =>
      report({ type: 'ERROR', source: 'upstream', error: errorInfo(new RelayError('upstream_error', `The call's sideband failed: ${error.message}`)) });
    if (this.early) {
      this.stopCollecting();
      const early = this.early;
      this.early = null;
      for (const frame of early) this.fromSideband(frame);
    }
    socket.on('message', sidebandOnMessage);
    socket.on('close', sidebandOnClose);
    socket.on('error', sidebandOnError);
    // A sideband that closed before this reader attached still has to be reported.
    const closed = this.earlyClose;
    this.earlyClose = null;
    if (closed) queueMicrotask(() => sidebandOnClose(closed.code, closed.reason));
    else if (socket.readyState === 3) queueMicrotask(() => sidebandOnClose(1006, Buffer.alloc(0)));
    return function stopSidebandRead() {
      if (leg.report === report) leg.report = ignoreReport;
      socket.off('message', sidebandOnMessage);
      socket.off('close', sidebandOnClose);
      socket.off('error', sidebandOnError);
    };
  }

  private fromSideband(frame: Buffer): void {
    this.stats.frames++;
    this.stats.bytes += frame.length;
    this.lastEventAt = Date.now();
    takeUpstreamEvent(frame, this.sink, this.events);
  }

  /** The relay's one way into a call it cannot hold: ask the upstream, over the sideband, to cancel. */
  cancelResponse(): void {
    const socket = this.socket;
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: 'response.cancel', event_id: relayEventId() }));
  }

  close(how: SideClose | null, closed: (code: number | null) => void): () => void {
    if (!this.socket) {
      closed(null);
      return function closeNothing() {};
    }
    return closeSocket(this.socket, how, this.options.closeTimeoutMs, closed);
  }
}

function countOnly(_frame: Outgoing): void {}
