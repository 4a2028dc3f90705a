import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { simulatedUsage, startSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { eventually } from '../helpers/wait.js';
import { RTCPeerConnection } from 'werift';
import { CallRefused, openWebRtcCall, postOffer } from '../helpers/webrtc-client.js';
import type { WebRtcCall } from '../helpers/webrtc-client.js';

/*
 * The simulator's WebRTC interface, driven by a real werift peer in Node: the
 * call endpoint, the `oai-events` data channel, audio on the track, the
 * sideband WebSocket and the ways a call ends.
 */

type Json = Record<string, any>;
const KEY = 'sk-sim-webrtc';

let sim: Simulator | undefined;
const calls: WebRtcCall[] = [];
const sidebands: TestClient[] = [];
afterEach(async () => {
  for (const side of sidebands.splice(0)) side.close();
  for (const call of calls.splice(0)) await call.close();
  await sim?.close();
  sim = undefined;
});

async function simulator(): Promise<Simulator> {
  sim = await startSimulator({ apiKey: KEY });
  return sim;
}

function callsUrl(s: Simulator, query = ''): string {
  return `${s.url.replace(/^ws/, 'http')}/v1/realtime/calls${query}`;
}

async function call(s: Simulator, opts: Parameters<typeof openWebRtcCall>[1] = {}, query = '?model=gpt-realtime'): Promise<WebRtcCall> {
  const opened = await openWebRtcCall(callsUrl(s, query), { key: KEY, ...opts });
  calls.push(opened);
  return opened;
}

function sideband(s: Simulator, callId: string, key = KEY): TestClient {
  const client = TestClient.connect(`${s.url}/v1/realtime?call_id=${callId}`, { key });
  sidebands.push(client);
  return client;
}

function hangup(s: Simulator, callId: string, key = KEY): Promise<Response> {
  return fetch(`${callsUrl(s)}/${callId}/hangup`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
}

describe('a WebRTC call to the simulator', () => {
  it('answers an SDP offer with 201, an SDP answer and the call id in Location', async () => {
    const s = await simulator();
    const c = await call(s);
    expect(c.location).toMatch(/^\/v1\/realtime\/calls\/rtc_[0-9a-f]+$/);
    expect(c.callId).toBe(c.location.split('/').at(-1));
    const created = (await c.waitFor('session.created')) as Json;
    expect(created.session.model).toBe('gpt-realtime');
    expect(s.activeCalls).toBe(1);
  });

  it('runs a response asked for on the data channel: response.done with the scripted usage, and Opus audio on the track meanwhile', async () => {
    const s = await simulator();
    const c = await call(s);
    await c.waitFor('session.created');
    expect(c.audioPackets).toBe(0);
    c.send({ type: 'response.create' });
    const done = (await c.waitFor('response.done')) as Json;
    expect(done.response.status).toBe('completed');
    expect(done.response.usage).toEqual(simulatedUsage({ priorResponses: 0, inputAudioBytes: 0, textDeltas: 5, audioDeltas: 5 }));
    expect(c.audioPackets).toBeGreaterThan(0);
    // Silence stops with the response.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = c.audioPackets;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(c.audioPackets).toBe(after);
  });

  it('takes a multipart offer with a session config', async () => {
    const s = await simulator();
    const c = await call(s, { shape: 'multipart', session: { type: 'realtime', model: 'gpt-realtime-mini', instructions: 'Speak like a pirate.' } }, '');
    const created = (await c.waitFor('session.created')) as Json;
    expect(created.session.model).toBe('gpt-realtime-mini');
    expect(created.session.instructions).toBe('Speak like a pirate.');
    c.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    expect(((await c.waitFor('response.done')) as Json).response.status).toBe('completed');
  });

  it('answers transcription and simulator control events over the data channel as over a WebSocket', async () => {
    const s = await simulator();
    const c = await call(s);
    c.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model: 'gpt-4o-transcribe' } } } } });
    await c.waitFor('session.updated');
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    c.send({ type: 'simulator.end_of_speech' });
    const transcribed = (await c.waitFor('conversation.item.input_audio_transcription.completed')) as Json;
    expect(transcribed.usage).toBeDefined();
    await c.waitFor('response.done');
    c.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    const from = c.events.length;
    c.send({ type: 'response.create' });
    await c.waitFor('response.created', { from });
    c.send({ type: 'response.cancel' });
    expect(((await c.waitFor('response.done', { from })) as Json).response.status).toBe('cancelled');
  });
});

describe('the sideband socket of a call', () => {
  it('sees session.created first, then every server event of the call, the same response.done included', async () => {
    const s = await simulator();
    const c = await call(s);
    await c.waitFor('session.created');
    const side = sideband(s, c.callId);
    const greeting = await side.next('session.created');
    expect(side.events[0]).toBe(greeting);
    expect((greeting as Json).session.model).toBe('gpt-realtime');
    c.send({ type: 'response.create' });
    const onChannel = (await c.waitFor('response.done')) as Json;
    const onSideband = (await side.next('response.done')) as Json;
    expect(onSideband).toEqual(onChannel);
    expect(onSideband.response.usage.total_tokens).toBeGreaterThan(0);
  });

  it('acts on the call: a response.create sent on the sideband runs on the call and plays on its track', async () => {
    const s = await simulator();
    const c = await call(s);
    await c.waitFor('session.created');
    const side = sideband(s, c.callId);
    await side.next('session.created');
    side.send({ type: 'session.update', session: { type: 'realtime', instructions: 'From the server.' } });
    expect(((await c.waitFor('session.updated')) as Json).session.instructions).toBe('From the server.');
    side.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
    await c.waitFor('conversation.item.added');
    side.send({ type: 'response.create' });
    const done = (await c.waitFor('response.done')) as Json;
    expect((await side.next('response.done')).response).toEqual(done.response);
    expect(c.audioPackets).toBeGreaterThan(0);
  });

  it('is refused at the upgrade for an unknown call (404) or without a valid key (401)', async () => {
    const s = await simulator();
    const unknown = sideband(s, 'rtc_unknown');
    await unknown.closedWith();
    expect(unknown.unexpected?.status).toBe(404);
    expect(JSON.parse(unknown.unexpected!.body).error.code).toBe('call_not_found');
    const c = await call(s);
    const wrongKey = sideband(s, c.callId, 'sk-wrong');
    await wrongKey.closedWith();
    expect(wrongKey.unexpected?.status).toBe(401);
  });
});

describe('the end of a call', () => {
  it('hangup closes the peer connection and every sideband socket with 1000; the call is then gone', async () => {
    const s = await simulator();
    const c = await call(s);
    const side = sideband(s, c.callId);
    await side.next('session.created');
    const res = await hangup(s, c.callId);
    expect(res.status).toBe(200);
    expect((await side.closedWith()).code).toBe(1000);
    await c.waitForClose();
    expect(s.activeCalls).toBe(0);
    expect((await hangup(s, c.callId)).status).toBe(404);
  });

  it('the peer closing ends the call and closes the sideband with 1000', async () => {
    const s = await simulator();
    const c = await call(s);
    const side = sideband(s, c.callId);
    await side.next('session.created');
    c.send({ type: 'response.create' });
    await c.waitFor('response.created');
    await c.close();
    expect((await side.closedWith()).code).toBe(1000);
    await eventually('the call to end', () => s.activeCalls === 0);
  });

  it('ends a call whose peer left without a word within seconds, and keeps an idle live call up', async () => {
    const s = await simulator();
    const live = await call(s);
    const leaving = await openWebRtcCall(callsUrl(s, '?model=gpt-realtime'), { key: KEY });
    const side = sideband(s, leaving.callId);
    await side.next('session.created');
    const left = Date.now();
    // werift's close() tells the far end nothing: no channel reset, no hangup.
    await leaving.pc.close();
    expect((await side.closedWith(15_000)).code).toBe(1000);
    // werift alone would have waited for its 30 s consent expiry.
    expect(Date.now() - left).toBeLessThan(12_000);
    // The other call said nothing for as long, but its peer is there: it goes on.
    expect(s.activeCalls).toBe(1);
    expect(live.channelState).toBe('open');
  }, 25_000);

  it('a call whose client leaves between offer and connection ends once the connect deadline passes', async () => {
    sim = await startSimulator({ apiKey: KEY, callConnectTimeoutMs: 500 });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv6: false });
    pc.addTransceiver('audio', { direction: 'sendrecv' });
    pc.createDataChannel('oai-events');
    await pc.setLocalDescription(await pc.createOffer());
    await eventually('ICE gathering', () => pc.iceGatheringState === 'complete');
    const res = await postOffer(callsUrl(sim), pc.localDescription!.sdp, { key: KEY });
    await pc.close();
    expect(res.status).toBe(201);
    const callId = res.headers.get('location')!.split('/').at(-1)!;
    const side = sideband(sim, callId);
    await side.next('session.created');
    expect(sim.activeCalls).toBe(1);
    expect((await side.closedWith(3_000)).code).toBe(1000);
    expect(sim.activeCalls).toBe(0);
  });

  it('hangup needs the key and a known call, answered in the error envelope', async () => {
    const s = await simulator();
    const c = await call(s);
    const denied = await hangup(s, c.callId, 'sk-wrong');
    expect(denied.status).toBe(401);
    expect(((await denied.json()) as Json).error.code).toBe('invalid_api_key');
    const unknown = await hangup(s, 'rtc_unknown');
    expect(unknown.status).toBe(404);
    expect((await unknown.json()) as Json).toEqual({ error: { message: "Call 'rtc_unknown' not found.", type: 'invalid_request_error', param: 'call_id', code: 'call_not_found' } });
    expect(s.activeCalls).toBe(1);
  });
});

describe('a refused offer', () => {
  const A_OFFER_LIKE = 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n';

  it.each([
    ['without a key', undefined, 'application/sdp', A_OFFER_LIKE, 401, null],
    ['with a wrong key', 'sk-wrong', 'application/sdp', A_OFFER_LIKE, 401, 'invalid_api_key'],
    ['that is not SDP', KEY, 'application/sdp', 'hello', 400, 'invalid_offer'],
    ['that cannot be negotiated', KEY, 'application/sdp', A_OFFER_LIKE, 400, 'invalid_offer'],
    ['sent as JSON', KEY, 'application/json', '{"sdp":"v=0"}', 400, 'unsupported_content_type'],
  ])('%s gets a 4xx in the error envelope and leaves no call open', async (_what, key, contentType, body, status, code) => {
    const s = await simulator();
    const headers: Record<string, string> = { 'Content-Type': contentType };
    if (key !== undefined) headers.Authorization = `Bearer ${key}`;
    const res = await fetch(callsUrl(s), { method: 'POST', headers, body });
    expect(res.status).toBe(status);
    const error = ((await res.json()) as Json).error;
    expect(error.type).toBe('invalid_request_error');
    expect(error.code).toBe(code);
    expect(s.activeCalls).toBe(0);
  });

  it('a multipart form without sdp, or with a session that is not JSON, is refused', async () => {
    const s = await simulator();
    const noSdp = new FormData();
    noSdp.set('session', '{"type":"realtime"}');
    const res = await fetch(callsUrl(s), { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: noSdp });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Json).error.param).toBe('sdp');
    const form = new FormData();
    form.set('sdp', A_OFFER_LIKE);
    form.set('session', 'not json');
    const badSession = await fetch(callsUrl(s), { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: form });
    expect(badSession.status).toBe(400);
    expect(((await badSession.json()) as Json).error.param).toBe('session');
    expect(s.activeCalls).toBe(0);
  });

  it('openWebRtcCall reports the refusal', async () => {
    const s = await simulator();
    const refused = await openWebRtcCall(callsUrl(s), { key: 'sk-wrong' }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(CallRefused);
    expect((refused as CallRefused).status).toBe(401);
  });
});

describe('the call endpoint for pages on another origin', () => {
  it('answers the preflight the Agents SDK sends and exposes Location', async () => {
    const s = await simulator();
    const preflight = await fetch(callsUrl(s), {
      method: 'OPTIONS',
      headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type,x-openai-agents-sdk' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase().split(/,\s*/)).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-openai-agents-sdk']));
    const refused = await fetch(callsUrl(s), { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
    expect(refused.headers.get('access-control-expose-headers')).toBe('Location');
  });
});

describe('the simulator after its calls', () => {
  const SCRIPT = `
    import { startSimulator } from './src/simulator/index.js';
    import { openWebRtcCall } from './test/helpers/webrtc-client.js';
    const sim = await startSimulator();
    const url = sim.url.replace(/^ws/, 'http') + '/v1/realtime/calls?model=gpt-realtime';
    const first = await openWebRtcCall(url, { key: 'k' });
    first.send({ type: 'response.create' });
    await first.waitFor('response.done');
    await first.close();
    const second = await openWebRtcCall(url, { key: 'k' });
    second.send({ type: 'response.create' });
    await second.waitFor('response.created');
    await sim.close();
    await second.close();
    console.log(JSON.stringify({ activeCalls: sim.activeCalls, at: Date.now() }));
  `;

  it('leaves nothing that keeps the process alive once calls and the simulator are closed', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const exitedAt = Date.now();
    expect(exitCode).toBe(0);
    const report = JSON.parse(output) as { activeCalls: number; at: number };
    expect(report.activeCalls).toBe(0);
    // Exits on its own, promptly: no timer, socket or mDNS lookup outlives the calls.
    expect(exitedAt - report.at).toBeLessThan(3_000);
  }, 30_000);
});
