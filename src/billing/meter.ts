import { RelayError } from '../errors.js';
import type { ChargeVerdict, ResponseDone, SessionMeter, SessionSummary, TranscriptionCompleted } from '../server/ports.js';
import type { WriteBacklog } from './backlog.js';
import { priceTranscription, priceUsage } from './cost.js';
import { isLedgerError, type ChargeInput, type KeyRecord, type Ledger } from './ledger/index.js';
import { resolveModel, type PriceTable, type RealtimePrice, type TranscriptionPrice } from './prices.js';
import { normalizeResponseUsage, normalizeTranscriptionUsage, type UsageAnomaly } from './usage.js';

export interface MeterHooks {
  /** A usage broke the protocol's invariants: logged once per session, counted every time. */
  anomaly(sessionId: string, anomalies: UsageAnomaly[], firstInSession: boolean): void;
  charged(model: string, costNano: bigint, ms: number): void;
  chargeFailed(error: unknown): void;
}

export interface MeterOptions {
  sessionId: string;
  key: KeyRecord;
  model: string;
  ledger: Ledger;
  prices: PriceTable;
  /** Balance a key must keep for a response to be asked for. */
  reserveNano: bigint;
  /** Held on the key's balance from a response's admission until its charge. */
  holdNano: bigint;
  backlog: WriteBacklog;
  hooks: MeterHooks;
  /** The client secret the session was opened with, when it has a spend cap: its sessions share it. */
  clientSecret?: { id: string; capNano: bigint };
}

/** The most expensive transcription price: what an unknown transcription model is billed at. */
function dearestTranscription(prices: PriceTable): TranscriptionPrice | null {
  let best: TranscriptionPrice | null = null;
  let bestRate = -1n;
  for (const [family, rates] of Object.entries(prices.transcription)) {
    const rate = (rates.tokens ? rates.tokens.audioInput + rates.tokens.textOutput : 0n) + (rates.perSecond ?? 0n);
    if (rate > bestRate) {
      best = { family, kind: 'transcription', rates };
      bestRate = rate;
    }
  }
  return best;
}

/**
 * One session's bill. Each response holds part of the key's balance from its
 * admission and is charged as its `response.done` arrives, once (the ledger
 * is idempotent on the response id); the settlement at the end releases any
 * hold left, records the totals and never debits again.
 */
export class LedgerMeter implements SessionMeter {
  private servedModel: string;
  private price: RealtimePrice | null;
  private transcriptionModel: string | null = null;
  private balanceNano: bigint;
  private spentNano = 0n;
  private anomalySeen = false;
  /** Charges that could not be written: kept for the settlement and the recovery path. */
  private readonly unwritten: ChargeInput[] = [];
  /** What each item costs (written or still owed), by kind and id, for the settlement's record. */
  private costs: Map<string, bigint> | null = null;
  /** Holds placed for response.create events whose response has not started yet. */
  private heldForRequested = 0;

  constructor(private readonly options: MeterOptions) {
    this.servedModel = options.model;
    this.balanceNano = options.key.balanceNano;
    const resolved = resolveModel(options.model, options.prices);
    this.price = resolved?.kind === 'realtime' ? resolved : null;
  }

  opened(info: { upstream: string; servedModel: string }): void {
    this.servedModel = info.servedModel;
    const resolved = resolveModel(info.servedModel, this.options.prices);
    if (resolved?.kind === 'realtime') this.price = resolved;
  }

  async callAnswered(call: { upstream: string; callId: string }): Promise<void> {
    try {
      await this.options.ledger.recordUpstreamCall(this.options.sessionId, call);
    } catch (error) {
      throw new RelayError('billing_unavailable', isLedgerError(error) ? `The ledger is unavailable: ${error.message}` : undefined, { cause: error });
    }
  }

  configured(session: { transcriptionModel: string | null }): void {
    this.transcriptionModel = session.transcriptionModel;
  }

  /**
   * Places the response's hold, so that the key's responses in flight, on
   * every instance, never promise more than its balance. The hold is released
   * by this response's charge, or by the settlement if it never comes.
   */
  async admitResponse(): Promise<void> {
    if (await this.placeHold()) this.heldForRequested++;
  }

  /**
   * A response began upstream. One the client asked for holds its share since
   * its admission; one the upstream started by itself (server VAD) cannot be
   * refused, so it places its hold now, and a key that cannot cover it stops
   * the session: the response is cancelled and its tail billed.
   */
  async responseStarted(): Promise<void> {
    if (this.heldForRequested > 0) {
      this.heldForRequested--;
      return;
    }
    await this.placeHold();
  }

  /** True when a hold was placed; false when the ledger could not be asked and the last balance seen allowed it. */
  private async placeHold(): Promise<boolean> {
    const { key, ledger, reserveNano, holdNano, sessionId } = this.options;
    if (key.spendCapNano !== null && this.spentNano >= key.spendCapNano) throw new RelayError('session_spend_cap_exceeded');
    if (await this.secretCapReached()) throw new RelayError('session_spend_cap_exceeded', 'The client secret this session was opened with has reached its spend cap.');
    let hold;
    try {
      hold = await ledger.placeHold({ sessionId, keyId: key.id, amountNano: holdNano, reserveNano });
    } catch (error) {
      if (!isLedgerError(error, 'ledger_unavailable')) throw new RelayError('billing_unavailable', undefined, { cause: error });
      // The ledger cannot be asked: judge by the last balance seen. The response
      // is not given away unbilled: its charge fails the session closed.
      if (this.balanceNano < reserveNano || this.balanceNano <= 0n) throw new RelayError('insufficient_quota');
      return false;
    }
    this.balanceNano = hold.balanceNano;
    if (!hold.placed) throw new RelayError('insufficient_quota');
    return true;
  }

  async chargeResponse(response: ResponseDone): Promise<ChargeVerdict> {
    const usage = normalizeResponseUsage(response.usage);
    this.noteAnomalies(usage.anomalies);
    const price = this.price;
    // An unpriced model never gets this far (refused before the upgrade); billing zero would be a silent loss.
    if (!price) throw new RelayError('billing_unavailable', `No price for model "${this.servedModel}".`);
    const costNano = priceUsage(usage, price, this.options.key.priceMultiplierPpm);
    return this.charge({ kind: 'response', itemId: response.id, costNano, usage: response.usage ?? null });
  }

  async chargeTranscription(event: TranscriptionCompleted): Promise<ChargeVerdict> {
    const usage = normalizeTranscriptionUsage(event.usage);
    this.noteAnomalies(usage.anomalies);
    const model = event.model ?? this.transcriptionModel;
    const resolved = model ? resolveModel(model, this.options.prices) : null;
    const price = resolved?.kind === 'transcription' ? resolved : dearestTranscription(this.options.prices);
    if (!price) throw new RelayError('billing_unavailable', 'No transcription price is configured.');
    const costNano = priceTranscription(usage, price, this.options.key.priceMultiplierPpm);
    return this.charge({ kind: 'transcription', itemId: `${event.itemId}:${event.contentIndex}`, costNano, usage: event.usage ?? null, model: price.family });
  }

  private async charge(item: { kind: ChargeInput['kind']; itemId: string; costNano: bigint; usage: unknown; model?: string }): Promise<ChargeVerdict> {
    const { ledger, key, sessionId, hooks } = this.options;
    const charge: ChargeInput = { sessionId, keyId: key.id, kind: item.kind, itemId: item.itemId, model: item.model ?? this.servedModel, costNano: item.costNano, usage: item.usage };
    (this.costs ??= new Map()).set(`${item.kind}:${item.itemId}`, item.costNano);
    const began = Date.now();
    let result;
    try {
      result = await ledger.recordCharge(charge);
    } catch (error) {
      hooks.chargeFailed(error);
      this.unwritten.push(charge);
      throw new RelayError('billing_unavailable', undefined, { cause: error });
    }
    hooks.charged(charge.model, item.costNano, Date.now() - began);
    this.balanceNano = result.balanceNano;
    this.spentNano = result.sessionSpendNano;
    const costNano = item.costNano;
    if (result.balanceNano <= 0n) return { costNano, stop: 'insufficient_quota' };
    if (key.spendCapNano !== null && result.sessionSpendNano >= key.spendCapNano) return { costNano, stop: 'spend_cap' };
    if (await this.secretCapReached()) return { costNano, stop: 'spend_cap' };
    return { costNano };
  }

  /**
   * Whether the sessions of this session's client secret have together spent
   * its cap. Read afresh: other sessions may be spending it at the same time.
   * If the ledger cannot say, the session's own cap (what the secret had
   * left when it opened) still holds.
   */
  private async secretCapReached(): Promise<boolean> {
    const secret = this.options.clientSecret;
    if (!secret) return false;
    const spent = await this.options.ledger.clientSecretSpend(secret.id).catch(() => 0n);
    return spent >= secret.capNano;
  }

  private noteAnomalies(anomalies: UsageAnomaly[]): void {
    if (anomalies.length === 0) return;
    this.options.hooks.anomaly(this.options.sessionId, anomalies, !this.anomalySeen);
    this.anomalySeen = true;
  }

  spendNano(): bigint {
    return this.spentNano;
  }

  /** The summary with each usage record's cost, as charged: the settlement's record agrees with the charges. */
  private withCosts(summary: SessionSummary): SessionSummary {
    return { ...summary, usage: summary.usage.map((record) => ({ ...record, costNano: record.costNano ?? this.costs?.get(`${record.kind}:${record.id}`) ?? null })) };
  }

  /**
   * Writes what is still owed, then the settlement. When the ledger is down
   * both go to the backlog, which retries until it answers (and survives a
   * restart through its spool file).
   */
  async settle(summary: SessionSummary): Promise<void> {
    const { ledger, backlog, sessionId } = this.options;
    const settlement = { sessionId, endedAt: summary.endedAt, endReason: summary.endReason, status: 'settled' as const, summary: toJson(this.withCosts(summary)) };
    const owed = this.unwritten.splice(0);
    let written = 0;
    try {
      for (const charge of owed) {
        await ledger.recordCharge(charge);
        written++;
      }
      await ledger.settleSession(settlement);
    } catch {
      for (const charge of owed.slice(written)) backlog.add({ kind: 'charge', charge });
      backlog.add({ kind: 'settlement', settlement });
    }
  }
}

/** The summary as JSON-safe data (bigints as strings). */
function toJson(summary: SessionSummary): unknown {
  return JSON.parse(JSON.stringify(summary, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)));
}
