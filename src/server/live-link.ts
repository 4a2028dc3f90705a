import type { SummaryBase } from '../billing/session-bill.js';
import { closePlan, endReason } from '../machines/close-plan.js';
import type { SessionOutcome } from '../machines/session.js';
import type { Caller, Transport } from './ports.js';

/**
 * What the rest of the relay (registry, admin, logs, metrics) reads of a live
 * session, whichever ports drive its machine: a WebSocket session's
 * SessionLink or a WebRTC call's CallLink.
 */
export interface LiveLink {
  readonly sessionId: string;
  readonly transport: Transport;
  readonly caller: Caller;
  /** The caller's address (behind trusted balancers, the one they name). */
  readonly clientAddress: string;
  readonly model: string;
  readonly startedAt: Date;
  /** The upstream serving the session; null until it answered. */
  readonly dialed: { upstream: { name: string }; servedModel: string } | null;
  /** What the relay has forwarded (a call: the sideband events it read); counts only grow. */
  readonly stats: { framesIn: number; bytesIn: number; framesOut: number; bytesOut: number; pauses: number };
  readonly spendNano: bigint;
}

/**
 * What a session's settlement records of it, as `outcome` ended it. `served`
 * is the upstream that took it (null: none did); `clientCloseCode`, the code
 * the caller's side closed with, differs by transport (a call has no socket).
 */
export function endedSummary(
  link: LiveLink,
  served: { upstream: { name: string }; servedModel: string } | null,
  outcome: SessionOutcome,
  clientCloseCode: number | null,
): SummaryBase {
  const plan = closePlan(outcome);
  return {
    sessionId: link.sessionId,
    transport: link.transport,
    caller: link.caller,
    model: link.model,
    servedModel: served?.servedModel ?? null,
    upstream: served?.upstream.name ?? null,
    startedAt: link.startedAt,
    endedAt: new Date(),
    endReason: endReason(outcome),
    drain: outcome.drain,
    clientCloseCode,
    upstreamCloseCode: outcome.targetClosed?.code ?? outcome.closeCodes?.upstream ?? plan.upstream?.code ?? null,
    ...link.stats,
  };
}

/**
 * Whether `caller` may act on this live session: a key on its own sessions;
 * a client secret, which a browser holds, only on the session it opened.
 */
export function mayControl(caller: Caller, link: LiveLink): boolean {
  return link.caller.keyId === caller.keyId && (caller.clientSecretId === undefined || caller.clientSecretId === link.caller.clientSecretId);
}
