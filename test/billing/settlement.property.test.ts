/**
 * Any sequence of lifecycle and usage events settles a session exactly once,
 * and its charges are the priced usages of every response.done it saw.
 *
 * This test is about the session machine and the billing module together:
 * the real `sessionMachine` (its `after` delays run on XState's
 * SimulatedClock) drives two fake legs (`FakeSession`, below) and the relay's
 * own SessionBill over the real LedgerMeter from `Billing.openMeter`, writing
 * to a temporary SQLite ledger (wrapped so that a charge write can be made to
 * fail). Sockets, frames and the upstream are not involved; the relay-level
 * tests cover those.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActor, SimulatedClock, type Actor } from 'xstate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { builtInPrices } from '../../src/billing/prices.js';
import { Billing } from '../../src/billing/service.js';
import { RelayError } from '../../src/errors.js';
import { SessionBill } from '../../src/billing/session-bill.js';
import {
  hasEnded,
  sessionMachine,
  type CancelReason,
  type ClientLeg,
  type Report,
  type SessionOutcome,
  type SessionPorts,
  type UpstreamLeg,
} from '../../src/machines/session.js';
import type { SessionMeter, SessionSummary } from '../../src/server/ports.js';
import { sqliteView, type LedgerView } from '../helpers/ledger.js';
import { FaultyLedger, type ChargeFault } from './faulty-ledger.js';
import { REALTIME_PRICES, realtimeInvoice, sum, usage, type RealtimeUsage } from './invoice.js';

const TIMINGS = { connectTimeoutMs: 1_000, drainTimeoutMs: 500, maxSessionMs: 5_000 };

type Command =
  | { kind: 'dial_ok' }
  | { kind: 'dial_fail' }
  | { kind: 'request' }
  | { kind: 'created' }
  | { kind: 'done'; usage: RealtimeUsage; cancelled: boolean }
  /** A whole response: requested, admitted, created and done; the next command may land while its charge is being written. */
  | { kind: 'turn'; usage: RealtimeUsage; cancelled: boolean }
  | { kind: 'client_closed'; code: number }
  | { kind: 'target_closed'; code: number }
  | { kind: 'error'; source: 'client' | 'upstream' | 'relay' }
  | { kind: 'cancel'; reason: CancelReason }
  | { kind: 'advance'; ms: number }
  | { kind: 'flush' }
  | { kind: 'fail_next_charge'; where: ChargeFault };

/**
 * A session's two legs, as far as the machine and the bill can tell. The legs
 * are fakes; the bill is the relay's own SessionBill, reporting its verdicts
 * through the reader of the leg that asked, as the relay's legs do.
 */
class FakeSession implements SessionPorts {
  settles = 0;
  /** Every response.done whose charge was asked of the bill, by response id. */
  readonly charged = new Map<string, RealtimeUsage>();
  settled: Promise<unknown> | null = null;
  clientOpen = true;
  upstreamOpen = true;
  readonly bill: SessionBill;
  private clientReport: Report | null = null;
  private upstreamReport: Report | null = null;
  private forwarding = true;
  /** Responses the upstream was asked for / has started, in order. */
  private requested = 0;
  private readonly created: string[] = [];
  private responseSeq = 0;
  private dialing: { resolve(): void; reject(error: unknown): void; done: boolean } | null = null;
  actor!: Actor<typeof sessionMachine>;

  constructor(
    private readonly sessionId: string,
    meter: SessionMeter,
  ) {
    this.bill = new SessionBill(meter);
  }

  /** Verdicts that arrive later go to whichever reader of that leg runs then. */
  private readonly clientReportLater: Report = (event) => this.clientReport?.(event);
  private readonly upstreamReportLater: Report = (event) => this.upstreamReport?.(event);

  private get active(): boolean {
    return !this.actor.getSnapshot().matches('closed');
  }

  readonly client: ClientLeg = {
    read: (report) => {
      this.clientReport = report;
      return () => {
        if (this.clientReport === report) this.clientReport = null;
      };
    },
    stopForwarding: () => {
      this.forwarding = false;
    },
    close: (_how, closed) => {
      this.clientOpen = false;
      closed(1000);
      return () => undefined;
    },
  };

  readonly upstream: UpstreamLeg = {
    dial: () =>
      new Promise<void>((resolve, reject) => {
        this.dialing = { resolve, reject, done: false };
      }),
    read: (report) => {
      this.upstreamReport = report;
      return () => {
        if (this.upstreamReport === report) this.upstreamReport = null;
      };
    },
    // The upstream answers a cancel with the response's response.done: the generator's `done` commands deliver it.
    cancelResponse: () => undefined,
    close: (_how, closed) => {
      this.upstreamOpen = false;
      closed(null);
      return () => undefined;
    },
  };

  keepAlive(): () => void {
    return () => undefined;
  }

  settle(outcome: SessionOutcome): Promise<SessionSummary> {
    this.settles++;
    const settled = this.bill.settle(() => ({
      sessionId: this.sessionId,
      transport: 'websocket',
      caller: { keyId: 'k', keyName: 'k' },
      model: 'm',
      servedModel: null,
      upstream: null,
      startedAt: new Date(0),
      endedAt: new Date(0),
      endReason: outcome.cause.kind,
      drain: outcome.drain,
      clientCloseCode: null,
      upstreamCloseCode: null,
      framesIn: 0,
      framesOut: 0,
      bytesIn: 0,
      bytesOut: 0,
    }));
    this.settled = settled;
    return settled;
  }

  apply(command: Command): void {
    switch (command.kind) {
      case 'dial_ok':
      case 'dial_fail':
        if (!this.dialing || this.dialing.done) return;
        this.dialing.done = true;
        if (command.kind === 'dial_ok') this.dialing.resolve();
        else this.dialing.reject(new RelayError('upstream_unavailable'));
        return;
      case 'request': {
        if (!this.clientReport || !this.clientOpen || !this.forwarding) return;
        // The balance is checked before the request goes out; a refused one never reaches the upstream.
        const forwarded = () => {
          if (this.forwarding && this.upstreamOpen) this.requested++;
        };
        const admitted = this.bill.admitResponse('response.create', this.clientReportLater, () => undefined);
        if (admitted === 'response.create') forwarded();
        else if (admitted !== null) admitted.then((frame) => frame !== null && forwarded(), () => undefined);
        return;
      }
      case 'created': {
        if (!this.upstreamReport || this.requested === 0) return;
        this.requested--;
        const id = `resp_${++this.responseSeq}`;
        this.created.push(id);
        this.upstreamReport({ type: 'RESPONSE_CREATED', responseId: id });
        this.bill.responseStarted(this.upstreamReportLater);
        return;
      }
      case 'done': {
        if (!this.upstreamReport || this.created.length === 0) return;
        const id = this.created.shift()!;
        this.charged.set(id, command.usage);
        // RESPONSE_DONE only once the charge is written; a failed write fails closed (as the relay's pipe reports it).
        void this.bill.chargeResponse({ id, status: command.cancelled ? 'cancelled' : 'completed', usage: command.usage }, 'm', this.upstreamReportLater, () => 'response.done').catch(() =>
          this.upstreamReportLater({ type: 'ERROR', source: 'relay', error: { code: 'billing_unavailable', message: 'write failed', closeCode: 1011 } }),
        );
        return;
      }
      case 'client_closed':
        if (!this.clientReport || !this.clientOpen) return;
        this.clientOpen = false;
        this.clientReport({ type: 'CLIENT_CLOSED', code: command.code, reason: '' });
        return;
      case 'target_closed':
        if (!this.upstreamReport || !this.upstreamOpen) return;
        this.upstreamOpen = false;
        this.upstreamReport({ type: 'TARGET_CLOSED', code: command.code, reason: '' });
        return;
      case 'error': {
        const report = command.source === 'upstream' ? this.upstreamReport : this.clientReport;
        report?.({ type: 'ERROR', source: command.source, error: { code: 'internal_error', message: 'injected', closeCode: 1011 } });
        return;
      }
      case 'cancel':
        if (this.active) this.actor.send({ type: 'CANCEL', reason: command.reason });
        return;
      default:
        return;
    }
  }
}

/** Lets every charge and admission in flight finish (the ledger is synchronous SQLite under async calls). */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

const tokens = fc.integer({ min: 0, max: 2_000 });
const withCached = fc.tuple(tokens, fc.integer({ min: 0, max: 100 })).map(([n, pct]): [number, number] => [n, Math.floor((n * pct) / 100)]);

function usageArbitrary(family: string): fc.Arbitrary<RealtimeUsage> {
  const images = REALTIME_PRICES[family]!.image !== null;
  return fc
    .record({ text: withCached, audio: withCached, image: images ? withCached : fc.constant<[number, number]>([0, 0]), out: fc.tuple(tokens, tokens) })
    .map((spec) => usage(spec));
}

function commandArbitrary(family: string): fc.Arbitrary<Command> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant<Command>({ kind: 'dial_ok' }) },
    { weight: 1, arbitrary: fc.constant<Command>({ kind: 'dial_fail' }) },
    { weight: 6, arbitrary: fc.constant<Command>({ kind: 'request' }) },
    { weight: 6, arbitrary: fc.constant<Command>({ kind: 'created' }) },
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('done' as const), usage: usageArbitrary(family), cancelled: fc.boolean() }) },
    { weight: 20, arbitrary: fc.record({ kind: fc.constant('turn' as const), usage: usageArbitrary(family), cancelled: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('client_closed' as const), code: fc.constantFrom(1000, 1001, 1006) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('target_closed' as const), code: fc.constantFrom(1000, 1011, 4000) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('error' as const), source: fc.constantFrom('client' as const, 'upstream' as const, 'relay' as const) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('cancel' as const),
        reason: fc.constantFrom<CancelReason>('shutdown', 'operator', 'idle_timeout', 'max_duration', 'insufficient_quota', 'spend_cap', 'backpressure_stall'),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 100, 499, 500, 999, 1_000, 5_000) }) },
    { weight: 6, arbitrary: fc.constant<Command>({ kind: 'flush' }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('fail_next_charge' as const), where: fc.constantFrom<ChargeFault>('before_write', 'after_write') }) },
  );
}

const scenario = fc.constantFrom(...Object.keys(REALTIME_PRICES)).chain((family) =>
  fc.record({
    family: fc.constant(family),
    // Small balances run out mid-session; large ones let several responses through.
    balanceNano: fc.oneof(fc.bigInt({ min: 1n, max: 50_000_000n }), fc.bigInt({ min: 1n, max: 5_000_000_000n })),
    reserveNano: fc.constantFrom(0n, 1n, 1_000_000n),
    spendCapNano: fc.option(fc.bigInt({ min: 1n, max: 300_000_000n }), { nil: null }),
    multiplierPpm: fc.oneof(fc.constant(1_000_000), fc.integer({ min: 1, max: 3_000_000 })),
    // Most sessions reach their upstream before anything else happens; some never do.
    dialFirst: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    commands: fc.array(commandArbitrary(family), { maxLength: 50, size: 'medium' }),
  }),
);

describe('settlement, for any sequence of events', () => {
  let dataDir: string;
  let faulty: FaultyLedger;
  let view: LedgerView;
  let runs = 0;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'relay-property-'));
    faulty = new FaultyLedger(await openLedger({ sqlitePath: join(dataDir, 'ledger.db') }));
    view = sqliteView(join(dataDir, 'ledger.db'));
  });

  afterAll(async () => {
    await faulty?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('settles exactly once, with charges equal to the priced usages and the balance moved by exactly the charges', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        faulty.reset();
        const run = ++runs;
        const { record } = await faulty.createKey({ name: `property_${run}`, balanceNano: s.balanceNano, spendCapNano: s.spendCapNano, priceMultiplierPpm: s.multiplierPpm });
        const billing = new Billing({ ledger: faulty, prices: builtInPrices, instanceId: 'property', reserveNano: s.reserveNano, spoolPath: null, staleAfterMs: 0, heartbeatMs: 60_000 });
        const sessionId = `sess_property_${run}`;
        const meter = await billing.openMeter({ sessionId, transport: 'websocket', caller: { keyId: record.id, keyName: record.name }, model: s.family, intent: undefined, startedAt: new Date() }, record);
        const link = new FakeSession(sessionId, meter);
        const clock = new SimulatedClock();
        const actor = createActor(sessionMachine, { input: { sessionId, ports: link, timings: TIMINGS }, clock });
        link.actor = actor;
        actor.start();
        try {
          if (s.dialFirst) {
            link.apply({ kind: 'dial_ok' });
            await flush();
          }
          for (const command of s.commands) {
            if (command.kind === 'turn') {
              link.apply({ kind: 'request' });
              await flush();
              link.apply({ kind: 'created' });
              link.apply({ kind: 'done', usage: command.usage, cancelled: command.cancelled });
            } else if (command.kind === 'advance') clock.increment(command.ms);
            else if (command.kind === 'flush') await flush();
            else if (command.kind === 'fail_next_charge') faulty.failNextCharge(command.where);
            else link.apply(command);
          }
          // Whatever the sequence left open ends now: the client leaves, the upstream answers nothing more, timers run out.
          for (let round = 0; round < 5 && !actor.getSnapshot().matches('closed'); round++) {
            await flush();
            link.apply({ kind: 'client_closed', code: 1006 });
            clock.increment(TIMINGS.connectTimeoutMs + TIMINGS.drainTimeoutMs);
          }
          await flush();
          await link.settled;
          await flush();
          expect(hasEnded(actor.getSnapshot())).toBe(true);
          expect(link.settles).toBe(1);
          // The ledger answers again; what the settlement could not write waits in the backlog until then.
          faulty.heal();
          await billing.backlog.flush();
          expect(billing.backlog.size).toBe(0);

          const expected = new Map([...link.charged].map(([id, u]) => [id, realtimeInvoice(s.family, u, BigInt(s.multiplierPpm))]));
          const book = await view.book(record.id);
          expect(new Map(book.charges.map((c) => [c.itemId, c.costNano]))).toEqual(expected);
          expect(book.charges).toHaveLength(expected.size);
          const total = sum(expected.values());
          expect(book.settlements).toEqual([expect.objectContaining({ sessionId, status: 'settled', totalNano: total, chargeCount: expected.size })]);
          expect(book.sessions).toEqual([expect.objectContaining({ id: sessionId, spendNano: total })]);
          expect(book.balanceNano).toBe(s.balanceNano - total);
        } finally {
          actor.stop();
          billing.backlog.close();
        }
      }),
      { numRuns: 250 },
    );
  }, 120_000);
});
