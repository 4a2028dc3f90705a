import { afterEach, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import type { CallLink } from '../../src/server/call-link.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { CallRefused, openWebRtcCall, type WebRtcCall } from '../helpers/webrtc-client.js';
import { CALL_FAULT_MATRIX, type CallFaultRow } from './fault-matrix.js';

/**
 * The call rows of the fault matrix, with a real WebRTC caller (werift)
 * through the relay to the simulator: what the caller sees, the one
 * settlement, what was charged, and that the call is gone upstream.
 */

let stack: LedgerTestRelay | undefined;
let call: WebRtcCall | undefined;
afterEach(async () => {
  await call?.close();
  call = undefined;
  await stack?.close();
  stack = undefined;
});

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
    const u = usage({ text: [30, 0], audio: [200, 0], out: [12, 40] });
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
        const upstreamCallId = s.sim.handshakes.filter((h) => h.query.call_id !== undefined).at(-1)!.query.call_id!;
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
  const book = await s.view.book(record.id);
  const charged = book.charges.reduce((total, charge) => total + charge.costNano, 0n);
  expect(book.charges).toHaveLength(row.charged ? 1 : 0);
  expect(book.settlements).toEqual([expect.objectContaining({ endReason: row.endReason, totalNano: charged, chargeCount: row.charged ? 1 : 0 })]);
  if (row.charged) expect(charged).toBe(realtimeInvoice('gpt-realtime', usage({ text: [30, 0], audio: [200, 0], out: [12, 40] })));
  expect(book.balanceNano).toBe(record.balanceNano - charged);
}

describe('the fault matrix of WebRTC calls', () => {
  for (const row of CALL_FAULT_MATRIX) {
    it(`${row.fault} (${row.side}) ${row.when}: ${row.refused ? `${row.refused.status} ${row.refused.code}` : 'the call ends'}, ${row.endReason}`, async () => {
      await runCallFault(row);
    });
  }
});
