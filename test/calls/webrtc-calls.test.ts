import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { readSqlite, sqliteLedgerFile } from '../helpers/ledger.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { openWebRtcCall, postOffer, type WebRtcCall } from '../helpers/webrtc-client.js';
import { RTCPeerConnection } from 'werift';
import WebSocket from 'ws';

/** Asks over the data channel for one text response whose `response.done` reports exactly `u`. */
async function respond(call: WebRtcCall, u: unknown): Promise<{ id: string; usage: RealtimeUsage }> {
  const from = call.events.length;
  call.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(u) } } });
  const done = await call.waitFor('response.done', { from });
  const response = done.response as { id: string; usage: RealtimeUsage };
  expect(response.usage).toEqual(u);
  return response;
}

/** A real offer (one audio section and the data channel), as a browser makes it. */
async function realOffer(): Promise<string> {
  const pc = new RTCPeerConnection({ iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv6: false });
  pc.addTransceiver('audio', { direction: 'sendrecv' });
  pc.createDataChannel('oai-events');
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

function hangUp(stack: LedgerTestRelay, location: string, key: string): Promise<Response> {
  return fetch(`${stack.httpUrl}${location}/hangup`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
}

function transportOf(stack: LedgerTestRelay, sessionId: string): string {
  return readSqlite(sqliteLedgerFile(stack.dataDir), (db) => (db.prepare('SELECT transport FROM sessions WHERE id = ?').get(sessionId) as { transport: string }).transport);
}

/** The upstream's own id of the call: it reaches the simulator only in the relay's sideband request. */
function upstreamCallIdOf(stack: LedgerTestRelay): string {
  return stack.sim.handshakes.filter((h) => h.query.call_id !== undefined).at(-1)!.query.call_id!;
}

describe('WebRTC calls through the relay', () => {
  let stack: LedgerTestRelay;
  const calls: Array<{ call: WebRtcCall; key: string }> = [];
  const callsUrl = (query = 'model=gpt-realtime') => `${stack.httpUrl}/v1/realtime/calls?${query}`;
  async function open(key: string, options: Parameters<typeof openWebRtcCall>[1] = {}, query?: string): Promise<WebRtcCall> {
    const call = await openWebRtcCall(callsUrl(query), { key, ...options });
    calls.push({ call, key });
    return call;
  }

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 } });
  });
  afterEach(async () => {
    // A peer that just leaves ends its call only when the upstream notices: each call is hung up instead.
    for (const { call, key } of calls.splice(0)) {
      await hangUp(stack, call.location, key);
      await call.close();
    }
    await stack.idle();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('bills a response asked for on the data channel to the nano-USD, and the relay hangup ends and settles the call', async () => {
    const { key, record } = await stack.createKey();
    const call = await open(key);
    expect(call.location).toMatch(/^\/v1\/realtime\/calls\/rtc_[0-9a-f]{32}$/);
    // The upstream's call id is never shown: the relay's own is.
    expect(call.callId).not.toBe(upstreamCallIdOf(stack));
    const u = usage({ text: [120, 20], audio: [300, 100], out: [40, 200] });
    const response = await respond(call, u);
    const expected = realtimeInvoice('gpt-realtime', u);
    await expect.poll(async () => (await stack.view.book(record.id)).charges.map((c) => [c.itemId, c.costNano])).toEqual([[response.id, expected]]);

    expect((await hangUp(stack, call.location, key)).status).toBe(200);
    // The relay hung the call up at the upstream.
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: expected, chargeCount: 1, endReason: 'client_closed' })]);
    expect(book.balanceNano).toBe(record.balanceNano - expected);
    expect(transportOf(stack, book.sessions[0]!.id)).toBe('webrtc');
    const end = stack.logs.find((line) => line.event === 'session.end' && line.sessionId === book.sessions[0]!.id);
    expect(end).toMatchObject({ transport: 'webrtc', endReason: 'client_closed' });
  });

  it('takes the multipart shape with a session config, whose model is the one billed', async () => {
    const { key, record } = await stack.createKey();
    const call = await open(key, { shape: 'multipart', session: { type: 'realtime', model: 'gpt-realtime-mini', instructions: 'Be brief.' } }, '');
    const u = usage({ text: [50, 0], out: [30, 0] });
    const response = await respond(call, u);
    await expect.poll(async () => (await stack.view.book(record.id)).charges.map((c) => [c.itemId, c.model, c.costNano])).toEqual([
      [response.id, 'gpt-realtime-mini', realtimeInvoice('gpt-realtime-mini', u)],
    ]);
  });

  it('ends and settles the call once when the upstream hangs it up', async () => {
    const { key, record } = await stack.createKey();
    const call = await open(key);
    const u = usage({ text: [10, 0], out: [5, 0] });
    await respond(call, u);
    const simHangup = await fetch(`${stack.sim.url.replace(/^ws/, 'http')}/v1/realtime/calls/${upstreamCallIdOf(stack)}/hangup`, { method: 'POST', headers: { Authorization: 'Bearer sk-sim' } });
    expect(simHangup.status).toBe(200);
    // The upstream closed the sideband with the call: that ends the session.
    await stack.idle();
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: realtimeInvoice('gpt-realtime', u), chargeCount: 1, endReason: 'upstream_closed' })]);
    // The relay's own hangup comes after the end: nothing is left to hang up.
    expect((await hangUp(stack, call.location, key)).status).toBe(404);
  });

  it('opens a call with a client secret, of the secret\'s model and config, hung up by its key or the secret', async () => {
    const { key, record } = await stack.createKey();
    const mint = async (owner: string) => {
      const minted = await fetch(`${stack.httpUrl}/v1/realtime/client_secrets`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${owner}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ session: { type: 'realtime', model: 'gpt-realtime-mini', instructions: 'Be brief.' } }),
      });
      expect(minted.status).toBe(200);
      return ((await minted.json()) as { value: string }).value;
    };
    const secret = await mint(key);
    // A browser holds only the secret, and names no model: the secret's is the one billed.
    const call = await open(secret, {}, '');
    const u = usage({ text: [40, 0], out: [20, 0] });
    const response = await respond(call, u);
    await expect.poll(async () => (await stack.view.book(record.id)).charges.map((c) => [c.itemId, c.model, c.costNano])).toEqual([
      [response.id, 'gpt-realtime-mini', realtimeInvoice('gpt-realtime-mini', u)],
    ]);
    // Another key's secret is another caller; the secret's own key may hang up the call.
    expect((await hangUp(stack, call.location, await mint((await stack.createKey()).key))).status).toBe(404);
    expect((await hangUp(stack, call.location, key)).status).toBe(200);
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
    // And a second call, hung up with the secret itself.
    const second = await open(secret, {}, '');
    expect((await hangUp(stack, second.location, secret)).status).toBe(200);
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
  });

  it('lets a client secret act on the call it opened only, and join no call\'s events', async () => {
    const { key } = await stack.createKey();
    const mint = async () => {
      const minted = await fetch(`${stack.httpUrl}/v1/realtime/client_secrets`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ session: { type: 'realtime', model: 'gpt-realtime' } }),
      });
      return ((await minted.json()) as { value: string }).value;
    };
    // Two browsers of one application, each with its own secret of the same key.
    const [mine, theirs] = [await mint(), await mint()];
    const call = await open(mine, {}, '');
    const refused = await hangUp(stack, call.location, theirs);
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('call_not_found');
    // The sideband takes the key itself, as OpenAI's does.
    const callId = call.location.split('/').pop()!;
    const join = (bearer: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = new WebSocket(stack.realtimeUrl({ call_id: callId }), { headers: { Authorization: `Bearer ${bearer}` } });
        socket.once('unexpected-response', (_request, response) => {
          let body = '';
          response.on('data', (chunk: Buffer) => (body += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        });
        socket.once('open', () => {
          socket.close();
          resolve({ status: 101, body: '' });
        });
        socket.once('error', reject);
      });
    const joinedWithSecret = await join(mine);
    expect(joinedWithSecret.status).toBe(403);
    expect((JSON.parse(joinedWithSecret.body) as { error: { code: string } }).error.code).toBe('client_secret_not_allowed');
    // The key itself may join.
    expect((await join(key)).status).toBe(101);
    // The call goes on; its own secret ends it.
    await respond(call, usage({ text: [1, 0], out: [1, 0] }));
    expect((await hangUp(stack, call.location, mine)).status).toBe(200);
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
  });

  it('does not let another key hang up a call, nor tell it the call exists', async () => {
    const owner = await stack.createKey();
    const other = await stack.createKey();
    const call = await open(owner.key);
    const refused = await hangUp(stack, call.location, other.key);
    expect(refused.status).toBe(404);
    const unknown = await hangUp(stack, '/v1/realtime/calls/rtc_00000000000000000000000000000000', other.key);
    expect(await refused.json()).toEqual(await unknown.json());
    expect((await hangUp(stack, call.location, 'rk_not_a_key')).status).toBe(401);
    // The call goes on.
    await respond(call, usage({ text: [1, 0], out: [1, 0] }));
    expect((await hangUp(stack, call.location, owner.key)).status).toBe(200);
    // The relay hung the call up at the upstream.
    await expect.poll(() => stack.sim.activeCalls).toBe(0);
  });

  it('refuses what it cannot place with OpenAI error envelopes, and bills nothing', async () => {
    const { key, record } = await stack.createKey();
    const offer = await realOffer();
    const refusals: Array<[Response, number, string]> = [
      [await postOffer(callsUrl(), offer, { key: 'rk_wrong' }), 401, 'invalid_api_key'],
      [await postOffer(callsUrl(), offer, {}), 401, 'missing_api_key'],
      [await postOffer(callsUrl(), 'this is not an offer', { key }), 400, 'invalid_offer'],
      [await postOffer(callsUrl('model=gpt-nonexistent'), offer, { key }), 400, 'model_not_found'],
      [await postOffer(callsUrl(''), offer, { key }), 400, 'missing_model'],
      // The upstream refuses the caller's session config: its reason and param reach the caller as the caller's error.
      [await postOffer(callsUrl(''), offer, { key, shape: 'multipart', session: { type: 'realtime', model: 'gpt-realtime', no_such_field: 1 } }), 400, 'upstream_invalid_request'],
    ];
    const bodies: Array<{ error: { code: string; type: string; message: string; param: string | null } }> = [];
    for (const [response, status, code] of refusals) {
      const body = (await response.json()) as (typeof bodies)[number];
      bodies.push(body);
      expect([response.status, body.error.code]).toEqual([status, code]);
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).not.toBe('');
    }
    const upstreamRefusal = bodies.at(-1)!;
    expect(upstreamRefusal.error).toEqual({ code: 'upstream_invalid_request', type: 'invalid_request_error', message: "Unknown parameter: 'session.no_such_field'.", param: 'session.no_such_field' });
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.charges).toEqual([]);
    expect(book.balanceNano).toBe(record.balanceNano);
    // Only the refused upstream placement opened a session: settled empty, as a failed dial is.
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 0n, chargeCount: 0, endReason: 'dial_failed:upstream_invalid_request' })]);
    expect(stack.sim.activeCalls).toBe(0);
  });

  it('answers a cross-origin preflight the way the Agents SDK needs', async () => {
    const preflight = await fetch(callsUrl(), {
      method: 'OPTIONS',
      headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type,x-openai-agents-sdk' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase().split(',').map((h) => h.trim())).toEqual(
      expect.arrayContaining(['authorization', 'content-type', 'x-openai-agents-sdk']),
    );
    const { key } = await stack.createKey();
    const call = await open(key);
    expect(call.channelState).toBe('open');
  });
});

describe('a WebRTC call whose key runs out of balance', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    // Slow audio, so that the response is still running when the relay cancels it.
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 40, audioChunks: 50 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('cancels the response the browser started over the sideband, bills its tail and hangs up', async () => {
    // Enough to be admitted, not enough to hold a response (the reserve is 0.01 USD).
    const { key, record } = await stack.createKey({ balanceNano: 5_000_000n });
    const call = await openWebRtcCall(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, { key });
    try {
      call.send({ type: 'response.create', response: { output_modalities: ['audio'] } });
      const done = await call.waitFor('response.done', { timeoutMs: 5_000 });
      const response = done.response as { id: string; status: string; usage: RealtimeUsage };
      expect(response.status).toBe('cancelled');
      // The relay hung the call up at the upstream.
      await expect.poll(() => stack.sim.activeCalls).toBe(0);
      await stack.idle();
      const book = await stack.view.book(record.id);
      const tail = realtimeInvoice('gpt-realtime', response.usage);
      expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[response.id, tail]]);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: tail, chargeCount: 1, endReason: 'cancelled:insufficient_quota' })]);
      expect(book.settlements[0]!.summary).toMatchObject({ drain: 'response_done', transport: 'webrtc' });
      expect(book.balanceNano).toBe(record.balanceNano - tail);
    } finally {
      await call.close();
    }
  });
});

describe('WebRTC calls and upstreams that do not take them', () => {
  it('refuses a call when only an Azure upstream serves the model', async () => {
    const stack = await startTestRelay({ upstreams: { upstreams: [{ name: 'azure', kind: 'azure', baseUrl: 'http://127.0.0.1:9', apiKey: 'az' }] } });
    try {
      const { key } = await stack.createKey();
      const response = await postOffer(`${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`, await realOffer(), { key });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('calls_unsupported');
    } finally {
      await stack.close();
    }
  });
});


describe('WebRTC calls and the allowed origins', () => {
  it('answers the pages it allows and refuses the others before anything is placed', async () => {
    const stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, settings: { allowedOrigins: ['http://app.example'] } });
    try {
      const { key, record } = await stack.createKey();
      const url = `${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`;
      const preflight = (origin: string) => fetch(url, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' } });
      expect((await preflight('http://app.example')).headers.get('access-control-allow-origin')).toBe('http://app.example');
      expect((await preflight('http://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
      const refused = await fetch(url, { method: 'POST', headers: { Origin: 'http://evil.example', Authorization: `Bearer ${key}`, 'Content-Type': 'application/sdp' }, body: await realOffer() });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('origin_not_allowed');
      expect(refused.headers.get('access-control-allow-origin')).toBeNull();
      expect((await stack.view.book(record.id)).sessions).toEqual([]);
    } finally {
      await stack.close();
    }
  });
});
