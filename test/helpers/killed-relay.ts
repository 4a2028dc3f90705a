/**
 * The steps of killing a relay process mid-call and restarting it on the same
 * ledger and port, shared by the tests of calls a crash leaves running.
 */
import { expect } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { realtimeInvoice, type RealtimeUsage } from '../billing/invoice.js';
import type { LedgerView } from './ledger.js';
import { spawnRelay, type RelayProcess } from './relay-process.js';
import { openWebRtcCall, type WebRtcCall } from './webrtc-client.js';

export const CALL_WEBHOOK_SECRET = `whsec_${Buffer.from('the operator secret, 32 bytes!!').toString('base64')}`;
/** What a relay logs when recovery hangs up a call left running. */
export const HUNG_UP = 'hung up the call of a recovered session at its upstream';

/** A relay process in front of `sim`, its upstream named "openai". */
export function spawnRelayFor(sim: Simulator, dataDir: string, port: number, env: Record<string, string> = {}): Promise<RelayProcess> {
  return spawnRelay({
    dataDir,
    env: { PORT: String(port), OPENAI_API_KEY: 'sk-relay', OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`, RELAY_DEMO_BALANCE_USD: '0', OPENAI_WEBHOOK_SECRET: CALL_WEBHOOK_SECRET, ...env },
  });
}

/** A key with $10 on the SQLite ledger at `ledgerFile`, with calls to `routedNumber` routed to it if given. */
export async function keyOnLedger(ledgerFile: string, name: string, routedNumber?: string) {
  const ledger = await openLedger({ sqlitePath: ledgerFile });
  try {
    const created = await ledger.createKey({ name, balanceNano: 10_000_000_000n });
    if (routedNumber) await ledger.addRoute({ match: { kind: 'number', number: routedNumber }, key: created.record.id, session: { model: 'gpt-realtime' } });
    return created;
  } finally {
    await ledger.close();
  }
}

/** A WebRTC call through the relay with one charged response; returns the call and what it cost. */
export async function chargedWebRtcCall(relay: RelayProcess, key: string, turn: RealtimeUsage): Promise<{ call: WebRtcCall; cost: bigint }> {
  const call = await openWebRtcCall(`${relay.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
  call.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(turn) } } });
  const done = await call.waitFor('response.done');
  return { call, cost: realtimeInvoice('gpt-realtime', (done.response as { usage: RealtimeUsage }).usage) };
}

/** What the crash left: one session, its one charge, still open. */
export async function expectOpenWithOneCharge(view: LedgerView, keyId: string, cost: bigint): Promise<string> {
  await expect.poll(async () => (await view.book(keyId)).charges.map((c) => c.costNano)).toEqual([cost]);
  const book = await view.book(keyId);
  expect(book.sessions).toEqual([expect.objectContaining({ status: 'open' })]);
  return book.sessions[0]!.id;
}

/** Settled once, as recovered, with exactly the charge written before the crash. */
export async function expectRecoveredOnce(view: LedgerView, keyId: string, balanceNano: bigint, cost: bigint, endReason: string): Promise<void> {
  await expect.poll(async () => (await view.book(keyId)).settlements.length).toBe(1);
  const book = await view.book(keyId);
  expect(book.charges.map((c) => c.costNano)).toEqual([cost]);
  expect(book.settlements).toEqual([expect.objectContaining({ status: 'recovered', endReason, totalNano: cost, chargeCount: 1 })]);
  expect(book.balanceNano).toBe(balanceNano - cost);
}
