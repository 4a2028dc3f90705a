/**
 * A call's media runs between its caller and the upstream: a relay killed
 * mid-call leaves the call running there, unmetered. The session's ledger
 * row names the upstream and its call id, so whoever settles the session by
 * recovery (the restarted relay, or another instance's sweep) also hangs the
 * call up, once. What was charged before the crash is kept; nothing more is
 * billed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { realtimeInvoice, usage } from '../billing/invoice.js';
import { CALL_WEBHOOK_SECRET, chargedWebRtcCall, expectOpenWithOneCharge, expectRecoveredOnce, HUNG_UP, keyOnLedger, spawnRelayFor } from '../helpers/killed-relay.js';
import { readSqlite, sqliteLedgerFile, sqliteView, postgresView } from '../helpers/ledger.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres } from '../helpers/postgres.js';
import { startTestRelay } from '../helpers/relay.js';
import { freePort, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { CallRefused, openWebRtcCall, type WebRtcCall } from '../helpers/webrtc-client.js';
import { FaultyLedger } from '../billing/faulty-ledger.js';

const TURN = usage({ text: [120, 20], audio: [400, 0], out: [25, 180] });

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function simulator(): Promise<Simulator> {
  const sim = await startSimulator({ chunkIntervalMs: 0 });
  cleanups.push(() => sim.close());
  return sim;
}

async function relayFor(sim: Simulator, dataDir: string, port: number, env: Record<string, string> = {}): Promise<RelayProcess> {
  const relay = await spawnRelayFor(sim, dataDir, port, env);
  cleanups.push(() => relay.kill());
  return relay;
}

async function chargedCall(relay: RelayProcess, key: string): Promise<{ call: WebRtcCall; cost: bigint }> {
  const charged = await chargedWebRtcCall(relay, key, TURN);
  cleanups.push(() => charged.call.close());
  return charged;
}

function hangupLines(relay: RelayProcess) {
  return relay.logs.filter((line) => typeof line.msg === 'string' && line.msg.includes('call of a recovered session'));
}

describe('a call whose upstream the ledger cannot record', () => {
  it('is refused and hung up upstream: a call recovery could not end is never left running', async () => {
    let faulty!: FaultyLedger;
    const stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, wrapLedger: (ledger) => (faulty = new FaultyLedger(ledger)) });
    cleanups.push(() => stack.close());
    const { key, record } = await stack.createKey();
    faulty.failing.add('recordUpstreamCall');
    const refused = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CallRefused);
    expect((refused as CallRefused).status).toBe(503);
    expect(JSON.parse((refused as CallRefused).body)).toMatchObject({ error: { code: 'billing_unavailable' } });
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: 0n, endReason: 'dial_failed:billing_unavailable' })]);
  });
});

describe('calls left running by a killed relay (SQLite)', () => {
  it('hangs up a WebRTC call at its upstream when the restarted relay settles its session, keeping the charge made before the crash', async () => {
    const sim = await simulator();
    const data = tempDataDir('relay-orphan-rtc-');
    cleanups.push(() => data.remove());
    const port = await freePort();
    let relay = await relayFor(sim, data.path, port);
    const ledgerFile = sqliteLedgerFile(data.path);
    const { key, record } = await keyOnLedger(ledgerFile, 'orphan-rtc');
    const view = sqliteView(ledgerFile);

    const { call, cost } = await chargedCall(relay, key);
    const sessionId = await expectOpenWithOneCharge(view, record.id, cost);
    const [row] = readSqlite(ledgerFile, (db) => db.prepare('SELECT upstream, upstream_call_id FROM sessions WHERE id = ?').all(sessionId)) as Array<{ upstream: string; upstream_call_id: string }>;
    expect(row).toEqual({ upstream: 'openai', upstream_call_id: expect.stringMatching(/^rtc_/) });

    await relay.kill();
    // The media never passed through the relay: the call goes on at the upstream.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sim.activeCalls).toBe(1);
    expect(call.channelState).toBe('open');

    relay = await relayFor(sim, data.path, port);
    const line = await relay.waitForLog((l) => l.msg === HUNG_UP, 'the hangup of the orphaned call');
    expect(line).toMatchObject({ sessionId, upstream: 'openai', upstreamCallId: row!.upstream_call_id, status: 200 });
    await expect.poll(() => sim.activeCalls).toBe(0);
    expect(sim.callEnding(row!.upstream_call_id)).toMatchObject({ by: 'hangup' });
    await call.waitForClose();
    await expectRecoveredOnce(view, record.id, record.balanceNano, cost, 'instance_restarted');

    // Settled once: a further restart recovers nothing and hangs up nothing.
    await relay.stop();
    relay = await relayFor(sim, data.path, port);
    expect(hangupLines(relay)).toEqual([]);
    await expectRecoveredOnce(view, record.id, record.balanceNano, cost, 'instance_restarted');
  }, 60_000);

  it('hangs up a phone call at its upstream when the restarted relay settles its session', async () => {
    const sim = await simulator();
    const data = tempDataDir('relay-orphan-sip-');
    cleanups.push(() => data.remove());
    const port = await freePort();
    let relay = await relayFor(sim, data.path, port);
    sim.setCallWebhook({ url: `${relay.httpUrl}/v1/sip/webhook`, secret: CALL_WEBHOOK_SECRET });
    const ledgerFile = sqliteLedgerFile(data.path);
    const { record } = await keyOnLedger(ledgerFile, 'orphan-sip', '+15550177777');
    const view = sqliteView(ledgerFile);

    const placed = await sim.placeSipCall({ to: '+15550177777', turns: [{ usage: TURN }] });
    await expect.poll(() => sim.sipCall(placed.callId)?.turnsDone).toBe(1);
    const cost = realtimeInvoice('gpt-realtime', TURN);
    const sessionId = await expectOpenWithOneCharge(view, record.id, cost);

    await relay.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sim.sipCall(placed.callId)?.state).toBe('accepted');

    relay = await relayFor(sim, data.path, port);
    const line = await relay.waitForLog((l) => l.msg === HUNG_UP, 'the hangup of the orphaned phone call');
    expect(line).toMatchObject({ sessionId, upstream: 'openai', upstreamCallId: placed.callId, status: 200 });
    await expect.poll(() => sim.sipCall(placed.callId)?.state ?? 'ended').toBe('ended');
    expect(sim.activeCalls).toBe(0);
    await expectRecoveredOnce(view, record.id, record.balanceNano, cost, 'instance_restarted');
  }, 60_000);
});

const postgresProblem = await probePostgres();
if (postgresProblem !== null && !POSTGRES_REQUIRED) console.warn(`Skipping the PostgreSQL orphaned call test: ${postgresProblem}.`);

describe.skipIf(postgresProblem !== null && !POSTGRES_REQUIRED)('calls left running by a killed relay (PostgreSQL)', () => {
  it("is hung up once by the live instances' sweep, however many sweep at once", async () => {
    const schema = await createScratchSchema();
    cleanups.push(() => schema.drop());
    const sim = await simulator();
    const dirs = [tempDataDir('relay-orphan-pg-a-'), tempDataDir('relay-orphan-pg-b-'), tempDataDir('relay-orphan-pg-c-')];
    cleanups.push(() => dirs.forEach((dir) => dir.remove()));
    const env = { DATABASE_URL: schema.url, RELAY_RECOVERY_SWEEP_MS: '200' };
    const dying = await relayFor(sim, dirs[0]!.path, await freePort(), env);
    const ledger: Ledger = await openLedger({ databaseUrl: schema.url });
    cleanups.push(() => ledger.close());
    const { key, record } = await ledger.createKey({ name: 'orphan-pg', balanceNano: 10_000_000_000n });
    const view = postgresView(schema);

    const { call, cost } = await chargedCall(dying, key);
    const sessionId = await expectOpenWithOneCharge(view, record.id, cost);
    const [row] = await schema.query<{ upstream_call_id: string; instance_id: string }>('SELECT upstream_call_id, instance_id FROM sessions WHERE id = $1', [sessionId]);

    const sweepers = [await relayFor(sim, dirs[1]!.path, await freePort(), env), await relayFor(sim, dirs[2]!.path, await freePort(), env)];
    await dying.kill();
    await new Promise((resolve) => setTimeout(resolve, 500));
    // A live heartbeat is never swept: the call runs on until the dead instance's heartbeat is stale.
    expect(sim.activeCalls).toBe(1);
    // Its heartbeat as it stands 30 s after the crash, without waiting for them.
    await schema.query("UPDATE instances SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", [row!.instance_id]);

    await expect.poll(() => sim.activeCalls, { timeout: 10_000 }).toBe(0);
    expect(sim.callEnding(row!.upstream_call_id)).toMatchObject({ by: 'hangup' });
    await call.waitForClose();
    await expectRecoveredOnce(view, record.id, record.balanceNano, cost, 'instance_stale');
    // A few more sweeps: nobody hangs it up again.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const lines = sweepers.flatMap(hangupLines);
    expect(lines).toEqual([expect.objectContaining({ msg: HUNG_UP, sessionId, upstreamCallId: row!.upstream_call_id, status: 200 })]);
  }, 60_000);
});
