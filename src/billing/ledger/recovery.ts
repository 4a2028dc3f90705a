import { LedgerError } from './errors.js';
import type { SettlementInput, UpstreamCallRef } from './types.js';

/** An open session found by `recoverOpenSessions`. */
export interface OrphanedSession {
  sessionId: string;
  instanceId: string;
  lastHeartbeatAt: Date | null;
}

export function assertStaleAfter(staleAfterMs: number): void {
  if (!Number.isSafeInteger(staleAfterMs) || staleAfterMs < 0) {
    throw new LedgerError('invalid_input', `staleAfterMs must be a non-negative integer (got ${staleAfterMs}).`);
  }
}

/** The settlement that closes an orphaned session with the charges it already has. */
export function recoverySettlement(orphan: OrphanedSession, recoveredBy: string, now: Date): SettlementInput {
  const restarted = orphan.instanceId === recoveredBy;
  return {
    sessionId: orphan.sessionId,
    endedAt: now,
    endReason: restarted ? 'instance_restarted' : 'instance_stale',
    status: 'recovered',
    summary: {
      recoveredBy,
      instanceId: orphan.instanceId,
      lastHeartbeatAt: orphan.lastHeartbeatAt?.toISOString() ?? null,
    },
  };
}

/** The call a recovered session may have left running upstream, as its row recorded it. */
export function upstreamCallOf(row: { upstream: string; upstream_call_id: string | null }): UpstreamCallRef | null {
  return row.upstream_call_id ? { upstream: row.upstream, callId: row.upstream_call_id } : null;
}
