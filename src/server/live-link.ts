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
