/** Options and fault shapes of the upstream simulator. */
import type { CallEnding } from './call.js';
import type { SipHeader, WebhookDelivery } from './incoming-call.js';

export type { CallEnding, SipHeader, WebhookDelivery };

export interface SimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (an ephemeral port). */
  port?: number;
  /**
   * When set, the handshake must carry this key: `Authorization: Bearer <key>`
   * (or the browser subprotocol `openai-insecure-api-key.<key>`) when posing as
   * OpenAI, `api-key: <key>` (or a Bearer token) when posing as Azure. When
   * unset any non-empty credential is accepted. A missing one is refused 401.
   */
  apiKey?: string;
  /**
   * Pose as Azure OpenAI: accept only `/openai/v1/realtime?model=<deployment>`
   * and `/openai/realtime?api-version=<v>&deployment=<dep>`, anything else 404.
   * Default: OpenAI's `/v1/realtime?model=<m>` or `?intent=transcription`.
   */
  azure?: boolean;
  /** Raw PCM16 bytes per output audio delta (sent base64). Default 960: 20 ms at 24 kHz. */
  audioChunkBytes?: number;
  /** Delay between deltas. Default 20; 0 streams as fast as possible, still asynchronously. */
  chunkIntervalMs?: number;
  /** Text deltas per text response. Default 4. */
  textDeltas?: number;
  /** Audio deltas per audio response. Default 5. */
  audioChunks?: number;
  /** Applied to every handshake or connection. Default none. */
  fault?: FaultSpec;
  /** Frame-level hooks for tests and benchmarks; unset costs nothing. */
  tap?: SimulatorTap;
  /** A WebRTC call whose peer has not connected this long after the answer ends. Default 15000. */
  callConnectTimeoutMs?: number;
  /** Where `placeSipCall()` announces an incoming phone call (`realtime.call.incoming`), signed with `secret` (`whsec_…`). */
  callWebhook?: { url: string; secret: string };
}

export interface IncomingCallOptions {
  /** The SIP From header. Default a fixed caller. */
  from?: string;
  /** The SIP To header, or just the called number (dialled at sip.api.openai.com). Default a fixed number. */
  to?: string;
  /** More headers, sent after From, To and Call-ID (untrusted caller metadata, as at OpenAI). */
  sipHeaders?: SipHeader[];
  /** Once accepted and joined by a sideband, the caller starts one response per turn, each after the last is done; `usage` is what its `response.done` reports. */
  turns?: Array<{ usage?: unknown }>;
  /** The caller hangs up after its last turn. */
  hangUpAfterTurns?: boolean;
  /** Where this call is announced, instead of `callWebhook`. */
  webhook?: { url: string; secret: string };
}

export interface PlacedCall {
  callId: string;
  /** The webhook's id: a redelivery reuses it. */
  webhookId: string;
  /** The webhook's one delivery attempt; null without `callWebhook`. */
  webhook: WebhookDelivery | null;
}

/** A placed phone call, as a test asks after it. */
export interface SipCallState {
  callId: string;
  state: 'ringing' | 'accepted' | 'rejected' | 'referred' | 'ended';
  rejectStatus: number | null;
  referTarget: string | null;
  /** The session config it was accepted with; null while it rings. */
  session: unknown;
  turnsDone: number;
  webhookDeliveries: number;
}

/** Sees frames as they cross the wire; called once per frame. */
export interface SimulatorTap {
  /** Every frame a client sent, as received, before the session reads it. */
  received?(frame: Buffer, isBinary: boolean): void;
  /** Writes a server event as the text frame sent (default JSON.stringify): may respace or reorder keys, or stamp `event_id`. */
  serialize?(event: Record<string, unknown>): string;
}

export type HandshakeFault =
  /** Answer the upgrade with this HTTP status and, by default, a body in OpenAI's error envelope. */
  | { kind: 'refuse'; status: number; body?: unknown }
  /** Accept the TCP connection and never answer the upgrade. */
  | { kind: 'hang' }
  /** Complete the upgrade, then never send anything (no session.created, no pongs). */
  | { kind: 'silence' }
  /** Complete the upgrade, then close at once (1011), before any frame. */
  | { kind: 'close_on_open' }
  /** Hold the upgrade unanswered until `releaseHeld()` answers it (normally, or with another fault). */
  | { kind: 'hold' };

export type SessionFault =
  /** A non-JSON text frame; the session then goes on. */
  | { kind: 'garbage' }
  /** Destroy the TCP socket without a close frame. */
  | { kind: 'drop' }
  | { kind: 'close'; code: number; reason?: string }
  /** An `error` event with code `session_expired`, then close 1001, as at OpenAI's 60-minute cap. */
  | { kind: 'session_expired' }
  /** Stop sending anything, pongs included. */
  | { kind: 'silence' }
  /** Stop reading the socket, so the peer's bufferedAmount grows. */
  | { kind: 'slow_reader' }
  /** Read the socket again after `slow_reader` (struck out of band: a paused session reads no fault). */
  | { kind: 'resume_reading' }
  /** The next response sends `response.created`, then nothing until `response.cancel`. */
  | { kind: 'stall_response' }
  /** A stalled response goes on streaming and completes (a no-op when nothing is stalled). */
  | { kind: 'finish_response' }
  /** The next `response.create` is answered only after `ms`: a response requested but not yet created. */
  | { kind: 'delay_response'; ms: number };

/**
 * When a session fault strikes: `open` right after `session.created` (or, in
 * band, at once); `mid-response` right after the first delta of the current
 * or next response.
 */
export type FaultTiming = 'open' | 'mid-response';

export type TimedSessionFault = SessionFault & { when?: FaultTiming };

export type FaultSpec = HandshakeFault | TimedSessionFault;

export interface HandshakeRecord {
  path: string;
  query: Record<string, string>;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string | undefined>;
}

export interface Simulator {
  /** `ws://host:port`, without a path; the WebRTC call endpoints are on the same port over `http://`. */
  readonly url: string;
  readonly port: number;
  /** Applies `f` to the next `count` (default 1) handshakes. */
  queueHandshakeFault(f: HandshakeFault, count?: number): void;
  /** Applies `f` to the next accepted connection. */
  queueSessionFault(f: TimedSessionFault): void;
  /** WebSocket connections accepted so far. */
  readonly connections: number;
  /** Every upgrade request seen, in order. */
  readonly handshakes: Array<HandshakeRecord>;
  /** Server-side TCP sockets currently open (upgraded, hanging or plain HTTP). */
  readonly socketCount: number;
  /** Calls (WebRTC or phone) answered or ringing and not yet ended. */
  readonly activeCalls: number;
  /**
   * An incoming phone call: it rings (no media) until `POST /v1/realtime/calls/{id}/accept`
   * or `/reject`; once accepted its session is driven over the sideband. Resolves after
   * the `realtime.call.incoming` webhook was posted, when one is configured.
   */
  placeSipCall(options?: IncomingCallOptions): Promise<PlacedCall>;
  /** Sets where placed phone calls are announced. */
  setCallWebhook(target: { url: string; secret: string }): void;
  /** Sends a placed call's webhook again under its first webhook id. */
  redeliverCall(callId: string): Promise<PlacedCall>;
  /** A placed phone call's state, turns and deliveries. */
  sipCall(callId: string): SipCallState | undefined;
  /** The caller hangs up an accepted phone call. */
  hangUpCall(callId: string): boolean;
  /** Cuts an accepted phone call's sideband sockets without a close frame; the call goes on. */
  dropCallSidebands(callId: string): number;
  /** How an ended call ended (hangup, reject with its status, refer with its target, or other). */
  callEnding(callId: string): CallEnding | undefined;
  /** Answers every held handshake: normally, or with `fault`. */
  releaseHeld(fault?: Exclude<HandshakeFault, { kind: 'hold' }>): number;
  /** Strikes `fault` on every live session at once (for tests whose client is already gone). */
  strikeAll(fault: TimedSessionFault): number;
  /** Clears every timer, terminates every socket and closes the server. */
  close(): Promise<void>;
}
