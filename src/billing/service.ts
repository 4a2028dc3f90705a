import { RelayError } from '../errors.js';
import { isClientSecret } from '../protocol/client-secret.js';
import type { SessionInfo, SessionMeter } from '../server/ports.js';
import { WriteBacklog, type BacklogHooks, type ReplayReport } from './backlog.js';
import { isLedgerError, pruneInBatches, type ClientSecretGrant, type KeyRecord, type Ledger, type RecoveredSession } from './ledger/index.js';
import { LedgerMeter, type MeterHooks } from './meter.js';
import { resolveModel, type PriceTable } from './prices.js';

export interface BillingOptions {
  ledger: Ledger;
  prices: PriceTable;
  /** Identifies this process's sessions, so another instance never recovers them while it lives. */
  instanceId: string;
  reserveNano: bigint;
  /** Held from each response's admission until its charge; defaults to the reserve. */
  holdNano?: bigint;
  /** Where writes that could not be made wait across a restart; null keeps them in memory only. */
  spoolPath: string | null;
  /** An instance whose heartbeat is older than this is presumed dead and its open sessions recovered. */
  staleAfterMs: number;
  heartbeatMs: number;
  /** How often a live instance settles the open sessions of stale instances; 0 never (the start's recovery still runs). */
  recoverySweepMs?: number;
  /** Told of the sessions each sweep settled. */
  onSwept?: (sessions: RecoveredSession[]) => void;
  hooks?: Partial<MeterHooks>;
  /** Told when spool lines are quarantined and writes dead-lettered. */
  backlogHooks?: Partial<BacklogHooks>;
  /** When expired client secrets are deleted; defaults to CLIENT_SECRET_CLEANUP. */
  clientSecretCleanup?: ClientSecretCleanup;
}

/**
 * Expired client secrets are deleted, on the heartbeat's timer, once they
 * have been expired for `graceMs`, a bounded batch per statement. A secret
 * that opened a session is kept: the session names it (a foreign key), and
 * what the secret allowed is part of that session's history. Expired, it
 * opens nothing, and there are never more of them than such sessions.
 */
export interface ClientSecretCleanup {
  graceMs: number;
  /** Least time between two passes. */
  everyMs: number;
  batchSize: number;
}

export const CLIENT_SECRET_CLEANUP: ClientSecretCleanup = { graceMs: 24 * 3_600_000, everyMs: 10 * 60_000, batchSize: 500 };
/** Batches per pass: a large backlog is worked off over several passes. */
const CLEANUP_BATCHES_PER_PASS = 20;

const NO_HOOKS: MeterHooks = { anomaly: () => undefined, charged: () => undefined, chargeFailed: () => undefined };

function unavailable(error: unknown): never {
  if (error instanceof RelayError) throw error;
  throw new RelayError('billing_unavailable', isLedgerError(error) ? `The ledger is unavailable: ${error.message}` : undefined, { cause: error });
}

function assertBalance(key: KeyRecord): void {
  if (key.balanceNano - key.heldNano <= 0n) throw new RelayError('insufficient_quota');
}

/** What a client secret's sessions may still spend; null when it has no cap. */
function secretRemainder(grant: ClientSecretGrant): bigint | null {
  const cap = grant.secret.spendCapNano;
  return cap === null ? null : cap - grant.spentNano;
}

function lowerCap(a: bigint | null, b: bigint | null): bigint | null {
  if (a === null) return b;
  if (b === null) return a;
  return a < b ? a : b;
}

/**
 * Money for the relay: who may open a session, what each response costs,
 * and the record of every session, exactly once.
 */
export class Billing {
  readonly backlog: WriteBacklog;
  private readonly hooks: MeterHooks;
  private heartbeat: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<RecoveredSession[]> | undefined;
  private nextSecretCleanupAt = 0;
  private secretCleanup: Promise<number> | undefined;

  constructor(private readonly options: BillingOptions) {
    this.hooks = { ...NO_HOOKS, ...options.hooks };
    this.backlog = new WriteBacklog(options.ledger, options.spoolPath, { hooks: options.backlogHooks, probe: () => options.ledger.heartbeat(options.instanceId) });
  }

  get ledger(): Ledger {
    return this.options.ledger;
  }

  get prices(): PriceTable {
    return this.options.prices;
  }

  /** Known model (by the price table), valid enabled key, and a balance left beyond its holds. Throws a RelayError. */
  async authorize(plaintextKey: string | undefined, model: string): Promise<KeyRecord> {
    const key = await this.authenticate(plaintextKey);
    this.assertPriced(model);
    assertBalance(key);
    return key;
  }

  /** The same checks for a key named by its id (a phone call's route names its key; nobody presents it). Throws a RelayError. */
  async authorizeId(keyId: string, model: string): Promise<KeyRecord> {
    const key = await this.options.ledger.getKey(keyId).catch(unavailable);
    if (!key || key.id !== keyId) throw new RelayError('invalid_api_key', "The route's key no longer exists.");
    if (key.disabled) throw new RelayError('key_disabled');
    this.assertPriced(model);
    assertBalance(key);
    return key;
  }

  /** A valid, enabled relay key, whatever its balance. Throws a RelayError. */
  async authenticate(plaintextKey: string | undefined): Promise<KeyRecord> {
    if (plaintextKey === undefined || plaintextKey === '') throw new RelayError('missing_api_key');
    const key = await this.options.ledger.authenticate(plaintextKey).catch(unavailable);
    if (!key) throw new RelayError('invalid_api_key');
    if (key.disabled) throw new RelayError('key_disabled');
    return key;
  }

  /**
   * The key with this plaintext, or the key a client secret was minted by
   * (expired or not: it still speaks for the session it opened) with that
   * secret's id, disabled or not; null when there is none. Throws a
   * RelayError when the ledger cannot tell.
   */
  async identify(plaintext: string): Promise<{ key: KeyRecord; clientSecretId?: string } | null> {
    if (isClientSecret(plaintext)) {
      const grant = await this.options.ledger.authenticateClientSecret(plaintext).catch(unavailable);
      return grant ? { key: grant.key, clientSecretId: grant.secret.id } : null;
    }
    const key = await this.options.ledger.authenticate(plaintext).catch(unavailable);
    return key ? { key } : null;
  }

  /**
   * A client secret that may open a session now: known, not expired, its key
   * enabled with a balance left, and its own spend cap not spent. Its model
   * is checked by the caller, who knows which one the session asks for.
   */
  async authorizeClientSecret(plaintextSecret: string, now: Date = new Date()): Promise<ClientSecretGrant> {
    const grant = await this.options.ledger.authenticateClientSecret(plaintextSecret).catch(unavailable);
    if (!grant) throw new RelayError('invalid_api_key');
    if (grant.secret.expiresAt.getTime() <= now.getTime()) throw new RelayError('client_secret_expired');
    if (grant.key.disabled) throw new RelayError('key_disabled');
    const cap = grant.secret.spendCapNano;
    if (cap !== null && grant.spentNano >= cap) throw new RelayError('client_secret_spend_cap_exceeded');
    assertBalance(grant.key);
    return grant;
  }

  /** The price table knows the model. Throws model_not_found. */
  assertPriced(model: string): void {
    if (!resolveModel(model, this.options.prices)) throw new RelayError('model_not_found', `The model "${model}" does not exist or is not priced by this relay.`);
  }

  /**
   * Opens the session's ledger row before the upgrade completes. A session
   * opened with a client secret is recorded as the secret's, and may spend
   * what the secret has left: that is its session spend cap, unless the
   * key's own is lower. Sessions of one secret open at the same time share
   * its cap: each response is admitted, and each charge judged, against what
   * all of them have spent.
   */
  async openMeter(session: SessionInfo, key: KeyRecord, grant?: ClientSecretGrant): Promise<SessionMeter> {
    const { ledger, prices, instanceId, reserveNano, holdNano = reserveNano } = this.options;
    await ledger
      .openSession({ id: session.sessionId, keyId: key.id, model: session.model, upstream: '', instanceId, startedAt: session.startedAt, clientSecretId: grant?.secret.id ?? null, transport: session.transport })
      .catch(unavailable);
    const capped = grant ? { ...key, spendCapNano: lowerCap(key.spendCapNano, secretRemainder(grant)) } : key;
    const secretCap = grant?.secret.spendCapNano ?? null;
    const clientSecret = grant && secretCap !== null ? { id: grant.secret.id, capNano: secretCap } : undefined;
    return new LedgerMeter({ sessionId: session.sessionId, key: capped, model: session.model, ledger, prices, reserveNano, holdNano, backlog: this.backlog, hooks: this.hooks, clientSecret });
  }

  /**
   * Settles sessions a crashed process left open (from the charges they
   * recorded; nothing is charged again) and replays writes it spooled. The
   * replay comes first, so that a spooled charge is in the totals of its
   * session's recovery.
   */
  async recover(): Promise<{ sessions: RecoveredSession[]; replayed: number; spool: ReplayReport; settledOwing: string[] }> {
    const spool = await this.backlog.replaySpool();
    await this.options.ledger.heartbeat(this.options.instanceId);
    const sessions = await this.options.ledger.recoverOpenSessions({ instanceId: this.options.instanceId, staleAfterMs: this.options.staleAfterMs });
    this.heartbeat = setInterval(() => {
      void this.options.ledger.heartbeat(this.options.instanceId).catch(() => undefined);
      if (this.backlog.size > 0) void this.backlog.flush();
      // A failed pass is tried again at the next one.
      void this.deleteExpiredClientSecrets().catch(() => undefined);
    }, this.options.heartbeatMs);
    this.heartbeat.unref();
    const { recoverySweepMs = 0 } = this.options;
    if (recoverySweepMs > 0) {
      this.sweepTimer = setInterval(() => {
        // A failed sweep is tried again at the next tick: the ledger settles each session once, whoever asks.
        void this.sweep().catch(() => undefined);
      }, recoverySweepMs);
      this.sweepTimer.unref();
    }
    // The ledger settles every session left open; one whose charge the
    // ledger refused at the replay is settled without it: said, not hidden.
    const owed = this.backlog.sessionsOwed();
    const settledOwing = sessions.filter((session) => owed.has(session.sessionId)).map((session) => session.sessionId);
    return { sessions, replayed: spool.written, spool, settledOwing };
  }

  /**
   * Settles the open sessions of every other instance whose heartbeat is
   * stale, as 'recovered', while this one runs. Never this instance's own
   * sessions, even if its own heartbeat lapsed: they are live. Several
   * instances may sweep at once: the ledger's settlement locks the session
   * row and inserts the settlement only if none exists, so each session is
   * settled once and reported by one sweep. A sweep still running is joined,
   * not doubled.
   */
  sweep(): Promise<RecoveredSession[]> {
    this.sweeping ??= this.options.ledger
      .recoverOpenSessions({ instanceId: this.options.instanceId, staleAfterMs: this.options.staleAfterMs, ownSessions: 'keep' })
      .then((sessions) => {
        if (sessions.length > 0) this.options.onSwept?.(sessions);
        return sessions;
      })
      .finally(() => {
        this.sweeping = undefined;
      });
    return this.sweeping;
  }

  /** One pass of the client secret clean-up, if one is due and none is running: how many it deleted. */
  private async deleteExpiredClientSecrets(): Promise<number> {
    const cleanup = this.options.clientSecretCleanup ?? CLIENT_SECRET_CLEANUP;
    if (this.secretCleanup !== undefined || Date.now() < this.nextSecretCleanupAt) return 0;
    this.nextSecretCleanupAt = Date.now() + cleanup.everyMs;
    this.secretCleanup = pruneInBatches(
      (limit) => this.options.ledger.pruneClientSecrets({ before: new Date(Date.now() - cleanup.graceMs), limit }),
      cleanup.batchSize,
      CLEANUP_BATCHES_PER_PASS,
    ).finally(() => {
      this.secretCleanup = undefined;
    });
    return this.secretCleanup;
  }

  async close(): Promise<void> {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await this.sweeping?.catch(() => undefined);
    await this.secretCleanup?.catch(() => undefined);
    await this.backlog.flush().catch(() => undefined);
    this.backlog.close();
    await this.options.ledger.close();
  }
}
