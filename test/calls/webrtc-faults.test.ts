import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { CallLink } from '../../src/server/call-link.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { CallRefused, openWebRtcCall } from '../helpers/webrtc-client.js';

/**
 * A call the relay cannot meter is not left running: whatever happens to the
 * sideband, the call is hung up at the upstream and the session settled once.
 */
describe('WebRTC calls whose sideband fails', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refuses the call, hangs it up upstream and bills nothing when the sideband is refused', async () => {
    const { key, record } = await stack.createKey();
    // The call's offer is answered; the next upgrade, the relay's sideband, is refused.
    stack.sim.queueHandshakeFault({ kind: 'refuse', status: 503 });
    const refused = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CallRefused);
    expect((refused as CallRefused).status).toBe(502);
    expect(JSON.parse((refused as CallRefused).body)).toMatchObject({ error: { code: 'upstream_unavailable', type: 'server_error' } });
    await stack.idle();
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
    const book = await stack.view.book(record.id);
    expect(book.charges).toEqual([]);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 0n, endReason: 'dial_failed:upstream_unavailable' })]);
    expect(book.balanceNano).toBe(record.balanceNano);
  });

  it('hangs the call up and settles what was charged when the sideband drops mid-call', async () => {
    const { key, record } = await stack.createKey();
    const call = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
    try {
      const u = usage({ text: [30, 0], out: [12, 0] });
      call.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
      const done = await call.waitFor('response.done');
      const response = done.response as { id: string; usage: RealtimeUsage };
      await expect.poll(async () => (await stack.view.book(record.id)).charges.length).toBe(1);
      // The relay's sideband connection is lost, as a network drop would lose it.
      const [live] = stack.relay.registry.list();
      (live!.link as CallLink).upstream.socket!.terminate();
      // The call ends at the upstream: the relay hung it up.
      await expect.poll(() => stack.sim.activeCalls).toBe(0);
      await stack.idle();
      const cost = realtimeInvoice('gpt-realtime', response.usage);
      const book = await stack.view.book(record.id);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: cost, chargeCount: 1, endReason: 'upstream_closed' })]);
      expect(book.balanceNano).toBe(record.balanceNano - cost);
    } finally {
      await call.close();
    }
  });
});

describe('WebRTC calls the relay ends itself', () => {
  it('hangs up a call whose sideband has been silent for the idle timeout', async () => {
    const stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, settings: { idleTimeoutMs: 600 } });
    try {
      const { key, record } = await stack.createKey();
      const call = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
      try {
        await expect.poll(() => stack.sim.activeCalls, { timeout: 5_000 }).toBe(0);
        await stack.idle();
        const book = await stack.view.book(record.id);
        expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 0n, endReason: 'cancelled:idle_timeout' })]);
      } finally {
        await call.close();
      }
    } finally {
      await stack.close();
    }
  });

  it('lets the response in flight finish, bills it and hangs up when the relay shuts down', async () => {
    const stack = await startTestRelay({ simulator: { chunkIntervalMs: 20, audioChunks: 10 } });
    try {
      const { key, record } = await stack.createKey();
      const call = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
      try {
        call.send({ type: 'response.create', response: { output_modalities: ['audio'] } });
        await call.waitFor('response.created');
        const stopped = stack.running.stop();
        const done = await call.waitFor('response.done');
        const response = done.response as { id: string; status: string; usage: RealtimeUsage };
        expect(response.status).toBe('completed');
        expect(await stopped).toEqual({ drained: true });
        expect(stack.sim.activeCalls).toBe(0);
        const cost = realtimeInvoice('gpt-realtime', response.usage);
        const book = await stack.view.book(record.id);
        expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[response.id, cost]]);
        expect(book.settlements).toEqual([expect.objectContaining({ totalNano: cost, endReason: 'cancelled:shutdown' })]);
      } finally {
        await call.close();
      }
    } finally {
      await stack.close();
    }
  });
});
