import { LedgerError, type ChargeInput, type ChargeResult, type Ledger, type SettlementInput, type SettlementResult } from '../../src/billing/ledger/index.js';

/** Where an injected charge failure strikes: before the row is written, or after it (the reply is lost). */
export type ChargeFault = 'before_write' | 'after_write';

/**
 * A real ledger with failures on demand, handed to `Billing` in place of the
 * ledger it wraps. `down` makes every call fail as an unreachable database
 * does; `failNextCharge` makes one charge write fail. Every recordCharge call
 * and its outcome is kept, so a test can tell how often an item was written.
 */
export class FaultyLedger implements Ledger {
  down = false;
  /** Operations that fail while the rest of the ledger answers. */
  readonly failing = new Set<string>();
  readonly chargeCalls: Array<{ itemId: string; outcome: 'applied' | 'duplicate' | 'failed' }> = [];
  private readonly chargeFaults: ChargeFault[] = [];

  constructor(readonly inner: Ledger) {}

  get kind(): Ledger['kind'] {
    return this.inner.kind;
  }

  failNextCharge(where: ChargeFault = 'before_write'): void {
    this.chargeFaults.push(where);
  }

  /** The ledger answers again: faults that have not struck yet are dropped. */
  heal(): void {
    this.down = false;
    this.chargeFaults.length = 0;
  }

  /** Heals, and forgets the call log. */
  reset(): void {
    this.heal();
    this.chargeCalls.length = 0;
  }

  /** recordCharge calls for one item that changed the ledger. */
  appliedWrites(itemId: string): number {
    return this.chargeCalls.filter((call) => call.itemId === itemId && call.outcome === 'applied').length;
  }

  private unavailable(what: string): LedgerError {
    return new LedgerError('ledger_unavailable', `injected: the ledger is down (${what})`);
  }

  private guard(what: string): void {
    if (this.down || this.failing.has(what)) throw this.unavailable(what);
  }

  async recordCharge(charge: ChargeInput): Promise<ChargeResult> {
    const fault = this.down ? 'before_write' : this.chargeFaults.shift();
    if (fault === 'before_write') {
      this.chargeCalls.push({ itemId: charge.itemId, outcome: 'failed' });
      throw this.unavailable('recordCharge');
    }
    const result = await this.inner.recordCharge(charge);
    if (fault === 'after_write') {
      // The row is in; the caller never learns it.
      this.chargeCalls.push({ itemId: charge.itemId, outcome: result.applied ? 'applied' : 'duplicate' });
      throw this.unavailable('recordCharge reply');
    }
    this.chargeCalls.push({ itemId: charge.itemId, outcome: result.applied ? 'applied' : 'duplicate' });
    return result;
  }

  async settleSession(settlement: SettlementInput): Promise<SettlementResult> {
    this.guard('settleSession');
    return this.inner.settleSession(settlement);
  }

  createKey: Ledger['createKey'] = async (input) => this.inner.createKey(input);
  authenticate: Ledger['authenticate'] = async (key) => (this.guard('authenticate'), this.inner.authenticate(key));
  getKey: Ledger['getKey'] = async (ref) => (this.guard('getKey'), this.inner.getKey(ref));
  createClientSecret: Ledger['createClientSecret'] = async (input) => (this.guard('createClientSecret'), this.inner.createClientSecret(input));
  authenticateClientSecret: Ledger['authenticateClientSecret'] = async (secret) => (this.guard('authenticateClientSecret'), this.inner.authenticateClientSecret(secret));
  clientSecretSpend: Ledger['clientSecretSpend'] = async (id) => (this.guard('clientSecretSpend'), this.inner.clientSecretSpend(id));
  listKeys: Ledger['listKeys'] = async () => this.inner.listKeys();
  topUp: Ledger['topUp'] = async (ref, amount, max) => this.inner.topUp(ref, amount, max);
  setDisabled: Ledger['setDisabled'] = async (ref, disabled) => this.inner.setDisabled(ref, disabled);
  placeHold: Ledger['placeHold'] = async (hold) => (this.guard('placeHold'), this.inner.placeHold(hold));
  openSession: Ledger['openSession'] = async (session) => (this.guard('openSession'), this.inner.openSession(session));
  recordUpstreamCall: Ledger['recordUpstreamCall'] = async (id, call) => (this.guard('recordUpstreamCall'), this.inner.recordUpstreamCall(id, call));
  heartbeat: Ledger['heartbeat'] = async (id) => (this.guard('heartbeat'), this.inner.heartbeat(id));
  recoverOpenSessions: Ledger['recoverOpenSessions'] = async (options) => (this.guard('recoverOpenSessions'), this.inner.recoverOpenSessions(options));
  usage: Ledger['usage'] = async (query) => this.inner.usage(query);
  endedSessions: Ledger['endedSessions'] = async (query) => this.inner.endedSessions(query);
  spend: Ledger['spend'] = async (query) => this.inner.spend(query);
  sessionSpend: Ledger['sessionSpend'] = async (id) => this.inner.sessionSpend(id);
  claimUsageEvents: Ledger['claimUsageEvents'] = async (claim) => (this.guard('claimUsageEvents'), this.inner.claimUsageEvents(claim));
  usageEventDelivered: Ledger['usageEventDelivered'] = async (id) => (this.guard('usageEventDelivered'), this.inner.usageEventDelivered(id));
  usageEventFailed: Ledger['usageEventFailed'] = async (id, retryInMs, reason) => (this.guard('usageEventFailed'), this.inner.usageEventFailed(id, retryInMs, reason));
  usageEventBacklog: Ledger['usageEventBacklog'] = async () => this.inner.usageEventBacklog();
  addRoute: Ledger['addRoute'] = async (route) => (this.guard('addRoute'), this.inner.addRoute(route));
  listRoutes: Ledger['listRoutes'] = async () => (this.guard('listRoutes'), this.inner.listRoutes());
  removeRoute: Ledger['removeRoute'] = async (id) => (this.guard('removeRoute'), this.inner.removeRoute(id));
  recordWebhook: Ledger['recordWebhook'] = async (id, at) => (this.guard('recordWebhook'), this.inner.recordWebhook(id, at));
  pruneUsageEvents: Ledger['pruneUsageEvents'] = async (prune) => (this.guard('pruneUsageEvents'), this.inner.pruneUsageEvents(prune));
  pruneClientSecrets: Ledger['pruneClientSecrets'] = async (prune) => (this.guard('pruneClientSecrets'), this.inner.pruneClientSecrets(prune));
  ping: Ledger['ping'] = async () => (this.guard('ping'), this.inner.ping());
  close: Ledger['close'] = async () => this.inner.close();
}
