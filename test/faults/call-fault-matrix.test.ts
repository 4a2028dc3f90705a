import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import type { CallLink } from '../../src/server/call-link.js';
import { CALL_WEBHOOK_SECRET, chargedWebRtcCall, expectOpenWithOneCharge, expectRecoveredOnce, HUNG_UP, keyOnLedger, spawnRelayFor } from '../helpers/killed-relay.js';
import { sqliteLedgerFile, sqliteView, type LedgerView } from '../helpers/ledger.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { freePort, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { CallRefused, openWebRtcCall, type WebRtcCall } from '../helpers/webrtc-client.js';
import { CALL_FAULT_MATRIX, type CallFaultRow } from './fault-matrix.js';

/**
 * The call rows of the fault matrix, with a real WebRTC caller (werift) or a
 * phone call placed by the simulator, through the relay to the simulator:
 * what the caller sees, the one settlement, what was charged, and that the
 * call is gone upstream.
 */

const TURN = usage({ text: [30, 0], audio: [200, 0], out: [12, 40] });

let stack: LedgerTestRelay | undefined;
let call: WebRtcCall | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await call?.close();
  call = undefined;
  await stack?.close();
  stack = undefined;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Settled once with `endReason`, and the turn charged exactly once if the row says so. */
async function expectSettledOnce(view: LedgerView, keyId: string, balanceNano: bigint, row: CallFaultRow): Promise<void> {
  const book = await view.book(keyId);
  const charged = book.charges.reduce((total, charge) => total + charge.costNano, 0n);
  expect(book.charges).toHaveLength(row.charged ? 1 : 0);
  expect(book.settlements).toEqual([expect.objectContaining({ endReason: row.endReason, totalNano: charged, chargeCount: row.charged ? 1 : 0 })]);
  if (row.charged) expect(charged).toBe(realtimeInvoice('gpt-realtime', TURN));
  expect(book.balanceNano).toBe(balanceNano - charged);
}

/** A phone call routed to a key, placed by the simulator: one charged turn, then the fault. */
async function runPhoneCallFault(row: CallFaultRow): Promise<void> {
  const s = (stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, settings: { openaiWebhookSecret: CALL_WEBHOOK_SECRET } }));
  s.sim.setCallWebhook({ url: `${s.httpUrl}/v1/sip/webhook`, secret: CALL_WEBHOOK_SECRET });
  const { record } = await s.createKey();
  await s.ledger.addRoute({ match: { kind: 'number', number: '+15550166666' }, key: record.id, session: { model: 'gpt-realtime' } });
  if (row.fault === 'sideband refused 503') s.sim.queueHandshakeFault({ kind: 'refuse', status: 503 });
  const placed = await s.sim.placeSipCall({ to: '+15550166666', turns: [{ usage: TURN }] });
  expect(placed.webhook).toEqual({ status: 200 });
  if (row.charged) {
    await expect.poll(() => s.sim.sipCall(placed.callId)?.turnsDone).toBe(1);
    await expect.poll(async () => (await s.view.book(record.id)).charges.length).toBe(1);
  }
  switch (row.fault) {
    case 'sideband dropped':
      expect(s.sim.dropCallSidebands(placed.callId)).toBe(1);
      break;
    case 'caller hangs up':
      expect(s.sim.hangUpCall(placed.callId)).toBe(true);
      break;
    default:
      break;
  }
  await expect.poll(() => s.sim.sipCall(placed.callId)?.state, { timeout: 5_000 }).toBe('ended');
  await expect.poll(() => s.sim.activeCalls, { timeout: 5_000 }).toBe(0);
  await s.idle();
  await expectSettledOnce(s.view, record.id, record.balanceNano, row);
}

/**
 * A relay process killed (SIGKILL) with a call up, then restarted on the same
 * ledger and port: the call ran on upstream meanwhile; recovery hangs it up
 * there and settles the session once with the charge made before the crash.
 */
async function runKilledRelay(row: CallFaultRow): Promise<void> {
  const sim = await startSimulator({ chunkIntervalMs: 0 });
  cleanups.push(() => sim.close());
  const data = tempDataDir('relay-matrix-kill-');
  cleanups.push(() => data.remove());
  const port = await freePort();
  const relayOn = async () => {
    const relay = await spawnRelayFor(sim, data.path, port);
    cleanups.push(() => relay.kill());
    return relay;
  };
  let relay: RelayProcess = await relayOn();
  const ledgerFile = sqliteLedgerFile(data.path);
  const view = sqliteView(ledgerFile);
  const { key, record } = await keyOnLedger(ledgerFile, 'matrix-kill', '+15550155555');
  const cost = realtimeInvoice('gpt-realtime', TURN);

  let upstreamCallId: string;
  if (row.transport === 'webrtc') {
    const charged = await chargedWebRtcCall(relay, key, TURN);
    call = charged.call;
    expect(charged.cost).toBe(cost);
    upstreamCallId = lastUpstreamCallId(sim);
  } else {
    sim.setCallWebhook({ url: `${relay.httpUrl}/v1/sip/webhook`, secret: CALL_WEBHOOK_SECRET });
    const placed = await sim.placeSipCall({ to: '+15550155555', turns: [{ usage: TURN }] });
    await expect.poll(() => sim.sipCall(placed.callId)?.turnsDone).toBe(1);
    upstreamCallId = placed.callId;
  }
  const sessionId = await expectOpenWithOneCharge(view, record.id, cost);

  await relay.kill();
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(sim.activeCalls).toBe(1);

  relay = await relayOn();
  const line = await relay.waitForLog((l) => l.msg === HUNG_UP, 'the hangup of the call left running');
  expect(line).toMatchObject({ sessionId, upstream: 'openai', upstreamCallId, status: 200 });
  await expect.poll(() => sim.activeCalls, { timeout: 5_000 }).toBe(0);
  expect(sim.callEnding(upstreamCallId)).toMatchObject({ by: 'hangup' });
  if (call) await call.waitForClose(5_000);
  await expectRecoveredOnce(view, record.id, record.balanceNano, cost, row.endReason);
  await expectSettledOnce(view, record.id, record.balanceNano, row);
}

/** The call id the upstream gave the last WebRTC call, as its sideband names it. */
function lastUpstreamCallId(sim: Simulator): string {
  return sim.handshakes.filter((h) => h.query.call_id !== undefined).at(-1)!.query.call_id!;
}

async function runCallFault(row: CallFaultRow): Promise<void> {
  const s = (stack = await startTestRelay({
    simulator: { chunkIntervalMs: row.fault === 'relay shuts down' ? 20 : 0, audioChunks: 10 },
    settings: row.fault === 'caller vanishes' ? { idleTimeoutMs: 800 } : {},
  }));
  const { key, record } = await s.createKey();
  const callsUrl = `${s.httpUrl}/v1/realtime/calls?model=gpt-realtime`;

  if (row.refused) {
    if (row.fault === 'sideband refused 503') s.sim.queueHandshakeFault({ kind: 'refuse', status: 503 });
    const session = row.fault === 'upstream refuses the session config' ? { type: 'realtime', model: 'gpt-realtime', no_such_field: 1 } : undefined;
    const refused = await openWebRtcCall(callsUrl, session ? { key, shape: 'multipart', session } : { key }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CallRefused);
    const { status, body } = refused as CallRefused;
    expect([status, (JSON.parse(body) as { error: { code: string } }).error.code]).toEqual([row.refused.status, row.refused.code]);
  } else {
    const c = (call = await openWebRtcCall(callsUrl, { key }));
    const u = TURN;
    c.send({ type: 'response.create', response: { output_modalities: [row.fault === 'relay shuts down' ? 'audio' : 'text'], metadata: { sim_usage: JSON.stringify(u) } } });
    let stopped: Promise<unknown> | undefined;
    if (row.when === 'response in flight') {
      await c.waitFor('response.created');
      stopped = s.running.stop();
    }
    const response = (await c.waitFor('response.done', { timeoutMs: 10_000 })).response as { id: string; usage: RealtimeUsage };
    expect(response.usage).toEqual(u);
    await expect.poll(async () => (await s.view.book(record.id)).charges.length).toBe(1);

    switch (row.fault) {
      case 'sideband dropped':
        (s.relay.registry.list()[0]!.link as CallLink).upstream.socket!.terminate();
        break;
      case 'upstream hangs up': {
        const upstreamCallId = lastUpstreamCallId(s.sim);
        const hangup = await fetch(`${s.sim.url.replace(/^ws/, 'http')}/v1/realtime/calls/${upstreamCallId}/hangup`, { method: 'POST', headers: { Authorization: 'Bearer sk-sim' } });
        expect(hangup.status).toBe(200);
        break;
      }
      case 'caller hangs up': {
        const hangup = await fetch(`${s.httpUrl}${c.location}/hangup`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
        expect(hangup.status).toBe(200);
        break;
      }
      case 'caller vanishes':
        // The peer connection goes away without closing its channel or hanging up.
        await c.pc.close();
        call = undefined;
        break;
      default:
        break;
    }
    if (stopped) expect(await stopped).toEqual({ drained: true });
    if (!row.callerGone) await c.waitForClose(5_000);
  }

  await expect.poll(() => s.sim.activeCalls, { timeout: 5_000 }).toBe(0);
  await s.idle();
  await expectSettledOnce(s.view, record.id, record.balanceNano, row);
}

describe('the fault matrix of calls', () => {
  for (const row of CALL_FAULT_MATRIX) {
    const run = row.recovered ? runKilledRelay : row.transport === 'sip' ? runPhoneCallFault : runCallFault;
    it(`${row.transport}: ${row.fault} (${row.side}) ${row.when}: ${row.refused ? `${row.refused.status} ${row.refused.code}` : 'the call ends'}, ${row.endReason}`, async () => {
      await run(row);
    }, 60_000);
  }
});
