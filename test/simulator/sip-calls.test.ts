import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { simulatedUsage, startSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { eventually } from '../helpers/wait.js';
import { openWebRtcCall } from '../helpers/webrtc-client.js';

/*
 * Phone calls on the simulator, seen as an app server sees them at OpenAI: a
 * signed `realtime.call.incoming` webhook, then the `openai` SDK's
 * accept / reject / refer / hangup, and the call's session over the sideband.
 */

type Json = Record<string, any>;
const KEY = 'sk-sim-sip';
const SECRET = `whsec_${Buffer.from('a webhook secret of 32 bytes....').toString('base64')}`;

interface Delivery {
  body: string;
  headers: IncomingHttpHeaders;
}

let sim: Simulator | undefined;
let receiver: Server | undefined;
const sidebands: TestClient[] = [];
afterEach(async () => {
  for (const side of sidebands.splice(0)) side.close();
  await sim?.close();
  if (receiver !== undefined) await new Promise((resolve) => receiver!.close(resolve));
  sim = undefined;
  receiver = undefined;
});

/** A webhook receiver that records every delivery and answers `status`. */
async function startReceiver(status = 200): Promise<{ url: string; deliveries: Delivery[] }> {
  const deliveries: Delivery[] = [];
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      deliveries.push({ body, headers: req.headers });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
  const address = receiver.address();
  if (address === null || typeof address === 'string') throw new Error('receiver has no port');
  return { url: `http://127.0.0.1:${address.port}/hooks/openai`, deliveries };
}

async function simulatorWithWebhook(url: string): Promise<{ s: Simulator; openai: OpenAI }> {
  sim = await startSimulator({ apiKey: KEY, callWebhook: { url, secret: SECRET } });
  const openai = new OpenAI({ apiKey: KEY, baseURL: `${sim.url.replace(/^ws/, 'http')}/v1`, webhookSecret: SECRET, maxRetries: 0 });
  return { s: sim, openai };
}

function sideband(s: Simulator, callId: string): TestClient {
  const client = TestClient.connect(`${s.url}/v1/realtime?call_id=${callId}`, { key: KEY });
  sidebands.push(client);
  return client;
}

async function refusal(promise: Promise<unknown>): Promise<{ status: number; error: Json }> {
  const err = await promise.then(
    () => {
      throw new Error('expected the request to be refused');
    },
    (e: unknown) => e,
  );
  if (!(err instanceof OpenAI.APIError)) throw err;
  return { status: err.status ?? 0, error: err.error as Json };
}

describe('an incoming phone call', () => {
  it('is announced by a signed realtime.call.incoming webhook the openai SDK verifies', async () => {
    const { url, deliveries } = await startReceiver();
    const { s, openai } = await simulatorWithWebhook(url);
    const placed = await s.placeSipCall({ from: '"Ada" <sip:+15550123@carrier.example>' });
    expect(placed.callId).toMatch(/^rtc_[0-9a-f]+$/);
    expect(placed.webhook).toEqual({ status: 200 });
    expect(deliveries).toHaveLength(1);
    const delivery = deliveries[0]!;
    expect(delivery.headers['webhook-signature']).toMatch(/^v1,/);
    const event = (await openai.webhooks.unwrap(delivery.body, delivery.headers as Record<string, string>)) as Json;
    expect(event).toMatchObject({ object: 'event', type: 'realtime.call.incoming', data: { call_id: placed.callId } });
    expect(event.id).toMatch(/^evt_/);
    expect(event.data.sip_headers).toEqual(expect.arrayContaining([{ name: 'From', value: '"Ada" <sip:+15550123@carrier.example>' }, expect.objectContaining({ name: 'To' })]));
    // A forged signature is refused by the same check.
    await expect(openai.webhooks.unwrap(delivery.body.replace('Ada', 'Eve'), delivery.headers as Record<string, string>)).rejects.toThrow();
    expect(s.activeCalls).toBe(1);
  });

  it('rings until accepted: the sideband is refused before, and after accept it drives the call without media', async () => {
    const { url } = await startReceiver();
    const { s, openai } = await simulatorWithWebhook(url);
    const { callId } = await s.placeSipCall();
    const early = sideband(s, callId);
    await early.closedWith();
    expect(early.unexpected?.status).toBe(400);
    expect(JSON.parse(early.unexpected!.body).error.code).toBe('call_not_accepted');

    await openai.realtime.calls.accept(callId, { type: 'realtime', model: 'gpt-realtime', instructions: 'Answer the phone politely.' });
    const side = sideband(s, callId);
    const created = (await side.next('session.created')) as Json;
    expect(created.session).toMatchObject({ model: 'gpt-realtime', instructions: 'Answer the phone politely.' });
    side.send({ type: 'response.create' });
    const done = (await side.next('response.done')) as Json;
    expect(done.response.usage).toEqual(simulatedUsage({ priorResponses: 0, inputAudioBytes: 0, textDeltas: 5, audioDeltas: 5 }));

    await openai.realtime.calls.hangup(callId);
    expect((await side.closedWith()).code).toBe(1000);
    expect(s.callEnding(callId)).toEqual({ by: 'hangup' });
    expect(s.activeCalls).toBe(0);
  });

  it('is rejected with the SIP status asked for, and is then gone', async () => {
    const { url } = await startReceiver();
    const { s, openai } = await simulatorWithWebhook(url);
    const { callId } = await s.placeSipCall();
    await openai.realtime.calls.reject(callId, { status_code: 486 });
    expect(s.callEnding(callId)).toEqual({ by: 'reject', statusCode: 486 });
    const late = await refusal(openai.realtime.calls.accept(callId, { type: 'realtime' }));
    expect(late.status).toBe(404);
    expect(late.error.code).toBe('call_not_found');
    const plain = await s.placeSipCall();
    await openai.realtime.calls.reject(plain.callId);
    expect(s.callEnding(plain.callId)).toEqual({ by: 'reject', statusCode: 603 });
  });

  it('is referred elsewhere once accepted, which ends it here and closes the sideband', async () => {
    const { url } = await startReceiver();
    const { s, openai } = await simulatorWithWebhook(url);
    const { callId } = await s.placeSipCall();
    await openai.realtime.calls.accept(callId, { type: 'realtime' });
    const side = sideband(s, callId);
    await side.next('session.created');
    const bad = await refusal(openai.realtime.calls.refer(callId, { target_uri: 'not a uri' }));
    expect(bad).toMatchObject({ status: 400, error: { param: 'target_uri' } });
    await openai.realtime.calls.refer(callId, { target_uri: 'tel:+15550142' });
    expect((await side.closedWith()).code).toBe(1000);
    expect(s.callEnding(callId)).toEqual({ by: 'refer', targetUri: 'tel:+15550142' });
  });

  it('refuses what does not fit the call: a second accept, an accept without type, accept or refer on a WebRTC call', async () => {
    const { url } = await startReceiver();
    const { s, openai } = await simulatorWithWebhook(url);
    const { callId } = await s.placeSipCall();
    const untyped = await refusal(openai.realtime.calls.accept(callId, { model: 'gpt-realtime' } as never));
    expect(untyped).toMatchObject({ status: 400, error: { param: 'type' } });
    const unknownField = await refusal(openai.realtime.calls.accept(callId, { type: 'realtime', modalities: ['text'] } as never));
    expect(unknownField).toMatchObject({ status: 400, error: { code: 'unknown_parameter' } });
    await openai.realtime.calls.accept(callId, { type: 'realtime' });
    expect((await refusal(openai.realtime.calls.accept(callId, { type: 'realtime' }))).error.code).toBe('call_not_ringing');
    expect((await refusal(openai.realtime.calls.reject(callId))).error.code).toBe('call_not_ringing');

    const web = await openWebRtcCall(`${s.url.replace(/^ws/, 'http')}/v1/realtime/calls?model=gpt-realtime`, { key: KEY });
    try {
      expect((await refusal(openai.realtime.calls.accept(web.callId, { type: 'realtime' }))).error.code).toBe('call_not_ringing');
      expect((await refusal(openai.realtime.calls.refer(web.callId, { target_uri: 'tel:+15550142' }))).error.code).toBe('call_not_sip');
    } finally {
      await web.close();
    }
    await eventually('the WebRTC call to end', () => s.activeCalls === 1);
  });

  it('still rings when the webhook receiver fails, and says how the delivery went', async () => {
    const down = await startReceiver(503);
    const { s } = await simulatorWithWebhook(down.url);
    const placed = await s.placeSipCall();
    expect(placed.webhook).toEqual({ status: 503 });
    const gone = await startSimulator({ callWebhook: { url: 'http://127.0.0.1:9/nowhere', secret: SECRET } });
    try {
      const unreachable = await gone.placeSipCall();
      expect(unreachable.webhook).toHaveProperty('error');
      expect(gone.activeCalls).toBe(1);
    } finally {
      await gone.close();
    }
    expect(s.activeCalls).toBe(1);
  });

  it('refuses a webhook secret that cannot sign', async () => {
    await expect(startSimulator({ callWebhook: { url: 'http://127.0.0.1:9/', secret: 'not base64 !' } })).rejects.toThrow(/whsec_/);
  });
});
