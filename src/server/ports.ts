/**
 * What the wire layer needs from the rest of the relay. Billing, limits and
 * upstream selection implement these; the server only calls them.
 */

/** How a session's caller reaches the relay: its own WebSocket, or a WebRTC call placed through it. */
export type Transport = 'websocket' | 'webrtc' | 'sip';

export interface HandshakeAttempt {
  key: string | undefined;
  keySource: 'header' | 'subprotocol' | 'none';
  /** Undefined when not asked for: then a client secret's model is the session's (a relay key is refused). */
  model: string | undefined;
  intent: 'transcription' | undefined;
  /** The client's address: the peer's, or the one a trusted proxy named (RELAY_TRUSTED_PROXIES). */
  ip: string;
  origin: string | undefined;
  /** The connection is TLS, or the client's address is loopback. */
  trustedTransport: boolean;
}

export interface Caller {
  keyId: string;
  keyName: string;
  /** The client secret that spoke for the key, if one did: it acts on its own sessions only. */
  clientSecretId?: string;
}

export interface UsageRecord {
  kind: 'response' | 'transcription';
  id: string;
  model: string;
  usage: unknown;
  /** Set once the charge is written. */
  costNano: bigint | null;
}

export interface SessionSummary {
  sessionId: string;
  transport: Transport;
  caller: Caller;
  model: string;
  servedModel: string | null;
  upstream: string | null;
  startedAt: Date;
  endedAt: Date;
  endReason: string;
  drain: string | null;
  clientCloseCode: number | null;
  upstreamCloseCode: number | null;
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  usage: UsageRecord[];
}

/** What a charge cost, and whether it stops the session (the balance or the session's cap is spent). */
export type ChargeVerdict = { costNano: bigint; stop?: 'insufficient_quota' | 'spend_cap' };

export interface ResponseDone {
  id: string;
  status: string;
  usage: unknown;
}

export interface TranscriptionCompleted {
  itemId: string;
  contentIndex: number;
  usage: unknown;
  model: string | null;
}

/** Per-session billing. Every method may be called from one session only. */
export interface SessionMeter {
  /** The session's upstream is known: the model actually served is what gets priced. */
  opened(info: { upstream: string; servedModel: string }): void;
  /** A call answered upstream: where it runs is recorded, so that it can be hung up if the relay dies with it (a WebSocket session never calls it). Rejects with a RelayError. */
  callAnswered(call: { upstream: string; callId: string }): Promise<void>;
  /** The upstream's session object changed (session.created / session.updated). */
  configured(session: { transcriptionModel: string | null }): void;
  /** Before a `response.create` is forwarded. Rejects with a RelayError to refuse it. */
  admitResponse(): void | Promise<void>;
  /** A response began upstream (asked for or started by the upstream itself). Rejects with a RelayError when the key cannot cover it. */
  responseStarted(): void | Promise<void>;
  /** Persist the charge for a `response.done` before it is forwarded. Rejection fails the session closed. */
  chargeResponse(response: ResponseDone): Promise<ChargeVerdict>;
  chargeTranscription(event: TranscriptionCompleted): Promise<ChargeVerdict>;
  /** Spend so far, for the live sessions page. */
  spendNano(): bigint;
  /** Called exactly once when the session has ended. Never debits: charges already did. */
  settle(summary: SessionSummary): Promise<void>;
}

export interface SessionInfo {
  sessionId: string;
  transport: Transport;
  caller: Caller;
  model: string;
  intent: 'transcription' | undefined;
  startedAt: Date;
}

export interface Admission {
  caller: Caller;
  model: string;
  /** A transcription client secret's sessions are dialled with `?intent=transcription`; absent: the attempt's intent. */
  intent?: 'transcription';
  /** The session configuration the client secret carries; undefined for a relay key. */
  clientSecretSession: Record<string, unknown> | undefined;
  /** Opens the session's meter (and its ledger row). Rejects with a RelayError. */
  openMeter(session: SessionInfo): Promise<SessionMeter>;
  /** Frees what admission took (concurrency leases). Called once, when the session is gone. */
  release(): void;
}

/** Decides who may open a session. Rejects with a RelayError: its code decides the status. */
export interface Gatekeeper {
  admit(attempt: HandshakeAttempt): Promise<Admission>;
  /** Whose key this is (null: none), for acts on what the key already opened (hanging up its call). Without it no caller can hang up through the relay. Rejects when it cannot tell. */
  identify?(key: string): Promise<Caller | null>;
  /** Admits a session for a key named by its id (a phone call's route), with the same checks and limits as admit() but no address to count. */
  admitRouted?(keyId: string, model: string): Promise<Admission>;
}

/** Where an incoming phone call goes (see the ledger's routes). */
export interface PhoneRoute {
  id: string;
  match: { kind: 'number'; number: string } | { kind: 'header'; name: string; value: string };
  keyId: string;
  session: Record<string, unknown>;
  webhookUrl: string | null;
  webhookSecret: string | null;
}

/** What phone calls need from the ledger: the routes, and which webhooks were seen. */
export interface PhoneDirectory {
  routes(): Promise<PhoneRoute[]>;
  /** True the first time a webhook id is seen, durably; false for a replay. Rejects when it cannot tell. */
  firstDelivery(webhookId: string): Promise<boolean>;
}

/** `POST /v1/realtime/client_secrets`, its body already read and checked for shape. */
export interface ClientSecretRequest {
  expiresAfterSeconds: number;
  /** OpenAI's session configuration, `{}` when none was given. */
  session: Record<string, unknown>;
  /** The relay's extension: most all the secret's sessions may spend together. */
  spendCapNano: bigint | null;
}

/** OpenAI's answer: `value` is the `ek_…` secret, `expires_at` in Unix seconds, the effective session. */
export interface MintedClientSecret {
  value: string;
  expires_at: number;
  session: Record<string, unknown>;
}

/** Mints client secrets. Rejects with a RelayError (the key), or a RequestError naming the parameter at fault. */
export interface ClientSecretMinter {
  /** The relay key that mints, from `Authorization: Bearer` or `api-key`: checked before the body is read. A client secret cannot mint. */
  authenticate(key: string | undefined): Promise<Caller>;
  mint(caller: Caller, request: ClientSecretRequest): Promise<MintedClientSecret>;
}
