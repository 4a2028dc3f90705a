/**
 * The billing ledger: keys with balances, sessions, per-item charges and one
 * settlement per session. Money is nano-USD (1 USD = 1e9) held as bigint.
 *
 * A session is charged as its usage arrives (`recordCharge`, exactly once per
 * item) and settled when it ends (`settleSession`), which only records what
 * the charges already debited.
 *
 * Each admitted response first places a hold on its key (`placeHold`), as a
 * card payment is authorised before it is captured: the hold lowers what the
 * key has available until the response's charge (or the session's
 * settlement) releases it, so the responses a key has in flight never take
 * more than its balance before they are charged.
 */

export interface KeyRecord {
  id: string;
  name: string;
  balanceNano: bigint;
  /** The sum of the key's open holds: what its balance already promises to responses in flight. */
  heldNano: bigint;
  /** Most one session of this key may spend; null = no cap. */
  spendCapNano: bigint | null;
  /** Most concurrent sessions of this key; null = no limit. */
  maxSessions: number | null;
  /** Price multiplier in parts per million: 1_000_000 = 1x. */
  priceMultiplierPpm: number;
  disabled: boolean;
  createdAt: Date;
}

export interface NewKey {
  name: string;
  balanceNano: bigint;
  spendCapNano?: bigint | null;
  maxSessions?: number | null;
  priceMultiplierPpm?: number;
}

export type ChargeKind = 'response' | 'transcription';

export interface ChargeInput {
  sessionId: string;
  keyId: string;
  kind: ChargeKind;
  /** The response id, or the transcription's conversation item id. */
  itemId: string;
  model: string;
  costNano: bigint;
  /** The provider's usage object, stored as JSON text. */
  usage: unknown;
}

export interface ChargeResult {
  /** False when (sessionId, kind, itemId) had already been charged. */
  applied: boolean;
  /** The key's balance after this call. */
  balanceNano: bigint;
  /** This session's charges so far. */
  sessionSpendNano: bigint;
}

export interface HoldInput {
  sessionId: string;
  keyId: string;
  /** What the hold takes from the key's available balance (balance − open holds). */
  amountNano: bigint;
  /** The balance the key must keep, holds aside, for the hold to be placed. */
  reserveNano: bigint;
}

export interface HoldResult {
  /**
   * False, and nothing held, unless the session is open and the key has
   * balance ≥ reserve and balance − open holds ≥ max(amount, 1 nano-USD).
   */
  placed: boolean;
  /** The key's balance and open holds after this call. */
  balanceNano: bigint;
  heldNano: bigint;
}

export interface SessionOpen {
  id: string;
  keyId: string;
  model: string;
  upstream: string;
  /** How the caller reached the relay: its own WebSocket (the default), or a WebRTC call metered over the sideband. */
  transport?: 'websocket' | 'webrtc' | 'sip';
  instanceId: string;
  startedAt: Date;
  /** The client secret the session was opened with (its id); absent for a relay key. */
  clientSecretId?: string | null;
}

/** An ephemeral client secret to mint for a key. */
export interface NewClientSecret {
  keyId: string;
  expiresAt: Date;
  /** The session configuration it carries, as the client will be told. */
  session: Record<string, unknown>;
  /** Most all the sessions opened with it may spend together; null = only the key's own limits. */
  spendCapNano: bigint | null;
}

export interface ClientSecretRecord {
  id: string;
  keyId: string;
  expiresAt: Date;
  session: Record<string, unknown>;
  spendCapNano: bigint | null;
  createdAt: Date;
}

/** A client secret found by its plaintext, with its key and what its sessions have spent. */
export interface ClientSecretGrant {
  secret: ClientSecretRecord;
  key: KeyRecord;
  /** The charges of every session opened with the secret so far. */
  spentNano: bigint;
}

export type SettlementStatus = 'settled' | 'recovered';

export interface SettlementInput {
  sessionId: string;
  endedAt: Date;
  endReason: string;
  status: SettlementStatus;
  summary: unknown;
}

export interface SettlementResult {
  /** False if this session had already been settled. */
  applied: boolean;
  /** The sum of the session's charges when it was settled. */
  totalNano: bigint;
  chargeCount: number;
}

export interface RecoveryOptions {
  instanceId: string;
  staleAfterMs: number;
  /**
   * 'recover' (the default) at a start: `instanceId`'s own open sessions were
   * left by its previous process. 'keep' for a live instance's sweep: its own
   * sessions are running, whatever its heartbeat says.
   */
  ownSessions?: 'recover' | 'keep';
}

/** Where a call runs at its upstream: what ends it there (never the upstream's key). */
export interface UpstreamCallRef {
  /** The upstream's name in the relay's configuration. */
  upstream: string;
  /** The upstream's id of the call. */
  callId: string;
}

export interface RecoveredSession {
  sessionId: string;
  totalNano: bigint;
  /** A call's session: the call that may still run upstream. Null for a WebSocket session, or a call recorded before it answered. */
  upstreamCall: UpstreamCallRef | null;
}

/** Ended sessions, newest first, a page at a time. */
export interface EndedSessionsQuery {
  /** A key id or name. */
  key?: string;
  /** Most sessions in the page. */
  limit: number;
  /** The last session id of the previous page: this page holds the sessions that ended before it. */
  before?: string;
}

export interface EndedSession {
  id: string;
  keyId: string;
  keyName: string;
  model: string;
  upstream: string;
  transport: 'websocket' | 'webrtc' | 'sip';
  status: SettlementStatus;
  endReason: string;
  startedAt: Date;
  endedAt: Date;
  /** What its settlement recorded. */
  totalNano: bigint;
  chargeCount: number;
}

export interface EndedSessionsPage {
  sessions: EndedSession[];
  /** True when older sessions follow the last one. */
  hasMore: boolean;
}

/** Charges summed per key per bucket of `bucketMs`, counted from the epoch (UTC). */
export interface SpendQuery {
  key?: string;
  bucketMs: number;
  since: Date;
}

export interface SpendBucket {
  keyId: string;
  keyName: string;
  bucketStart: Date;
  totalNano: bigint;
  chargeCount: number;
}

export interface UsageQuery {
  /** A key id or name. */
  key?: string;
  since?: Date;
}

export interface UsageRow {
  at: Date;
  keyName: string;
  sessionId: string;
  kind: ChargeKind;
  itemId: string;
  model: string;
  costNano: bigint;
  usage: unknown;
}

export type UsageEventType = 'relay.usage.charged' | 'relay.session.settled';

/** The key, session and model every usage event names. */
interface UsageEventBase {
  /** Stable across retries and restarts: receivers drop a repeat by it. */
  id: string;
  /** Delivery attempts so far, this one included. */
  attempts: number;
  keyId: string;
  keyName: string;
  sessionId: string;
  model: string;
}

/** A charge newly applied to the ledger. */
export interface ChargedEvent extends UsageEventBase {
  type: 'relay.usage.charged';
  /** When the charge was written. */
  time: Date;
  kind: ChargeKind;
  itemId: string;
  costNano: bigint;
  usage: unknown;
}

/** A session newly settled (or recovered) by the ledger. */
export interface SettledEvent extends UsageEventBase, Pick<EndedSession, 'status' | 'endReason' | 'startedAt' | 'endedAt' | 'totalNano' | 'chargeCount'> {
  type: 'relay.session.settled';
  /** When the settlement was written. */
  time: Date;
}

export type UsageEvent = ChargedEvent | SettledEvent;

export interface UsageEventClaim {
  /** Most events handed out by this call. */
  limit: number;
  /** How long the claimed events are this caller's: no other caller gets them before, unless marked failed. */
  leaseMs: number;
}

/** The outbox at a glance. */
export interface UsageEventBacklog {
  /** Not delivered yet, failing ones included. */
  pending: number;
  delivered: number;
  /** Not delivered yet, and at least one attempt failed. */
  failing: number;
  /** When the oldest event not delivered yet was written; null when none is waiting. */
  oldestPendingAt: Date | null;
  /** The last failure of the oldest failing event. */
  lastError: string | null;
}

/** What a route matches in an incoming call: the called number (the user part of `To`), or one SIP header's exact value. */
export type RouteMatch = { kind: 'number'; number: string } | { kind: 'header'; name: string; value: string };

/** Where a phone call goes: the key it is billed to, the session it starts with, and optionally the tenant's own webhook. */
export interface SipRoute {
  id: string;
  match: RouteMatch;
  keyId: string;
  /** The session config the call is accepted with (model included), unless the tenant's webhook accepts it itself. */
  session: Record<string, unknown>;
  /** The tenant's webhook: incoming calls are forwarded there, signed with `webhookSecret`, and the tenant decides. */
  webhookUrl: string | null;
  webhookSecret: string | null;
  createdAt: Date;
}

export interface NewSipRoute {
  match: RouteMatch;
  /** The key's id or name. */
  key: string;
  session: Record<string, unknown>;
  webhookUrl?: string | null;
  webhookSecret?: string | null;
}

/** One bounded batch of a clean-up: rows older than `before`, at most `limit` of them. */
export interface PruneBatch {
  before: Date;
  limit: number;
}

export interface Ledger {
  readonly kind: 'sqlite' | 'postgres';
  /** `key` is the plaintext, shown once; only its SHA-256 is stored. */
  createKey(input: NewKey): Promise<{ key: string; record: KeyRecord }>;
  /** Finds a key by its plaintext. Disabled keys are returned too: the caller decides. */
  authenticate(plaintextKey: string): Promise<KeyRecord | null>;
  getKey(idOrName: string): Promise<KeyRecord | null>;
  /** `secret` is the plaintext `ek_…`, shown once; only its SHA-256 is stored. */
  createClientSecret(input: NewClientSecret): Promise<{ secret: string; record: ClientSecretRecord }>;
  /** Finds a client secret by its plaintext, expired or not (the caller decides), with its key and spend. */
  authenticateClientSecret(plaintextSecret: string): Promise<ClientSecretGrant | null>;
  /** What every session opened with the client secret has spent so far, together. */
  clientSecretSpend(secretId: string): Promise<bigint>;
  listKeys(): Promise<KeyRecord[]>;
  /**
   * Adds to the key's balance. With `maxBalanceNano`, the check and the
   * addition are one statement, so concurrent top-ups can never pass it
   * together: one that would bring the balance above it adds nothing and
   * fails with 'balance_over_maximum'.
   */
  topUp(idOrName: string, amountNano: bigint, maxBalanceNano?: bigint): Promise<KeyRecord>;
  setDisabled(idOrName: string, disabled: boolean): Promise<KeyRecord>;
  /** Idempotent on the session id. Also counts as a heartbeat of its instance. */
  openSession(session: SessionOpen): Promise<void>;
  /**
   * Holds `amountNano` of the key's balance for one response of the session,
   * atomically across every connection and process sharing the database: a
   * check and its hold cannot be split by another hold of the same key.
   */
  placeHold(hold: HoldInput): Promise<HoldResult>;
  /**
   * Inserts the charge and, only if it is new, debits the key and adds to the
   * session's spend, in one transaction; a new 'response' charge also
   * releases the session's oldest open hold, if any. The balance may go
   * negative: an overdraft is recorded, never dropped. A new charge of a
   * session already settled (a dead-lettered charge replayed after its
   * session was recovered without it) is added to that settlement's totals.
   */
  recordCharge(charge: ChargeInput): Promise<ChargeResult>;
  /**
   * A call's session answered upstream: records where the call runs, so
   * that recovery can hang it up if this process dies with it. Idempotent.
   */
  recordUpstreamCall(sessionId: string, call: UpstreamCallRef): Promise<void>;
  /** Records the session's totals, releases its open holds and ends it. Never debits. Idempotent. */
  settleSession(settlement: SettlementInput): Promise<SettlementResult>;
  heartbeat(instanceId: string): Promise<void>;
  /**
   * Settles as 'recovered' every open session of an instance whose heartbeat
   * is older than `staleAfterMs` (or missing), and every open session of
   * `instanceId` itself (a restarted process), releasing their holds. Returns
   * the sessions this call settled; safe to run from several processes at once.
   */
  recoverOpenSessions(options: RecoveryOptions): Promise<RecoveredSession[]>;
  usage(query: UsageQuery): Promise<UsageRow[]>;
  /** Settled and recovered sessions, newest end first, then by id. */
  endedSessions(query: EndedSessionsQuery): Promise<EndedSessionsPage>;
  /** Oldest bucket first. */
  spend(query: SpendQuery): Promise<SpendBucket[]>;
  sessionSpend(sessionId: string): Promise<bigint>;
  /**
   * Hands out up to `limit` undelivered usage events whose next attempt is
   * due, oldest first, and counts an attempt for each. Two callers, in one
   * process or several, never get the same event at once: it is theirs for
   * `leaseMs`, after which an unacknowledged event is due again.
   */
  claimUsageEvents(claim: UsageEventClaim): Promise<UsageEvent[]>;
  /** The receiver took the event: it is never handed out again. */
  usageEventDelivered(eventId: string): Promise<void>;
  /** The attempt failed: the event is due again in `retryInMs`. */
  usageEventFailed(eventId: string, retryInMs: number, reason: string): Promise<void>;
  usageEventBacklog(): Promise<UsageEventBacklog>;
  /**
   * Deletes up to `limit` events delivered before `before`, oldest
   * first, and returns how many it deleted. Undelivered events are never
   * touched. One short statement, so callers bound each lock by `limit`.
   */
  pruneUsageEvents(prune: PruneBatch): Promise<number>;
  /**
   * Deletes up to `limit` client secrets that expired before `before`
   * and that no session was opened with, and returns how many it deleted. A
   * secret a session names stays, as part of that session's history (it can
   * no longer open anything: it has expired).
   */
  pruneClientSecrets(prune: PruneBatch): Promise<number>;
  /** Adds a route; another route with the same match is refused (invalid_input). */
  addRoute(route: NewSipRoute): Promise<SipRoute>;
  listRoutes(): Promise<SipRoute[]>;
  /** False when no route has this id. */
  removeRoute(id: string): Promise<boolean>;
  /** Records a delivered webhook's id; false when it was recorded before (a replay). */
  recordWebhook(webhookId: string, receivedAt: Date): Promise<boolean>;
  /** A cheap liveness check. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
