import { SessionBill } from '../billing/session-bill.js';
import type { Report, SessionOutcome, SessionPorts } from '../machines/session.js';
import { CallClientLeg } from './call-leg.js';
import { endedSummary, type LiveLink } from './live-link.js';
import { observedMeter } from './observed-meter.js';
import type { Caller, SessionMeter, SessionSummary } from './ports.js';
import type { LinkTimings, SessionObserver } from './session-link.js';
import { SidebandUpstreamLeg } from './sideband-leg.js';
import { sidebandKeepAlive } from './sideband-keep-alive.js';
import { UpstreamCall, type CallOffer } from './upstream-call.js';
import type { Upstream } from './upstream.js';

export interface CallLinkOptions {
  sessionId: string;
  /** The relay's own id of the call, as its caller knows it. */
  callId: string;
  clientAddress: string;
  caller: Caller;
  model: string;
  offer: CallOffer;
  /** A phone call's transport is `sip`; its call already rings upstream and is accepted instead of placed. */
  transport?: 'webrtc' | 'sip';
  /** The call to place (by default, the offer posted to the upstreams in turn). */
  call?: UpstreamCall;
  /** The upstreams that serve the model and take calls, in the order they are tried. */
  upstreams: Upstream[];
  meter: SessionMeter;
  timings: LinkTimings;
  observer?: SessionObserver;
}

/**
 * A WebRTC or phone call's ports, for the same session machine and the same bill as a
 * WebSocket session: the upstream leg is the call's sideband, the client leg
 * the call itself, the keep-alive pings the sideband.
 */
export class CallLink implements SessionPorts, LiveLink {
  readonly transport: 'webrtc' | 'sip';
  readonly sessionId: string;
  readonly callId: string;
  readonly caller: Caller;
  readonly clientAddress: string;
  readonly model: string;
  readonly startedAt = new Date();
  readonly call: UpstreamCall;
  readonly client: CallClientLeg;
  readonly upstream: SidebandUpstreamLeg;
  readonly bill: SessionBill;

  constructor(private readonly options: CallLinkOptions) {
    const { timings, observer } = options;
    this.sessionId = options.sessionId;
    this.callId = options.callId;
    this.caller = options.caller;
    this.clientAddress = options.clientAddress;
    this.model = options.model;
    this.bill = new SessionBill(observedMeter(options.meter, this, observer));
    this.transport = options.transport ?? 'webrtc';
    this.call = options.call ?? new UpstreamCall(options.model, options.offer);
    this.client = new CallClientLeg(this.call, timings.closeTimeoutMs);
    this.upstream = new SidebandUpstreamLeg({
      call: this.call,
      upstreams: options.upstreams,
      bill: this.bill,
      closeTimeoutMs: timings.closeTimeoutMs,
      dialReport: {
        dialed: (upstream, ms) => observer?.dialed?.(this, upstream, ms),
        dialFailed: (upstream, error, ms) => observer?.dialFailed?.(this, upstream, error, ms),
      },
    });
  }

  /** The upstream that took the call; null until it answered and its sideband opened. */
  get dialed(): { upstream: Upstream; servedModel: string } | null {
    return this.upstream.socket && this.call.upstream ? { upstream: this.call.upstream, servedModel: this.call.servedModel } : null;
  }

  /** Nothing is forwarded: what the relay read is the sideband's server events. */
  get stats() {
    return { framesIn: 0, bytesIn: 0, framesOut: this.upstream.stats.frames, bytesOut: this.upstream.stats.bytes, pauses: 0 };
  }

  get spendNano(): bigint {
    return this.bill.spendNano;
  }

  keepAlive(report: Report): () => void {
    return sidebandKeepAlive({
      sideband: this.upstream.socket!,
      pingIntervalMs: this.options.timings.pingIntervalMs,
      idleTimeoutMs: this.options.timings.idleTimeoutMs,
      lastEventAt: () => this.upstream.lastEventAt,
      report,
    });
  }

  settle(outcome: SessionOutcome): Promise<SessionSummary> {
    const served = this.call.upstream ? { upstream: this.call.upstream, servedModel: this.call.servedModel } : null;
    return this.bill.settle(() => endedSummary(this, served, outcome, outcome.clientClosed?.code ?? null));
  }
}
