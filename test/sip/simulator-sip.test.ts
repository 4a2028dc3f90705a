import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { usage } from '../billing/invoice.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';

const SECRET = `whsec_${Buffer.from('the operator secret, 32 bytes!!').toString('base64')}`;
const TURN = usage({ text: [10, 0], audio: [50, 0], out: [5, 20] });

describe('the simulator places phone calls', () => {
  let sim: Simulator;
  let receiver: Server;
  const received: Array<{ headers: Record<string, string>; body: string }> = [];
  const http = () => sim.url.replace(/^ws/, 'http');
  const control = (callId: string, action: string, body: unknown, key: string | null = 'sk-sim') =>
    fetch(`${http()}/v1/realtime/calls/${callId}/${action}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ headers: req.headers as Record<string, string>, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    sim = await startSimulator({ apiKey: 'sk-sim', chunkIntervalMs: 0, callWebhook: { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, secret: SECRET } });
  });
  afterAll(async () => {
    await sim?.close();
    await new Promise((resolve) => receiver.close(resolve));
  });

  it('announces a call with a webhook OpenAI would sign, then serves accept and runs its turns for a sideband', async () => {
    const placed = await sim.placeSipCall({ to: '+15550123456', sipHeaders: [{ name: 'X-Tenant', value: 'acme' }], turns: [{ usage: TURN }], hangUpAfterTurns: true });
    expect(placed).toMatchObject({ callId: expect.stringMatching(/^rtc_/), webhookId: expect.stringMatching(/^wh_/), webhook: { status: 204 } });
    const delivery = received.at(-1)!;
    const event = new Webhook(SECRET).verify(delivery.body, delivery.headers) as { type: string; data: { call_id: string; sip_headers: Array<{ name: string; value: string }> } };
    expect(event.type).toBe('realtime.call.incoming');
    expect(event.data.call_id).toBe(placed.callId);
    expect(event.data.sip_headers).toContainEqual({ name: 'To', value: '<sip:+15550123456@sip.api.openai.com>' });
    expect(event.data.sip_headers).toContainEqual({ name: 'X-Tenant', value: 'acme' });
    expect(() => new Webhook(`whsec_${Buffer.from('x'.repeat(32)).toString('base64')}`).verify(delivery.body, delivery.headers)).toThrow();

    expect((await control(placed.callId, 'accept', { type: 'realtime', model: 'gpt-realtime' }, null)).status).toBe(401);
    expect((await control('rtc_nothing', 'accept', { type: 'realtime', model: 'gpt-realtime' })).status).toBe(404);
    expect(sim.sipCall(placed.callId)!.state).toBe('ringing');
    expect((await control(placed.callId, 'accept', { type: 'realtime', model: 'gpt-realtime', instructions: 'hi' })).status).toBe(200);
    expect((await control(placed.callId, 'accept', { type: 'realtime', model: 'gpt-realtime' })).status).toBe(400);

    const sideband = new WebSocket(`${sim.url}/v1/realtime?call_id=${placed.callId}`, { headers: { Authorization: 'Bearer sk-sim' } });
    const events: Array<{ type: string; response?: { usage: unknown } }> = [];
    sideband.on('message', (data) => events.push(JSON.parse(String(data))));
    const closed = new Promise<number>((resolve) => sideband.once('close', resolve));
    expect(await closed).toBe(1000);
    expect(events[0]!.type).toBe('session.created');
    expect(events.filter((e) => e.type === 'response.done').map((e) => e.response!.usage)).toEqual([TURN]);
    expect(sim.sipCall(placed.callId)).toMatchObject({ state: 'ended', turnsDone: 1, session: { instructions: 'hi' } });
  });

  it('serves reject and refer for a ringing call, and answers bad ones in OpenAI\'s envelope', async () => {
    const first = await sim.placeSipCall({});
    const second = await sim.placeSipCall({});
    const bad = await control(first.callId, 'reject', { status_code: 200 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: expect.objectContaining({ type: 'invalid_request_error', code: 'invalid_value' }) });
    expect((await control(first.callId, 'reject', { status_code: 486 })).status).toBe(200);
    expect((await control(second.callId, 'refer', {})).status).toBe(400);
    expect((await control(second.callId, 'refer', { target_uri: 'sip:desk@example.com' })).status).toBe(200);
    expect(sim.sipCall(first.callId)).toMatchObject({ state: 'rejected', rejectStatus: 486 });
    expect(sim.sipCall(second.callId)).toMatchObject({ state: 'referred', referTarget: 'sip:desk@example.com' });
    const redelivered = await sim.redeliverCall(first.callId);
    expect(redelivered.webhookId).toBe(first.webhookId);
    expect(received.at(-1)!.headers['webhook-id']).toBe(first.webhookId);
  });
});
