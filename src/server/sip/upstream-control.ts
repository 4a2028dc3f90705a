import { RelayError } from '../../errors.js';
import type { FailoverReport } from '../failover.js';
import { UpstreamCall, deploymentOf, endpoint, refusal } from '../upstream-call.js';
import type { Upstream } from '../upstream.js';

export type CallControl = 'accept' | 'reject' | 'refer' | 'hangup';

/**
 * One call control request for a call ringing (or live) at the upstream, with
 * the relay's own key. Rejects with a RelayError carrying the upstream's answer.
 */
export async function controlCall(upstream: Upstream, upstreamCallId: string, action: CallControl, body: Record<string, unknown> | null, signal: AbortSignal): Promise<void> {
  let response: Response;
  try {
    response = await fetch(endpoint(upstream, `/realtime/calls/${encodeURIComponent(upstreamCallId)}/${action}`), {
      method: 'POST',
      headers: { Authorization: `Bearer ${upstream.apiKey}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      redirect: 'manual',
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw new RelayError('upstream_timeout');
    throw new RelayError('upstream_unavailable', `The upstream could not be reached: ${(error as Error).message}`, { cause: error });
  }
  if (response.status < 200 || response.status > 299) throw await refusal(response);
  await response.body?.cancel().catch(() => undefined);
}

/**
 * A phone call that already rings at its upstream: "placing" it is accepting
 * it there with its session config. Hanging up and the sideband are a WebRTC
 * call's. There is one upstream to try: the one whose trunk the call came in on.
 */
export class SipUpstreamCall extends UpstreamCall {
  constructor(
    model: string,
    session: Record<string, unknown>,
    private readonly ringingAt: Upstream,
    private readonly ringingId: string,
  ) {
    super(model, { sdp: '', session });
  }

  override async place(_candidates: Upstream[], signal: AbortSignal, report: FailoverReport = {}): Promise<void> {
    const began = Date.now();
    try {
      await controlCall(this.ringingAt, this.ringingId, 'accept', { type: 'realtime', ...this.offer.session, model: deploymentOf(this.ringingAt, this.model) }, signal);
    } catch (error) {
      // An accept the upstream may have taken before the deadline is hung up like any live call.
      if (signal.aborted) {
        this.upstream = this.ringingAt;
        this.upstreamCallId = this.ringingId;
      }
      report.dialFailed?.(this.ringingAt.name, error as RelayError, Date.now() - began);
      throw error;
    }
    // Known once accepted: from here on the call is hung up whatever ends the session.
    this.upstream = this.ringingAt;
    this.upstreamCallId = this.ringingId;
    report.dialed?.(this.ringingAt.name, Date.now() - began);
  }
}
