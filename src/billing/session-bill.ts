import { randomUUID } from 'node:crypto';
import { RelayError, asRelayError } from '../errors.js';
import type { Report } from '../machines/legs.js';
import type { ChargeVerdict, SessionMeter, SessionSummary, UsageRecord } from '../server/ports.js';

/** What a `response.done` carries that billing reads. */
export interface ResponseEnd {
  id?: unknown;
  status?: unknown;
  usage?: unknown;
}

/** What a completed input transcription carries that billing reads. */
export interface TranscriptionEnd {
  itemId?: unknown;
  contentIndex?: unknown;
  usage?: unknown;
}

/** The summary's parts the wire knows: who, where, how it ended, what it forwarded. */
export type SummaryBase = Omit<SessionSummary, 'usage'>;

/**
 * One session's money, apart from its sockets: which responses may be asked
 * for, what each one cost, and the settlement. Its verdicts go to the machine
 * through the `report` of the actor that asked (a leg's reader), never
 * through a callback stored here.
 */
export class SessionBill {
  private readonly usage: UsageRecord[] = [];
  /** Made with the first charge: most sessions never have one (idle ones, setups). */
  private pendingCharges: Set<Promise<unknown>> | null = null;

  constructor(private readonly meter: SessionMeter) {}

  get spendNano(): bigint {
    return this.meter.spendNano();
  }

  opened(info: { upstream: string; servedModel: string }): void {
    this.meter.opened(info);
  }

  callAnswered(call: { upstream: string; callId: string }): Promise<void> {
    return this.meter.callAnswered(call);
  }

  configured(session: { transcriptionModel: string | null }): void {
    this.meter.configured(session);
  }

  /**
   * A response costs money: the balance is checked before it is asked for.
   * Returns what to forward (now, or once the check answers); null when the
   * response is refused, after `refuse` has told the client why.
   */
  admitResponse<F>(frame: F, report: Report, refuse: (error: RelayError) => void): F | null | Promise<F | null> {
    let admitted: void | Promise<void>;
    try {
      admitted = this.meter.admitResponse();
    } catch (error) {
      refuse(asRelayError(error));
      return null;
    }
    if (admitted === undefined) {
      report({ type: 'RESPONSE_REQUESTED' });
      return frame;
    }
    return this.track(admitted).then(
      () => {
        report({ type: 'RESPONSE_REQUESTED' });
        return frame;
      },
      (error: unknown) => {
        const relayError = asRelayError(error);
        if (relayError.code === 'insufficient_quota' || relayError.code === 'session_spend_cap_exceeded') {
          refuse(relayError);
          return null;
        }
        throw relayError;
      },
    );
  }

  /** A response began upstream; one the key cannot cover is cancelled with the session, and its tail still read and billed. */
  responseStarted(report: Report): void {
    let started: void | Promise<void>;
    try {
      started = this.meter.responseStarted();
    } catch (error) {
      refuseStarted(error, report);
      return;
    }
    if (started !== undefined) this.track(started).catch((error: unknown) => refuseStarted(error, report));
  }

  /**
   * The charge for a response is written before its `response.done` reaches
   * the client: a client that has seen the response's end has been billed for
   * it, and a relay that cannot write the charge fails closed instead of
   * giving the response away. Resolves to `forward()` once written.
   */
  chargeResponse<F>(response: ResponseEnd, model: string, report: Report, forward: () => F): Promise<F> {
    const id = typeof response.id === 'string' && response.id ? response.id : `unidentified_${randomUUID()}`;
    const record: UsageRecord = { kind: 'response', id, model, usage: response.usage ?? null, costNano: null };
    this.usage.push(record);
    const charged = this.track(this.meter.chargeResponse({ id, status: typeof response.status === 'string' ? response.status : 'unknown', usage: response.usage }));
    return charged.then((verdict) => {
      report({ type: 'RESPONSE_DONE', responseId: id });
      applyVerdict(verdict, record, report);
      return forward();
    }, failBilling);
  }

  chargeTranscription<F>(event: TranscriptionEnd, model: string, report: Report, forward: () => F): Promise<F> {
    const itemId = typeof event.itemId === 'string' ? event.itemId : `unidentified_${randomUUID()}`;
    const contentIndex = typeof event.contentIndex === 'number' ? event.contentIndex : 0;
    const record: UsageRecord = { kind: 'transcription', id: `${itemId}:${contentIndex}`, model, usage: event.usage ?? null, costNano: null };
    this.usage.push(record);
    const charged = this.track(this.meter.chargeTranscription({ itemId, contentIndex, usage: event.usage, model: null }));
    return charged.then((verdict) => {
      applyVerdict(verdict, record, report);
      return forward();
    }, failBilling);
  }

  /**
   * Charges still being written belong in the settlement's totals, so it
   * waits for them. Resolves once the settlement is written or handed to the
   * backlog: a shutdown that closes the ledger right after must not cut it off.
   */
  async settle(summaryOf: () => SummaryBase): Promise<SessionSummary> {
    await (this.pendingCharges === null ? undefined : Promise.allSettled([...this.pendingCharges]));
    const summary: SessionSummary = { ...summaryOf(), usage: this.usage };
    await this.meter.settle(summary).catch(() => undefined);
    return summary;
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    const pending = (this.pendingCharges ??= new Set());
    pending.add(promise);
    const untrack = () => pending.delete(promise);
    promise.then(untrack, untrack);
    return promise;
  }
}

function applyVerdict(verdict: ChargeVerdict, record: UsageRecord, report: Report): void {
  record.costNano = verdict.costNano;
  // A verdict's stop is the cancel reason itself.
  if (verdict.stop) report({ type: 'CANCEL', reason: verdict.stop });
}

function refuseStarted(error: unknown, report: Report): void {
  const relayError = asRelayError(error);
  if (relayError.code === 'insufficient_quota') report({ type: 'CANCEL', reason: 'insufficient_quota' });
  else if (relayError.code === 'session_spend_cap_exceeded') report({ type: 'CANCEL', reason: 'spend_cap' });
  else report({ type: 'ERROR', source: 'relay', error: { code: relayError.code, message: relayError.message, closeCode: relayError.closeCode } });
}

function failBilling(error: unknown): never {
  throw asRelayError(error, 'billing_unavailable');
}
