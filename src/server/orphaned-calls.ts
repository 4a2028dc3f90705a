import { hangUpAt } from './upstream-call.js';
import type { Upstream } from './upstream.js';

/** A call session that recovery settled: its call may still be running upstream, unmetered. */
export interface OrphanedCall {
  sessionId: string;
  upstreamCall: { upstream: string; callId: string } | null;
}

/** How one orphaned call's hangup went: the upstream's status, why no answer came, or no such upstream configured now. */
export type OrphanHangup = { sessionId: string; upstream: string; callId: string } & ({ status: number } | { failed: string });

/**
 * Hangs up, at their upstreams, the calls of sessions that recovery has just
 * settled (the caller passes only the sessions its own settlement won, so
 * each call is hung up once however many instances recover at the same
 * time). Best effort: each request is bounded by `timeoutMs`, and one
 * upstream that does not answer delays no other.
 */
export function hangUpOrphanedCalls(sessions: OrphanedCall[], upstreams: Upstream[], timeoutMs: number): Promise<OrphanHangup[]> {
  return Promise.all(
    sessions.flatMap(({ sessionId, upstreamCall }) => {
      if (!upstreamCall) return [];
      const { upstream: name, callId } = upstreamCall;
      const upstream = upstreams.find((candidate) => candidate.name === name);
      if (!upstream) return [Promise.resolve({ sessionId, upstream: name, callId, failed: 'no upstream of this name is configured' })];
      return [hangUpAt(upstream, callId, timeoutMs).then((result) => ({ sessionId, upstream: name, callId, ...result }))];
    }),
  );
}
