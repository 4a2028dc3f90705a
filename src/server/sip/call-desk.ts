import { RelayError, asRelayError } from '../../errors.js';
import { CallLink } from '../call-link.js';
import { connectedOf } from '../calls.js';
import type { PhoneCallOutcome, PhoneCallsOptions } from './phone-calls.js';
import { PendingCalls, type PendingCall } from './pending.js';
import { SipUpstreamCall, controlCall } from './upstream-control.js';
import type { Upstream } from '../upstream.js';

/** How long one call control request to the upstream may take. */
const CONTROL_TIMEOUT_MS = 10_000;

/**
 * What the relay does to an incoming call, whoever decided it (a route, the
 * tenant, a deadline): accept it into a metered session, reject or refer it
 * upstream. It holds the calls waiting for their tenant.
 */
export class CallDesk {
  readonly pending: PendingCalls;

  constructor(private readonly options: PhoneCallsOptions) {
    const { statuses } = options;
    this.pending = new PendingCalls(options.tenantTimeoutMs, (call) => {
      void this.reject(call.upstream, call.upstreamCallId, statuses.refused);
      call.admission.release();
      this.decided(call, 'tenant_timeout', statuses.refused, 'the tenant did not answer in time');
    });
  }

  /** Tells the events of how a call was decided. */
  decided(call: { upstreamCallId: string; callId?: string | null; admission?: PendingCall['admission'] | null }, outcome: PhoneCallOutcome, sipStatus: number | null = null, reason: string | null = null): void {
    this.options.events?.decided?.({ upstreamCallId: call.upstreamCallId, callId: call.callId ?? null, keyName: call.admission?.caller.keyName ?? null, outcome, sipStatus, reason });
  }

  /** One call control request upstream; resolves with why it failed, or null. */
  async control(upstream: Upstream, upstreamCallId: string, action: 'reject' | 'refer', body: Record<string, unknown>): Promise<RelayError | null> {
    try {
      await controlCall(upstream, upstreamCallId, action, body, AbortSignal.timeout(CONTROL_TIMEOUT_MS));
      return null;
    } catch (error) {
      const failure = asRelayError(error, 'upstream_error');
      this.options.events?.controlFailed?.(upstreamCallId, action, failure);
      return failure;
    }
  }

  reject(upstream: Upstream, upstreamCallId: string, sipStatus: number): Promise<RelayError | null> {
    return this.control(upstream, upstreamCallId, 'reject', { status_code: sipStatus });
  }

  /** Opens the call's session and accepts it upstream through the session machine; resolves with why it failed, or null. */
  async start(call: PendingCall, session: Record<string, unknown>): Promise<RelayError | null> {
    const { options } = this;
    const { admission } = call;
    const sessionId = `sess_${call.callId.slice(4)}`;
    let meter;
    try {
      meter = await admission.openMeter({ sessionId, transport: 'sip', caller: admission.caller, model: admission.model, intent: undefined, startedAt: new Date() });
    } catch (error) {
      admission.release();
      void this.reject(call.upstream, call.upstreamCallId, options.statuses.refused);
      return asRelayError(error, 'billing_unavailable');
    }
    const { model: _model, ...config } = session;
    const link = new CallLink({
      sessionId,
      callId: call.callId,
      caller: admission.caller,
      model: admission.model,
      offer: { sdp: '', session: config },
      transport: 'sip',
      // A phone call reaches the relay through the upstream's webhook: it has no client address of its own.
      clientAddress: 'sip',
      call: new SipUpstreamCall(admission.model, config, call.upstream, call.upstreamCallId),
      upstreams: [call.upstream],
      meter,
      timings: options.timings,
      observer: options.observer,
    });
    const actor = options.run(link, admission);
    return connectedOf(link, actor);
  }

  /** Rejects every call still waiting for its tenant (shutdown). */
  async close(): Promise<void> {
    await Promise.all(
      this.pending.takeAll().map((call) => {
        call.admission.release();
        this.decided(call, 'refused', this.options.statuses.refused, 'server_shutting_down');
        return this.reject(call.upstream, call.upstreamCallId, this.options.statuses.refused);
      }),
    );
  }
}
